package secure

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

// TestProxy: two trust domains cannot read each other's traffic; a gateway
// holding both groups' keys forwards between them in place.
func TestProxy(t *testing.T) {
	p := cpu.Generic
	domA, domB := newTestGroup(t, 1, p), newTestGroup(t, 2, p)
	senderA := newTestSealer(t, domA, SealerConfig{ID: SenderID(1, 1)})
	senderB := newTestSealer(t, domB, SealerConfig{ID: SenderID(1, 1)}) // same rank/incarnation numbers as A's sender
	recvA := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, p)}})
	recvB := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 2, p)}, CacheCapacity: 16})

	msg := []byte("gradient shard 17")
	fromA, _ := senderA.Seal(packet(senderA, pattern(8, 5), pattern(4, 6), msg), 8, 4)
	if _, err := recvB.Open(bytes.Clone(fromA), 8); !errors.Is(err, ErrAuth) {
		t.Fatalf("domain B read domain A's packet: %v", err)
	}
	fromB, _ := senderB.Seal(packet(senderB, pattern(8, 5), nil, msg), 8, 0)
	if _, err := recvA.Open(bytes.Clone(fromB), 8); !errors.Is(err, ErrAuth) {
		t.Fatalf("domain A read domain B's packet: %v", err)
	}

	// The gateway: opener for A, its own sealer in B (long option, a
	// different header length, to exercise the move).
	gw := Proxy{
		From: newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, p)}, CacheCapacity: 16}),
		To:   newTestSealer(t, cloneGroup(t, 2, p), SealerConfig{ID: SenderID(1000, 1), Option: OptionLong}),
	}
	for i := 0; i < 3; i++ {
		pkt, _ := senderA.Seal(packet(senderA, pattern(8, 5), pattern(4, 6), msg), 8, 4)
		pkt = growCap(pkt, 32)
		base := &pkt[0]
		out, src, err := gw.Forward(pkt, 8)
		if err != nil {
			t.Fatal(err)
		}
		if &out[0] != base {
			t.Fatal("Forward did not work in place")
		}
		if src.ID != SenderID(1, 1) {
			t.Fatalf("source header ID %x", src.ID)
		}
		r, err := recvB.Open(out, 8)
		if err != nil {
			t.Fatalf("domain B cannot open the forwarded packet: %v", err)
		}
		if !bytes.Equal(r.Payload, msg) || !bytes.Equal(r.Clear, pattern(4, 6)) || !bytes.Equal(r.Prefix, pattern(8, 5)) {
			t.Fatal("forwarded content differs")
		}
		if r.Header.ID != SenderID(1000, 1) {
			t.Fatalf("forwarded packet's sender is %x, want the gateway", r.Header.ID)
		}
		if _, err := recvA.Open(out, 8); err == nil {
			t.Fatal("domain A opened the forwarded (domain B) packet")
		}
	}
	// Tampered input is refused and not forwarded.
	bad, _ := senderA.Seal(packet(senderA, nil, nil, msg), 0, 0)
	bad[len(bad)-1] ^= 1
	if _, _, err := gw.Forward(bad, 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered packet: %v", err)
	}
	// Shorter destination header, no spare capacity needed.
	gw2 := Proxy{From: gw.From, To: newTestSealer(t, cloneGroup(t, 2, p), SealerConfig{ID: SenderID(1001, 1), Option: OptionNone})}
	pkt, _ := senderA.Seal(packet(senderA, nil, nil, msg), 0, 0)
	out, _, err := gw2.Forward(pkt, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := recvB.Open(out, 0); err != nil || !bytes.Equal(r.Payload, msg) {
		t.Fatalf("short header forward: %v", err)
	}
}

func growCap(b []byte, n int) []byte {
	c := make([]byte, len(b), len(b)+n)
	copy(c, b)
	return c
}

package wire_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/transport/wire"
)

func memPair(nw *wire.MemNetwork) func(t *testing.T) (wire.Wire, wire.Wire) {
	return func(t *testing.T) (wire.Wire, wire.Wire) {
		a, err := nw.Listen(netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := nw.Listen(netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

func TestMemWire(t *testing.T) {
	t.Run("default", func(t *testing.T) { wiretest.Run(t, memPair(wire.NewMemNetwork())) })
	t.Run("jumbo", func(t *testing.T) {
		nw := wire.NewMemNetwork()
		nw.MaxPayload, nw.QueueLen, nw.BatchSize = wire.MaxUDPPayload, 256, 16
		wiretest.Run(t, memPair(nw))
	})
}

func TestMemAddresses(t *testing.T) {
	nw := wire.NewMemNetwork()
	seen := map[netip.AddrPort]bool{}
	for i := 0; i < 1000; i++ {
		m, err := nw.Listen(netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		a := m.LocalAddr()
		if !a.IsValid() || !a.Addr().IsLoopback() || seen[a] {
			t.Fatalf("auto address %v: want a fresh valid 127.x address", a)
		}
		seen[a] = true
	}
	fixed := netip.MustParseAddrPort("10.1.2.3:4000")
	m, err := nw.Listen(fixed)
	if err != nil || m.LocalAddr() != fixed {
		t.Fatalf("Listen(%v) = %v, %v", fixed, m.LocalAddr(), err)
	}
	if _, err := nw.Listen(fixed); err == nil {
		t.Fatalf("second Listen(%v) succeeded", fixed)
	}
	m2, err := nw.Listen(netip.MustParseAddrPort("10.1.2.3:0"))
	if err != nil || m2.LocalAddr().Addr() != fixed.Addr() || m2.LocalAddr().Port() == 0 {
		t.Fatalf("Listen(port 0) = %v, %v", m2.LocalAddr(), err)
	}
	// Close frees the address.
	m.Close()
	if m3, err := nw.Listen(fixed); err != nil || m3.LocalAddr() != fixed {
		t.Fatalf("Listen after Close = %v, %v", m3.LocalAddr(), err)
	}
}

// TestMemQueueFull fills a receiver's queue and checks that the excess is
// dropped and counted, and that the queued datagrams are intact.
func TestMemQueueFull(t *testing.T) {
	nw := wire.NewMemNetwork()
	nw.QueueLen = 8
	a, _ := nw.Listen(netip.AddrPort{})
	b, _ := nw.Listen(netip.AddrPort{})
	msgs := wiretest.Msgs(b.LocalAddr(), 0, wiretest.Repeat(100, 20)...)
	if n, err := a.WriteBatch(msgs); n != 20 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if s := b.Stats(); s.Dropped != 12 {
		t.Fatalf("receiver stats %+v: want 12 dropped", s)
	}
	in := make([]wire.Message, 3)
	total := 0
	// The last batch handed out holds its slots until the next ReadBatch,
	// so a write between reads finds those slots still taken.
	for total < 8 {
		n, err := b.ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if !bytes.Equal(in[i].Buf, msgs[total+i].Buf) || in[i].Addr != a.LocalAddr() {
				t.Fatalf("datagram %d differs", total+i)
			}
		}
		total += n
	}
	// 2 slots are held by the last read (8 = 3+3+2): 6 free.
	if n, _ := a.WriteBatch(msgs[:8]); n != 8 {
		t.Fatal("WriteBatch")
	}
	if s := b.Stats(); s.Dropped != 14 || s.Received != 8 {
		t.Fatalf("receiver stats %+v: want 14 dropped, 8 received", s)
	}
	// Datagrams handed out by the last ReadBatch are still intact.
	if !bytes.Equal(in[0].Buf, msgs[6].Buf) || !bytes.Equal(in[1].Buf, msgs[7].Buf) {
		t.Fatal("a write overwrote datagrams lent by the last ReadBatch")
	}
	// Unknown destinations are dropped silently and counted by the sender.
	if n, err := a.WriteBatch(wiretest.Msgs(netip.MustParseAddrPort("127.9.9.9:1"), 0, 5)); n != 1 || err != nil {
		t.Fatalf("WriteBatch to nowhere = %d, %v", n, err)
	}
	if s := a.Stats(); s.Unroutable != 1 || s.Sent != 29 {
		t.Fatalf("sender stats %+v: want 1 unroutable of 29 sent", s)
	}
}

func TestMemAllocs(t *testing.T) {
	nw := wire.NewMemNetwork()
	a, _ := nw.Listen(netip.AddrPort{})
	b, _ := nw.Listen(netip.AddrPort{})
	msgs := wiretest.Msgs(b.LocalAddr(), 0, wiretest.Repeat(1400, 64)...)
	in := make([]wire.Message, 64)
	run := func() {
		if n, err := a.WriteBatch(msgs); n != 64 || err != nil {
			t.Fatal(n, err)
		}
		for got := 0; got < 64; {
			n, err := b.ReadBatch(in)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	for i := 0; i < 20; i++ {
		run() // fill every ring slot once
	}
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Fatalf("%v allocations per WriteBatch+ReadBatch, want 0", allocs)
	}
}

func TestMemCloseWhileQueued(t *testing.T) {
	nw := wire.NewMemNetwork()
	a, _ := nw.Listen(netip.AddrPort{})
	b, _ := nw.Listen(netip.AddrPort{})
	a.WriteBatch(wiretest.Msgs(b.LocalAddr(), 0, 10, 20))
	b.Close()
	if _, err := b.ReadBatch(make([]wire.Message, 4)); !errors.Is(err, wire.ErrClosed) {
		t.Fatalf("ReadBatch after Close with data queued: %v", err)
	}
	if n, err := a.WriteBatch(wiretest.Msgs(b.LocalAddr(), 0, 10)); n != 1 || err != nil {
		t.Fatalf("WriteBatch to a closed endpoint = %d, %v", n, err)
	}
	if s := a.Stats(); s.Unroutable != 1 {
		t.Fatalf("stats %+v: want the datagram to the closed endpoint unroutable", s)
	}
}

package transport

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/transport/wire"
)

// TestReplayCannotKeepDeadPeerAlive: an attacker records every datagram a
// peer sends during normal traffic and, once the peer is dead, replays them
// all, over and over. Replays are authentic (the same sealed bytes), so
// they pass the security layer; none of them shows the peer alive now (a
// duplicate, a stale ACK, a PING, an old echo), and the operation waiting
// on the dead peer must still fail within about the PeerTimeout.
func TestReplayCannotKeepDeadPeerAlive(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var rec *recordingWire
	c := newCluster(t, "mem", 2, func(cfg *Config) {
		cfg.PeerTimeout = timeout
		cfg.KeepaliveInterval = 20 * time.Millisecond
	}, func(rank int, w wire.Wire) wire.Wire {
		if rank == 1 {
			rec = &recordingWire{Wire: w}
			return rec
		}
		return w
	})
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	// Normal traffic both ways, eager and rendezvous, so that the record
	// holds reliable packets, ACKs (with echoes of PINGs) and control.
	buf := make([]byte, 300<<10)
	for i, n := range []int{100, 5000, 300 << 10} {
		for _, pair := range [][2]*Endpoint{{a, b}, {b, a}} {
			rq := pair[1].RecvAsync(ctx, pair[0].rank, uint64(i), ^uint64(0), buf)
			if err := pair[0].Send(ctx, pair[1].rank, uint64(i), pattern(n, 0, 1, i)); err != nil {
				t.Fatal(err)
			}
			if _, err := rq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(3 * 20 * time.Millisecond) // idle: keepalive traffic too
	rec.mu.Lock()
	replay := make([][]byte, len(rec.sent))
	copy(replay, rec.sent)
	rec.mu.Unlock()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	attacker, err := c.memNet().Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, d := range replay {
				select {
				case <-stop:
					return
				default:
				}
				attacker.WriteBatch([]wire.Message{{Buf: bytes.Clone(d), Addr: a.LocalAddr()}})
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 10*timeout)
	defer cancel()
	err = a.Send(sctx, 1, 99, pattern(300<<10, 0, 1, 9))
	if !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("Send to a dead peer under replay: %v after %v, want ErrPeerUnreachable", err, time.Since(start))
	}
	if el := time.Since(start); el > 3*timeout {
		t.Fatalf("failed after %v, want about the PeerTimeout %v", el, timeout)
	}
	t.Logf("failed after %v with %d datagrams replayed in a loop; duplicates %d", time.Since(start), len(replay), a.Stats().Duplicates)
}

package transport

import (
	"testing"
	"time"
)

// unacked is how many reliable packets ep has sent to rank that are not
// acknowledged yet.
func unacked(ep *Endpoint, rank uint32) int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	p := ep.peers[rank]
	return int(p.sndNxt - p.sndUna)
}

// waitUnacked polls until ep has no unacknowledged packet to rank.
func waitUnacked(t *testing.T, ep *Endpoint, rank uint32, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); unacked(ep, rank) != 0; {
		if time.Now().After(end) {
			t.Fatalf("rank %d: %d packets to rank %d still unacknowledged after %v", ep.Rank(), unacked(ep, rank), rank, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLazyAck: with LocalCompletion nobody waits for the ACK of an eager
// send, so its fragments carry flagAckLazy. The receiver does not
// acknowledge them when its socket drains (it would for other packets);
// its next packet to the sender carries the ACK, or a standalone ACK
// follows after AckDelay. Without the flag the receiver would answer each
// message with a standalone ACK: a system call on each side.
func TestLazyAck(t *testing.T) {
	const ackDelay = 300 * time.Millisecond
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			c := newCluster(t, kind, 2, func(cfg *Config) {
				cfg.LocalCompletion = true
				cfg.AckDelay = ackDelay
				// No retransmission while the ACKs are held back.
				cfg.MinRTO, cfg.InitialRTO, cfg.MaxRTO = 5*time.Second, 5*time.Second, 5*time.Second
			}, nil)
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			msg, buf := []byte("8 bytes!"), make([]byte, 8)

			// Warm up (each side learns the other's incarnation) and wait
			// until everything is acknowledged; count from there.
			for _, x := range [][2]*Endpoint{{a, b}, {b, a}} {
				if err := x[0].Send(ctx, x[1].Rank(), 9, msg); err != nil {
					t.Fatal(err)
				}
				if _, err := x[1].Recv(ctx, x[0].Rank(), 9, ^uint64(0), buf); err != nil {
					t.Fatal(err)
				}
			}
			waitUnacked(t, a, 1, 10*ackDelay)
			waitUnacked(t, b, 0, 10*ackDelay)
			sentA, sentB := a.Stats().PacketsSent, b.Stats().PacketsSent

			// Three messages a → b (fewer than the 4 that force an ACK),
			// each received.
			for range 3 {
				if err := a.Send(ctx, 1, 1, msg); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Recv(ctx, 0, 1, ^uint64(0), buf); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(30 * time.Millisecond)
			if n := unacked(a, 1); n != 3 {
				t.Fatalf("%d of a's 3 packets unacknowledged %v after delivery, want 3 (the ACK is lazy)", n, 30*time.Millisecond)
			}
			if s := b.Stats(); s.PacketsSent != sentB {
				t.Fatalf("b sent %d packets before it had anything to say, want 0", s.PacketsSent-sentB)
			}

			// b's reply carries the ACK: a's ring empties at once, and b
			// has sent one packet in all.
			start := time.Now()
			if err := b.Send(ctx, 0, 2, msg); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Recv(ctx, 1, 2, ^uint64(0), buf); err != nil {
				t.Fatal(err)
			}
			waitUnacked(t, a, 1, ackDelay/3)
			if s := b.Stats(); s.PacketsSent != sentB+1 {
				t.Fatalf("b sent %d packets, want 1 (the reply, carrying the ACK)", s.PacketsSent-sentB)
			}

			// Nothing goes back to b: a acknowledges the reply on its own
			// after AckDelay.
			waitUnacked(t, b, 0, 10*ackDelay)
			if d := time.Since(start); d < ackDelay {
				t.Fatalf("b's reply was acknowledged after %v, before AckDelay (%v)", d, ackDelay)
			}
			if s := a.Stats(); s.PacketsSent != sentA+4 {
				t.Fatalf("a sent %d packets, want 4 (3 messages, 1 ACK)", s.PacketsSent-sentA)
			}
		})
	}
}

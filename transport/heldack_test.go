package transport

import (
	"testing"
	"time"
)

// TestHeldAck: an ACK owed at once (a blocking Send waits for it) but owed
// by a batch that woke a goroutine is held for that goroutine's answer
// (Endpoint.holdAck), and never waits for the AckDelay timer when the
// woken goroutine blocks in the endpoint instead of answering: a stream
// of blocking Sends whose receiver only receives (blocking Recv, or
// RecvAsync and Wait), and a blocking ping-pong, each finish in a small
// fraction of the time they would take if every ACK waited for AckDelay.
// When the woken goroutine neither answers nor blocks, the timer sends
// the ACK after AckDelay.
func TestHeldAck(t *testing.T) {
	const (
		ackDelay = 200 * time.Millisecond
		n        = 40 // messages: n*ackDelay = 8 s if each ACK waited for the timer
		bound    = 2 * time.Second
	)
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			c := newCluster(t, kind, 2, func(cfg *Config) {
				cfg.AckDelay = ackDelay
				// No retransmission to stand in for a held ACK.
				cfg.MinRTO, cfg.InitialRTO, cfg.MaxRTO = 10*time.Second, 10*time.Second, 10*time.Second
				cfg.KeepaliveInterval = time.Minute
				cfg.PeerTimeout = 2 * time.Minute
			}, nil)
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			msg := []byte("8 bytes!")

			// Warm up: each side learns the other's incarnation.
			for _, x := range [][2]*Endpoint{{a, b}, {b, a}} {
				done := make(chan error, 1)
				go func() {
					_, err := x[1].Recv(ctx, x[0].Rank(), 9, ^uint64(0), make([]byte, 8))
					done <- err
				}()
				if err := x[0].Send(ctx, x[1].Rank(), 9, msg); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}

			stream := func(name string, recv func(buf []byte) error) {
				t.Helper()
				done := make(chan error, 1)
				go func() {
					buf := make([]byte, 8)
					for range n {
						if err := recv(buf); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				start := time.Now()
				for range n {
					if err := a.Send(ctx, 1, 1, msg); err != nil {
						t.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				d := time.Since(start)
				t.Logf("%s: %d blocking Sends in %v", name, n, d)
				if d > bound {
					t.Fatalf("%s: %d blocking Sends took %v (the receiver's ACKs waited for AckDelay %v?)", name, n, d, ackDelay)
				}
			}
			stream("blocking Recv", func(buf []byte) error {
				_, err := b.Recv(ctx, 0, 1, ^uint64(0), buf)
				return err
			})
			stream("RecvAsync+Wait", func(buf []byte) error {
				_, err := b.RecvAsync(ctx, 0, 1, ^uint64(0), buf).Wait(ctx)
				return err
			})

			// Blocking ping-pong: the answer carries the ACK.
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 8)
				for range n {
					if _, err := b.Recv(ctx, 0, 2, ^uint64(0), buf); err != nil {
						done <- err
						return
					}
					if err := b.Send(ctx, 0, 2, buf); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			start := time.Now()
			buf := make([]byte, 8)
			for range n {
				if err := a.Send(ctx, 1, 2, msg); err != nil {
					t.Fatal(err)
				}
				if _, err := a.Recv(ctx, 1, 2, ^uint64(0), buf); err != nil {
					t.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			t.Logf("ping-pong: %d round trips in %v", n, d)
			if d > bound {
				t.Fatalf("ping-pong: %d round trips took %v", n, d)
			}

			// The woken goroutine neither answers nor blocks in the
			// endpoint (its receive completes while it sleeps): the
			// timer sends the held ACK, after AckDelay.
			rq := b.RecvAsync(ctx, 0, 3, ^uint64(0), make([]byte, 8))
			start = time.Now()
			if err := a.Send(ctx, 1, 3, msg); err != nil {
				t.Fatal(err)
			}
			d = time.Since(start)
			if _, err := rq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if d < ackDelay/2 || d > 10*ackDelay {
				t.Fatalf("a Send whose receiver did nothing more completed after %v, want about AckDelay (%v)", d, ackDelay)
			}
		})
	}
}

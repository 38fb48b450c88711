package transport

import (
	"bytes"
	"sync"
	"testing"

	"github.com/sealring/sealring/internal/faultwire"
)

// TestLocalCompletion: with Config.LocalCompletion an eager Send returns
// before the peer acknowledges, its buffer may be reused at once, and every
// message still arrives intact and in order over a lossy, reordering,
// duplicating, corrupting network, both with blocking and async sends.
func TestLocalCompletion(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			fc := faultwire.Config{Seed: 11, Loss: 0.10, Duplicate: 0.05, Reorder: 0.05, Corrupt: 0.01, ReorderDepth: 3}
			c := newCluster(t, kind, 2, func(cfg *Config) { cfg.LocalCompletion = true }, faultWrap(fc))
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			sizes := []int{0, 8, 1400, 5000, 64 << 10, 200 << 10} // the last is rendezvous
			const rounds = 6
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range rounds * len(sizes) {
					n := sizes[i%len(sizes)]
					buf := make([]byte, n)
					st, err := b.Recv(ctx, 0, 5, ^uint64(0), buf)
					if err != nil || st.Len != n {
						t.Errorf("message %d: %+v %v", i, st, err)
						return
					}
					if !bytes.Equal(buf, pattern(n, 0, 5, i)) {
						t.Errorf("message %d (%d bytes) corrupted", i, n)
						return
					}
				}
			}()
			buf := make([]byte, 200<<10)
			var reqs []*Request
			for i := range rounds * len(sizes) {
				n := sizes[i%len(sizes)]
				fillPattern(buf[:n], 0, 5, i)
				if i%2 == 0 {
					if err := a.Send(ctx, 1, 5, buf[:n]); err != nil {
						t.Fatal(err)
					}
				} else {
					msg := pattern(n, 0, 5, i)
					r := a.SendAsync(ctx, 1, 5, msg)
					if n <= DefaultEagerLimit {
						// Eager: complete without waiting for the peer.
						if _, err := r.Wait(ctx); err != nil {
							t.Fatal(err)
						}
						clear(msg) // the ring holds its own copy
					}
					reqs = append(reqs, r)
				}
				// Overwrite the buffer the moment Send returned.
				clear(buf[:n])
			}
			for _, r := range reqs {
				if _, err := r.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
		})
	}
}

// TestPiggybackAck: in a ping-pong the replies carry the acknowledgements,
// so hardly any standalone ACK is sent.
func TestPiggybackAck(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	const n = 500
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 8)
		for range n {
			if _, err := b.Recv(ctx, 0, 1, ^uint64(0), buf); err != nil {
				done <- err
				return
			}
			if err := b.Send(ctx, 0, 1, buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	msg, buf := make([]byte, 8), make([]byte, 8)
	for range n {
		if err := a.Send(ctx, 1, 1, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Recv(ctx, 1, 1, ^uint64(0), buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sent := a.Stats().PacketsSent + b.Stats().PacketsSent
	t.Logf("%d round trips: %d datagrams (%.2f per round trip)", n, sent, float64(sent)/n)
	// 2 data packets per round trip; allow standalone ACKs on a fraction
	// of them (a reply racing the receive goroutine), and the probes.
	if per := float64(sent) / n; per > 3 {
		t.Errorf("%.2f datagrams per round trip: ACKs are not piggybacked", per)
	}
}

// TestLocalCompletionUnblocksExchange: both sides Send then Recv with
// blocking calls; with LocalCompletion neither waits for an ACK first.
func TestLocalCompletionExchange(t *testing.T) {
	c := newCluster(t, "udp", 2, func(cfg *Config) { cfg.LocalCompletion = true }, nil)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for i, ep := range c.eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer := uint32(1 - i)
			out, in := make([]byte, 64), make([]byte, 64)
			for k := range 300 {
				fillPattern(out, uint32(i), 9, k)
				if err := ep.Send(ctx, peer, 9, out); err != nil {
					t.Error(err)
					return
				}
				if _, err := ep.Recv(ctx, peer, 9, ^uint64(0), in); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(in, pattern(64, peer, 9, k)) {
					t.Errorf("rank %d: message %d corrupted", i, k)
					return
				}
			}
		}()
	}
	wg.Wait()
}

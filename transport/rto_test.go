package transport

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/transport/wire"
)

// TestSpuriousRTOUndone: packets held up longer than the retransmission
// timeout, not lost, make the sender time out and collapse its window; the
// receiver then gets two copies and says so (ACK flag DUP), and the sender
// undoes the collapse (Stats.SpuriousRTOs). The same packets dropped
// instead are a real loss: no duplicate, nothing undone. Either way the
// message arrives intact.
func TestSpuriousRTOUndone(t *testing.T) {
	for _, act := range []faultwire.Action{faultwire.Delay, faultwire.Drop} {
		t.Run(act.String(), func(t *testing.T) {
			var from, to atomic.Uint64 // datagrams [from, to) of rank 0 get act
			c := newCluster(t, "mem", 2, func(cfg *Config) {
				// A MinRTO well above the ACK delays of a loaded test
				// machine, so that the only timeout in the Drop case is the
				// real one (a spurious one, rightly undone, would blur it).
				cfg.MinRTO = 15 * time.Millisecond
				cfg.MaxRTO = 40 * time.Millisecond
			}, func(rank int, w wire.Wire) wire.Wire {
				if rank != 0 {
					return w
				}
				seen := map[string]bool{} // Decide calls are serialized
				return faultwire.New(w, faultwire.Config{Delay: 150 * time.Millisecond, Decide: func(seq uint64, m wire.Message) faultwire.Action {
					// The first copy of each datagram in the window; a
					// retransmission (the same sealed bytes) passes.
					if seq >= from.Load() && seq < to.Load() && !seen[string(m.Buf)] {
						seen[string(m.Buf)] = true
						return act
					}
					return faultwire.Pass
				}})
			})
			s, r := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			msg := pattern(256<<10, 0, 1, 0)
			buf := make([]byte, len(msg))
			// Warm up (RTT sampled, packets per message counted), then
			// hold up a run of the next message's packets.
			before := s.Stats().PacketsSent
			if err := sendRecv(ctx, s, r, msg, buf); err != nil {
				t.Fatal(err)
			}
			base := s.Stats().PacketsSent
			// The tail of the next message: nothing sent after it can
			// reveal the gap, so only the timer recovers it.
			n := base - before
			from.Store(base + n - 12)
			to.Store(base + n + 40)
			if err := sendRecv(ctx, s, r, msg, buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, msg) {
				t.Fatal("message corrupted")
			}
			time.Sleep(250 * time.Millisecond) // the late copies and their ACK
			st := s.Stats()
			t.Logf("%v: RTOs %d, spurious %d, retransmits %d; receiver duplicates %d", act, st.RTOs, st.SpuriousRTOs, st.Retransmits, r.Stats().Duplicates)
			if st.RTOs == 0 {
				t.Fatal("no retransmission timeout")
			}
			switch act {
			case faultwire.Delay:
				if st.SpuriousRTOs == 0 {
					t.Fatal("a timeout for late packets was not undone")
				}
			case faultwire.Drop:
				// The timeout for the lost packets is never undone (a
				// later, spurious one on a slow machine may be).
				if st.SpuriousRTOs >= st.RTOs {
					t.Fatalf("%d of %d timeouts undone, including the one for lost packets", st.SpuriousRTOs, st.RTOs)
				}
			}
		})
	}
}

func sendRecv(ctx context.Context, s, r *Endpoint, msg, buf []byte) error {
	rq := r.RecvAsync(ctx, s.rank, 1, ^uint64(0), buf)
	if err := s.Send(ctx, r.rank, 1, msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if _, err := rq.Wait(ctx); err != nil {
		return fmt.Errorf("recv: %w", err)
	}
	return nil
}

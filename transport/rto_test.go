package transport

import (
	"bytes"
	"context"
	"fmt"
	"sync"
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

// holdWire holds each batch it has read, while held, before handing it
// over, and says meanwhile that input is waiting (wire.InputPender): the
// state of a rank whose receive goroutine has not run yet while ACKs sit
// on its socket.
type holdWire struct {
	wire.Wire
	mu      sync.Mutex
	gate    chan struct{} // non-nil while held
	waiting atomic.Bool
	done    chan struct{}
	once    sync.Once
}

func newHoldWire(w wire.Wire) *holdWire { return &holdWire{Wire: w, done: make(chan struct{})} }

func (h *holdWire) ReadBatch(msgs []wire.Message) (int, error) {
	// The batch handed over last is handled by now; the next one waits
	// from here until it is handed over.
	h.waiting.Store(false)
	n, err := h.Wire.ReadBatch(msgs)
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	if n > 0 && gate != nil {
		h.waiting.Store(true)
		select {
		case <-gate:
		case <-h.done:
		}
	}
	return n, err
}

func (h *holdWire) InputPending() bool { return h.waiting.Load() }

func (h *holdWire) hold() {
	h.mu.Lock()
	h.gate = make(chan struct{})
	h.mu.Unlock()
}

func (h *holdWire) release() {
	h.mu.Lock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
	h.mu.Unlock()
}

func (h *holdWire) Close() error {
	h.once.Do(func() { close(h.done) })
	return h.Wire.Close()
}

// TestRTODeferredWhileInputWaits: a retransmission timeout that expires
// while the ACKs it waits for have arrived but are not read yet is put off
// (Stats.DeferredRTOs), not declared: released in time, the sender reads
// them and no timeout happens. The putting off is bounded: input that keeps
// waiting (here: never handed over) delays a timeout by one RTO at most,
// and the timeout then fires.
func TestRTODeferredWhileInputWaits(t *testing.T) {
	// Long enough that the sender reads its ACKs within the one RTO the
	// deferral allows after the test sees it, on a loaded machine.
	const rto = 150 * time.Millisecond
	for _, tc := range []struct {
		name  string
		until func(before, now Stats) bool // release rank 0's input once this holds
	}{
		{"released", func(b, s Stats) bool { return s.DeferredRTOs > b.DeferredRTOs }},
		{"bounded", func(b, s Stats) bool { return s.RTOs > b.RTOs }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hw *holdWire
			c := newCluster(t, "mem", 2, func(cfg *Config) {
				cfg.MinRTO, cfg.MaxRTO, cfg.InitialRTO = rto, rto, rto
			}, func(rank int, w wire.Wire) wire.Wire {
				if rank != 0 {
					return w
				}
				hw = newHoldWire(w)
				return hw
			})
			s, r := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			msg := pattern(3000, 0, 1, 0)
			buf := make([]byte, len(msg))
			if err := sendRecv(ctx, s, r, msg, buf); err != nil { // warm up
				t.Fatal(err)
			}
			before := s.Stats()
			hw.hold()
			rq := r.RecvAsync(ctx, s.rank, 1, ^uint64(0), buf)
			sq := s.SendAsync(ctx, r.rank, 1, msg)
			if _, err := rq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			// The receiver has the message and has acknowledged it; the
			// sender's ACKs wait in its held input.
			deadline := time.Now().Add(10 * time.Second)
			held := s.Stats()
			for !tc.until(before, held) {
				if time.Now().After(deadline) {
					hw.release()
					t.Fatalf("held input: %d timeouts, %d deferred after 10 s", held.RTOs-before.RTOs, held.DeferredRTOs-before.DeferredRTOs)
				}
				time.Sleep(time.Millisecond)
				held = s.Stats()
			}
			hw.release()
			if _, err := sq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			after := s.Stats()
			rtos, deferred := after.RTOs-before.RTOs, after.DeferredRTOs-before.DeferredRTOs
			t.Logf("timeouts %d, deferred %d", rtos, deferred)
			if deferred == 0 {
				t.Fatal("no timeout was deferred while input waited")
			}
			switch tc.name {
			case "released":
				if rtos != 0 {
					t.Fatalf("%d timeouts although the ACKs were waiting and were read in time", rtos)
				}
			case "bounded":
				if held.RTOs == before.RTOs {
					t.Fatal("no timeout while input kept waiting")
				}
			}
		})
	}
}

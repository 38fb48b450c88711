package transport

import (
	"context"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/transport/wire"
)

func isDone(rq *Request) bool {
	select {
	case <-rq.Done():
		return true
	default:
		return false
	}
}

// TestRefusedRetriedWhenPoolFrees: a packet refused because the
// unexpected pool was full is retried as soon as the pool frees, whatever
// frees it, not only when a receive is posted. Here a CANCEL frees it:
// rank 1's partly sent forced-eager message fills rank 0's pool, rank 2's
// next message is refused and its later one waits behind it for a
// receive already posted. When rank 1 withdraws its message, both of rank
// 2's must arrive with no further receive posted.
func TestRefusedRetriedWhenPoolFrees(t *testing.T) {
	var cut oneWayCut
	cut.heal()
	c := newCluster(t, "mem", 3, func(cfg *Config) {
		cfg.EagerLimit = 4096
		cfg.Window = 16
		cfg.MaxRTO = 20 * time.Millisecond
		cfg.UnexpectedBytes = 64 << 10
	}, func(rank int, w wire.Wire) wire.Wire {
		if rank != 1 {
			return w
		}
		// What rank 1 writes passes until the test cuts it.
		return faultwire.New(w, faultwire.Config{Decide: func(_ uint64, _ wire.Message) faultwire.Action {
			n := cut.allow.Load()
			switch {
			case n < 0:
				return faultwire.Pass
			case n > 0:
				cut.allow.Store(n - 1)
				return faultwire.Pass
			}
			return faultwire.Drop
		}})
	})
	r, a, b := c.eps[0], c.eps[1], c.eps[2]
	ctx := ctxT(t)

	// Warm up: incarnations known both ways, so that what passes the cut
	// below is data.
	for _, p := range []*Endpoint{a, b} {
		rq := r.RecvAsync(ctx, p.rank, 77, ^uint64(0), make([]byte, 8))
		if err := p.Send(ctx, 0, 77, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := rq.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // let the warm-up's ACKs settle

	// Rank 1: a 1 MiB eager message, of which a few fragments arrive.
	const size = 1 << 20
	cut.cutAfter(4)
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	aq := a.SendAsyncWith(actx, 0, 1, pattern(size, 1, 1, 0), SendOptions{Eager: true})
	waitFor(t, r, "rank 1's message in the pool", func() bool {
		u := r.unexp.head
		return u != nil && u.got > 0 && u.got < size
	})

	// Rank 2: one message refused (the pool is full), one behind it.
	b.SendAsync(ctx, 0, 2, pattern(100, 2, 2, 0))
	b.SendAsync(ctx, 0, 3, pattern(200, 2, 3, 0))
	waitFor(t, r, "rank 2's message refused", func() bool {
		return r.st.refused.Load() > 0
	})
	buf3 := make([]byte, 256)
	rq := r.RecvAsync(ctx, 2, 3, ^uint64(0), buf3) // retries, still no room
	time.Sleep(20 * time.Millisecond)
	if rq.Err() != nil || isDone(rq) {
		t.Fatal("rank 2's second message overtook its refused first one")
	}

	// Rank 1 withdraws its message: the CANCEL frees the pool.
	cancel()
	aq.Wait(ctx)
	cut.heal()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	st, err := rq.Wait(wctx)
	if err != nil {
		t.Fatalf("receive behind the refused message: %v (pool %d bytes)", err, unexpCharged(r))
	}
	checkPattern(t, buf3[:st.Len], 2, 3, 0)
	buf2 := make([]byte, 256)
	st, err = r.Recv(ctx, 2, 2, ^uint64(0), buf2)
	if err != nil {
		t.Fatalf("the refused message: %v", err)
	}
	checkPattern(t, buf2[:st.Len], 2, 2, 0)
}

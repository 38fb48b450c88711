package transport

import (
	"context"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/transport/wire"
)

// refusedCluster makes n endpoints over the in-memory wire, rank 0 with
// a 64 KiB unexpected pool; what rank 1 writes passes until cut says
// otherwise. Every rank has exchanged a message with rank 0, so their
// incarnations are known and later datagrams are data.
func refusedCluster(t *testing.T, n int) (eps []*Endpoint, cut *oneWayCut) {
	t.Helper()
	cut = new(oneWayCut)
	cut.heal()
	c := newCluster(t, "mem", n, func(cfg *Config) {
		cfg.EagerLimit = 4096
		cfg.Window = 16
		cfg.MaxRTO = 20 * time.Millisecond
		cfg.UnexpectedBytes = 64 << 10
	}, func(rank int, w wire.Wire) wire.Wire {
		if rank != 1 {
			return w
		}
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
	ctx := ctxT(t)
	for _, p := range c.eps[1:] {
		rq := c.eps[0].RecvAsync(ctx, p.rank, 77, ^uint64(0), make([]byte, 8))
		if err := p.Send(ctx, 0, 77, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := rq.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // let the warm-up's ACKs settle
	return c.eps, cut
}

// startPartial starts a 1 MiB forced-eager message from a to r of which
// only a few fragments arrive (cut), and waits until r holds them. cancel
// withdraws it.
func startPartial(t *testing.T, ctx context.Context, r, a *Endpoint, cut *oneWayCut, tag uint64) (aq *Request, cancel context.CancelFunc) {
	t.Helper()
	const size = 1 << 20
	cut.cutAfter(4)
	actx, cancel := context.WithCancel(ctx)
	aq = a.SendAsyncWith(actx, 0, tag, pattern(size, 1, tag, 0), SendOptions{Eager: true})
	waitFor(t, r, "the partial message at the receiver", func() bool {
		if c := &r.peers[a.rank].cur; c.active && c.got > 0 && c.got < size {
			return true
		}
		u := r.unexp.head
		return u != nil && u.got > 0 && u.got < size
	})
	return aq, cancel
}

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
	eps, cut := refusedCluster(t, 3)
	r, a, b := eps[0], eps[1], eps[2]
	ctx := ctxT(t)

	// Rank 1: a 1 MiB eager message, of which a few fragments arrive.
	aq, cancel := startPartial(t, ctx, r, a, cut, 1)
	defer cancel()

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

// TestRefusedRetriedOnRepost: a receive that goes back to the posted
// queue (its message was withdrawn) is offered the packets refused
// meanwhile. Rank 3 fills rank 0's pool; rank 0's one wildcard receive
// takes rank 1's message, which rank 1 then withdraws part way; rank 2's
// message, refused while the receive was busy and the pool full, must
// then complete that receive.
func TestRefusedRetriedOnRepost(t *testing.T) {
	eps, cut := refusedCluster(t, 4)
	r, a, b, z := eps[0], eps[1], eps[2], eps[3]
	ctx := ctxT(t)
	z.SendAsyncWith(ctx, 0, 99, pattern(64<<10, 3, 99, 0), SendOptions{Eager: true})
	waitFor(t, r, "rank 3's message buffered", func() bool {
		u := r.unexp.head
		return u != nil && u.complete
	})

	buf := make([]byte, 1<<20)
	rq := r.RecvAsync(ctx, AnySource, 5, ^uint64(0), buf)
	aq, cancel := startPartial(t, ctx, r, a, cut, 5)
	defer cancel()
	b.SendAsync(ctx, 0, 5, pattern(100, 2, 5, 0))
	waitFor(t, r, "rank 2's message refused", func() bool {
		return r.st.refused.Load() > 0
	})

	cancel()
	aq.Wait(ctx)
	cut.heal()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	st, err := rq.Wait(wctx)
	if err != nil {
		t.Fatalf("the reposted receive: %v", err)
	}
	if st.Source != 2 || st.Len != 100 {
		t.Fatalf("the reposted receive got %+v, want rank 2's 100 bytes", st)
	}
	checkPattern(t, buf[:st.Len], 2, 5, 0)
}

// TestRemovePeerRefused: removing a peer whose packet was refused forgets
// the refusal, so that later pool releases do not retry it forever.
func TestRemovePeerRefused(t *testing.T) {
	eps, cut := refusedCluster(t, 3)
	r, a, b := eps[0], eps[1], eps[2]
	ctx := ctxT(t)
	_, cancel := startPartial(t, ctx, r, a, cut, 1)
	defer cancel()
	b.SendAsync(ctx, 0, 2, pattern(100, 2, 2, 0))
	waitFor(t, r, "rank 2's message refused", func() bool { return r.nRefused == 1 })
	if err := r.RemovePeer(2); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	n := r.nRefused
	r.mu.Unlock()
	if n != 0 {
		t.Fatalf("nRefused %d after the refused peer was removed, want 0", n)
	}
}

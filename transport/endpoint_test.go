package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/transport/wire"
)

func TestSendRecvSizes(t *testing.T) {
	for _, kind := range kinds() {
		for _, insecure := range []bool{false, true} {
			name := kind
			if insecure {
				name += "/insecure"
			}
			t.Run(name, func(t *testing.T) {
				c := newCluster(t, kind, 2, func(cfg *Config) { cfg.Insecure = insecure }, nil)
				a, b := c.eps[0], c.eps[1]
				f := a.EagerFragment()
				sizes := []int{0, 1, f - 1, f, f + 1, 2*f + 1, DefaultEagerLimit, DefaultEagerLimit + 1, 1 << 20, 64 << 20}
				if soak() {
					sizes = append(sizes, 256<<20)
				}
				ctx := ctxT(t)
				for i, n := range sizes {
					msg := pattern(n, 0, uint64(i), i)
					buf := make([]byte, n)
					errc := make(chan error, 1)
					go func() { errc <- a.Send(ctx, 1, uint64(i), msg) }()
					st, err := b.Recv(ctx, 0, uint64(i), ^uint64(0), buf)
					if err != nil {
						t.Fatalf("size %d: Recv: %v", n, err)
					}
					if err := <-errc; err != nil {
						t.Fatalf("size %d: Send: %v", n, err)
					}
					if st.Source != 0 || st.Tag != uint64(i) || st.Len != n {
						t.Fatalf("size %d: status %+v", n, st)
					}
					checkPattern(t, buf, 0, uint64(i), i)
				}
				t.Logf("stats a: %+v", a.Stats())
			})
		}
	}
}

func TestUnexpectedThenRecv(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	sizes := []int{0, 5, 3000, 70000, 300000}
	var reqs []*Request
	for i, n := range sizes {
		reqs = append(reqs, a.SendAsync(ctx, 1, uint64(i), pattern(n, 0, uint64(i), i)))
	}
	// Eager sends complete without a receive (they land in the pool).
	for i := range 3 {
		if _, err := reqs[i].Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Receive in reverse tag order.
	for i := len(sizes) - 1; i >= 0; i-- {
		buf := make([]byte, sizes[i])
		st, err := b.Recv(ctx, 0, uint64(i), ^uint64(0), buf)
		if err != nil || st.Len != sizes[i] {
			t.Fatalf("recv %d: %v %+v", i, err, st)
		}
		checkPattern(t, buf, 0, uint64(i), i)
	}
	for _, r := range reqs {
		if _, err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTruncated(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	for _, n := range []int{100, 5000, 200000} {
		msg := pattern(n, 0, 7, n)
		r := a.SendAsync(ctx, 1, 7, msg)
		buf := make([]byte, n/2)
		st, err := b.Recv(ctx, AnySource, 7, ^uint64(0), buf)
		if !errors.Is(err, ErrTruncated) || st.Len != n || st.Source != 0 {
			t.Fatalf("n=%d: %v %+v", n, err, st)
		}
		if string(buf) != string(msg[:n/2]) {
			t.Fatalf("n=%d: truncated data wrong", n)
		}
		if _, err := r.Wait(ctx); err != nil {
			t.Fatalf("n=%d: send: %v", n, err)
		}
	}
}

func TestWildcardAndMask(t *testing.T) {
	c := newCluster(t, "mem", 3, nil, nil)
	ctx := ctxT(t)
	// Tag layout: high 32 bits = communicator, low = user tag.
	if err := c.eps[1].Send(ctx, 0, 0xAB_0000_0005, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := c.eps[2].Send(ctx, 0, 0xCD_0000_0005, []byte("two")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	st, err := c.eps[0].Recv(ctx, AnySource, 0xCD_0000_0000, 0xFFFF_FFFF_0000_0000, buf)
	if err != nil || st.Source != 2 || st.Tag != 0xCD_0000_0005 || string(buf[:st.Len]) != "two" {
		t.Fatalf("%v %+v %q", err, st, buf[:st.Len])
	}
	st, err = c.eps[0].Recv(ctx, AnySource, 0, 0, buf)
	if err != nil || st.Source != 1 || string(buf[:st.Len]) != "one" {
		t.Fatalf("%v %+v", err, st)
	}
}

func TestOrderingAllToAll(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) { testAllToAll(t, kind, nil, 4, 8, 20) })
	}
}

// testAllToAll: every endpoint sends perTag messages on each of tags tags
// to every other; receivers check order per (peer, tag) and contents.
func testAllToAll(t *testing.T, kind string, wrap func(int, wire.Wire) wire.Wire, n, tags, perTag int) *cluster {
	c := newCluster(t, kind, n, nil, wrap)
	ctx := ctxT(t)
	size := func(src, dst, tag, seq int) int {
		switch (src + dst + tag + seq) % 5 {
		case 0:
			return 0
		case 1:
			return 17
		case 2:
			return 2000
		case 3:
			return 9000
		}
		return 70000 // rendezvous
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*n*tags*2)
	for s := range n {
		for d := range n {
			if s == d {
				continue
			}
			for tag := range tags {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for seq := range perTag {
						msg := pattern(size(s, d, tag, seq), uint32(s), uint64(tag), seq)
						if err := c.eps[s].Send(ctx, uint32(d), uint64(tag), msg); err != nil {
							errs <- fmt.Errorf("send %d->%d tag %d #%d: %w", s, d, tag, seq, err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					buf := make([]byte, 80000)
					for seq := range perTag {
						st, err := c.eps[d].Recv(ctx, uint32(s), uint64(tag), ^uint64(0), buf)
						if err != nil {
							errs <- fmt.Errorf("recv %d<-%d tag %d #%d: %w", d, s, tag, seq, err)
							return
						}
						want := size(s, d, tag, seq)
						if st.Len != want {
							errs <- fmt.Errorf("recv %d<-%d tag %d #%d: len %d want %d (out of order?)", d, s, tag, seq, st.Len, want)
							return
						}
						wantB := pattern(want, uint32(s), uint64(tag), seq)
						if string(buf[:want]) != string(wantB) {
							errs <- fmt.Errorf("recv %d<-%d tag %d #%d: corrupt or out of order", d, s, tag, seq)
							return
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return c
}

func TestAsyncRequests(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	const k = 50
	bufs := make([][]byte, k)
	var rr, sr []*Request
	for i := range k {
		bufs[i] = make([]byte, 4000)
		rr = append(rr, b.RecvAsync(ctx, 0, 3, ^uint64(0), bufs[i]))
	}
	for i := range k {
		sr = append(sr, a.SendAsync(ctx, 1, 3, pattern(100+i*50, 0, 3, i)))
	}
	for i := range k {
		st, err := rr[i].Wait(ctx)
		if err != nil || st.Len != 100+i*50 {
			t.Fatalf("recv %d: %v %+v", i, err, st)
		}
		<-rr[i].Done()
		if rr[i].Err() != nil {
			t.Fatal(rr[i].Err())
		}
		checkPattern(t, bufs[i][:st.Len], 0, 3, i)
		if _, err := sr[i].Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Wait with an expired context returns ctx.Err() but the request goes on.
	r := b.RecvAsync(ctx, 0, 99, ^uint64(0), make([]byte, 10))
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := r.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if err := a.Send(ctx, 1, 99, []byte("late")); err != nil {
		t.Fatal(err)
	}
	if st, err := r.Wait(ctx); err != nil || st.Len != 4 {
		t.Fatal(err, st)
	}
}

func TestCancelRecvDoesNotSwallow(t *testing.T) {
	for _, n := range []int{10, 20000, 300000} {
		t.Run(sizeName(n), func(t *testing.T) {
			c := newCluster(t, "mem", 2, nil, nil)
			a, b := c.eps[0], c.eps[1]
			ctx, cancel0 := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel0()
			// A receive that times out before anything is sent.
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := b.Recv(short, 0, 1, ^uint64(0), make([]byte, n))
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			// Many receives cancelled at random points while messages flow:
			// every message must still be received exactly once, in order.
			const k = 30
			sent := make(chan struct{})
			defer func() { <-sent }()
			go func() {
				defer close(sent)
				for i := range k {
					if err := a.Send(ctx, 1, 1, pattern(n, 0, 1, i)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			buf := make([]byte, n)
			for i, try := 0, 0; i < k; try++ {
				cctx, cancel := context.WithTimeout(ctx, time.Duration(1+try%4+try/8)*150*time.Microsecond)
				st, err := b.Recv(cctx, 0, 1, ^uint64(0), buf)
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
						t.Fatalf("message %d: %v; stats a %+v b %+v", i, err, a.Stats(), b.Stats())
					}
					continue
				}
				if st.Len != n {
					t.Fatalf("len %d", st.Len)
				}
				checkPattern(t, buf, 0, 1, i)
				i++
			}
		})
	}
}

func TestCancelSend(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	// A rendezvous send nobody receives: it times out and is withdrawn.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	err := a.Send(short, 1, 5, pattern(DefaultEagerLimit+1000, 0, 5, 0))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	// The next message on the tag is the first one a receive sees.
	go a.Send(ctx, 1, 5, pattern(1000, 0, 5, 1))
	buf := make([]byte, DefaultEagerLimit+2000)
	st, err := b.Recv(ctx, 0, 5, ^uint64(0), buf)
	if err != nil || st.Len != 1000 {
		t.Fatalf("%v %+v", err, st)
	}
	checkPattern(t, buf[:1000], 0, 5, 1)
	// Already cancelled context: nothing happens.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Send(cctx, 1, 5, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	base := runtime.NumGoroutine()
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	rr := b.RecvAsync(ctx, 0, 1, ^uint64(0), make([]byte, 10))
	sr := a.SendAsync(ctx, 1, 2, make([]byte, 1<<20)) // rendezvous, never matched
	errc := make(chan error, 2)
	go func() { _, err := b.Recv(ctx, AnySource, 9, ^uint64(0), nil); errc <- err }()
	go func() { errc <- a.Send(ctx, 1, 3, make([]byte, 1<<20)) }()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	b.Close()
	for _, err := range []error{rr.Err(), sr.Err(), <-errc, <-errc} {
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	}
	if err := a.Send(ctx, 1, 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if _, err := b.Recv(ctx, 0, 1, 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	a.Close() // idempotent
	checkNoLeak(t, base)
}

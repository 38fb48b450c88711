package transport

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// watchState returns the endpoint's watcher table size and the number of
// requests on each watcher.
func watchState(ep *Endpoint) (entries int, pending []int) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for _, w := range ep.watches {
		n := 0
		for r := w.head; r != nil; r = r.wnext {
			n++
		}
		pending = append(pending, n)
	}
	return len(ep.watches), pending
}

// waitReq waits for r with a test deadline and returns its error.
func waitReq(t *testing.T, r *Request) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatalf("request did not complete: %v", err)
	}
	return err
}

// TestWatchOneContext: requests started under one context share one
// watcher, which outlives them and is reused; the context's end cancels
// every request still pending under it, including those started under a
// context derived from it that shares its cancellation.
func TestWatchOneContext(t *testing.T) {
	base := runtime.NumGoroutine()
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Requests that complete leave the (idle) watcher in place.
	for i := range 20 {
		r := a.RecvAsync(ctx, 1, 7, ^uint64(0), make([]byte, 8))
		if err := b.Send(ctxT(t), 0, 7, pattern(8, 1, 7, i)); err != nil {
			t.Fatal(err)
		}
		if err := waitReq(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if n, pending := watchState(a); n != 1 || pending[0] != 0 {
		t.Fatalf("after 20 completed requests: %d watchers, pending %v; want 1 idle", n, pending)
	}
	a.mu.Lock()
	w := a.watches[0]
	a.mu.Unlock()

	// Pending requests join it; a value-derived context shares it.
	vctx := context.WithValue(ctx, struct{}{}, 1)
	var reqs []*Request
	for i := range 5 {
		reqs = append(reqs, a.RecvAsync(ctx, 1, uint64(100+i), ^uint64(0), make([]byte, 8)))
	}
	reqs = append(reqs, a.RecvAsync(vctx, AnySource, 200, ^uint64(0), make([]byte, 8)))
	if n, pending := watchState(a); n != 1 || pending[0] != 6 {
		t.Fatalf("6 pending requests: %d watchers, pending %v; want 1 with 6", n, pending)
	}
	a.mu.Lock()
	same := a.watches[0] == w
	a.mu.Unlock()
	if !same {
		t.Fatal("the watcher was replaced")
	}
	// One completes: it leaves the list.
	if err := b.Send(ctxT(t), 0, 102, pattern(8, 1, 102, 0)); err != nil {
		t.Fatal(err)
	}
	if err := waitReq(t, reqs[2]); err != nil {
		t.Fatal(err)
	}
	if _, pending := watchState(a); pending[0] != 5 {
		t.Fatalf("pending %v after one completed, want 5", pending)
	}

	cancel()
	for i, r := range reqs {
		if i == 2 {
			continue
		}
		if err := waitReq(t, r); !errors.Is(err, context.Canceled) {
			t.Fatalf("request %d: %v, want context.Canceled", i, err)
		}
	}
	if n, _ := watchState(a); n != 0 {
		t.Fatalf("%d watchers left after the context ended", n)
	}
	// Nothing was consumed by the cancelled receives: a new receive gets
	// a message sent now.
	r := a.RecvAsync(ctxT(t), 1, 101, ^uint64(0), make([]byte, 8))
	if err := b.Send(ctxT(t), 0, 101, pattern(8, 1, 101, 0)); err != nil {
		t.Fatal(err)
	}
	if err := waitReq(t, r); err != nil {
		t.Fatal(err)
	}
	c.close()
	checkNoLeak(t, base)
}

// TestWatchTableFull: with every entry holding pending requests, a request
// under a further context gets a watcher of its own, and still is
// cancelled by its context; idle entries are evicted to make room.
func TestWatchTableFull(t *testing.T) {
	base := runtime.NumGoroutine()
	c := newCluster(t, "mem", 2, nil, nil)
	a := c.eps[0]
	type started struct {
		cancel context.CancelFunc
		req    *Request
	}
	var all []started
	for i := range maxWatches + 3 {
		ctx, cancel := context.WithCancel(context.Background())
		r := a.RecvAsync(ctx, 1, uint64(i), ^uint64(0), make([]byte, 8))
		all = append(all, started{cancel, r})
	}
	if n, _ := watchState(a); n != maxWatches {
		t.Fatalf("%d watchers, want %d", n, maxWatches)
	}
	a.mu.Lock()
	own := 0
	for _, s := range all {
		if s.req.stop != nil {
			own++
			if s.req.watch != nil {
				t.Error("a request has both watchers")
			}
		}
	}
	a.mu.Unlock()
	if own != 3 {
		t.Fatalf("%d requests with a watcher of their own, want 3", own)
	}
	// Cancel in reverse: the own-watcher ones first.
	for i := len(all) - 1; i >= 0; i-- {
		all[i].cancel()
		if err := waitReq(t, all[i].req); !errors.Is(err, context.Canceled) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n, _ := watchState(a); n != 0 {
		t.Fatalf("%d watchers left", n)
	}

	// Idle entries are evicted: many contexts in turn, each with a request
	// that completes, never grow the table past maxWatches.
	var cancels []context.CancelFunc
	for i := range 3 * maxWatches {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		r := a.RecvAsync(ctx, 1, 50, ^uint64(0), make([]byte, 8))
		if err := c.eps[1].Send(ctxT(t), 0, 50, pattern(8, 1, 50, i)); err != nil {
			t.Fatal(err)
		}
		if err := waitReq(t, r); err != nil {
			t.Fatal(err)
		}
		if n, _ := watchState(a); n > maxWatches {
			t.Fatalf("%d watchers", n)
		}
		a.mu.Lock()
		found := false
		for _, w := range a.watches {
			found = found || w.done == ctx.Done()
		}
		a.mu.Unlock()
		if !found {
			t.Fatalf("context %d got no shared watcher (idle ones not evicted)", i)
		}
	}
	for _, cancel := range cancels { // evicted and live ones alike
		cancel()
	}
	waitFor(t, a, "the live watchers to fire", func() bool { return len(a.watches) == 0 })
	c.close()
	checkNoLeak(t, base)
}

// TestWatchClose: Close fails the watched requests with ErrClosed and
// stops the watchers; ending their context afterwards is harmless.
func TestWatchClose(t *testing.T) {
	base := runtime.NumGoroutine()
	c := newCluster(t, "mem", 2, nil, nil)
	a := c.eps[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reqs []*Request
	for i := range 4 {
		reqs = append(reqs, a.RecvAsync(ctx, 1, uint64(i), ^uint64(0), make([]byte, 8)))
	}
	reqs = append(reqs, a.SendAsync(ctx, 1, 9, make([]byte, 1<<20))) // rendezvous: waits for a CTS
	a.Close()
	for i, r := range reqs {
		if err := waitReq(t, r); !errors.Is(err, ErrClosed) {
			t.Fatalf("request %d: %v, want ErrClosed", i, err)
		}
	}
	if n, _ := watchState(a); n != 0 {
		t.Fatalf("%d watchers after Close", n)
	}
	cancel()
	c.close()
	checkNoLeak(t, base)
}

// TestWatchRace starts requests while their context ends, on several
// goroutines: every request must complete (cancelled or matched), none may
// hang, and the table must end empty. Run with -race.
func TestWatchRace(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	rounds := 200
	if testing.Short() {
		rounds = 50
	}
	for round := range rounds {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 8 {
					tag := uint64(round*1000 + g*10 + i)
					r := a.RecvAsync(ctx, 1, tag, ^uint64(0), make([]byte, 8))
					if i%2 == 0 {
						go b.Send(context.Background(), 0, tag, make([]byte, 8))
					}
					wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := r.Wait(wctx)
					hung := wctx.Err() != nil
					wcancel()
					if hung {
						errs <- fmt.Errorf("round %d: request %d/%d hung", round, g, i)
						return
					}
					if err != nil && !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("round %d: %v", round, err)
						return
					}
				}
			}()
		}
		go cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	waitFor(t, a, "every watcher to fire", func() bool { return len(a.watches) == 0 })
}

// TestRequestDoneLazy: a request that completed before anyone asked gets
// the shared closed channel; one still pending gets one channel, the same
// for every caller, closed at completion.
func TestRequestDoneLazy(t *testing.T) {
	c := newCluster(t, "mem", 2, func(cfg *Config) { cfg.LocalCompletion = true }, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)

	// A receive for a message already waiting completes as it starts.
	if err := a.Send(ctx, 1, 1, pattern(8, 0, 1, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "the message to arrive", func() bool { return b.unexp.head != nil })
	s := b.RecvAsync(ctx, 0, 1, ^uint64(0), make([]byte, 8))
	if !s.finished.Load() {
		t.Fatal("a receive of a waiting message did not complete as it started")
	}
	if err := waitReq(t, s); err != nil {
		t.Fatal(err)
	}
	if s.done != nil {
		t.Error("a request that completed before any wait made a channel")
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done of a completed request is not closed")
	}

	r := b.RecvAsync(ctx, 0, 2, ^uint64(0), make([]byte, 8))
	if r.Err() != nil {
		t.Fatalf("pending request: Err = %v", r.Err())
	}
	chans := make(chan (<-chan struct{}), 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); chans <- r.Done() }()
	}
	wg.Wait()
	close(chans)
	first := <-chans
	for ch := range chans {
		if ch != first {
			t.Fatal("Done returned different channels for one pending request")
		}
	}
	select {
	case <-first:
		t.Fatal("Done is closed before the request completed")
	default:
	}
	if err := a.Send(ctx, 1, 2, pattern(8, 0, 2, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first:
	case <-time.After(5 * time.Second):
		t.Fatal("Done was not closed at completion")
	}
	st, err := r.Wait(ctx)
	if err != nil || st.Len != 8 || st.Source != 0 || r.Err() != nil {
		t.Fatalf("Wait = %+v, %v; Err = %v", st, err, r.Err())
	}

	// A request that fails before starting is complete at once.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	f := a.RecvAsync(dead, 1, 3, ^uint64(0), nil)
	if !errors.Is(f.Err(), context.Canceled) {
		t.Fatalf("Err of a request started under an ended context: %v", f.Err())
	}
	select {
	case <-f.Done():
	default:
		t.Fatal("Done of a failed request is not closed")
	}
}

// TestCancelFailedRequest: cancelling a request that failed as it started
// changes nothing: its error stays, nothing panics, nothing is counted.
func TestCancelFailedRequest(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	reg, err := b.Register(make([]byte, 64), AccessRemoteRead|AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	dead, cancel := context.WithCancel(ctx)
	cancel()
	cases := []struct {
		name string
		req  *Request
		want error
	}{
		{"send to an unknown peer", a.SendAsync(ctx, 5, 1, make([]byte, 8)), ErrUnknownPeer},
		{"receive from an unknown peer", a.RecvAsync(ctx, 5, 1, ^uint64(0), make([]byte, 8)), ErrUnknownPeer},
		{"receive under an ended context", a.RecvAsync(dead, 1, 1, ^uint64(0), make([]byte, 8)), context.Canceled},
		{"put to an unknown peer", a.PutAsync(ctx, 5, reg.Key(), 0, make([]byte, 8)), nil},
		{"get from an unknown peer", a.GetAsync(ctx, 5, reg.Key(), 0, make([]byte, 8)), nil},
	}
	a.mu.Lock()
	before := a.completed
	a.mu.Unlock()
	for _, tc := range cases {
		err := tc.req.Err()
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Fatalf("%s: Err = %v, want %v", tc.name, err, tc.want)
		}
		tc.req.Cancel(errors.New("cancelled"))
		if got := tc.req.Err(); got != err {
			t.Errorf("%s: Cancel changed the error from %v to %v", tc.name, err, got)
		}
		if _, werr := tc.req.Wait(ctx); werr != err {
			t.Errorf("%s: Wait = %v, want %v", tc.name, werr, err)
		}
	}
	a.mu.Lock()
	after := a.completed
	a.mu.Unlock()
	if after != before {
		t.Errorf("cancelling failed requests counted %d completions", after-before)
	}
}

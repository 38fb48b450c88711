package transport

import "context"

// maxWatches bounds the contexts an Endpoint keeps watching (ctxWatch).
// A job typically starts its requests under a few long-lived contexts (a
// collectives.Communicator uses two: one for its collectives, one for its
// abort listener, which is always pending), so a few dozen entries serve
// even many communicators on one endpoint; requests under a further
// context, while every entry has pending requests, fall back to a watcher
// of their own. The table is scanned linearly, by Done channel.
const maxWatches = 32

// ctxWatch cancels the pending asynchronous requests started under one
// context when that context ends. It is identified by the context's Done
// channel, so contexts that share cancellation (a context and the values
// derived from it) share one entry.
//
// Why: a context.AfterFunc per request costs three allocations and an
// insertion into the parent context's child set, and a request rarely
// outlives it by much; one watcher per context, registered once and kept
// while the context lives, makes watching a request a list insertion.
// The cost is that an idle entry keeps its context reachable until it is
// evicted (at most maxWatches of them) or the endpoint closes.
//
// All fields are guarded by the endpoint's mu.
type ctxWatch struct {
	done <-chan struct{}
	ctx  context.Context
	stop func() bool
	head *Request // pending requests started under ctx
	gone bool     // evicted, fired or the endpoint closed
}

// watch makes the end of ctx cancel req, which has just started and is
// pending. Under ep.mu.
func (ep *Endpoint) watch(ctx context.Context, req *Request) {
	d := ctx.Done()
	if d == nil {
		return
	}
	var w *ctxWatch
	for _, e := range ep.watches {
		if e.done == d {
			w = e
			break
		}
	}
	if w == nil {
		w = ep.newWatch(ctx, d)
	}
	if w == nil {
		// Every entry has pending requests: a watcher of its own.
		send, recv := req.send, req.recv
		req.stop = context.AfterFunc(ctx, func() { ep.cancel(send, recv, ctx.Err()) })
		return
	}
	req.watch = w
	req.wnext = w.head
	if w.head != nil {
		w.head.wprev = req
	}
	w.head = req
}

// newWatch registers a watcher for ctx, evicting an idle entry if the
// table is full; it returns nil if every entry has pending requests.
// Under ep.mu.
func (ep *Endpoint) newWatch(ctx context.Context, d <-chan struct{}) *ctxWatch {
	if len(ep.watches) >= maxWatches {
		i := -1
		for j, e := range ep.watches {
			if e.head == nil {
				i = j
				break
			}
		}
		if i < 0 {
			return nil
		}
		ep.dropWatch(ep.watches[i])
	}
	w := &ctxWatch{done: d, ctx: ctx}
	// The function runs in its own goroutine (never under the context's
	// lock or ours), so registering under ep.mu is safe; if ctx has
	// already ended it runs at once and cancels what joins w meanwhile.
	w.stop = context.AfterFunc(ctx, func() { ep.fireWatch(w) })
	ep.watches = append(ep.watches, w)
	return w
}

// unwatch removes req from its watcher, at completion. Under ep.mu.
func (req *Request) unwatch() {
	w := req.watch
	if w == nil {
		return
	}
	if req.wprev != nil {
		req.wprev.wnext = req.wnext
	} else {
		w.head = req.wnext
	}
	if req.wnext != nil {
		req.wnext.wprev = req.wprev
	}
	req.watch, req.wprev, req.wnext = nil, nil, nil
}

// dropWatch removes w from the table and stops its watcher. Requests still
// on it stay linked (they complete, or closeLocked fails them). Under
// ep.mu.
func (ep *Endpoint) dropWatch(w *ctxWatch) {
	if w.gone {
		return
	}
	w.gone = true
	w.stop() // false if fireWatch has started: it sees gone and returns
	for i, e := range ep.watches {
		if e == w {
			last := len(ep.watches) - 1
			ep.watches[i] = ep.watches[last]
			ep.watches[last] = nil
			ep.watches = ep.watches[:last]
			break
		}
	}
}

// fireWatch runs when w's context ends: it cancels every request still
// pending on w with the context's error.
func (ep *Endpoint) fireWatch(w *ctxWatch) {
	err := w.ctx.Err()
	ep.mu.Lock()
	if w.gone {
		ep.mu.Unlock()
		return
	}
	ep.dropWatch(w)
	var reqs []*Request
	for r := w.head; r != nil; {
		next := r.wnext
		reqs = append(reqs, r)
		r.unwatch()
		r = next
	}
	ep.mu.Unlock()
	// A request may complete between the unlock and its cancel: cancel
	// then does nothing (async operations are never recycled).
	for _, r := range reqs {
		ep.cancel(r.send, r.recv, err)
	}
}

// dropWatches stops every watcher, when the endpoint closes. Under ep.mu.
func (ep *Endpoint) dropWatches() {
	for len(ep.watches) > 0 {
		ep.dropWatch(ep.watches[len(ep.watches)-1])
	}
}

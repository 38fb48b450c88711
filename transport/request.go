package transport

import (
	"context"
	"sync"
	"sync/atomic"
)

// Status describes a received message.
type Status struct {
	// Source is the sender's rank.
	Source uint32
	// Tag is the message's tag.
	Tag uint64
	// Len is the message's length, which may exceed the receive buffer
	// (ErrTruncated).
	Len int
}

// Request is an asynchronous Send, Recv, Put or Get. Its methods are safe
// for concurrent use.
type Request struct {
	ep *Endpoint
	// finished is set, after status and err, when the request completes.
	finished atomic.Bool
	// done is made on demand (Done, a Wait that blocks) under ep.mu and
	// closed at completion: a request that completes before anyone waits
	// for it never needs one.
	done chan struct{}
	stop func() bool // stops the request's own context watcher, if any

	// Set before finished (and before done is closed).
	status Status
	err    error

	send *sendOp
	recv *recvOp

	// The watcher of the context the request started under (watch.go),
	// and its neighbours on that watcher's list; under ep.mu.
	watch        *ctxWatch
	wprev, wnext *Request
}

// closedChan is what Done returns once a request has completed. It is
// closed at package initialisation and never changes.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done is closed when the request completes.
func (r *Request) Done() <-chan struct{} {
	if r.finished.Load() {
		return closedChan
	}
	// The caller is about to wait: ACKs held for it to carry go now
	// (Endpoint.holdAck).
	r.ep.flushHeld()
	r.ep.mu.Lock()
	defer r.ep.mu.Unlock()
	if r.finished.Load() { // completion happens under ep.mu
		return closedChan
	}
	if r.done == nil {
		r.done = make(chan struct{})
	}
	return r.done
}

// Err returns nil while the request is in progress or succeeded, else its
// error.
func (r *Request) Err() error {
	if r.finished.Load() {
		return r.err
	}
	return nil
}

// Wait waits for the request to complete and returns its status (for a
// Recv) and error. If ctx ends first Wait returns ctx.Err() and the request
// carries on; use Cancel to withdraw it.
func (r *Request) Wait(ctx context.Context) (Status, error) {
	if r.finished.Load() {
		return r.status, r.err
	}
	select {
	case <-r.Done():
		return r.status, r.err
	case <-ctx.Done():
		if r.finished.Load() {
			return r.status, r.err
		}
		return Status{}, ctx.Err()
	}
}

// Cancel withdraws the request if it has not completed: it then completes
// with err (context.Canceled if err is nil). A Recv that is cancelled never
// consumes a message; a Send is either withdrawn or delivered in full; a
// Get writes nothing more to its buffer; a Put, once its data may be on
// its way, completes only when the target writes no more of it (see Put).
// It returns after the request has completed, one way or the other.
func (r *Request) Cancel(err error) {
	if err == nil {
		err = context.Canceled
	}
	if r.finished.Load() {
		return
	}
	r.ep.cancel(r.send, r.recv, err)
	<-r.Done()
}

// failed completes r, which has not started (nobody else holds it yet),
// with err.
func (r *Request) failed(err error) *Request {
	// Its operation is done too, so that a cancel finds nothing to do.
	if r.send != nil {
		r.send.done, r.send.err = true, err
	}
	if r.recv != nil {
		r.recv.done, r.recv.err = true, err
	}
	r.err = err
	r.finished.Store(true)
	return r
}

// opBase is the completion state shared by sends and receives.
type opBase struct {
	req    *Request      // async requests
	sig    chan struct{} // blocking calls: 1-buffered, signalled once
	done   bool
	err    error
	status Status
	p      *peer // the peer this operation waits on (counted in p.nOps)
}

// complete records the result and wakes the waiter. Under ep.mu.
func (o *opBase) complete(st Status, err error) {
	if o.done {
		return
	}
	o.done = true
	o.status, o.err = st, err
	if o.p != nil {
		o.p.nOps--
		o.p = nil
	}
	if r := o.req; r != nil {
		r.status, r.err = st, err
		r.finished.Store(true)
		if r.done != nil {
			close(r.done)
		}
		r.unwatch()
		if r.stop != nil {
			r.stop()
		}
		return
	}
	o.sig <- struct{}{}
}

// associate counts o as waiting on p.
func (ep *Endpoint) associate(o *opBase, p *peer) {
	if o.p == p {
		return
	}
	if o.p != nil {
		o.p.nOps--
	}
	o.p = p
	if p.nOps == 0 {
		// p becomes watched: make sure the timer looks at it within a
		// keepalive interval (and its PeerTimeout), even if nothing else
		// is scheduled — e.g. a receive waiting for the rest of an eager
		// message, which sends nothing itself.
		p.activeSince = ep.nanotime()
		ep.armAt(p.activeSince + int64(min(ep.cfg.KeepaliveInterval, ep.cfg.PeerTimeout)))
	}
	p.nOps++
}

func (o *opBase) dissociate() {
	if o.p != nil {
		o.p.nOps--
		o.p = nil
	}
}

var sendOpPool = sync.Pool{New: func() any { return &sendOp{opBase: opBase{sig: make(chan struct{}, 1)}} }}
var recvOpPool = sync.Pool{New: func() any { return &recvOp{opBase: opBase{sig: make(chan struct{}, 1)}} }}

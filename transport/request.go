package transport

import (
	"context"
	"sync"
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
	ep   *Endpoint
	done chan struct{}
	stop func() bool // stops the context watcher, if any

	// Set before done is closed.
	status Status
	err    error

	send *sendOp
	recv *recvOp
}

// Done is closed when the request completes.
func (r *Request) Done() <-chan struct{} { return r.done }

// Err returns nil while the request is in progress or succeeded, else its
// error.
func (r *Request) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Wait waits for the request to complete and returns its status (for a
// Recv) and error. If ctx ends first Wait returns ctx.Err() and the request
// carries on; use Cancel to withdraw it.
func (r *Request) Wait(ctx context.Context) (Status, error) {
	select {
	case <-r.done:
		return r.status, r.err
	default:
	}
	select {
	case <-r.done:
		return r.status, r.err
	case <-ctx.Done():
		select {
		case <-r.done:
			return r.status, r.err
		default:
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
	r.ep.cancel(r.send, r.recv, err)
	<-r.done
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
		close(r.done)
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

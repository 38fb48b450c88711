package collectives

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// drainTimeout bounds how long a failed collective waits for its cancelled
// operations to let go of their buffers before it returns.
const drainTimeout = 10 * time.Second

// exec is the state of one running collective: its context (the caller's
// ctx bounded by Options.Timeout and cancelled when a peer aborts), its
// sequence number and kind (which make its tags), the operations it started
// and the scratch buffers it holds.
type exec struct {
	c       *Communicator
	name    string
	parent  context.Context // the caller's
	ctx     context.Context
	cancel  context.CancelCauseFunc
	stopTO  context.CancelFunc
	seq     uint16
	kind    uint8
	ops     []*xop
	scratch []*[]byte
}

// xop is one started operation.
type xop struct {
	p    Pending
	peer int // communicator rank
	step int
	recv bool
	done bool
}

// begin starts a collective: it fails fast if the communicator is broken,
// closed or busy.
func (c *Communicator) begin(ctx context.Context, name string) (*exec, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, name, errNilComm)
	}
	if ctx == nil {
		return nil, fmt.Errorf("%w: %s: nil context", ErrInvalid, name)
	}
	if !c.busy.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%w: %s on rank %d", ErrBusy, name, c.rank)
	}
	c.mu.Lock()
	if err := c.errLocked(); err != nil {
		c.mu.Unlock()
		c.busy.Store(false)
		return nil, fmt.Errorf("collectives: %s on rank %d: %w", name, c.rank, err)
	}
	x := &exec{c: c, name: name, parent: ctx}
	x.ctx, x.cancel = context.WithCancelCause(ctx)
	x.stopTO = func() {}
	if _, ok := ctx.Deadline(); !ok && c.opts.Timeout > 0 {
		x.ctx, x.stopTO = context.WithTimeoutCause(x.ctx, c.opts.Timeout,
			fmt.Errorf("%w (Options.Timeout %v)", ErrTimeout, c.opts.Timeout))
	}
	c.cur = x.cancel
	c.mu.Unlock()
	c.seq++
	if c.seq == 0 {
		c.seq = 1 // 0 is the control namespace
	}
	x.seq = c.seq
	return x, nil
}

// finish ends the collective. On error it cancels the outstanding
// operations, waits (bounded) for them to release their buffers, marks the
// communicator broken, tells the other ranks, and returns the wrapped
// error.
func (x *exec) finish(err error) error {
	c := x.c
	if err != nil {
		if x.ctx.Err() != nil {
			if cause := context.Cause(x.ctx); cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w (%w)", cause, err)
			}
		}
		// The caller's own cancellation is reported even when a peer's
		// abort (often caused by the same cancellation there) came first.
		if perr := x.parent.Err(); perr != nil && !errors.Is(err, perr) {
			err = fmt.Errorf("%w (%w)", perr, err)
		}
		x.cancel(err)
		x.drain()
	}
	x.cancel(nil)
	x.stopTO()
	if err == nil {
		x.releaseScratch()
	}
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
	c.busy.Store(false)
	if err == nil {
		return nil
	}
	c.fail(err, true)
	return fmt.Errorf("collectives: %s failed on rank %d of %d: %w: %w", x.name, c.rank, c.size, ErrBroken, err)
}

// drain waits for every outstanding operation (already cancelled through
// the context) to complete, so that none writes a buffer after the
// collective returns. Scratch goes back to the pool only if all did.
func (x *exec) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	all := true
	for _, o := range x.ops {
		if o.done {
			continue
		}
		if o.p.Wait(ctx) != nil && ctx.Err() != nil {
			all = false
			break
		}
	}
	if all {
		x.releaseScratch()
	}
}

// buf returns a scratch buffer of n bytes held until the collective ends.
func (x *exec) buf(n int) []byte {
	p := getScratch(n)
	x.scratch = append(x.scratch, p)
	return *p
}

func (x *exec) releaseScratch() {
	for _, p := range x.scratch {
		putScratch(p)
	}
	x.scratch = nil
}

func (x *exec) tag(step int) uint64 { return makeTag(x.c.id, x.seq, x.kind, step) }

func (x *exec) isend(to, step int, b []byte) *xop {
	o := &xop{p: x.c.conn.Isend(x.ctx, x.c.peer(to), x.tag(step), b), peer: to, step: step}
	x.ops = append(x.ops, o)
	return o
}

func (x *exec) irecv(from, step int, b []byte) *xop {
	o := &xop{p: x.c.conn.Irecv(x.ctx, x.c.peer(from), x.tag(step), b), peer: from, step: step, recv: true}
	x.ops = append(x.ops, o)
	return o
}

// wait waits for o and annotates its error.
func (x *exec) wait(o *xop) error {
	if o == nil || o.done {
		return nil
	}
	err := o.p.Wait(x.ctx)
	o.done = err == nil
	if err == nil {
		return nil
	}
	if x.ctx.Err() != nil {
		if cause := context.Cause(x.ctx); cause != nil {
			err = cause
		}
	}
	dir, prep := "send", "to"
	if o.recv {
		dir, prep = "recv", "from"
	}
	return fmt.Errorf("%s %s rank %d (step %d): %w", dir, prep, o.peer, o.step, err)
}

func (x *exec) waitAll(os ...*xop) error {
	for _, o := range os {
		if err := x.wait(o); err != nil {
			return err
		}
	}
	return nil
}

// sendrecv sends sb to `to` and receives rb from `from`, both at step.
func (x *exec) sendrecv(to int, sb []byte, from int, rb []byte, step int) error {
	r := x.irecv(from, step, rb)
	s := x.isendExchange(to, step, sb)
	return x.waitAll(r, s)
}

// isendExchange starts the send of an exchange step (sendrecv, and the
// fold's one-way transfers): the only message in flight to a peer that
// posts its receive at the start of the step. Up to
// Tuning.ExchangeEagerBytes it skips the rendezvous handshake
// (EagerSender), which would only add a round trip there.
func (x *exec) isendExchange(to, step int, b []byte) *xop {
	es, ok := x.c.conn.(EagerSender)
	if !ok || len(b) > x.c.opts.Tuning.ExchangeEagerBytes {
		return x.isend(to, step, b)
	}
	o := &xop{p: es.IsendEager(x.ctx, x.c.peer(to), x.tag(step), b), peer: to, step: step}
	x.ops = append(x.ops, o)
	return o
}

// mod returns i modulo the communicator size, in [0, size).
func (x *exec) mod(i int) int {
	n := x.c.size
	i %= n
	if i < 0 {
		i += n
	}
	return i
}

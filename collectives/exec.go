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
// and the scratch buffers it holds. A Communicator runs one collective at a
// time and reuses one exec (and its slices) for all of them, so that a
// small collective allocates next to nothing.
type exec struct {
	c       *Communicator
	name    string
	algo    Algorithm       // the algorithm chosen, for error messages (Auto: none)
	parent  context.Context // the caller's
	ctx     context.Context // rc.ctx
	rc      *runCtx
	seq     uint16
	kind    uint8
	ops     []*xop
	slab    []xop // backing store for ops; a full slab is replaced, never grown
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

// runCtx is a collective's context. A successful collective leaves it to
// the next one, which reuses it if it is called with the same parent
// context and the context is still alive: deriving a context per
// collective costs allocations and a registration with the parent, and
// the transport watches one context far more cheaply than a new one per
// call (transport.Endpoint's per-context watchers). A failed collective
// (or a timeout, or Close) cancels it, and the next collective derives a
// fresh one.
type runCtx struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelCauseFunc
	// timer enforces Options.Timeout when parent has no deadline: armed
	// by begin, stopped by finish; nil when parent has a deadline or the
	// timeout is off.
	timer *time.Timer
}

// release cancels rc's context and stops its timer.
func (rc *runCtx) release() {
	if rc.timer != nil {
		rc.timer.Stop()
	}
	rc.cancel(nil)
}

// sameContext reports whether a and b are the same context. It never
// panics, even for context types that are not comparable.
func sameContext(a, b context.Context) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
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
	rc := c.run
	if rc == nil || !sameContext(rc.parent, ctx) || rc.ctx.Err() != nil {
		if rc != nil {
			rc.release()
		}
		rc = &runCtx{parent: ctx}
		rc.ctx, rc.cancel = context.WithCancelCause(ctx)
		if _, ok := ctx.Deadline(); !ok && c.opts.Timeout > 0 {
			cancel, cause := rc.cancel, fmt.Errorf("%w (Options.Timeout %v)", ErrTimeout, c.opts.Timeout)
			rc.timer = time.AfterFunc(c.opts.Timeout, func() { cancel(cause) })
		}
		c.run = rc
	} else if rc.timer != nil {
		rc.timer.Reset(c.opts.Timeout)
	}
	x := &c.x
	*x = exec{c: c, name: name, parent: ctx, ctx: rc.ctx, rc: rc,
		ops: x.ops[:0], slab: x.slab[:0], scratch: x.scratch[:0]}
	c.cur = rc.cancel
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
		x.rc.cancel(err)
		x.drain()
	}
	if err == nil {
		x.releaseScratch()
	}
	clear(x.ops)
	clear(x.slab)
	x.ops, x.slab = x.ops[:0], x.slab[:0]
	c.mu.Lock()
	c.cur = nil
	// Keep the context for the next collective unless it has ended or its
	// timer has fired (or is firing: Stop returns false).
	if rc := x.rc; err != nil || rc.ctx.Err() != nil || rc.timer != nil && !rc.timer.Stop() {
		rc.release()
		if c.run == rc {
			c.run = nil
		}
	}
	c.mu.Unlock()
	if err == nil {
		c.busy.Store(false)
		return nil
	}
	// x is the Communicator's and the next collective may take it as soon
	// as busy is cleared: read what the error needs first.
	name := x.name
	if x.algo != Auto {
		name += "(" + x.algo.String() + ")"
	}
	c.busy.Store(false)
	c.fail(err, true)
	return fmt.Errorf("collectives: %s failed on rank %d of %d: %w: %w", name, c.rank, c.size, ErrBroken, err)
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
	clear(x.scratch)
	x.scratch = x.scratch[:0]
}

func (x *exec) tag(step int) uint64 { return makeTag(x.c.id, x.seq, x.kind, step) }

func (x *exec) isend(to, step int, b []byte) *xop {
	return x.add(x.c.conn.Isend(x.ctx, x.c.peer(to), x.tag(step), b), to, step, false)
}

func (x *exec) irecv(from, step int, b []byte) *xop {
	return x.add(x.c.conn.Irecv(x.ctx, x.c.peer(from), x.tag(step), b), from, step, true)
}

// add records a started operation. Its xop comes from the slab; a full
// slab is replaced by a larger one (the xops already handed out stay
// where they are).
func (x *exec) add(p Pending, peer, step int, recv bool) *xop {
	if len(x.slab) == cap(x.slab) {
		x.slab = make([]xop, 0, max(8, 2*cap(x.slab)))
	}
	x.slab = append(x.slab, xop{p: p, peer: peer, step: step, recv: recv})
	o := &x.slab[len(x.slab)-1]
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
	return x.add(es.IsendEager(x.ctx, x.c.peer(to), x.tag(step), b), to, step, false)
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

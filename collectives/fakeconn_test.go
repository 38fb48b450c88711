package collectives

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// fakeNet is an in-process Conn network for tests: per-(src, dst, tag)
// FIFO matching, eager (buffered) or rendezvous (send completes when
// matched) delivery, optional random completion delays, and failure
// injection (a rank that dies, or dies after a number of operations).
type fakeNet struct {
	n int
	// eagerLimit: sends of at most this many bytes complete at once (the
	// data is copied); larger ones complete when a receive matches them.
	// Negative: every send is rendezvous.
	eagerLimit int
	// maxDelay, if > 0, delays each match's completion by a random time
	// up to it (data is copied at match time, so order is kept).
	maxDelay time.Duration

	mu      sync.Mutex
	chans   map[fkey]*fchan
	anyRx   map[anyKey][]*fop
	dead    []bool
	opsLeft []int64 // per rank: ops before it dies (-1: never)
	rng     *rand.Rand

	sends, bytes atomic.Int64
}

type fkey struct {
	src, dst int
	tag      uint64
}

type anyKey struct {
	dst int
	tag uint64
}

type fchan struct {
	sends []*fop // unmatched sends (data copied if eager)
	recvs []*fop // posted receives
}

type fop struct {
	net   *fakeNet
	buf   []byte
	done  chan struct{}
	err   error
	fin   bool
	eager bool // send whose data is buf (copied); already completed
	src   int
	key   fkey
	any   bool
	stop  func() bool
}

var (
	errFakeDead   = errors.New("fake: peer unreachable")
	errFakeClosed = errors.New("fake: endpoint closed")
)

func newFakeNet(n int) *fakeNet {
	f := &fakeNet{n: n, eagerLimit: 4 << 10, chans: map[fkey]*fchan{}, anyRx: map[anyKey][]*fop{},
		dead: make([]bool, n), opsLeft: make([]int64, n), rng: rand.New(rand.NewPCG(1, 2))}
	for i := range f.opsLeft {
		f.opsLeft[i] = -1
	}
	return f
}

func (f *fakeNet) conn(rank int) Conn { return &fakeConn{net: f, rank: rank} }

// dieAfter makes rank die when it starts its ops-th further operation.
func (f *fakeNet) dieAfter(rank int, ops int64) {
	f.mu.Lock()
	f.opsLeft[rank] = ops
	f.mu.Unlock()
}

// kill makes rank die now.
func (f *fakeNet) kill(rank int) {
	f.mu.Lock()
	f.killLocked(rank)
	f.mu.Unlock()
}

func (f *fakeNet) killLocked(rank int) {
	if f.dead[rank] {
		return
	}
	f.dead[rank] = true
	for k, ch := range f.chans {
		if k.src != rank && k.dst != rank {
			continue
		}
		for _, o := range ch.sends {
			if !o.eager {
				o.complete(f.errFor(o.src, rank))
			}
		}
		for _, o := range ch.recvs {
			o.complete(f.errFor(k.dst, rank))
		}
		delete(f.chans, k)
	}
	for k, l := range f.anyRx {
		if k.dst == rank {
			for _, o := range l {
				o.complete(errFakeClosed)
			}
			delete(f.anyRx, k)
		}
	}
}

// errFor is the error an op owned by `owner` gets when `dead` dies.
func (f *fakeNet) errFor(owner, dead int) error {
	if owner == dead {
		return errFakeClosed
	}
	return fmt.Errorf("%w: rank %d", errFakeDead, dead)
}

func (o *fop) complete(err error) {
	if o.fin {
		return
	}
	o.fin = true
	o.err = err
	if o.stop != nil {
		o.stop()
	}
	close(o.done)
}

// claim marks o matched (under f.mu): cancellation and failures no longer
// apply; finish completes it later, outside the lock.
func (o *fop) claim() {
	o.fin = true
	if o.stop != nil {
		o.stop()
	}
}

// finish completes a claimed op, after a random delay if configured.
func (f *fakeNet) finish(o *fop, err error, delay time.Duration) {
	if delay <= 0 {
		o.err = err
		close(o.done)
		return
	}
	time.AfterFunc(delay, func() {
		o.err = err
		close(o.done)
	})
}

func (o *fop) Wait(ctx context.Context) error {
	select {
	case <-o.done:
		return o.err
	default:
	}
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type fakeConn struct {
	net  *fakeNet
	rank int
}

// tick counts an operation of rank and kills it when its budget runs out.
// Under f.mu. It reports whether rank is dead.
func (f *fakeNet) tick(rank int) bool {
	if f.opsLeft[rank] >= 0 {
		if f.opsLeft[rank] == 0 {
			f.killLocked(rank)
		} else {
			f.opsLeft[rank]--
		}
	}
	return f.dead[rank]
}

func (f *fakeNet) newOp(ctx context.Context, buf []byte) *fop {
	return &fop{net: f, buf: buf, done: make(chan struct{})}
}

// watch cancels o when ctx ends.
func (f *fakeNet) watch(ctx context.Context, o *fop, remove func()) {
	if ctx.Done() == nil {
		return
	}
	o.stop = context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if o.fin {
			return
		}
		remove()
		o.complete(ctx.Err())
	})
}

func (c *fakeConn) Isend(ctx context.Context, peer int, tag uint64, buf []byte) Pending {
	f := c.net
	o := f.newOp(ctx, buf)
	o.src = c.rank
	var work func()
	f.mu.Lock()
	defer func() {
		f.mu.Unlock()
		if work != nil {
			work()
		}
	}()
	if err := ctx.Err(); err != nil {
		o.complete(err)
		return o
	}
	if peer < 0 || peer >= f.n || peer == c.rank {
		o.complete(fmt.Errorf("fake: bad peer %d", peer))
		return o
	}
	if f.tick(c.rank) {
		o.complete(errFakeClosed)
		return o
	}
	if f.dead[peer] {
		o.complete(f.errFor(c.rank, peer))
		return o
	}
	f.sends.Add(1)
	f.bytes.Add(int64(len(buf)))
	k := fkey{c.rank, peer, tag}
	o.key = k
	ch := f.chans[k]
	if ch != nil && len(ch.recvs) > 0 {
		r := ch.recvs[0]
		ch.recvs = ch.recvs[1:]
		work = f.match(o, r)
		return o
	}
	if l := f.anyRx[anyKey{peer, tag}]; len(l) > 0 {
		r := l[0]
		f.anyRx[anyKey{peer, tag}] = l[1:]
		work = f.match(o, r)
		return o
	}
	if ch == nil {
		ch = &fchan{}
		f.chans[k] = ch
	}
	if len(buf) <= f.eagerLimit {
		o.buf = append([]byte(nil), buf...)
		o.eager = true
		ch.sends = append(ch.sends, o)
		o.complete(nil)
		return o
	}
	ch.sends = append(ch.sends, o)
	f.watch(ctx, o, func() { ch.sends = removeOp(ch.sends, o) })
	return o
}

// match pairs send s with receive r (under f.mu) and returns the work to
// do once the lock is released: the copy and the completions, so that
// copies of different pairs run in parallel as they would on a network.
func (f *fakeNet) match(s, r *fop) func() {
	var sd, rd time.Duration
	if f.maxDelay > 0 {
		sd, rd = time.Duration(f.rng.Int64N(int64(f.maxDelay))), time.Duration(f.rng.Int64N(int64(f.maxDelay)))
	}
	if !s.eager {
		s.claim()
	}
	r.claim()
	return func() {
		copy(r.buf, s.buf)
		var err error
		if len(s.buf) != len(r.buf) {
			err = fmt.Errorf("%w: fake: message of %d bytes, buffer of %d", ErrSizeMismatch, len(s.buf), len(r.buf))
		}
		if !s.eager {
			f.finish(s, nil, sd)
		}
		f.finish(r, err, rd)
	}
}

func removeOp(l []*fop, o *fop) []*fop {
	for i, x := range l {
		if x == o {
			return append(l[:i:i], l[i+1:]...)
		}
	}
	return l
}

func (c *fakeConn) Irecv(ctx context.Context, peer int, tag uint64, buf []byte) Pending {
	f := c.net
	o := f.newOp(ctx, buf)
	var work func()
	f.mu.Lock()
	defer func() {
		f.mu.Unlock()
		if work != nil {
			work()
		}
	}()
	if err := ctx.Err(); err != nil {
		o.complete(err)
		return o
	}
	if peer < 0 || peer >= f.n || peer == c.rank {
		o.complete(fmt.Errorf("fake: bad peer %d", peer))
		return o
	}
	if f.tick(c.rank) {
		o.complete(errFakeClosed)
		return o
	}
	if f.dead[peer] {
		o.complete(f.errFor(c.rank, peer))
		return o
	}
	k := fkey{peer, c.rank, tag}
	o.key = k
	ch := f.chans[k]
	if ch == nil {
		ch = &fchan{}
		f.chans[k] = ch
	}
	if len(ch.sends) > 0 {
		s := ch.sends[0]
		ch.sends = ch.sends[1:]
		work = f.match(s, o)
		return o
	}
	ch.recvs = append(ch.recvs, o)
	f.watch(ctx, o, func() { ch.recvs = removeOp(ch.recvs, o) })
	return o
}

func (c *fakeConn) IrecvAny(ctx context.Context, tag uint64, buf []byte) Pending {
	f := c.net
	o := f.newOp(ctx, buf)
	o.any = true
	var work func()
	f.mu.Lock()
	defer func() {
		f.mu.Unlock()
		if work != nil {
			work()
		}
	}()
	if f.dead[c.rank] {
		o.complete(errFakeClosed)
		return o
	}
	for k, ch := range f.chans {
		if k.dst == c.rank && k.tag == tag && len(ch.sends) > 0 {
			s := ch.sends[0]
			ch.sends = ch.sends[1:]
			work = f.match(s, o)
			return o
		}
	}
	ak := anyKey{c.rank, tag}
	f.anyRx[ak] = append(f.anyRx[ak], o)
	f.watch(ctx, o, func() { f.anyRx[ak] = removeOp(f.anyRx[ak], o) })
	return o
}

// pending counts unmatched operations (for leak checks).
func (f *fakeNet) pending() (sends, recvs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.chans {
		for _, s := range ch.sends {
			if !s.eager {
				sends++
			}
		}
		recvs += len(ch.recvs)
	}
	return
}

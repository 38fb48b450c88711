package collectives

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// abortSendTimeout bounds the best-effort abort messages a failing rank
// sends to the others.
const abortSendTimeout = 5 * time.Second

// Communicator is one rank's handle on a group of ranks that run
// collectives together. Collectives on one Communicator must be called in
// the same order on every rank and must not overlap in time on one rank;
// different Communicators are independent.
type Communicator struct {
	conn  Conn
	rank  int
	size  int
	peers []int // Conn peer of each rank; nil means rank i is peer i
	id    uint32
	opts  Options

	busy   atomic.Bool
	seq    uint16 // last collective's sequence number; owned by the busy holder
	splits uint32 // Split calls so far; owned by the busy holder

	mu          sync.Mutex
	err         error                   // first failure; nil while healthy
	closed      bool                    //
	cur         context.CancelCauseFunc // the running collective, if any
	run         *runCtx                 // the last collective's context, for reuse
	stopAbortRx context.CancelFunc      // stops the abort listener

	x exec // the running collective's state; owned by the busy holder
}

// New returns rank's handle on a communicator of size ranks over conn,
// whose peers 0..size-1 are the communicator's ranks. It fails with
// ErrInvalid on bad arguments or an unknown SEALRING_ALGO value. New does
// not communicate.
func New(conn Conn, rank, size int, opts Options) (*Communicator, error) {
	if conn == nil {
		return nil, fmt.Errorf("%w: nil Conn", ErrInvalid)
	}
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("%w: rank %d of size %d", ErrInvalid, rank, size)
	}
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	c := &Communicator{conn: conn, rank: rank, size: size, id: o.ID, opts: o}
	c.startAbortListener()
	return c, nil
}

// Rank returns this rank's index in the communicator.
func (c *Communicator) Rank() int { return c.rank }

// Size returns the number of ranks.
func (c *Communicator) Size() int { return c.size }

// ID returns the communicator's ID (its tag namespace).
func (c *Communicator) ID() uint32 { return c.id }

// Err returns nil while the communicator is usable; once it is broken, the
// first error that broke it (wrapping ErrBroken); after Close, ErrClosed.
func (c *Communicator) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errLocked()
}

func (c *Communicator) errLocked() error {
	if c.err != nil {
		return fmt.Errorf("%w: %w", ErrBroken, c.err)
	}
	if c.closed {
		return ErrClosed
	}
	return nil
}

// Close releases the communicator's resources (its abort receive). It does
// not close the Conn. A collective running concurrently is cancelled.
// Close does not communicate; call it on every rank.
func (c *Communicator) Close() error {
	c.mu.Lock()
	c.closed = true
	stop, cur := c.stopAbortRx, c.cur
	c.stopAbortRx = nil
	if cur == nil && c.run != nil {
		// Between collectives: release the kept context (a running
		// collective's finish releases it once cur has cancelled it).
		c.run.release()
		c.run = nil
	}
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	if cur != nil {
		cur(ErrClosed)
	}
	return nil
}

// peer maps a communicator rank to its Conn peer.
func (c *Communicator) peer(r int) int {
	if c.peers == nil {
		return r
	}
	return c.peers[r]
}

// startAbortListener posts the receive for other ranks' abort messages.
func (c *Communicator) startAbortListener() {
	ar, ok := c.conn.(AnyReceiver)
	if !ok || c.opts.NoAbortPropagation || c.size == 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stopAbortRx = cancel
	buf := make([]byte, 8)
	p := ar.IrecvAny(ctx, makeTag(c.id, 0, kindControl, ctrlAbort), buf)
	go func() {
		if err := p.Wait(ctx); err != nil {
			return // closed, or the Conn failed: nothing to report
		}
		from := binary.LittleEndian.Uint32(buf)
		c.fail(fmt.Errorf("%w: rank %d reported a failed collective", ErrAborted, from), false)
	}()
}

// fail marks the communicator broken with cause (if it was not already),
// cancels the running collective and, if propagate, tells the other ranks.
func (c *Communicator) fail(cause error, propagate bool) {
	c.mu.Lock()
	first := c.err == nil && !c.closed
	if first {
		c.err = cause
	}
	cur, stop := c.cur, c.stopAbortRx
	if first {
		c.stopAbortRx = nil
	}
	if cur == nil && c.run != nil {
		// Between collectives (an abort from a peer): no collective will
		// run again, so release the kept context now.
		c.run.release()
		c.run = nil
	}
	c.mu.Unlock()
	if cur != nil {
		cur(cause)
	}
	if !first {
		return
	}
	if stop != nil {
		defer stop()
	}
	if propagate && c.size > 1 && !c.opts.NoAbortPropagation {
		if _, ok := c.conn.(AnyReceiver); ok {
			go c.sendAborts()
		}
	}
}

// sendAborts sends the abort message to every other rank, best effort.
func (c *Communicator) sendAborts() {
	ctx, cancel := context.WithTimeout(context.Background(), abortSendTimeout)
	defer cancel()
	msg := make([]byte, 8)
	binary.LittleEndian.PutUint32(msg, uint32(c.rank))
	tag := makeTag(c.id, 0, kindControl, ctrlAbort)
	ps := make([]Pending, 0, c.size-1)
	for r := range c.size {
		if r != c.rank {
			ps = append(ps, c.conn.Isend(ctx, c.peer(r), tag, msg))
		}
	}
	for _, p := range ps {
		_ = p.Wait(ctx)
	}
}

// Split partitions the communicator as MPI_Comm_split does: the ranks that
// pass the same color form a new communicator, ordered by key and then by
// their rank here. It is a collective over this communicator. A negative
// color returns (nil, nil): this rank joins no sub-communicator.
//
// The new communicator gets an ID derived from this one's, the number of
// earlier Splits and the color, so its tags never collide with the parent's
// on a shared Conn; if Options.NewConn is set it is given its own Conn.
func (c *Communicator) Split(ctx context.Context, color, key int) (*Communicator, error) {
	x, err := c.begin(ctx, "Split")
	if err != nil {
		return nil, err
	}
	c.splits++
	seq := c.splits
	// Allgather (color, key) from every rank.
	all := make([]byte, 16*c.size)
	mine := all[16*c.rank : 16*c.rank+16]
	binary.LittleEndian.PutUint64(mine, uint64(int64(color)))
	binary.LittleEndian.PutUint64(mine[8:], uint64(int64(key)))
	x.kind = kindSplit
	err = x.allGatherBlocks(all, 16)
	if err = x.finish(err); err != nil {
		return nil, err
	}
	if color < 0 {
		return nil, nil
	}
	type member struct{ key, rank int }
	var members []member
	for r := range c.size {
		b := all[16*r:]
		if int(int64(binary.LittleEndian.Uint64(b))) == color {
			members = append(members, member{int(int64(binary.LittleEndian.Uint64(b[8:]))), r})
		}
	}
	slices.SortFunc(members, func(a, b member) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.rank, b.rank))
	})
	info := SplitInfo{ParentID: c.id, ID: deriveID(c.id, seq, color), Color: color, Key: key,
		Size: len(members), ParentRanks: make([]int, len(members))}
	for i, m := range members {
		info.ParentRanks[i] = m.rank
		if m.rank == c.rank {
			info.Rank = i
		}
	}
	child := &Communicator{conn: c.conn, rank: info.Rank, size: info.Size, id: info.ID, opts: c.opts}
	child.opts.ID = info.ID
	var own Conn
	if c.opts.NewConn != nil {
		own, err = c.opts.NewConn(ctx, info)
		if err != nil {
			return nil, fmt.Errorf("collectives: Split: Options.NewConn: %w", err)
		}
	}
	if own != nil {
		child.conn = own
	} else {
		child.peers = make([]int, info.Size)
		for i, pr := range info.ParentRanks {
			child.peers[i] = c.peer(pr)
		}
	}
	child.startAbortListener()
	return child, nil
}

// deriveID derives a sub-communicator's 31-bit ID from its parent's ID, the
// parent's Split count and the color. Sub-communicators of one Split share
// no ranks, so only collisions with communicators that share ranks could
// matter (probability about 2^-31 per pair); the parent's own ID is avoided.
func deriveID(parent, seq uint32, color int) uint32 {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint32(b[0:], parent)
	binary.LittleEndian.PutUint32(b[4:], seq)
	binary.LittleEndian.PutUint64(b[8:], uint64(int64(color)))
	h.Write(b[:])
	s := h.Sum64()
	id := uint32(s^s>>31^s>>62) & (1<<31 - 1)
	for id == 0 || id == parent {
		id = (id + 1) & (1<<31 - 1)
	}
	return id
}

var errNilComm = errors.New("collectives: nil *Communicator")

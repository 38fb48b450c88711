package collectives

import (
	"context"
	"fmt"
)

func gather(ctx context.Context, c *Communicator, send, recv []byte, root int) error {
	x, err := c.begin(ctx, "Gather")
	if err != nil {
		return err
	}
	return x.finish(x.gather(send, recv, root))
}

// gather is linear: the root posts one receive per rank straight into its
// block of recv (all in flight at once), the others send. The root's link
// carries (n-1)/n of the result either way; a binomial tree would only save
// latency for tiny messages.
func (x *exec) gather(send, recv []byte, root int) error {
	n, r := x.c.size, x.c.rank
	if err := checkRoot(root, n); err != nil {
		return err
	}
	x.kind = kindGather
	if r != root {
		if send == nil {
			return fmt.Errorf("%w: Gather: send is nil on a non-root rank", ErrInvalid)
		}
		return x.waitAll(x.isend(root, 0, send))
	}
	if len(recv)%n != 0 || (send != nil && len(send)*n != len(recv)) {
		return fmt.Errorf("%w: Gather: len(recv) must be size·len(send) at the root (send %d, recv %d bytes)", ErrInvalid, len(send), len(recv))
	}
	blk := len(recv) / n
	if send != nil {
		if overlap(send, recv) && !sameBuf(send, recv[r*blk:(r+1)*blk]) {
			return fmt.Errorf("%w: Gather: send overlaps recv", ErrInvalid)
		}
		copy(recv[r*blk:(r+1)*blk], send)
	}
	ops := make([]*xop, 0, n-1)
	for i := range n {
		if i != r {
			ops = append(ops, x.irecv(i, 0, recv[i*blk:(i+1)*blk]))
		}
	}
	return x.waitAll(ops...)
}

func scatter(ctx context.Context, c *Communicator, send, recv []byte, root int) error {
	x, err := c.begin(ctx, "Scatter")
	if err != nil {
		return err
	}
	return x.finish(x.scatter(send, recv, root))
}

// scatter is linear: the root sends block i to rank i, all in flight at
// once. recv == nil at the root means in place (its block stays in send).
func (x *exec) scatter(send, recv []byte, root int) error {
	n, r := x.c.size, x.c.rank
	if err := checkRoot(root, n); err != nil {
		return err
	}
	x.kind = kindScatter
	if r != root {
		return x.waitAll(x.irecv(root, 0, recv))
	}
	if len(send)%n != 0 || (recv != nil && len(recv)*n != len(send)) {
		return fmt.Errorf("%w: Scatter: len(send) must be size·len(recv) at the root (send %d, recv %d bytes)", ErrInvalid, len(send), len(recv))
	}
	blk := len(send) / n
	if recv != nil {
		if overlap(send, recv) && !sameBuf(recv, send[r*blk:(r+1)*blk]) {
			return fmt.Errorf("%w: Scatter: send overlaps recv", ErrInvalid)
		}
		copy(recv, send[r*blk:(r+1)*blk])
	}
	ops := make([]*xop, 0, n-1)
	for i := range n {
		if i != r {
			ops = append(ops, x.isend(i, 0, send[i*blk:(i+1)*blk]))
		}
	}
	return x.waitAll(ops...)
}

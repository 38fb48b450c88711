package collectives

import (
	"context"
	"fmt"
)

// reduceScatter is the byte-level ReduceScatter (MPI_Reduce_scatter_block):
// send holds n blocks of len(recv) bytes; block i reduced over all ranks
// lands in rank i's recv.
func reduceScatter(ctx context.Context, c *Communicator, send, recv []byte, dt DataType, op Op) error {
	x, err := c.begin(ctx, "ReduceScatter")
	if err != nil {
		return err
	}
	return x.finish(x.reduceScatter(send, recv, dt, op))
}

func (x *exec) reduceScatter(send, recv []byte, dt DataType, op Op) error {
	if err := checkTypeOp(dt, op); err != nil {
		return err
	}
	n, r := x.c.size, x.c.rank
	esize := dt.Size()
	if len(send) != n*len(recv) {
		return fmt.Errorf("%w: ReduceScatter: len(send) must be size·len(recv) (send %d, recv %d elements, size %d)",
			ErrInvalid, len(send)/esize, len(recv)/esize, n)
	}
	if overlap(send, recv) {
		return fmt.Errorf("%w: ReduceScatter: send and recv overlap", ErrInvalid)
	}
	blk := len(recv)
	if n == 1 || blk == 0 {
		copy(recv, send)
		return nil
	}
	kern := kernelFor(dt, op)
	// work receives and reduces; the input is read from send, never
	// copied (both engines' out-of-place form).
	work := x.buf(len(send))
	off := blockOffsets(blk, n, 1)
	if n&(n-1) == 0 && len(send) <= x.c.opts.Tuning.ReduceScatterHalvingMaxBytes {
		x.kind = kindReduceScatterHalving
		f := fold{p: n, newrank: r}
		if _, _, err := x.reduceScatterHalving(work, send, x.buf(len(send)/2), off, f, kern, 0); err != nil {
			return err
		}
	} else {
		x.kind = kindReduceScatterRing
		if err := x.ring(work, send, off, esize, kern, n-1, 0, r); err != nil {
			return err
		}
	}
	copy(recv, work[off[r]:off[r+1]])
	return nil
}

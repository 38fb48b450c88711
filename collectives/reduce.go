package collectives

import (
	"context"
	"fmt"
)

// reduce is the byte-level Reduce: the reduction of every rank's send lands
// in root's recv. At the root send == nil means in place (input in recv);
// elsewhere recv is ignored.
func reduce(ctx context.Context, c *Communicator, send, recv []byte, dt DataType, op Op, root int) error {
	x, err := c.begin(ctx, "Reduce")
	if err != nil {
		return err
	}
	return x.finish(x.reduce(send, recv, dt, op, root))
}

// reduce uses a binomial tree: relative rank v receives from v+1, v+2,
// v+4, ... (below its lowest set bit), reducing each into its accumulator,
// then sends the accumulator to v minus its lowest set bit.
func (x *exec) reduce(send, recv []byte, dt DataType, op Op, root int) error {
	if err := checkTypeOp(dt, op); err != nil {
		return err
	}
	n, r := x.c.size, x.c.rank
	if err := checkRoot(root, n); err != nil {
		return err
	}
	var acc []byte
	if r == root {
		if send != nil {
			if len(send) != len(recv) {
				return fmt.Errorf("%w: Reduce: len(send) %d != len(recv) %d at the root", ErrInvalid, len(send), len(recv))
			}
			if err := checkInPlace(send, recv); err != nil {
				return err
			}
			copy(recv, send)
		}
		acc = recv
	} else {
		if send == nil {
			return fmt.Errorf("%w: Reduce: send is nil on a non-root rank", ErrInvalid)
		}
		acc = x.buf(len(send))
		copy(acc, send)
	}
	if n == 1 {
		return nil
	}
	x.kind = kindReduce
	kern := kernelFor(dt, op)
	v := x.mod(r - root)
	var tmp []byte
	for mask := 1; mask < n; mask <<= 1 {
		if v&mask != 0 {
			return x.waitAll(x.isend(x.mod(v-mask+root), 0, acc))
		}
		if v+mask < n {
			if tmp == nil {
				tmp = x.buf(len(acc))
			}
			if err := x.waitAll(x.irecv(x.mod(v+mask+root), 0, tmp)); err != nil {
				return err
			}
			kern(acc, tmp)
		}
	}
	return nil
}

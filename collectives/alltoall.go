package collectives

import (
	"context"
	"fmt"
)

func allToAll(ctx context.Context, c *Communicator, send, recv []byte, esize int) error {
	x, err := c.begin(ctx, "AllToAll")
	if err != nil {
		return err
	}
	return x.finish(x.allToAll(send, recv, esize))
}

// allToAll is the pairwise exchange: in step s = 1..n-1 rank r sends its
// block r+s and receives block r-s, with Tuning.AllToAllWindow steps in
// flight. send == nil (or the same buffer as recv) means in place.
func (x *exec) allToAll(send, recv []byte, esize int) error {
	n, r := x.c.size, x.c.rank
	if len(recv)%(n*esize) != 0 || (send != nil && len(send) != len(recv)) {
		return fmt.Errorf("%w: AllToAll: len(send) and len(recv) must be equal multiples of size (send %d, recv %d elements, size %d)",
			ErrInvalid, len(send)/esize, len(recv)/esize, n)
	}
	if err := checkInPlace(send, recv); err != nil {
		return err
	}
	if send == nil || sameBuf(send, recv) {
		tmp := x.buf(len(recv))
		copy(tmp, recv)
		send = tmp
	}
	blk := len(recv) / n
	copy(recv[r*blk:(r+1)*blk], send[r*blk:(r+1)*blk])
	if n == 1 {
		return nil
	}
	x.kind = kindAllToAll
	win := max(1, x.c.opts.Tuning.AllToAllWindow)
	type pair struct{ s, r *xop }
	inflight := make([]pair, 0, win)
	for s := 1; s < n; s++ {
		if len(inflight) == win {
			if err := x.waitAll(inflight[0].r, inflight[0].s); err != nil {
				return err
			}
			inflight = inflight[1:]
		}
		to, from := x.mod(r+s), x.mod(r-s)
		rv := x.irecv(from, s, recv[from*blk:(from+1)*blk])
		sd := x.isend(to, s, send[to*blk:(to+1)*blk])
		inflight = append(inflight, pair{sd, rv})
	}
	for _, p := range inflight {
		if err := x.waitAll(p.r, p.s); err != nil {
			return err
		}
	}
	return nil
}

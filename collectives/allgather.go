package collectives

import (
	"context"
	"fmt"
)

// allGather is the byte-level AllGather: every rank's send (blk bytes) lands
// in block `rank` of every rank's recv (n·blk bytes). send == nil means this
// rank's block is already in recv.
func allGather(ctx context.Context, c *Communicator, send, recv []byte, esize int) error {
	x, err := c.begin(ctx, "AllGather")
	if err != nil {
		return err
	}
	return x.finish(x.allGather(send, recv, esize))
}

func (x *exec) allGather(send, recv []byte, esize int) error {
	n, r := x.c.size, x.c.rank
	if len(recv)%n != 0 || (send != nil && len(send)*n != len(recv)) {
		return fmt.Errorf("%w: AllGather: len(recv) must be size·len(send) (send %d, recv %d elements, size %d)",
			ErrInvalid, len(send)/esize, len(recv)/esize, n)
	}
	blk := len(recv) / n
	mine := recv[r*blk : (r+1)*blk]
	if send != nil {
		if overlap(send, recv) && !sameBuf(send, mine) {
			return fmt.Errorf("%w: AllGather: send overlaps recv outside this rank's block", ErrInvalid)
		}
		copy(mine, send)
	}
	return x.allGatherBlocks(recv, blk)
}

// allGatherBlocks completes an allgather of n blocks of blk bytes in buf,
// this rank's block being in place. Small totals use recursive doubling (n a
// power of two) or Bruck's algorithm (any n); larger ones the pipelined ring.
// x.kind, if already set (Split), is kept.
func (x *exec) allGatherBlocks(buf []byte, blk int) error {
	n, r := x.c.size, x.c.rank
	if n == 1 || len(buf) == 0 {
		return nil
	}
	small := len(buf) <= x.c.opts.Tuning.AllGatherRDMaxBytes
	setKind := func(k uint8) {
		if x.kind == kindControl {
			x.kind = k
		}
	}
	switch {
	case small && n&(n-1) == 0:
		setKind(kindAllGatherRD)
		f := fold{p: n, newrank: r}
		return x.allGatherDoubling(buf, blockOffsets(blk, n, 1), f, r, r+1, 0)
	case small:
		setKind(kindAllGatherRD)
		return x.allGatherBruck(buf, blk)
	default:
		setKind(kindAllGatherRing)
		return x.ring(buf, nil, blockOffsets(blk, n, 1), 1, nil, 0, n-1, r)
	}
}

// allGatherBruck is Bruck's allgather: ⌈log2 n⌉ rounds for any n. Rank r
// keeps blocks r, r+1, ... contiguously in tmp; in round k it sends the
// first min(2^k, n-2^k) of them to r-2^k and appends as many from r+2^k.
// A final rotation puts each block in its place.
func (x *exec) allGatherBruck(buf []byte, blk int) error {
	n, r := x.c.size, x.c.rank
	tmp := x.buf(len(buf))
	copy(tmp, buf[r*blk:(r+1)*blk])
	step := 0
	for k := 1; k < n; k *= 2 {
		cnt := min(k, n-k)
		if err := x.sendrecv(x.mod(r-k), tmp[:cnt*blk], x.mod(r+k), tmp[k*blk:(k+cnt)*blk], step); err != nil {
			return err
		}
		step++
	}
	for i := 1; i < n; i++ {
		j := x.mod(r + i)
		copy(buf[j*blk:(j+1)*blk], tmp[i*blk:(i+1)*blk])
	}
	return nil
}

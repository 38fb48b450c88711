package collectives

import "context"

func broadcast(ctx context.Context, c *Communicator, buf []byte, root int) error {
	x, err := c.begin(ctx, "Broadcast")
	if err != nil {
		return err
	}
	return x.finish(x.broadcast(buf, root))
}

func (x *exec) broadcast(buf []byte, root int) error {
	n := x.c.size
	if err := checkRoot(root, n); err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	if len(buf) <= x.c.opts.Tuning.BcastTreeMaxBytes {
		x.kind = kindBcastTree
		return x.bcastTree(buf, root)
	}
	x.kind = kindBcastChain
	return x.bcastChain(buf, root)
}

// bcastTree is the binomial tree: relative rank v receives from v minus its
// lowest set bit, then sends to v+2^j for every 2^j below that bit,
// farthest first: ⌈log2 n⌉ rounds.
func (x *exec) bcastTree(buf []byte, root int) error {
	n, r := x.c.size, x.c.rank
	v := x.mod(r - root)
	mask := 1
	for mask < n {
		if v&mask != 0 {
			if err := x.waitAll(x.irecv(x.mod(v-mask+root), 0, buf)); err != nil {
				return err
			}
			break
		}
		mask <<= 1
	}
	var sends []*xop
	for mask >>= 1; mask > 0; mask >>= 1 {
		if v+mask < n {
			sends = append(sends, x.isend(x.mod(v+mask+root), 0, buf))
		}
	}
	return x.waitAll(sends...)
}

// bcastChain is a pipelined chain root → root+1 → ... → root-1: the buffer
// goes in segments, each forwarded as soon as it arrives, so the time is
// about (n-2+k) segment transfers for k segments instead of (n-1)·k.
func (x *exec) bcastChain(buf []byte, root int) error {
	n, r := x.c.size, x.c.rank
	v := x.mod(r - root)
	seg := max(1, x.c.opts.Tuning.SegmentBytes)
	k := (len(buf) + seg - 1) / seg
	part := func(j int) []byte { return buf[j*seg : min((j+1)*seg, len(buf))] }
	prev, next := x.mod(r-1), x.mod(r+1)
	sends := make([]*xop, 0, k)
	if v == 0 {
		for j := range k {
			sends = append(sends, x.isend(next, j, part(j)))
		}
		return x.waitAll(sends...)
	}
	depth := max(2, x.c.opts.Tuning.PipelineDepth)
	recvs := make([]*xop, k)
	posted := 0
	for j := range k {
		for ; posted < k && posted < j+depth; posted++ {
			recvs[posted] = x.irecv(prev, posted, part(posted))
		}
		if err := x.wait(recvs[j]); err != nil {
			return err
		}
		if v < n-1 {
			sends = append(sends, x.isend(next, j, part(j)))
		}
	}
	return x.waitAll(sends...)
}

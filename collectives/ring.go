package collectives

import "fmt"

// ring runs the pipelined ring engine shared by AllReduce, ReduceScatter and
// AllGather. buf holds n chunks, chunk i = buf[off[i]:off[i+1]]. The pass is
// rsSteps reduce-scatter steps followed by agSteps allgather steps; own is
// the chunk this rank holds complete after the reduce-scatter (and at the
// start of the allgather). in, if not nil, holds this rank's input (same
// offsets as buf) and buf holds nothing yet: an out-of-place call that
// skips copying its input into buf (see below); it needs the whole
// reduce-scatter (rsSteps = n-1).
//
//	reduce-scatter step t: send chunk own-1-t, receive chunk own-2-t and reduce it in
//	allgather step t:      send chunk own-t,   receive chunk own-1-t in place
//
// so the chunk received at one step is the one sent at the next. Each
// step moves its chunk in k segments of about Tuning.SegmentBytes. A segment
// is forwarded as soon as it has been received (and reduced), while the
// next ones are still in flight: up to PipelineDepth receives stay posted,
// each reduce-scatter receive into its own scratch slot, so the reduction
// of one segment overlaps the transfer of the others.
//
// Receives are posted and processed in (step, segment) order; the send of
// (t+1, j) starts right after (t, j) is processed, and the sends of step 0
// start first, so every wait depends only on operations the peers have
// already started: the pass cannot deadlock, even if sends complete only
// when matched. An allgather receive into a chunk that this rank sent during
// the reduce-scatter first waits for that send.
//
// With in set, the sends of step 0 read in, and every reduce-scatter
// receive lands straight in its chunk of buf, which is then reduced with
// the input (buf op= in). The reduce-scatter writes every chunk but the
// one sent at step 0 before reading it, and the allgather, if any, writes
// that one; without an allgather (ReduceScatter) it stays unwritten, and
// only chunk own is the result. No scratch slots are used, and the input
// is never copied; the operands of each reduction are swapped against
// the copying path, which the ops' commutativity makes bit-identical (see
// AllReduce).
func (x *exec) ring(buf, in []byte, off []int, esize int, kern kernelFunc, rsSteps, agSteps, own int) error {
	n, r := x.c.size, x.c.rank
	if in != nil && (n == 1 || rsSteps != n-1) {
		return fmt.Errorf("%w: ring: out-of-place input needs the whole reduce-scatter (n %d, %d steps)", ErrInvalid, n, rsSteps)
	}
	total := rsSteps + agSteps
	if n == 1 || total == 0 {
		return nil
	}
	maxChunk := 0
	for i := range n {
		maxChunk = max(maxChunk, off[i+1]-off[i])
	}
	seg := max(esize, x.c.opts.Tuning.SegmentBytes/esize*esize)
	k := max(1, (maxChunk+seg-1)/seg)
	seg = min(seg, maxChunk)
	right, left := x.mod(r+1), x.mod(r-1)
	sendChunk := func(t int) int {
		if t < rsSteps {
			return x.mod(own - 1 - t)
		}
		return x.mod(own - (t - rsSteps))
	}
	recvChunk := func(t int) int {
		if t < rsSteps {
			return x.mod(own - 2 - t)
		}
		return x.mod(own - 1 - (t - rsSteps))
	}
	segmentOf := func(b []byte, c, j int) []byte {
		lo := min(off[c]+j*seg, off[c+1])
		hi := min(lo+seg, off[c+1])
		return b[lo:hi]
	}
	segment := func(c, j int) []byte { return segmentOf(buf, c, j) }
	nq := total * k
	depth := max(1, x.c.opts.Tuning.PipelineDepth)
	var slots [][]byte
	if rsSteps > 0 && in == nil {
		slots = make([][]byte, min(depth, nq))
		for i := range slots {
			slots[i] = x.buf(seg)
		}
	}
	sends := make([]*xop, nq)
	recvs := make([]*xop, nq)
	posted := 0
	// canPost reports whether receive q's dependencies have started.
	canPost := func(q int) bool {
		t := q / k
		if t < rsSteps || rsSteps == 0 {
			return true
		}
		dep := (t - rsSteps) // the reduce-scatter step that sent this chunk
		return dep >= rsSteps || sends[dep*k+q%k] != nil
	}
	postUpTo := func(limit int) error {
		for posted < nq && posted < limit && canPost(posted) {
			q := posted
			t, j := q/k, q%k
			var dst []byte
			switch {
			case t < rsSteps && in != nil:
				dst = segment(recvChunk(t), j)
			case t < rsSteps:
				want := len(segment(recvChunk(t), j))
				dst = slots[q%len(slots)][:want]
			default:
				// (Step 0's send read in, not buf, when in is set.)
				if dep := t - rsSteps; rsSteps > 0 && dep < rsSteps && (dep > 0 || in == nil) {
					if err := x.wait(sends[dep*k+j]); err != nil {
						return err
					}
				}
				dst = segment(recvChunk(t), j)
			}
			recvs[q] = x.irecv(left, t, dst)
			posted++
		}
		return nil
	}
	first := buf
	if in != nil {
		first = in
	}
	for j := range k {
		sends[j] = x.isend(right, 0, segmentOf(first, sendChunk(0), j))
	}
	if err := postUpTo(depth); err != nil {
		return err
	}
	for q := range nq {
		t, j := q/k, q%k
		if err := postUpTo(q + depth); err != nil {
			return err
		}
		if err := x.wait(recvs[q]); err != nil {
			return err
		}
		dst := segment(recvChunk(t), j)
		switch {
		case t >= rsSteps || len(dst) == 0:
		case in != nil:
			kern(dst, segmentOf(in, recvChunk(t), j))
		default:
			kern(dst, slots[q%len(slots)])
		}
		if t+1 < total {
			sends[(t+1)*k+j] = x.isend(right, t+1, dst)
		}
		// Receive q's slot is free now.
		if err := postUpTo(q + 1 + depth); err != nil {
			return err
		}
	}
	return x.waitAll(sends...)
}

// evenOffsets splits count elements of esize bytes into n nearly equal
// chunks and returns the n+1 byte offsets.
func evenOffsets(count, n, esize int) []int {
	off := make([]int, n+1)
	for i := range n + 1 {
		off[i] = int(int64(i)*int64(count)/int64(n)) * esize
	}
	return off
}

// blockOffsets returns the offsets of n blocks of count elements each.
func blockOffsets(count, n, esize int) []int {
	off := make([]int, n+1)
	for i := range n + 1 {
		off[i] = i * count * esize
	}
	return off
}

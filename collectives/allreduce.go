package collectives

import (
	"context"
	"fmt"
)

// ChooseAllReduce returns the AllReduce algorithm Auto picks for a message
// of the given size on n ranks under tuning t (zero fields: DefaultTuning()):
//
//   - bytes ≤ RDMaxBytes (RDMaxBytesFewRanks when n ≤ 3): recursive
//     doubling (latency: ⌈log2 n⌉ rounds of the whole buffer; the buffer is
//     small so volume does not matter, and with 2 ranks it is the ring's
//     volume anyway);
//   - n a power of two and bytes ≤ RabenseifnerMaxBytes, or n not a power of
//     two and bytes ≤ RabenseifnerMaxBytesFolded: Rabenseifner (2·log2 n
//     rounds, ring-optimal volume; the fold for n ≠ 2^k costs two extra
//     whole-buffer transfers on the folded ranks, hence the lower limit);
//   - otherwise ring (2(n-1) rounds, optimal volume, pipelined so that the
//     reduction overlaps the transfers; wins when bandwidth dominates).
//
// n ≤ 2 uses the ring beyond the recursive-doubling limit: with two ranks
// Rabenseifner and the ring move the same data in the same rounds and only
// the ring pipelines. The defaults are crossovers measured with
// bench/allreduce -algo on 2, 3 and 4 local ranks (docs/performance.md §7).
func ChooseAllReduce(bytes, n int, t Tuning) Algorithm {
	t = t.withDefaults()
	switch {
	case n <= 1:
		return RecursiveDoubling
	case bytes <= t.RDMaxBytes, n <= 3 && bytes <= t.RDMaxBytesFewRanks:
		return RecursiveDoubling
	case n == 2:
		return Ring
	case n&(n-1) == 0 && bytes <= t.RabenseifnerMaxBytes:
		return Rabenseifner
	case n&(n-1) != 0 && bytes <= t.RabenseifnerMaxBytesFolded:
		return Rabenseifner
	}
	return Ring
}

// allReduce is the byte-level AllReduce. send == nil means in place.
func allReduce(ctx context.Context, c *Communicator, send, recv []byte, dt DataType, op Op, force Algorithm) error {
	x, err := c.begin(ctx, "AllReduce")
	if err != nil {
		return err
	}
	return x.finish(x.allReduce(send, recv, dt, op, force))
}

func (x *exec) allReduce(send, recv []byte, dt DataType, op Op, force Algorithm) error {
	if err := checkTypeOp(dt, op); err != nil {
		return err
	}
	if len(recv)%dt.Size() != 0 {
		return fmt.Errorf("%w: AllReduce: %d bytes is not a whole number of %v", ErrInvalid, len(recv), dt)
	}
	if send != nil && len(send) != len(recv) {
		return fmt.Errorf("%w: AllReduce: len(send) %d != len(recv) %d elements", ErrInvalid, len(send)/dt.Size(), len(recv)/dt.Size())
	}
	if err := checkInPlace(send, recv); err != nil {
		return err
	}
	n := x.c.size
	outOfPlace := send != nil && !sameBuf(send, recv)
	if n == 1 || len(recv) == 0 {
		if outOfPlace {
			copy(recv, send)
		}
		return nil
	}
	algo := force
	if algo == Auto {
		algo = x.c.opts.Algorithm
	}
	if algo == Auto {
		algo = ChooseAllReduce(len(recv), n, x.c.opts.Tuning)
	}
	// Out of place, the algorithms read their input from send and receive
	// straight into recv, so the input is never copied: the ring always,
	// recursive doubling and Rabenseifner when there is no fold (n a
	// power of two). A fold reads its input from recv, so with one recv
	// starts as a copy of send.
	var in []byte
	if outOfPlace {
		if algo == Ring || makeFold(n, x.c.rank).rem == 0 {
			in = send
		} else {
			copy(recv, send)
		}
	}
	x.algo = algo
	esize, kern := dt.Size(), kernelFor(dt, op)
	count := len(recv) / esize
	switch algo {
	case Ring:
		x.kind = kindRingAllReduce
		return x.ring(recv, in, evenOffsets(count, n, esize), esize, kern, n-1, n-1, x.c.rank+1)
	case RecursiveDoubling:
		x.kind = kindRDAllReduce
		return x.allReduceRD(recv, in, kern)
	case Rabenseifner:
		x.kind = kindRabenseifner
		return x.allReduceRabenseifner(recv, in, esize, count, kern)
	}
	return fmt.Errorf("%w: algorithm %v", ErrInvalid, algo)
}

// fold describes the standard reduction of n ranks to p = 2^⌊log2 n⌋: of
// the first 2·rem ranks (rem = n-p), each even one hands its data to the
// odd one above it and sits out; the others are renumbered 0..p-1.
type fold struct {
	p, rem  int
	newrank int // -1: this rank sits out
}

func makeFold(n, r int) fold {
	p := 1
	for p*2 <= n {
		p *= 2
	}
	f := fold{p: p, rem: n - p}
	switch {
	case r >= 2*f.rem:
		f.newrank = r - f.rem
	case r%2 == 1:
		f.newrank = r / 2
	default:
		f.newrank = -1
	}
	return f
}

// real maps a folded rank back to a communicator rank.
func (f fold) real(nr int) int {
	if nr < f.rem {
		return 2*nr + 1
	}
	return nr + f.rem
}

// foldIn performs the fold's first step (step 0); tmp holds len(buf) bytes.
func (x *exec) foldIn(f fold, buf, tmp []byte, kern kernelFunc) error {
	r := x.c.rank
	if r >= 2*f.rem {
		return nil
	}
	if r%2 == 0 {
		return x.waitAll(x.isendExchange(r+1, 0, buf))
	}
	if err := x.waitAll(x.irecv(r-1, 0, tmp)); err != nil {
		return err
	}
	kern(buf, tmp)
	return nil
}

// foldOut hands the result back to the ranks that sat out (last step).
func (x *exec) foldOut(f fold, buf []byte) error {
	r := x.c.rank
	const step = stepMask
	if r >= 2*f.rem {
		return nil
	}
	if r%2 == 0 {
		return x.waitAll(x.irecv(r+1, step, buf))
	}
	return x.waitAll(x.isendExchange(r-1, step, buf))
}

// allReduceRD is recursive doubling: after the fold, partners at distance
// 1, 2, 4, ... exchange their whole buffers and both reduce, so every rank
// computes bit-identical results (each step applies one commutative
// operation to the same pair of values; the partners apply it in opposite
// orders, which only a NaN meeting a NaN can tell apart, see AllReduce).
//
// in, if not nil, is the caller's input of an out-of-place call with no
// fold (n a power of two), not yet copied into buf: the first exchange
// sends it and receives the partner's data straight into buf, then
// reduces buf op= in: the copying path's result, with the operand
// orders of the two partners swapped.
func (x *exec) allReduceRD(buf, in []byte, kern kernelFunc) error {
	f := makeFold(x.c.size, x.c.rank)
	if in != nil && f.rem != 0 {
		return fmt.Errorf("%w: allReduceRD: out-of-place input with a fold", ErrInvalid)
	}
	var tmp []byte
	if in == nil || f.p > 2 {
		tmp = x.buf(len(buf))
	}
	if err := x.foldIn(f, buf, tmp, kern); err != nil {
		return err
	}
	if f.newrank >= 0 {
		step := 1
		for mask := 1; mask < f.p; mask <<= 1 {
			partner := f.real(f.newrank ^ mask)
			sb, rb := buf, tmp
			if in != nil {
				sb, rb = in, buf
			}
			if err := x.sendrecv(partner, sb, partner, rb, step); err != nil {
				return err
			}
			if in != nil {
				kern(buf, in)
				in = nil
			} else {
				kern(buf, tmp)
			}
			step++
		}
	}
	return x.foldOut(f, buf)
}

// allReduceRabenseifner is reduce-scatter by recursive halving then
// allgather by recursive doubling over p = 2^k ranks (after the fold). The
// buffer is cut into p blocks; at distance d = p/2, p/4, ..., 1 each rank
// keeps the half of its current window on its side of the partner and
// sends the other half, so rank i ends owning block i fully reduced; the
// allgather retraces the steps with d = 1, 2, ..., p/2.
//
// in, if not nil, is the caller's input of an out-of-place call with no
// fold, not yet copied into buf (reduceScatterHalving reads it).
func (x *exec) allReduceRabenseifner(buf, in []byte, esize, count int, kern kernelFunc) error {
	f := makeFold(x.c.size, x.c.rank)
	if in != nil && f.rem != 0 {
		return fmt.Errorf("%w: allReduceRabenseifner: out-of-place input with a fold", ErrInvalid)
	}
	var tmp []byte
	if in == nil || f.p > 2 {
		tmp = x.buf(len(buf))
	}
	if err := x.foldIn(f, buf, tmp, kern); err != nil {
		return err
	}
	if f.newrank >= 0 {
		off := evenOffsets(count, f.p, esize)
		lo, hi, err := x.reduceScatterHalving(buf, in, tmp, off, f, kern, 1)
		if err != nil {
			return err
		}
		if err := x.allGatherDoubling(buf, off, f, lo, hi, 1+log2(f.p)); err != nil {
			return err
		}
	}
	return x.foldOut(f, buf)
}

// reduceScatterHalving runs the recursive-halving reduce-scatter over the p
// blocks of buf (offsets off), from step `step` on, and returns this rank's
// final window [lo, hi) = [newrank, newrank+1). tmp holds the largest half
// received.
//
// in, if not nil, holds this rank's input (same offsets) and buf nothing
// yet: the first exchange sends from in and receives straight into buf,
// then reduces buf op= in (the operands swapped against the copying path,
// bit-identical by commutativity, see AllReduce); later steps work on buf.
func (x *exec) reduceScatterHalving(buf, in, tmp []byte, off []int, f fold, kern kernelFunc, step int) (lo, hi int, err error) {
	lo, hi = 0, f.p
	for d := f.p / 2; d >= 1; d /= 2 {
		partner := f.real(f.newrank ^ d)
		mid := (lo + hi) / 2
		keepLo, keepHi, sendLo, sendHi := lo, mid, mid, hi
		if f.newrank&d != 0 {
			keepLo, keepHi, sendLo, sendHi = mid, hi, lo, mid
		}
		keep := buf[off[keepLo]:off[keepHi]]
		src, got := buf, keep
		if in != nil {
			src = in
		} else {
			got = tmp[:len(keep)]
		}
		if err := x.sendrecv(partner, src[off[sendLo]:off[sendHi]], partner, got, step); err != nil {
			return lo, hi, err
		}
		if in != nil {
			kern(keep, in[off[keepLo]:off[keepHi]])
			in = nil
		} else {
			kern(keep, got)
		}
		lo, hi = keepLo, keepHi
		step++
	}
	if in != nil { // p == 1: nothing exchanged
		copy(buf, in)
	}
	return lo, hi, nil
}

// allGatherDoubling grows this rank's window [lo, hi) of blocks by
// exchanging with partners at distance 1, 2, ..., p/2, receiving in place.
func (x *exec) allGatherDoubling(buf []byte, off []int, f fold, lo, hi, step int) error {
	for d := 1; d < f.p; d *= 2 {
		partner := f.real(f.newrank ^ d)
		w := hi - lo
		plo, phi := hi, hi+w
		if f.newrank&d != 0 {
			plo, phi = lo-w, lo
		}
		if err := x.sendrecv(partner, buf[off[lo]:off[hi]], partner, buf[off[plo]:off[phi]], step); err != nil {
			return err
		}
		lo, hi = min(lo, plo), max(hi, phi)
		step++
	}
	return nil
}

func log2(p int) int {
	k := 0
	for 1<<k < p {
		k++
	}
	return k
}

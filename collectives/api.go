package collectives

import "context"

// The collectives. Every rank of c must make the same calls in the same
// order with matching counts, ops and roots; ctx (bounded by
// Options.Timeout when it has no deadline) bounds each call. On any error
// the communicator is broken (see ErrBroken). Counts are in elements.

// AllReduce reduces send element-wise over all ranks with op and leaves the
// result in every rank's recv. send == nil, or send and recv the same slice,
// means in place (the input is in recv). len(send) == len(recv). The
// algorithm is Options.Algorithm / SEALRING_ALGO, or chosen by
// ChooseAllReduce; every rank gets bit-identical results, except where two
// NaNs meet (floating-point sum and prod, and every bfloat16/float16 op,
// may then keep a NaN payload that depends on the operand order, which
// differs between ranks).
func AllReduce[T Elem](ctx context.Context, c *Communicator, send, recv []T, op Op) error {
	return allReduce(ctx, c, asBytes(send), asBytes(recv), TypeOf[T](), op, Auto)
}

// AllReduceWith is AllReduce with the algorithm forced for this call
// (Auto: as AllReduce). Every rank must pass the same algorithm.
func AllReduceWith[T Elem](ctx context.Context, c *Communicator, send, recv []T, op Op, algo Algorithm) error {
	return allReduce(ctx, c, asBytes(send), asBytes(recv), TypeOf[T](), op, algo)
}

// AllReduceBytes is AllReduce on raw bytes holding elements of type dt.
func AllReduceBytes(ctx context.Context, c *Communicator, send, recv []byte, dt DataType, op Op) error {
	return allReduce(ctx, c, send, recv, dt, op, Auto)
}

// Broadcast copies root's buf into every rank's buf (binomial tree for
// small buffers, pipelined chain for large ones).
func Broadcast[T Elem](ctx context.Context, c *Communicator, buf []T, root int) error {
	return broadcast(ctx, c, asBytes(buf), root)
}

// Reduce reduces send over all ranks into root's recv (binomial tree). At
// the root send == nil (or send and recv the same slice) means in place;
// recv is ignored elsewhere and may be nil.
func Reduce[T Elem](ctx context.Context, c *Communicator, send, recv []T, op Op, root int) error {
	return reduce(ctx, c, asBytes(send), asBytes(recv), TypeOf[T](), op, root)
}

// AllGather concatenates every rank's send, in rank order, into every
// rank's recv: len(recv) == Size()·len(send). send == nil means this rank's
// block is already in recv[Rank()·count:].
func AllGather[T Elem](ctx context.Context, c *Communicator, send, recv []T) error {
	var z T
	return allGather(ctx, c, asBytes(send), asBytes(recv), sizeOf(z))
}

// ReduceScatter reduces send (Size() blocks of len(recv) elements) over all
// ranks and leaves block i of the result in rank i's recv, as
// MPI_Reduce_scatter_block. send and recv must not overlap.
func ReduceScatter[T Elem](ctx context.Context, c *Communicator, send, recv []T, op Op) error {
	return reduceScatter(ctx, c, asBytes(send), asBytes(recv), TypeOf[T](), op)
}

// AllToAll sends block i of send (Size() equal blocks) to rank i, which
// stores it as block Rank() of its recv. send == nil (or the same slice as
// recv) means in place.
func AllToAll[T Elem](ctx context.Context, c *Communicator, send, recv []T) error {
	var z T
	return allToAll(ctx, c, asBytes(send), asBytes(recv), sizeOf(z))
}

// Gather concatenates every rank's send, in rank order, into root's recv
// (len(recv) == Size()·len(send) at the root; ignored elsewhere). At the
// root send == nil means its block is already in recv.
func Gather[T Elem](ctx context.Context, c *Communicator, send, recv []T, root int) error {
	return gather(ctx, c, asBytes(send), asBytes(recv), root)
}

// Scatter sends block i of root's send (Size() equal blocks; ignored
// elsewhere) to rank i's recv. At the root recv == nil means in place.
func Scatter[T Elem](ctx context.Context, c *Communicator, send, recv []T, root int) error {
	return scatter(ctx, c, asBytes(send), asBytes(recv), root)
}

func sizeOf[T Elem](T) int { return TypeOf[T]().Size() }

// Package collectives implements MPI/NCCL-style collective operations
// (AllReduce, Broadcast, Reduce, AllGather, ReduceScatter, Barrier,
// AllToAll, Gather, Scatter) and communicator splitting on top of a
// tagged, message-oriented point-to-point layer.
//
// The point-to-point layer is the small Conn interface; FromEndpoint adapts
// a *transport.Endpoint (sealring's encrypted transport) to it, and tests use
// an in-process fake. A Communicator is one rank's handle on a group of
// ranks:
//
//	conn := collectives.FromEndpoint(ep, nil) // communicator rank i = endpoint rank i
//	c, err := collectives.New(conn, rank, size, collectives.Options{})
//	...
//	err = collectives.AllReduce(ctx, c, grads, grads, collectives.Sum) // in place
//
// Every rank of a communicator must call the same collectives in the same
// order with matching arguments (counts, roots, ops), as in MPI. Collectives
// on one Communicator must not run concurrently; different communicators
// (for instance the parent and the children of Split) may.
//
// Any failure (a peer unreachable, the endpoint closed, the context or the
// collective timeout ending, mismatched message sizes) aborts the collective
// on this rank with an error wrapping ErrBroken and the cause, marks the
// communicator broken (later calls fail fast, Err reports the cause), and
// tells the other ranks so that they fail too instead of waiting for their
// timeout. See NOTES.md for the algorithms, the tag layout and the
// algorithm-choice defaults.
package collectives

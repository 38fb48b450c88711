package collectives

import "context"

// Conn is the point-to-point layer the collectives run on: tagged,
// asynchronous, message-oriented sends and receives between the ranks
// 0..size-1 of one communicator.
//
// A Conn must provide:
//   - Isend and Irecv start an operation and return at once; the buffer
//     belongs to the operation until its Pending completes.
//   - Non-overtaking order: messages from one rank to another with the same
//     tag match receives in the order they were sent, and receives posted
//     for the same (peer, tag) are matched in the order they were posted.
//   - A receive completes with an error wrapping ErrSizeMismatch when the
//     message's length differs from len(buf); it never writes past buf.
//   - When the ctx given to Isend/Irecv ends, the operation is withdrawn
//     (or completes) promptly, and its Pending then reports completion.
//     That ctx is derived from the collective's and may be reused by the
//     next collective called with the same parent context, so it can
//     outlive the operation: a Conn must release an operation's resources
//     when the operation completes, not when the ctx ends. The per-call
//     Options.Timeout ends the ctx by cancellation (not by a deadline).
//   - Errors such as an unreachable peer or a closed endpoint complete the
//     operation with that error.
//
// FromEndpoint adapts a *transport.Endpoint. Implementations must be safe
// for concurrent use.
type Conn interface {
	Isend(ctx context.Context, peer int, tag uint64, buf []byte) Pending
	Irecv(ctx context.Context, peer int, tag uint64, buf []byte) Pending
}

// Pending is an operation started by Isend or Irecv.
type Pending interface {
	// Wait returns the operation's error once it has completed, or
	// ctx.Err() if ctx ends first (the operation then carries on).
	Wait(ctx context.Context) error
}

// AnyReceiver is implemented by Conns that can receive a message with a
// given tag from any peer. A Communicator over such a Conn posts one such
// receive for the communicator's abort messages, so that a failure on one
// rank fails the collective on every rank at once rather than after the
// timeout. Conns without it still work; survivors then fail by timeout or
// by their own errors.
type AnyReceiver interface {
	IrecvAny(ctx context.Context, tag uint64, buf []byte) Pending
}

// EagerSender is implemented by Conns that can send a message without a
// rendezvous handshake whatever its size. The collectives use it for the
// sends of an exchange (recursive doubling, halving and doubling steps,
// folds), where the receiver has posted its receive, or is about to, and
// nothing else is in flight to it: a handshake there is pure latency
// (Tuning.ExchangeEagerBytes bounds the size). Semantics are Isend's.
type EagerSender interface {
	IsendEager(ctx context.Context, peer int, tag uint64, buf []byte) Pending
}

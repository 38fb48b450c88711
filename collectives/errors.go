package collectives

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrBroken: the communicator failed earlier (or just now) and can no
	// longer be used. Err reports the first cause. Errors returned by a
	// failing collective wrap both ErrBroken and the cause.
	ErrBroken = errors.New("collectives: communicator broken")
	// ErrAborted: another rank reported that a collective failed on it.
	ErrAborted = errors.New("collectives: aborted by a peer")
	// ErrSizeMismatch: a message's length differs from what this rank
	// expected: the ranks called the collective with different counts (or
	// a different collective).
	ErrSizeMismatch = errors.New("collectives: message size mismatch between ranks")
	// ErrInvalid: an argument is invalid (buffer lengths, root, op, type).
	ErrInvalid = errors.New("collectives: invalid argument")
	// ErrTimeout: the collective did not finish within Options.Timeout.
	// It wraps context.DeadlineExceeded.
	ErrTimeout = fmt.Errorf("collectives: collective timed out: %w", context.DeadlineExceeded)
	// ErrBusy: a collective was called while another one was running on the
	// same Communicator. It does not break the communicator.
	ErrBusy = errors.New("collectives: concurrent collectives on one communicator")
	// ErrClosed: the Communicator was closed.
	ErrClosed = errors.New("collectives: communicator closed")
)

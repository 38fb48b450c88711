package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Store is the key-value store that the ranks of one job use to find each
// other. All implementations in this package (MemStore, FileStore and the
// TCP Client) are safe for concurrent use and share the semantics checked
// by the package's conformance suite:
//
//   - Keys are non-empty strings of at most Limits.MaxKeySize bytes; values
//     are at most Limits.MaxValueSize bytes. Violations fail with an error
//     wrapping ErrInvalidKey or ErrTooLarge before anything is changed.
//   - Values are copied in and out: callers may reuse their slices.
//   - Every method honours its context; after Close every method fails with
//     an error wrapping ErrClosed (which itself wraps net.ErrClosed).
type Store interface {
	// Set stores value under key, replacing any previous value.
	Set(ctx context.Context, key string, value []byte) error

	// Get returns the value stored under key, or an error wrapping
	// ErrNotFound if there is none.
	Get(ctx context.Context, key string) ([]byte, error)

	// Add atomically adds delta to the counter stored under key and returns
	// the new value. A missing key counts as 0. Counters are stored as
	// base-10 ASCII integers, so Get of a counter returns e.g. "42"; Add on
	// a value that is not such an integer fails with ErrNotCounter, and an
	// addition that would overflow int64 fails with ErrOverflow.
	Add(ctx context.Context, key string, delta int64) (int64, error)

	// CompareAndSet atomically replaces the value under key with new if the
	// current value equals old. old == nil means "key must not exist" (so
	// CompareAndSet(ctx, k, nil, v) is create-if-absent); a non-nil empty
	// old matches an existing empty value. A nil new stores an empty value.
	//
	// current is the value under key after the call: new if swapped, else
	// the value that did not match (nil if the key does not exist).
	CompareAndSet(ctx context.Context, key string, old, new []byte) (swapped bool, current []byte, err error)

	// Wait blocks until every key in keys has been seen to exist (each at
	// some moment during the call; a key deleted again after it was seen
	// still counts). An empty keys returns nil at once. If timeout > 0 and it
	// elapses first, Wait returns a *WaitError wrapping ErrTimeout that
	// names the missing keys; if ctx ends first, a *WaitError wrapping
	// ctx.Err(). timeout <= 0 means no timeout other than ctx's.
	Wait(ctx context.Context, keys []string, timeout time.Duration) error

	// Delete removes key. Deleting a missing key is not an error, so
	// Delete may be retried safely.
	Delete(ctx context.Context, key string) error

	// Close releases the store's resources and unblocks pending calls,
	// which fail with ErrClosed. Close is idempotent.
	Close() error
}

// Sentinel errors. Test for them with errors.Is; the errors returned by this
// package wrap them with context (which key, which limit, which peer).
var (
	// ErrNotFound reports that a key does not exist.
	ErrNotFound = errors.New("rendezvous: key not found")
	// ErrTimeout reports that Wait's timeout elapsed; see WaitError.
	ErrTimeout = errors.New("rendezvous: wait timed out")
	// ErrClosed reports a call on a Store (or Server) after its Close.
	// It wraps net.ErrClosed.
	ErrClosed = fmt.Errorf("rendezvous: store closed: %w", net.ErrClosed)
	// ErrUnavailable reports that a remote store cannot be reached or the
	// connection to it was lost. A call that fails with ErrUnavailable
	// may or may not have been applied by the server.
	ErrUnavailable = errors.New("rendezvous: store unavailable")
	// ErrAuth reports that mutual authentication failed: the peer is not
	// a member of this job, or this party's credentials were rejected.
	ErrAuth = errors.New("rendezvous: authentication failed")
	// ErrInvalidKey reports an empty key.
	ErrInvalidKey = errors.New("rendezvous: invalid key")
	// ErrTooLarge reports a key or value over the configured Limits.
	ErrTooLarge = errors.New("rendezvous: too large")
	// ErrNotCounter reports Add on a value that is not a base-10 int64.
	ErrNotCounter = errors.New("rendezvous: value is not a counter")
	// ErrOverflow reports an Add whose result does not fit in an int64.
	ErrOverflow = errors.New("rendezvous: counter overflow")
	// ErrProtocol reports a malformed or unexpected frame on the wire.
	ErrProtocol = errors.New("rendezvous: protocol error")
)

// Default limits, used where a Limits field is zero.
const (
	DefaultMaxKeySize   = 1 << 10 // 1 KiB
	DefaultMaxValueSize = 1 << 20 // 1 MiB
)

// hardMaxValueSize bounds Limits.MaxValueSize so that frames stay far below
// the 32-bit length field.
const hardMaxValueSize = 256 << 20

// hardMaxKeySize bounds Limits.MaxKeySize: keys travel with a 16-bit length.
const hardMaxKeySize = 1<<16 - 1

// Limits bounds key and value sizes. The zero value means the defaults
// (DefaultMaxKeySize, DefaultMaxValueSize).
type Limits struct {
	MaxKeySize   int // bytes per key; 0 means DefaultMaxKeySize, at most 65535
	MaxValueSize int // bytes per value; 0 means DefaultMaxValueSize, at most 256 MiB
}

// withDefaults returns l with zero fields replaced by defaults and out of
// range fields clamped.
func (l Limits) withDefaults() Limits {
	if l.MaxKeySize <= 0 {
		l.MaxKeySize = DefaultMaxKeySize
	}
	if l.MaxKeySize > hardMaxKeySize {
		l.MaxKeySize = hardMaxKeySize
	}
	if l.MaxValueSize <= 0 {
		l.MaxValueSize = DefaultMaxValueSize
	}
	if l.MaxValueSize > hardMaxValueSize {
		l.MaxValueSize = hardMaxValueSize
	}
	return l
}

func (l Limits) checkKey(op, key string) error {
	if key == "" {
		return fmt.Errorf("rendezvous: %s: empty key: %w", op, ErrInvalidKey)
	}
	if len(key) > l.MaxKeySize {
		return fmt.Errorf("rendezvous: %s: key of %d bytes exceeds the %d-byte limit (%.40q...): %w",
			op, len(key), l.MaxKeySize, key, ErrTooLarge)
	}
	return nil
}

func (l Limits) checkValue(op, key string, v []byte) error {
	if len(v) > l.MaxValueSize {
		return fmt.Errorf("rendezvous: %s %q: value of %d bytes exceeds the %d-byte limit: %w",
			op, key, len(v), l.MaxValueSize, ErrTooLarge)
	}
	return nil
}

func (l Limits) checkKeys(op string, keys []string) error {
	for _, k := range keys {
		if err := l.checkKey(op, k); err != nil {
			return err
		}
	}
	return nil
}

// WaitError is returned by Store.Wait when it gives up. Missing lists the
// keys that did not exist when it did (relative to the store's prefix, if
// any); Err is ErrTimeout, ctx.Err(), or ErrClosed/ErrUnavailable.
type WaitError struct {
	Missing []string
	Timeout time.Duration // the timeout that elapsed, if Err is ErrTimeout
	Err     error
}

// Error names the reason and the missing keys (at most 16 of them).
func (e *WaitError) Error() string {
	var b strings.Builder
	b.WriteString("rendezvous: wait")
	if errors.Is(e.Err, ErrTimeout) && e.Timeout > 0 {
		b.WriteString(" timed out after ")
		b.WriteString(e.Timeout.String())
	} else {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	b.WriteString("; missing ")
	b.WriteString(strconv.Itoa(len(e.Missing)))
	b.WriteString(" key(s): ")
	const show = 16
	for i, k := range e.Missing {
		if i == show {
			fmt.Fprintf(&b, " ... and %d more", len(e.Missing)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(k))
	}
	return b.String()
}

// Unwrap returns the reason Wait gave up.
func (e *WaitError) Unwrap() error { return e.Err }

// parseCounter parses a stored counter value. A missing value (nil, ok=false)
// counts as zero.
func parseCounter(key string, v []byte, exists bool) (int64, error) {
	if !exists {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("rendezvous: add %q: stored value %.32q is not a base-10 int64: %w", key, v, ErrNotCounter)
	}
	return n, nil
}

// addCounter returns cur+delta or ErrOverflow.
func addCounter(key string, cur, delta int64) (int64, error) {
	n := cur + delta
	if (delta > 0 && n < cur) || (delta < 0 && n > cur) {
		return 0, fmt.Errorf("rendezvous: add %q: %d + %d: %w", key, cur, delta, ErrOverflow)
	}
	return n, nil
}

// cloneBytes copies b, keeping nil as nil and empty as non-nil empty.
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// ctxErr reports ctx's error wrapped for op and key, or nil.
func ctxErr(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, err)
	}
	return nil
}

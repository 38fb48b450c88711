package transport

import (
	"errors"
	"fmt"
	"net"
)

// Sentinel errors. Errors returned by this package wrap one of them (or a
// context error), so callers test with errors.Is.
var (
	// ErrClosed: the Endpoint was closed. errors.Is(ErrClosed, net.ErrClosed)
	// holds.
	ErrClosed = fmt.Errorf("transport: endpoint closed: %w", net.ErrClosed)
	// ErrPeerUnreachable: the peer stopped answering for Config.PeerTimeout,
	// restarted with a new incarnation, or was removed. Operations toward it
	// fail fast until it is heard from again.
	ErrPeerUnreachable = errors.New("transport: peer unreachable")
	// ErrTruncated: the receive buffer was shorter than the message; it
	// holds the message's first len(buf) bytes and Status.Len is the
	// message's real length.
	ErrTruncated = errors.New("transport: message truncated")
	// ErrUnknownPeer: the rank was never added with AddPeer (or was removed).
	ErrUnknownPeer = errors.New("transport: unknown peer")
	// ErrConfig: the Config is invalid.
	ErrConfig = errors.New("transport: invalid configuration")
	// ErrSeal: a packet could not be sealed (the sender's epochs are used
	// up: rotate a root key). The packet was wiped, never sent in clear.
	ErrSeal = errors.New("transport: cannot seal packet")
)

var (
	errPeerTimeout   = fmt.Errorf("%w: no answer within the peer timeout", ErrPeerUnreachable)
	errPeerRestarted = fmt.Errorf("%w: peer restarted with a new incarnation", ErrPeerUnreachable)
	errPeerRemoved   = fmt.Errorf("%w: peer removed", ErrPeerUnreachable)
	errPeerDown      = fmt.Errorf("%w: peer timed out earlier and has not been heard from since", ErrPeerUnreachable)
)

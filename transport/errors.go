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
	// fail fast until it is heard from again. A Send that fails with it
	// may still be delivered if the peer answers again (the unacknowledged
	// packets are kept and retransmitted, as a reliable connection does);
	// a Recv that fails with it never consumes a message: what arrived of
	// the message goes back to be received later.
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

	// ErrRegionNotFound: a one-sided access named a region the target does
	// not have: never registered, deregistered (before or during the
	// access), registered by an earlier incarnation of the target, or
	// named with a wrong secret. Also what Deregister returns for a
	// region already deregistered.
	ErrRegionNotFound = errors.New("transport: no such memory region")
	// ErrAccessDenied: the region does not grant the access (a Put to a
	// region without AccessRemoteWrite, a Get without AccessRemoteRead).
	ErrAccessDenied = errors.New("transport: memory region access denied")
	// ErrOutOfBounds: [offset, offset+len(buf)) is not inside the region.
	ErrOutOfBounds = errors.New("transport: access outside the memory region")
	// ErrInvalidKey: a RemoteKey could not be decoded, is the zero value,
	// or belongs to another rank than the one it is used with.
	ErrInvalidKey = errors.New("transport: invalid remote key")
)

var (
	errPeerTimeout   = fmt.Errorf("%w: no answer within the peer timeout", ErrPeerUnreachable)
	errPeerRestarted = fmt.Errorf("%w: peer restarted with a new incarnation", ErrPeerUnreachable)
	errPeerRemoved   = fmt.Errorf("%w: peer removed", ErrPeerUnreachable)
	errPeerDown      = fmt.Errorf("%w: peer timed out earlier and has not been heard from since", ErrPeerUnreachable)

	// Reported by an RMA target (NAK codes).
	errRemoteNotFound     = fmt.Errorf("%w: the target has no such region (never registered, deregistered, or a stale or wrong key)", ErrRegionNotFound)
	errRemoteDenied       = fmt.Errorf("%w: refused by the target: the region does not grant this access", ErrAccessDenied)
	errRemoteBounds       = fmt.Errorf("%w: refused by the target: the access is outside the region", ErrOutOfBounds)
	errRemoteDeregistered = fmt.Errorf("%w: the target deregistered the region during the transfer", ErrRegionNotFound)
	errRemoteAborted      = fmt.Errorf("%w: the target abandoned the transfer (it had timed this endpoint out)", ErrPeerUnreachable)
	errRemoteCanceled     = errors.New("transport: the target cancelled the transfer")
	errRecvAborted        = fmt.Errorf("%w: the receiver abandoned the message (it had timed this endpoint out)", ErrPeerUnreachable)
	errStaleKey           = fmt.Errorf("%w: the key is from an earlier incarnation of the target", ErrRegionNotFound)
	errKeyNewer           = fmt.Errorf("%w: the key is from a newer incarnation of the peer than the one this endpoint knows (it restarted and has not been heard from yet: retry)", ErrPeerUnreachable)
)

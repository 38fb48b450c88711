package transport

import (
	"fmt"
	"time"

	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport/wire"
)

// Defaults for the zero values of Config.
const (
	DefaultCacheCapacity   = 4096
	DefaultEagerLimit      = 128 << 10
	DefaultUnexpectedBytes = 64 << 20
	DefaultWindow          = 1024
	DefaultPeerTimeout     = 10 * time.Second
	DefaultMinRTO          = 2 * time.Millisecond
	DefaultMaxRTO          = 500 * time.Millisecond
	DefaultInitialRTO      = 20 * time.Millisecond
	DefaultAckDelay        = 100 * time.Microsecond
	// DefaultInitialCwnd is the congestion window, in packets, a peer
	// starts with.
	DefaultInitialCwnd = 64
	// MaxEagerLimit bounds Config.EagerLimit: eager fragments carry 32-bit
	// lengths and offsets.
	MaxEagerLimit = 1 << 30
	// minCwnd is the congestion window's floor, in packets.
	minCwnd = 4
)

// Config configures an Endpoint. Zero values select the documented
// defaults; only Wire (and Group, unless Insecure) are required.
type Config struct {
	// Rank is this endpoint's rank in the job.
	Rank uint32
	// Incarnation distinguishes successive lives of one rank: a restarted
	// process must use a larger value (for instance a launch counter from
	// the rendezvous store). Peers reset their state for the rank when they
	// hear a larger incarnation, and drop packets of smaller ones.
	Incarnation uint32

	// Wire carries the datagrams. Required; the Endpoint owns it from New
	// on and closes it on Close.
	Wire wire.Wire

	// Group holds the job's root keys. Required unless Insecure.
	Group *secure.Group
	// Insecure turns encryption and authentication off: an 8-byte
	// rank ‖ incarnation prefix replaces the security header. Only for
	// benchmarks on a trusted network: anyone who can send a datagram can
	// then forge any rank's traffic.
	Insecure bool
	// CacheCapacity bounds the Opener's cache of derived data keys, in
	// entries (one per sending peer incarnation and epoch). 0 means
	// DefaultCacheCapacity (4096); negative disables the cache, so every
	// packet derives its key (three AES block operations).
	CacheCapacity int

	// EagerLimit is the largest message sent eagerly; larger ones use the
	// RTS/CTS rendezvous and land straight in the posted buffer, unless
	// the send asks for eager (SendOptions.Eager).
	// 0 means DefaultEagerLimit (128 KiB: measured, a rendezvous
	// handshake between processes costs more than copying that much,
	// while the collectives' 256 KiB pipeline segments stay zero-copy;
	// docs/performance.md §7); at most MaxEagerLimit.
	EagerLimit int
	// UnexpectedBytes bounds the eager data buffered for messages that
	// arrived before a matching Recv, summed over all peers. When it is
	// full, new unexpected messages are refused (the sender is told to
	// stop with a zero window and resumes when a Recv, a withdrawn
	// message or a removed or restarted peer frees space), except
	// that an empty pool admits one message of any size (else a message
	// larger than the pool could never arrive before its receive). 0 means
	// DefaultUnexpectedBytes (64 MiB).
	UnexpectedBytes int
	// Window is the most unacknowledged packets per peer, and the receive
	// reordering window. 0 means DefaultWindow (1024).
	Window int
	// InitialCwnd is the starting congestion window in packets (0:
	// DefaultInitialCwnd, capped at Window).
	InitialCwnd int

	// PeerTimeout is how long a peer with pending operations may stay
	// silent (no ACK and no reliable packet from it; its keepalive PINGs
	// do not count) before they fail with ErrPeerUnreachable. 0 means
	// DefaultPeerTimeout (10 s).
	PeerTimeout time.Duration
	// KeepaliveInterval is how long a peer with pending operations may be
	// silent before it is probed. 0 means PeerTimeout/5.
	KeepaliveInterval time.Duration
	// MinRTO and MaxRTO bound the retransmission timeout (RFC 6298: SRTT
	// + 4·RTTVAR, doubled on each expiry). 0 means DefaultMinRTO (2 ms)
	// and DefaultMaxRTO (500 ms). InitialRTO is used before the first RTT
	// sample (0: DefaultInitialRTO, 20 ms). A timeout that expires while
	// input waits unread (the receive goroutine holds a batch, or the wire
	// reports a queued datagram: wire.InputPender) is put off until that
	// input is read, by one more RTO at most each time (Stats.DeferredRTOs).
	MinRTO, MaxRTO, InitialRTO time.Duration
	// AckDelay is how long a receiver may delay an ACK (unless 4 packets
	// are pending, the sender asked for an immediate one, or the receiver
	// has drained its socket and holds a packet whose sender did not mark
	// its ACK lazy, see LocalCompletion; an outgoing packet to that peer
	// carries the ACK anyway). An immediate ACK owed by a batch that woke
	// goroutines waits for them: for a packet of theirs to the peer to
	// carry it, or for one of them to block in the endpoint, at most
	// AckDelay (docs/protocol.md §8.3, "Held ACK"). 0 means
	// DefaultAckDelay (100 µs). Keep it well below MinRTO: a sender
	// retransmits what stays unacknowledged for an RTO.
	AckDelay time.Duration

	// LocalCompletion completes an eager Send (or SendAsync) as soon as
	// every fragment of it is copied into the retransmission ring, instead
	// of when the peer has acknowledged all of it: MPI's buffered eager
	// send. The caller's buffer is free at once, and an exchange (both
	// sides send, then receive) waits one one-way trip instead of a round
	// trip. The price: a delivery failure after that point (the peer dies,
	// times out, or this endpoint closes before the ACK) is no longer
	// reported to the send, only to later operations on that peer; end
	// such an endpoint with Shutdown, which waits for the last ACKs, not
	// Close, which drops what is unacknowledged. Rendezvous sends are
	// unaffected (they complete on FIN). Since nobody waits for the ACKs
	// of such a send, its packets ask the peer not to hurry them: the
	// peer's next packet to this endpoint carries them (in an exchange,
	// the peer's own message), or they follow after the peer's AckDelay.
	LocalCompletion bool
}

func (c *Config) setDefaults() error {
	if c.Wire == nil {
		return fmt.Errorf("%w: Wire is required", ErrConfig)
	}
	if c.Group == nil && !c.Insecure {
		return fmt.Errorf("%w: Group is required unless Insecure", ErrConfig)
	}
	if c.CacheCapacity == 0 {
		c.CacheCapacity = DefaultCacheCapacity
	} else if c.CacheCapacity < 0 {
		c.CacheCapacity = 0
	}
	if c.EagerLimit == 0 {
		c.EagerLimit = DefaultEagerLimit
	}
	if c.EagerLimit < 0 || c.EagerLimit > MaxEagerLimit {
		return fmt.Errorf("%w: EagerLimit %d outside [0, %d]", ErrConfig, c.EagerLimit, MaxEagerLimit)
	}
	if c.UnexpectedBytes == 0 {
		c.UnexpectedBytes = DefaultUnexpectedBytes
	}
	if c.UnexpectedBytes < 0 {
		return fmt.Errorf("%w: negative UnexpectedBytes", ErrConfig)
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < minCwnd || c.Window > 1<<20 {
		return fmt.Errorf("%w: Window %d outside [%d, %d]", ErrConfig, c.Window, minCwnd, 1<<20)
	}
	if c.InitialCwnd == 0 {
		c.InitialCwnd = DefaultInitialCwnd
	}
	c.InitialCwnd = min(max(c.InitialCwnd, minCwnd), c.Window)
	if c.PeerTimeout == 0 {
		c.PeerTimeout = DefaultPeerTimeout
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = c.PeerTimeout / 5
	}
	if c.MinRTO == 0 {
		c.MinRTO = DefaultMinRTO
	}
	if c.MaxRTO == 0 {
		c.MaxRTO = DefaultMaxRTO
	}
	if c.InitialRTO == 0 {
		c.InitialRTO = DefaultInitialRTO
	}
	if c.AckDelay == 0 {
		c.AckDelay = DefaultAckDelay
	}
	if c.PeerTimeout < 0 || c.KeepaliveInterval <= 0 || c.MinRTO <= 0 || c.MaxRTO < c.MinRTO || c.InitialRTO <= 0 || c.AckDelay < 0 {
		return fmt.Errorf("%w: timeouts must be positive with MinRTO <= MaxRTO", ErrConfig)
	}
	c.InitialRTO = min(max(c.InitialRTO, c.MinRTO), c.MaxRTO)
	return nil
}

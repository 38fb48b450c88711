// Package quicwire is a wire.Wire over QUIC datagrams (RFC 9221), built on
// github.com/quic-go/quic-go. The transport runs unchanged on top of it:
// its own reliability and sealing layers work per datagram, and QUIC adds
// a mutually authenticated, encrypted, congestion-controlled channel per
// peer pair.
//
// # Connections
//
// A Wire owns one UDP socket (a quic.Transport) that both listens and
// dials. There is one QUIC connection per peer, set up lazily: the first
// WriteBatch to an address starts a dial in that peer's sender goroutine,
// and a connection a peer dials to us becomes that peer's connection too.
// Datagrams are enabled on both ends (a peer without them is refused),
// path MTU discovery is off and every packet has Config.PacketSize bytes
// (1452 by default), so MaxPayload is fixed before any connection exists:
// 1410 bytes by default.
//
// Two peers that dial each other at the same time briefly hold two
// connections. Both ends rank a pair's connections in the same order and
// send on the best one: first a connection to the peer's newest identity
// (certificate: a restarted peer with new credentials supersedes its old
// connections at once); then the one dialed by the tie-break winner, the
// end whose leaf certificate is smaller (bytewise DER; the addresses when
// both present the same certificate); then the newer of two dialed by the
// same end (it dials again only after losing the older one). An end
// closes a losing connection it dialed, or one superseded by a newer one
// from the same dialer, as soon as it holds the winner (Stats.Duplicates,
// Stats.Replaced); it keeps receiving on a losing connection the peer
// dialed until the peer closes it, so no connection is closed while the
// other end may still be sending on it. No timing enters the decision.
//
// A connection that closes (peer closed, idle timeout, stateless reset)
// is forgotten; the next best one takes over, or the next datagram for
// that peer redials. A peer that crashed and restarted on the same
// address with the same credentials resets its predecessor's connections
// (the stateless reset key derives from the credentials and the address)
// as soon as we send on them; with other credentials its first connection
// supersedes the old one. A failed dial
// drops what was queued for the peer and, for a backoff of 50 ms doubling
// to 1 s, what is written to it after: the transport above retransmits
// and maps lasting silence to ErrPeerUnreachable itself. A restarted peer
// on the same address is reached again by the next dial, or sooner when it
// dials us.
//
// # Blocking
//
// WriteBatch copies each datagram into its peer's send queue (SendQueue
// datagrams) and returns; the peer's sender goroutine calls quic-go's
// SendDatagram, which blocks while quic-go's own queue (32 frames) is full,
// that is while QUIC's congestion control holds the connection back. A
// slow or dead peer therefore never holds up writes to other peers. When a
// queue is full, WriteBatch waits for room only if the connection is
// established, and at most WriteTimeout without progress; during a
// handshake, or once that time passed, it drops the datagrams (as UDP
// would, counted in Stats.SendDrops) and returns without error. Close
// unblocks it with ErrClosed.
//
// One receiver goroutine per connection moves datagrams from quic-go
// (which queues 128 per connection and drops beyond) into one bounded
// queue (ReceiveQueue) that ReadBatch drains. ReadBatch returns quic-go's
// own buffers, one allocation per datagram made by quic-go; the wire
// itself allocates nothing per datagram in steady state, but quic-go
// allocates on SendDatagram (the frame and a copy of the payload) and on
// receipt (a copy of the payload).
//
// Datagrams addressed to the wire's own LocalAddr are looped back without
// QUIC.
//
// # Authentication
//
// TLS 1.3 with ALPN "sealring-quic/1" and the job's credentials
// (rendezvous.Credentials) on both ends: each end requires the other's
// certificate to chain to the job CA and to name the same job. Refusals
// are counted (Stats.AuthRefusals on the end that refused,
// Stats.RefusedByPeer on a dialer whose certificate the peer refused) and
// logged at Warn on Config.Logger. WriteBatch to a peer of another job
// returns no error (its datagrams are dropped, as they would be to an
// unreachable address) and nothing reaches the peer's ReadBatch.
//
// # Close
//
// Close sends CONNECTION_CLOSE on every connection, closes the listener,
// the quic.Transport and the socket, unblocks ReadBatch and WriteBatch with
// wire.ErrClosed, and waits for every goroutine it started.
package quicwire

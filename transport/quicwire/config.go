package quicwire

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/transport/wire"
)

// ALPN is the TLS application protocol of the QUIC wire. A peer that does
// not offer it fails the handshake.
const ALPN = "sealring-quic/1"

// Defaults for the zero values of Config.
const (
	// DefaultPacketSize is the QUIC packet size used from the first
	// packet on: quic-go's largest (1452 bytes: a 1500-byte MTU under IPv6
	// and UDP). Path MTU discovery is off, so every connection carries
	// DATAGRAM frames of the same size from its handshake on.
	DefaultPacketSize = 1452
	// DefaultHandshakeTimeout bounds one connection attempt.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultIdleTimeout closes a connection whose peer has sent nothing
	// (not even a keepalive) for that long.
	DefaultIdleTimeout = 5 * time.Second
	// DefaultSendQueue is the number of datagrams queued per peer between
	// WriteBatch and the peer's QUIC connection.
	DefaultSendQueue = 256
	// DefaultReceiveQueue is the number of received QUIC datagrams,
	// summed over all connections, waiting for ReadBatch: two batches.
	// Deeper queues only add latency (a transport's ACKs waiting behind
	// a backlog delay its loss and peer-death detection).
	DefaultReceiveQueue = 256
	// DefaultWriteTimeout is how long WriteBatch waits for room in an
	// established connection's full send queue before dropping.
	DefaultWriteTimeout = 100 * time.Millisecond

	// datagramOverhead is what a QUIC datagram costs in a packet of
	// PacketSize: the short header (type byte, a connection ID of up to
	// 20 bytes in quic-go's estimate), the AEAD tag, the DATAGRAM frame's
	// type byte and 2-byte length, and our own 2-byte length prefix.
	datagramOverhead = 1 + 20 + 16 + 3 + frameLen
	minPacketSize    = 1200
)

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("quicwire: invalid config")

// Config configures a Wire. Only Credentials is required.
type Config struct {
	// Credentials are this party's job credentials (rendezvous). They
	// authenticate both ends of every connection: a peer whose
	// certificate does not chain to the same job CA, or names another job,
	// is refused (and counted in Stats.AuthRefusals).
	Credentials *rendezvous.Credentials

	// PacketSize is the QUIC packet size (UDP payload), from 1200 to 1452
	// bytes. 0 means DefaultPacketSize (1452). The path must carry it, or
	// handshakes time out.
	PacketSize int
	// MaxPayload is the largest datagram the wire carries. 0 means the
	// largest that fits a DATAGRAM frame in one packet of PacketSize
	// (PacketSize - 42: 1410 by default); larger values are an error.
	MaxPayload int
	// BatchSize is the ideal batch length reported to callers (0:
	// wire.DefaultBatchSize).
	BatchSize int

	// HandshakeTimeout bounds one connection attempt (0:
	// DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection whose peer stays silent that long
	// (0: DefaultIdleTimeout). KeepAlive is the interval of QUIC PINGs on
	// an otherwise idle connection (0: IdleTimeout/3; negative: none, so
	// idle connections close after IdleTimeout and are redialed on the
	// next write).
	IdleTimeout, KeepAlive time.Duration

	// SendQueue is the number of datagrams queued per peer (0:
	// DefaultSendQueue). While a connection is being set up, datagrams
	// beyond it are dropped; once it is established, WriteBatch waits up
	// to WriteTimeout for room.
	SendQueue int
	// ReceiveQueue is the number of received QUIC datagrams (each holds
	// one or more of ours) waiting for ReadBatch, over all connections
	// (0: DefaultReceiveQueue). When it is full, quic-go's own
	// per-connection queue (128 datagrams) fills and then drops.
	ReceiveQueue int
	// WriteTimeout is how long WriteBatch waits while an established
	// connection's send queue is full and makes no progress, before it
	// drops the datagram (0: DefaultWriteTimeout).
	WriteTimeout time.Duration

	// StatelessResetKey, if set, lets peers of a previous process on the
	// same address learn at once that their connection is gone (RFC 9000
	// §10.3). nil derives it from the credentials' private key and the
	// local address, so a process restarted with the same credentials
	// file resets its predecessor's connections.
	StatelessResetKey *quic.StatelessResetKey

	// Logger receives refused peers (Warn) and connection events
	// (Debug). nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Credentials == nil {
		return fmt.Errorf("%w: Credentials is required", ErrConfig)
	}
	if c.PacketSize == 0 {
		c.PacketSize = DefaultPacketSize
	}
	if c.PacketSize < minPacketSize || c.PacketSize > DefaultPacketSize {
		return fmt.Errorf("%w: PacketSize %d outside [%d, %d]", ErrConfig, c.PacketSize, minPacketSize, DefaultPacketSize)
	}
	limit := c.PacketSize - datagramOverhead
	if c.MaxPayload == 0 {
		c.MaxPayload = limit
	}
	if c.MaxPayload < 1 || c.MaxPayload > limit {
		return fmt.Errorf("%w: MaxPayload %d outside [1, %d] for PacketSize %d", ErrConfig, c.MaxPayload, limit, c.PacketSize)
	}
	if c.BatchSize == 0 {
		c.BatchSize = wire.DefaultBatchSize
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = c.IdleTimeout / 3
	}
	if c.KeepAlive < 0 {
		c.KeepAlive = 0
	}
	if c.SendQueue == 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.ReceiveQueue == 0 {
		c.ReceiveQueue = DefaultReceiveQueue
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.BatchSize < 1 || c.SendQueue < 1 || c.ReceiveQueue < 1 ||
		c.HandshakeTimeout < 0 || c.IdleTimeout < 0 || c.WriteTimeout < 0 {
		return fmt.Errorf("%w: sizes and timeouts must be positive", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// quicConfig is the quic-go configuration of every connection.
func (c *Config) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:    c.HandshakeTimeout,
		MaxIdleTimeout:          c.IdleTimeout,
		KeepAlivePeriod:         c.KeepAlive,
		InitialPacketSize:       uint16(c.PacketSize),
		DisablePathMTUDiscovery: true,
		EnableDatagrams:         true,
		// Datagrams only: the peer may open no streams.
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	}
}

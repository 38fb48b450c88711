package wire

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Message is one datagram in a batch.
type Message struct {
	// Buf holds the datagram.
	//
	// WriteBatch: the datagram to send; the wire does not retain it after
	// WriteBatch returns.
	//
	// ReadBatch: set by the wire to a slice of a wire-owned receive buffer
	// holding the datagram, valid until the next ReadBatch call on the same
	// wire. Its capacity equals its length, so appending to it never writes
	// into a neighbouring datagram.
	Buf []byte

	// Addr is the destination on WriteBatch and the source on ReadBatch.
	Addr netip.AddrPort
}

// Wire moves batches of datagrams.
//
// One goroutine calls ReadBatch at a time; WriteBatch may be called
// concurrently from several goroutines, and concurrently with ReadBatch.
type Wire interface {
	// WriteBatch sends msgs in order and returns how many were sent. It may
	// block while the socket buffer is full; Close unblocks it with
	// ErrClosed. A datagram longer than MaxPayload stops the batch with
	// ErrTooLarge after the datagrams before it were sent.
	WriteBatch(msgs []Message) (int, error)

	// ReadBatch blocks until at least one datagram has arrived and fills
	// msgs[:n]. Close unblocks it with ErrClosed. The Bufs it sets are valid
	// until the next ReadBatch call.
	ReadBatch(msgs []Message) (int, error)

	// LocalAddr is the address peers send to.
	LocalAddr() netip.AddrPort

	// MaxPayload is the largest datagram payload this wire carries.
	MaxPayload() int

	// BatchSize is the ideal batch length for callers of WriteBatch and
	// ReadBatch.
	BatchSize() int

	// Close releases the wire and unblocks its callers. It is idempotent.
	Close() error
}

// InputPender is implemented by wires that can tell, without blocking and
// without consuming anything, whether a datagram is waiting to be read
// (the UDP wire on Linux: SIOCINQ). The transport asks before it declares
// a retransmission timeout, so that ACKs that arrived but were not read
// yet do not count as lost. A wire that cannot tell does not implement it.
type InputPender interface {
	InputPending() bool
}

// ErrClosed is returned by operations on a closed wire.
// errors.Is(ErrClosed, net.ErrClosed) holds.
var ErrClosed = fmt.Errorf("wire: closed: %w", net.ErrClosed)

// ErrTooLarge is returned by WriteBatch for a datagram longer than the
// wire's MaxPayload.
var ErrTooLarge = errors.New("wire: datagram larger than MaxPayload")

// Limits shared by the wire implementations.
const (
	// DefaultMaxPayload fits a 1500-byte MTU under IPv6 (and so IPv4) with
	// UDP: 1500 - 40 - 8.
	DefaultMaxPayload = 1452
	// MaxUDPPayload is the largest IPv4 UDP payload: 65535 - 20 - 8.
	MaxUDPPayload = 65507
	// LoopbackMaxPayload is a MaxPayload for jobs confined to loopback
	// addresses (MTU 64 KiB): larger datagrams cost fewer system calls,
	// headers and seals per byte. Real networks keep DefaultMaxPayload.
	// The benchmarks use it by default on 127.0.0.1.
	LoopbackMaxPayload = 8192
	// DefaultBatchSize is the default ideal batch length.
	DefaultBatchSize = 128
)

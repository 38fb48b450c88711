package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Defaults for MemNetwork.
const (
	DefaultMemQueueLen = 1024
)

// MemNetwork is an in-process datagram network. Its exported fields are
// read by Listen; set them before the first Listen. The zero value is not
// usable: create it with NewMemNetwork.
type MemNetwork struct {
	// MaxPayload is each endpoint's MaxPayload (default DefaultMaxPayload).
	MaxPayload int
	// QueueLen is how many datagrams an endpoint queues before it drops
	// (default DefaultMemQueueLen). Memory per endpoint is bounded by
	// QueueLen*MaxPayload, allocated as the queue first fills.
	QueueLen int
	// BatchSize is each endpoint's BatchSize (default DefaultBatchSize).
	BatchSize int

	mu   sync.RWMutex
	ends map[netip.AddrPort]*Mem
	next uint32 // auto-assignment counter
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{ends: make(map[netip.AddrPort]*Mem)}
}

// MemStats counts events on a Mem endpoint.
type MemStats struct {
	Sent       uint64 // datagrams this endpoint handed to the network
	Received   uint64 // datagrams this endpoint returned from ReadBatch
	Dropped    uint64 // datagrams for this endpoint dropped: its queue was full
	Unroutable uint64 // datagrams this endpoint sent to no listening address
}

// Mem is one endpoint of a MemNetwork. It implements Wire.
type Mem struct {
	net        *MemNetwork
	addr       netip.AddrPort
	maxPayload int
	batchSize  int

	mu     sync.Mutex
	slots  []memSlot // ring
	r      int       // index of the oldest queued datagram
	n      int       // queued datagrams
	held   int       // slots before r still lent to the last ReadBatch
	closed bool

	ready chan struct{} // 1-buffered: data may be queued
	done  chan struct{} // closed by Close

	sent, received, dropped, unroutable atomic.Uint64
}

type memSlot struct {
	buf  []byte
	from netip.AddrPort
}

var _ Wire = (*Mem)(nil)

var errAddrInUse = errors.New("wire: address already in use")

// Listen creates an endpoint at addr. A zero addr gets a fresh
// 127.x.y.z:port address; a zero port gets a fresh port.
func (nw *MemNetwork) Listen(addr netip.AddrPort) (*Mem, error) {
	maxPayload, queueLen, batch := nw.MaxPayload, nw.QueueLen, nw.BatchSize
	if maxPayload == 0 {
		maxPayload = DefaultMaxPayload
	}
	if queueLen == 0 {
		queueLen = DefaultMemQueueLen
	}
	if batch == 0 {
		batch = DefaultBatchSize
	}
	if maxPayload < 0 || queueLen < 1 || batch < 1 {
		return nil, fmt.Errorf("wire: MemNetwork: bad MaxPayload %d, QueueLen %d or BatchSize %d", maxPayload, queueLen, batch)
	}
	if addr.IsValid() && !addr.Addr().IsValid() {
		return nil, errInvalidAddr
	}
	m := &Mem{
		net:        nw,
		maxPayload: maxPayload,
		batchSize:  batch,
		slots:      make([]memSlot, queueLen),
		ready:      make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	switch {
	case addr.Port() != 0:
		if _, ok := nw.ends[addr]; ok {
			return nil, fmt.Errorf("%w: %v", errAddrInUse, addr)
		}
	case addr.Addr().IsValid():
		addr = nw.freshLocked(addr.Addr())
	default:
		addr = nw.freshLocked(netip.Addr{})
	}
	m.addr = addr
	nw.ends[addr] = m
	return m, nil
}

// freshLocked returns an unused address, on ip if it is valid.
func (nw *MemNetwork) freshLocked(ip netip.Addr) netip.AddrPort {
	for {
		c := nw.next
		nw.next++
		a := ip
		if !a.IsValid() {
			// 127.x.y.1 with x.y from the counter: unique per network.
			hi := c / 50000
			a = netip.AddrFrom4([4]byte{127, byte(hi >> 8), byte(hi), 1})
		}
		ap := netip.AddrPortFrom(a, uint16(10000+c%50000))
		if _, ok := nw.ends[ap]; !ok {
			return ap
		}
	}
}

func (nw *MemNetwork) lookup(a netip.AddrPort) *Mem {
	nw.mu.RLock()
	m := nw.ends[a]
	nw.mu.RUnlock()
	return m
}

// LocalAddr returns the endpoint's address.
func (m *Mem) LocalAddr() netip.AddrPort { return m.addr }

// MaxPayload returns the largest datagram the endpoint carries.
func (m *Mem) MaxPayload() int { return m.maxPayload }

// BatchSize returns the ideal batch length.
func (m *Mem) BatchSize() int { return m.batchSize }

// Stats returns the endpoint's counters.
func (m *Mem) Stats() MemStats {
	return MemStats{
		Sent:       m.sent.Load(),
		Received:   m.received.Load(),
		Dropped:    m.dropped.Load(),
		Unroutable: m.unroutable.Load(),
	}
}

// WriteBatch copies each datagram into its destination's queue. A full
// queue drops the datagram (counted on the destination); an unknown
// destination drops it silently (counted as Unroutable here). It never
// blocks.
func (m *Mem) WriteBatch(msgs []Message) (int, error) {
	var dst *Mem
	for i := range msgs {
		msg := &msgs[i]
		if len(msg.Buf) > m.maxPayload {
			return i, ErrTooLarge
		}
		if m.isClosed() {
			return i, ErrClosed
		}
		if dst == nil || dst.addr != msg.Addr {
			dst = m.net.lookup(msg.Addr)
		}
		m.sent.Add(1)
		if dst == nil || !dst.deliver(msg.Buf, m.addr) {
			if dst == nil {
				m.unroutable.Add(1)
			}
			dst = nil
		}
	}
	return len(msgs), nil
}

func (m *Mem) isClosed() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// deliver queues a copy of b from src; it reports false if m is closed.
func (m *Mem) deliver(b []byte, src netip.AddrPort) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	if m.n+m.held >= len(m.slots) {
		m.mu.Unlock()
		m.dropped.Add(1)
		return true
	}
	s := &m.slots[(m.r+m.n)%len(m.slots)]
	if s.buf == nil {
		s.buf = make([]byte, 0, m.maxPayload)
	}
	s.buf = append(s.buf[:0], b...)
	s.from = src
	m.n++
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return true
}

// ReadBatch returns queued datagrams, blocking until there is one or the
// endpoint closes. The Bufs stay valid until the next ReadBatch.
func (m *Mem) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return 0, ErrClosed
		}
		m.held = 0 // the previous batch's Bufs are no longer valid
		if m.n > 0 {
			k := min(m.n, len(msgs))
			for i := 0; i < k; i++ {
				s := &m.slots[m.r]
				msgs[i] = Message{Buf: s.buf[:len(s.buf):len(s.buf)], Addr: s.from}
				m.r = (m.r + 1) % len(m.slots)
			}
			m.n -= k
			m.held = k
			m.mu.Unlock()
			m.received.Add(uint64(k))
			return k, nil
		}
		m.mu.Unlock()
		select {
		case <-m.ready:
		case <-m.done:
		}
	}
}

// Close removes the endpoint from the network and unblocks ReadBatch.
func (m *Mem) Close() error {
	m.net.mu.Lock()
	if m.net.ends[m.addr] == m {
		delete(m.net.ends, m.addr)
	}
	m.net.mu.Unlock()
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
	m.slots = nil // release queued datagrams
	m.n, m.held = 0, 0
	m.mu.Unlock()
	return nil
}

package quicwire

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sealring/sealring/transport/wire"
)

// sendChunk is how many queued datagrams the sender hands to quic-go
// before it frees their slots: quic-go's own datagram queue length.
const sendChunk = 32

// Dial backoff after a failed attempt, doubling per consecutive failure.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

var errNoDatagrams = errors.New("quicwire: peer does not support QUIC datagrams")

// qconn is a live connection to a peer.
type qconn struct {
	c        *quic.Conn
	accepted bool   // dialed by the peer
	seq      uint64 // adoption order among the peer's connections
	peerCert []byte // the peer's leaf certificate (DER)
}

// peer is one remote address: its connection, and the queue of datagrams
// waiting for it, drained by the peer's sender goroutine.
type peer struct {
	w    *Wire
	addr netip.AddrPort

	mu         sync.Mutex
	slots      [][]byte // ring of queued datagrams; buffers allocated on first use
	head, n    int
	conns      []*qconn // live connections, each with its receiver
	cur        *qconn   // the best of conns, which sends; nil: dial on the next datagram
	seq        uint64
	dialing    bool
	cancelDial context.CancelFunc
	retryAt    time.Time // after a failed dial, datagrams are dropped until then
	backoff    time.Duration
	closed     bool
	waiters    int           // writers waiting for room
	room       chan struct{} // closed when slots are freed and waiters > 0

	wake chan struct{} // cap 1: datagrams queued or connection changed

	scratch []byte // the sender's buffer for coalescing small datagrams
}

func newPeer(w *Wire, addr netip.AddrPort) *peer {
	return &peer{
		w:     w,
		addr:  addr,
		slots: make([][]byte, w.cfg.SendQueue),
		room:  make(chan struct{}),
		wake:  make(chan struct{}, 1),
	}
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// roomLocked wakes the writers waiting for room.
func (p *peer) roomLocked() {
	if p.waiters > 0 {
		close(p.room)
		p.room = make(chan struct{})
		p.waiters = 0
	}
}

// enqueue copies msgs into the peer's queue. It returns how many it took
// (queued or dropped) and ErrClosed if the wire closed while it waited.
func (p *peer) enqueue(msgs []wire.Message) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	q := len(p.slots)
	i := 0
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return i, wire.ErrClosed
		}
		if p.cur == nil && !p.dialing && !p.retryAt.IsZero() && time.Now().Before(p.retryAt) {
			// The last attempt failed a moment ago: the peer is unreachable.
			p.mu.Unlock()
			p.w.st.sendDrops.Add(uint64(len(msgs) - i))
			return len(msgs), nil
		}
		for i < len(msgs) && p.n < q {
			k := p.head + p.n
			if k >= q {
				k -= q
			}
			b := p.slots[k]
			if b == nil {
				b = make([]byte, 0, frameLen+p.w.maxPayload)
			}
			n := len(msgs[i].Buf)
			p.slots[k] = append(append(b[:0], byte(n>>8), byte(n)), msgs[i].Buf...)
			p.n++
			i++
		}
		if i == len(msgs) {
			p.mu.Unlock()
			p.signal()
			return i, nil
		}
		// Full.
		if p.cur == nil {
			// Handshake in progress: drop rather than hold the caller (who
			// may be sending to other peers) for a whole handshake.
			p.mu.Unlock()
			p.signal()
			p.w.st.sendDrops.Add(uint64(len(msgs) - i))
			return len(msgs), nil
		}
		p.waiters++
		room := p.room
		p.mu.Unlock()
		p.signal()
		if timer == nil {
			timer = time.NewTimer(p.w.cfg.WriteTimeout)
		} else {
			timer.Reset(p.w.cfg.WriteTimeout)
		}
		select {
		case <-room:
			timer.Stop() // Go ≥ 1.23: no stale tick after Stop/Reset
		case <-p.w.done:
			return i, wire.ErrClosed
		case <-timer.C:
			// No progress for WriteTimeout: the connection is stalled.
			p.w.st.sendDrops.Add(uint64(len(msgs) - i))
			return len(msgs), nil
		}
	}
}

// run is the peer's sender goroutine: it dials when datagrams wait and
// there is no connection, and hands queued datagrams to quic-go, whose
// SendDatagram blocks while its own queue (32 frames) is full.
func (p *peer) run() {
	defer p.w.wg.Done()
	for {
		select {
		case <-p.wake:
		case <-p.w.done:
			return
		}
		p.drain()
	}
}

func (p *peer) drain() {
	q := len(p.slots)
	for {
		p.mu.Lock()
		if p.closed || p.n == 0 {
			p.mu.Unlock()
			return
		}
		qc := p.cur
		if qc == nil {
			if !p.retryAt.IsZero() && time.Now().Before(p.retryAt) {
				p.dropQueuedLocked()
				p.mu.Unlock()
				return
			}
			ctx, cancel := context.WithTimeout(p.w.ctx, p.w.cfg.HandshakeTimeout)
			p.dialing, p.cancelDial = true, cancel
			p.mu.Unlock()
			c, err := p.w.dial(ctx, p.addr)
			cancel()
			p.dialDone(c, err)
			continue
		}
		// A chunk at a time, so that blocked writers get room as soon as
		// quic-go takes some.
		start, k := p.head, min(p.n, sendChunk)
		p.mu.Unlock()

		used, err := p.send(qc, start, k)

		p.mu.Lock()
		p.head += used
		if p.head >= q {
			p.head -= q
		}
		p.n -= used
		p.roomLocked()
		p.mu.Unlock()
		if err != nil {
			p.lost(qc, err)
		}
	}
}

// send hands slots [start, start+k) to quic-go and returns how many it
// consumed; on a connection error, the datagrams that failed are consumed
// (lost) and the error returned. Consecutive small datagrams share one
// QUIC datagram (each is framed by its 2-byte length), so that a burst of
// small ones costs quic-go one frame, not one each.
func (p *peer) send(qc *qconn, start, k int) (int, error) {
	q := len(p.slots)
	limit := p.w.frameLimit
	var sent uint64
	defer func() { p.w.st.sent.Add(sent) }()
	slot := func(j int) []byte {
		idx := start + j
		if idx >= q {
			idx -= q
		}
		return p.slots[idx]
	}
	for j := 0; j < k; {
		d := slot(j)
		cnt := 1
		if j+1 < k && len(d)+len(slot(j+1)) <= limit {
			d = append(p.scratch[:0], d...)
			for j+cnt < k && len(d)+len(slot(j+cnt)) <= limit {
				d = append(d, slot(j+cnt)...)
				cnt++
			}
			p.scratch = d
		}
		err := qc.c.SendDatagram(d)
		j += cnt
		if err == nil {
			sent += uint64(cnt)
			continue
		}
		if _, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
			p.w.st.tooLarge.Add(uint64(cnt))
			continue
		}
		p.w.st.sendDrops.Add(uint64(cnt))
		return j, err
	}
	return k, nil
}

// dropQueuedLocked discards the queue (peer unreachable).
func (p *peer) dropQueuedLocked() {
	p.w.st.sendDrops.Add(uint64(p.n))
	p.head, p.n = 0, 0
	p.roomLocked()
}

func (w *Wire) dial(ctx context.Context, addr netip.AddrPort) (*quic.Conn, error) {
	w.st.dials.Add(1)
	c, err := w.tr.Dial(ctx, net.UDPAddrFromAddrPort(addr), w.clientTLS, w.qconf)
	if err != nil {
		return nil, err
	}
	if !c.ConnectionState().SupportsDatagrams.Remote {
		c.CloseWithError(errCodeNoDgram, "sealring: datagrams required")
		return nil, errNoDatagrams
	}
	return c, nil
}

// dialDone settles the outcome of the sender's dial.
func (p *peer) dialDone(c *quic.Conn, err error) {
	w := p.w
	p.mu.Lock()
	p.dialing, p.cancelDial = false, nil
	if err != nil {
		if p.closed || p.cur != nil {
			// Cancelled: the wire closed, or the peer's own connection won.
			p.mu.Unlock()
			return
		}
		w.st.dialFailures.Add(1)
		if isRemoteTLSAlert(err) {
			w.st.refusedByPeer.Add(1)
		}
		p.backoff = min(max(2*p.backoff, minBackoff), maxBackoff)
		p.retryAt = time.Now().Add(p.backoff)
		p.dropQueuedLocked()
		p.mu.Unlock()
		if isRemoteTLSAlert(err) {
			w.log.Warn("quicwire: peer refused our certificate", "local", w.local, "peer", p.addr, "err", err)
		} else {
			w.log.Debug("quicwire: dial failed", "local", w.local, "peer", p.addr, "err", err)
		}
		return
	}
	p.backoff, p.retryAt = 0, time.Time{}
	closeList := p.addLocked(c, false)
	p.mu.Unlock()
	w.log.Debug("quicwire: dialed", "local", w.local, "peer", p.addr, "closing", len(closeList))
	p.closeConns(closeList)
}

// accepted settles a connection the peer dialed.
func (p *peer) accepted(c *quic.Conn) {
	p.mu.Lock()
	closeList := p.addLocked(c, true)
	if p.dialing && p.cur != nil && p.cur.accepted && !p.winsTie(p.cur.peerCert) {
		// Ours would lose the tie-break to the peer's: give up.
		p.cancelDial()
	}
	p.mu.Unlock()
	p.signal()
	p.w.log.Debug("quicwire: accepted", "local", p.w.local, "peer", p.addr, "closing", len(closeList))
	p.closeConns(closeList)
}

// winsTie reports whether connections this end dials are preferred to
// those the peer dials: both ends compute the same answer from the two
// leaf certificates (the end with the lower one wins), falling back to
// the addresses when both present the same certificate.
func (p *peer) winsTie(peerCert []byte) bool {
	if c := bytes.Compare(p.w.localCert, peerCert); c != 0 {
		return c < 0
	}
	return p.w.local.Compare(p.addr) < 0
}

// better reports whether x is preferred to y, in an order both ends of the
// pair agree on: a connection to a newer peer identity (certificate) wins
// (the peer restarted); then one dialed by the tie-break winner; then the
// newer of two dialed by the same end (its dialer only dials again after
// losing the older one).
func (p *peer) better(x, y *qconn) bool {
	if !bytes.Equal(x.peerCert, y.peerCert) {
		return x.seq > y.seq
	}
	win := p.winsTie(x.peerCert)
	xw, yw := x.accepted != win, y.accepted != win // dialed by the winner
	if xw != yw {
		return xw
	}
	return x.seq > y.seq
}

// addLocked adds a live connection, starts its receiver, elects the best
// connection, and returns the connections to close: those this end dialed
// that lost, those superseded by a newer one from the same dialer, and
// those to an older identity of the peer. A losing connection the peer
// dialed is left open (and still received from) for the peer to close
// once it has the winner too, so no end closes a connection the other may
// still be sending on.
func (p *peer) addLocked(c *quic.Conn, accepted bool) []*quic.Conn {
	if p.closed {
		return []*quic.Conn{c}
	}
	p.seq++
	qc := &qconn{c: c, accepted: accepted, seq: p.seq}
	if certs := c.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		qc.peerCert = certs[0].Raw
	}
	p.conns = append(p.conns, qc)
	p.w.wg.Add(1)
	go p.recv(qc)
	p.electLocked()
	var closeList []*quic.Conn
	keep := p.conns[:0]
	for _, x := range p.conns {
		switch {
		case x == p.cur:
		case bytes.Equal(x.peerCert, p.cur.peerCert) && x.accepted && !p.cur.accepted:
			// The peer's losing dial: the peer closes it.
		default:
			if bytes.Equal(x.peerCert, p.cur.peerCert) && x.accepted != p.cur.accepted {
				p.w.st.duplicates.Add(1)
			} else {
				p.w.st.replaced.Add(1)
			}
			closeList = append(closeList, x.c)
			continue
		}
		keep = append(keep, x)
	}
	clear(p.conns[len(keep):])
	p.conns = keep
	return closeList
}

func (p *peer) electLocked() {
	p.cur = nil
	for _, x := range p.conns {
		if p.cur == nil || p.better(x, p.cur) {
			p.cur = x
		}
	}
}

func (p *peer) closeConns(cs []*quic.Conn) {
	for _, c := range cs {
		c.CloseWithError(errCodeDuplicate, "sealring: superseded connection")
	}
}

// recv moves qc's datagrams to the wire's receive queue until qc closes.
func (p *peer) recv(qc *qconn) {
	w := p.w
	defer w.wg.Done()
	for {
		b, err := qc.c.ReceiveDatagram(w.ctx)
		if err != nil {
			p.lost(qc, err)
			return
		}
		select {
		case w.rx <- rxItem{buf: b, addr: p.addr}:
		case <-w.done:
			return
		}
	}
}

// lost forgets a connection that closed; if it was sending, the best
// remaining one takes over, or the next datagram redials.
func (p *peer) lost(qc *qconn, err error) {
	p.mu.Lock()
	// Once the wire is closing, shutdown closes the connections itself
	// (with a CONNECTION_CLOSE the peer hears); leave them there.
	if p.closed || p.w.closed.Load() {
		p.mu.Unlock()
		return
	}
	i := slices.Index(p.conns, qc)
	if i < 0 {
		p.mu.Unlock()
		return
	}
	p.conns = slices.Delete(p.conns, i, i+1)
	wasCur := p.cur == qc
	if wasCur {
		p.electLocked()
	}
	pending := p.n > 0
	p.mu.Unlock()
	p.w.st.lost.Add(1)
	p.w.log.Debug("quicwire: connection lost", "local", p.w.local, "peer", p.addr, "sending", wasCur, "err", err)
	if wasCur && pending {
		p.signal()
	}
}

// shutdown marks the peer closed and returns its connections to close.
func (p *peer) shutdown() []*quic.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.cancelDial != nil {
		p.cancelDial()
	}
	p.roomLocked()
	var cs []*quic.Conn
	for _, x := range p.conns {
		cs = append(cs, x.c)
	}
	p.conns, p.cur = nil, nil
	return cs
}

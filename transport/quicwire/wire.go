package quicwire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/sealring/sealring/transport/wire"
)

// Wire is a wire.Wire over QUIC datagrams (RFC 9221): one UDP socket, one
// QUIC connection per peer, mutually authenticated with the job's
// credentials. See the package documentation for its behaviour.
type Wire struct {
	cfg        Config
	local      netip.AddrPort
	udp        *net.UDPConn
	tr         *quic.Transport
	ln         *quic.Listener
	qconf      *quic.Config
	clientTLS  *tls.Config
	localCert  []byte // our leaf, DER: the tie-break key
	maxPayload int
	frameLimit int // largest QUIC datagram sent: maxPayload + frameLen
	log        *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	closed atomic.Bool
	once   sync.Once
	wg     sync.WaitGroup // accept loop, senders, receivers

	mu    sync.RWMutex
	peers map[netip.AddrPort]*peer

	rx chan rxItem
	// pend is what ReadBatch has not yet returned of the last QUIC
	// datagram it took from rx (only ReadBatch's goroutine uses it).
	pend     []byte
	pendAddr netip.AddrPort

	st stats
}

type rxItem struct {
	buf  []byte
	addr netip.AddrPort
}

// Listen opens a QUIC wire on laddr (port 0 picks a free port): one UDP
// socket that accepts connections from peers of the same job and dials
// them on the first WriteBatch to their address.
func Listen(laddr netip.AddrPort, cfg Config) (*Wire, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, fmt.Errorf("quicwire: %w", err)
	}
	local := udp.LocalAddr().(*net.UDPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	w := &Wire{
		cfg:        cfg,
		local:      local,
		udp:        udp,
		qconf:      cfg.quicConfig(),
		localCert:  cfg.Credentials.Certificate().Raw,
		maxPayload: cfg.MaxPayload,
		frameLimit: cfg.MaxPayload + frameLen,
		log:        cfg.Logger,
		done:       make(chan struct{}),
		peers:      make(map[netip.AddrPort]*peer),
		rx:         make(chan rxItem, cfg.ReceiveQueue),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	key := cfg.StatelessResetKey
	if key == nil {
		if key, err = resetKey(cfg.Credentials, local); err != nil {
			udp.Close()
			return nil, fmt.Errorf("quicwire: %w", err)
		}
	}
	w.tr = &quic.Transport{Conn: udp, StatelessResetKey: key, ConnectionIDLength: 4}
	serverTLS, clientTLS := w.tlsConfigs(cfg.Credentials)
	w.clientTLS = clientTLS
	w.ln, err = w.tr.Listen(serverTLS, w.qconf)
	if err != nil {
		w.tr.Close()
		udp.Close()
		return nil, fmt.Errorf("quicwire: %w", err)
	}
	w.wg.Add(1)
	go w.acceptLoop()
	return w, nil
}

// LocalAddr is the address peers send to.
func (w *Wire) LocalAddr() netip.AddrPort { return w.local }

// MaxPayload is the largest datagram carried (Config.MaxPayload).
func (w *Wire) MaxPayload() int { return w.maxPayload }

// BatchSize is Config.BatchSize.
func (w *Wire) BatchSize() int { return w.cfg.BatchSize }

// WriteBatch queues msgs for their peers' connections, dialing a peer
// without one, and returns len(msgs) unless a datagram is longer than
// MaxPayload (ErrTooLarge, after the ones before it) or the wire is
// closed (ErrClosed). It blocks only while an established connection's
// send queue is full, at most Config.WriteTimeout without progress;
// datagrams it cannot queue (connection not yet up, or stalled) are
// dropped, as UDP drops them, and counted in Stats.SendDrops.
func (w *Wire) WriteBatch(msgs []wire.Message) (int, error) {
	if w.closed.Load() {
		return 0, wire.ErrClosed
	}
	for i := 0; i < len(msgs); {
		if len(msgs[i].Buf) > w.maxPayload {
			return i, wire.ErrTooLarge
		}
		// A run of datagrams to one peer, up to the next oversized one.
		addr := normalize(msgs[i].Addr)
		j := i + 1
		for j < len(msgs) && len(msgs[j].Buf) <= w.maxPayload && normalize(msgs[j].Addr) == addr {
			j++
		}
		if addr == w.local {
			w.deliverLocal(msgs[i:j])
			i = j
			continue
		}
		p, err := w.peer(addr)
		if err != nil {
			return i, err
		}
		n, err := p.enqueue(msgs[i:j])
		if err != nil {
			return i + n, err
		}
		i = j
	}
	return len(msgs), nil
}

// deliverLocal hands datagrams addressed to this wire straight to its
// receive queue (copied and framed; dropped when the queue is full).
func (w *Wire) deliverLocal(msgs []wire.Message) {
	for _, m := range msgs {
		n := len(m.Buf)
		b := append(append(make([]byte, 0, frameLen+n), byte(n>>8), byte(n)), m.Buf...)
		select {
		case w.rx <- rxItem{buf: b, addr: w.local}:
			w.st.sent.Add(1)
		default:
			w.st.sendDrops.Add(1)
		}
	}
}

// frameLen is the length prefix of each datagram inside a QUIC datagram.
const frameLen = 2

// ReadBatch blocks until a datagram has arrived on any connection and
// fills msgs[:n] with what is queued. Each Buf is a slice (cap == len) of
// the buffer quic-go handed over, never reused by the wire.
func (w *Wire) ReadBatch(msgs []wire.Message) (int, error) {
	if w.closed.Load() {
		return 0, wire.ErrClosed
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	n := w.unpack(msgs, 0)
	for n == 0 {
		select {
		case it := <-w.rx:
			w.pend, w.pendAddr = it.buf, it.addr
		case <-w.done:
			return 0, wire.ErrClosed
		}
		n = w.unpack(msgs, 0)
	}
	for n < len(msgs) {
		select {
		case it := <-w.rx:
			w.pend, w.pendAddr = it.buf, it.addr
			n = w.unpack(msgs, n)
			continue
		default:
		}
		break
	}
	w.st.received.Add(uint64(n))
	return n, nil
}

// unpack moves datagrams from w.pend into msgs[n:] and returns the new n.
func (w *Wire) unpack(msgs []wire.Message, n int) int {
	b := w.pend
	for n < len(msgs) && len(b) > 0 {
		if len(b) < frameLen || frameLen+(int(b[0])<<8|int(b[1])) > len(b) {
			w.st.malformed.Add(1)
			b = nil
			break
		}
		l := frameLen + (int(b[0])<<8 | int(b[1]))
		msgs[n] = wire.Message{Buf: b[frameLen:l:l], Addr: w.pendAddr}
		n++
		b = b[l:]
	}
	w.pend = b
	return n
}

// Close closes every connection (peers get a CONNECTION_CLOSE), the
// listener and the socket, unblocks ReadBatch and WriteBatch with
// ErrClosed, and waits for the wire's goroutines. It is idempotent.
func (w *Wire) Close() error {
	w.once.Do(func() {
		w.closed.Store(true)
		w.cancel()
		close(w.done)
		w.ln.Close()
		w.mu.RLock()
		peers := make([]*peer, 0, len(w.peers))
		for _, p := range w.peers {
			peers = append(peers, p)
		}
		w.mu.RUnlock()
		// Connections first, so that peers hear CONNECTION_CLOSE before the
		// transport stops; in parallel, as each waits for its run loop.
		var cw sync.WaitGroup
		for _, p := range peers {
			for _, c := range p.shutdown() {
				cw.Add(1)
				go func() {
					defer cw.Done()
					c.CloseWithError(errCodeClosed, "sealring: wire closed")
				}()
			}
		}
		cw.Wait()
		w.wg.Wait()
		w.tr.Close()
		w.udp.Close()
	})
	return nil
}

// Application error codes of CONNECTION_CLOSE.
const (
	errCodeClosed    quic.ApplicationErrorCode = 0 // the wire closed
	errCodeDuplicate quic.ApplicationErrorCode = 1 // superseded (tie-break, newer connection)
	errCodeNoDgram   quic.ApplicationErrorCode = 3 // peer without datagram support
)

// peer returns the peer entry of addr, creating it (and its sender
// goroutine) on first use.
func (w *Wire) peer(addr netip.AddrPort) (*peer, error) {
	w.mu.RLock()
	p := w.peers[addr]
	w.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return nil, wire.ErrClosed
	}
	if p = w.peers[addr]; p == nil {
		p = newPeer(w, addr)
		w.peers[addr] = p
		w.wg.Add(1)
		go p.run()
	}
	return p, nil
}

func (w *Wire) acceptLoop() {
	defer w.wg.Done()
	for {
		c, err := w.ln.Accept(w.ctx)
		if err != nil {
			return
		}
		w.st.accepted.Add(1)
		if !c.ConnectionState().SupportsDatagrams.Remote {
			c.CloseWithError(errCodeNoDgram, "sealring: datagrams required")
			continue
		}
		ua, ok := c.RemoteAddr().(*net.UDPAddr)
		if !ok {
			c.CloseWithError(errCodeClosed, "sealring: unexpected address")
			continue
		}
		p, err := w.peer(normalize(ua.AddrPort()))
		if err != nil { // closed
			c.CloseWithError(errCodeClosed, "sealring: wire closed")
			return
		}
		p.accepted(c)
	}
}

func normalize(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Stats counts a wire's events since Listen.
type Stats struct {
	// Sent and Received count datagrams handed to quic-go (or looped
	// back locally) and returned by ReadBatch.
	Sent, Received uint64
	// SendDrops counts datagrams dropped before quic-go: no connection
	// (handshake in progress or failed), send queue stalled, or the
	// connection closed under them.
	SendDrops uint64
	// Malformed counts QUIC datagrams whose framing was broken (never
	// from a sealring peer).
	Malformed uint64
	// TooLarge counts datagrams quic-go refused as larger than the
	// connection's DATAGRAM limit (only with a peer that advertises a
	// smaller limit than MaxPayload).
	TooLarge uint64
	// Dials, DialFailures and Accepted count connection attempts made,
	// failed, and accepted from peers.
	Dials, DialFailures, Accepted uint64
	// Duplicates counts connections this end closed after the tie-break
	// between two peers that dialed each other at once, Replaced those it
	// closed as superseded (a newer connection from the same dialer, or
	// a restarted peer), and Lost those that closed under it (peer
	// closed, idle timeout, stateless reset).
	Duplicates, Replaced, Lost uint64
	// AuthRefusals counts peer certificates this end refused (another
	// job, another CA, no certificate); RefusedByPeer counts handshakes
	// the peer aborted with a TLS alert (it refused ours).
	AuthRefusals, RefusedByPeer uint64
	// Conns is the number of live connections now (one per peer once
	// simultaneous dials have settled).
	Conns int
}

type stats struct {
	sent, received, sendDrops, tooLarge, malformed atomic.Uint64
	dials, dialFailures, accepted                  atomic.Uint64
	duplicates, replaced, lost                     atomic.Uint64
	authRefusals, refusedByPeer                    atomic.Uint64
}

// Stats returns the wire's counters.
func (w *Wire) Stats() Stats {
	s := Stats{
		Sent: w.st.sent.Load(), Received: w.st.received.Load(),
		SendDrops: w.st.sendDrops.Load(), TooLarge: w.st.tooLarge.Load(), Malformed: w.st.malformed.Load(),
		Dials: w.st.dials.Load(), DialFailures: w.st.dialFailures.Load(), Accepted: w.st.accepted.Load(),
		Duplicates: w.st.duplicates.Load(), Replaced: w.st.replaced.Load(), Lost: w.st.lost.Load(),
		AuthRefusals: w.st.authRefusals.Load(), RefusedByPeer: w.st.refusedByPeer.Load(),
	}
	w.mu.RLock()
	for _, p := range w.peers {
		p.mu.Lock()
		s.Conns += len(p.conns)
		p.mu.Unlock()
	}
	w.mu.RUnlock()
	return s
}

// isRemoteTLSAlert reports whether err is a handshake the peer aborted
// with a TLS alert.
func isRemoteTLSAlert(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError()
}

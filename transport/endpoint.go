package transport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport/wire"
)

// AnySource as Recv's peer matches a message from any peer.
const AnySource = ^uint32(0)

// Endpoint is one rank's handle on the transport: its wire, its peer table,
// the security codec, the reliability state per peer and the message
// matching queues. It is safe for concurrent use.
type Endpoint struct {
	cfg   Config
	rank  uint32
	inc   uint32
	w     wire.Wire
	codec *codec

	maxPkt    int // wire.MaxPayload
	fragEager int // payload bytes per EAGER packet
	fragData  int // payload bytes per DATA packet
	fragPut   int // inline payload bytes of a PUT packet
	batch     int // wire.BatchSize
	pollGate  busyPollGate
	pender    wire.InputPender // nil if the wire cannot tell
	// rxHeld is set while the receive goroutine holds datagrams it read
	// and has not finished handling (deferRTO).
	rxHeld atomic.Bool
	// ackHeld mirrors nHeld != 0: some peer's immediate ACK is held for a
	// goroutine the receive goroutine just woke (holdAck). A goroutine
	// about to block in the endpoint checks it without the lock.
	ackHeld  atomic.Bool
	flushCtl sync.Pool // *ctrlBatch for flushHeld
	bigRecvs int       // pending receives larger than pollMaxRecv (under mu)
	pktPool  *sync.Pool
	epoch    time.Time // monotonic base for nanotime

	// mu guards everything below, and every peer's and operation's state.
	// It is never held across a wire call or while sealing/opening.
	mu       sync.Mutex
	closed   bool
	peers    map[uint32]*peer
	peerList []*peer

	posted     seqList[*recvOp]   // unmatched receives, in post order
	unexp      seqList[*unexpMsg] // in arrival order
	unexpUsed  int
	rdvRecvs   map[uint64]*recvOp // recvID → matched rendezvous receive
	nextMsgID  uint64
	nextRecvID uint64
	nextSeq    uint64      // arrival order of messages and post order of receives
	nRefused   int         // peers holding a refused packet
	retryDue   bool        // the pool shrank while packets were refused: txLoop retries them
	completed  uint64      // operations completed (finishSend, finishRecv*)
	nHeld      int         // peers whose ACK is held (peer.ackHeld)
	watches    []*ctxWatch // contexts whose end cancels requests (watch.go)
	// settled, while a Shutdown waits, is closed (and cleared) when the
	// send side may have gone quiet (wakeShutdown: an ACK that empties a
	// ring, a completed send, a failed peer, a stopped Get) or the
	// endpoint closes. Shutdown then checks again.
	settled chan struct{}

	regions    map[uint64]*Region  // registered regions by ID
	nextRegion uint64              // region IDs are never reused
	sinks      map[uint64]*rmaSink // recvID → Put being placed here, or Get's buffer
	newSecret  func() uint64       // region secrets (tests may replace it)

	kick chan struct{}
	// timer wakes the timer goroutine at timerAt (nanotime). Both are
	// guarded by mu: armAt moves the deadline earlier with timer.Reset,
	// which wakes no goroutine, so arming an RTO or a delayed ACK on the
	// send path costs no goroutine hand-off.
	timer   *time.Timer
	timerAt int64
	// probe carries the wire's InputPending answer from the timer
	// goroutine (which asks outside mu) to deferRTO; guarded by mu.
	probe struct{ want, known, pending bool }
	done  chan struct{}
	wg    sync.WaitGroup

	st counters
}

type counters struct {
	pktsSent, bytesSent, pktsRecv, bytesRecv atomic.Uint64
	retransmits, duplicates, authFailures    atomic.Uint64
	malformed, unknownPeer, stale            atomic.Uint64
	refused, peerTimeouts, peerRestarts      atomic.Uint64
	sealFailures, placed, rtos, rtoUndos     atomic.Uint64
	rtosDeferred                             atomic.Uint64
	rmaPuts, rmaGets                         atomic.Uint64
	rmaNotFound, rmaDenied, rmaOutOfBounds   atomic.Uint64
}

// Stats are an Endpoint's counters since New.
type Stats struct {
	PacketsSent, BytesSent         uint64 // datagrams (and their bytes) handed to the wire
	PacketsReceived, BytesReceived uint64 // datagrams read from the wire
	Retransmits                    uint64 // reliable packets sent again (same sealed bytes)
	RTOs                           uint64 // retransmission timeouts (every packet in flight deemed lost, the window collapsed)
	SpuriousRTOs                   uint64 // timeouts undone: the peer reported a duplicate, the packets were late, not lost
	DeferredRTOs                   uint64 // timeouts put off (once or more) because input was waiting unread (see Config.MinRTO)
	Duplicates                     uint64 // authenticated reliable packets dropped as already received
	AuthFailures                   uint64 // datagrams that failed to open (forged, corrupted, wrong group or epoch)
	Malformed                      uint64 // authenticated packets with a bad transport header or addressed elsewhere
	UnknownPeer                    uint64 // authenticated packets from ranks not added with AddPeer
	Stale                          uint64 // packets from an older incarnation of a peer, or addressed to an older incarnation of this rank
	Refused                        uint64 // in-order packets refused because the unexpected pool was full
	PeerTimeouts, PeerRestarts     uint64
	SealFailures                   uint64 // packets that could not be sealed (wiped, never sent; see ErrSeal)
	Placed                         uint64 // rendezvous DATA packets decrypted straight into the receive buffer
	KeyCacheHits, KeyCacheMisses   uint64 // the Opener's derived-key cache
	// One-sided accesses to this endpoint's regions: Puts placed in full
	// and Gets sent in full, and accesses refused because the region did
	// not exist (or the key's secret was wrong), did not grant the access,
	// or does not contain the range. A refused access writes nothing.
	RMAPutsServed, RMAGetsServed           uint64
	RMANotFound, RMADenied, RMAOutOfBounds uint64
	// SRTT is the mean smoothed round-trip time over peers with a sample.
	SRTT time.Duration
}

// New creates an Endpoint on cfg.Wire and starts its receive and timer
// goroutines. The Endpoint owns the wire: Close closes it.
func New(cfg Config) (*Endpoint, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c, err := newCodec(&cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	maxPkt := cfg.Wire.MaxPayload()
	if maxPkt < c.overhead()+ackMaxLen+64 {
		return nil, fmt.Errorf("%w: wire MaxPayload %d too small (need at least %d)", ErrConfig, maxPkt, c.overhead()+ackMaxLen+64)
	}
	ep := &Endpoint{
		cfg:       cfg,
		rank:      cfg.Rank,
		inc:       cfg.Incarnation,
		w:         cfg.Wire,
		codec:     c,
		maxPkt:    maxPkt,
		fragEager: maxPkt - c.overhead() - eagerHdrLen - piggyLen,
		fragData:  maxPkt - c.overhead() - dataHdrLen - piggyLen,
		fragPut:   maxPkt - c.overhead() - putHdrLen - piggyLen,
		batch:     max(cfg.Wire.BatchSize(), 1),
		pktPool:   newPktPool(maxPkt),
		epoch:     time.Now(),
		peers:     make(map[uint32]*peer),
		rdvRecvs:  make(map[uint64]*recvOp),
		regions:   make(map[uint64]*Region),
		sinks:     make(map[uint64]*rmaSink),
		newSecret: randomSecret,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		timer:     time.NewTimer(time.Hour),
	}
	ep.timerAt = ep.nanotime() + int64(time.Hour)
	if g, ok := cfg.Wire.(busyPollGate); ok {
		ep.pollGate = g
	}
	if p, ok := cfg.Wire.(wire.InputPender); ok {
		ep.pender = p
	}
	ep.wg.Add(2)
	go ep.rxLoop()
	go ep.txLoop()
	return ep, nil
}

// Rank returns the endpoint's rank.
func (ep *Endpoint) Rank() uint32 { return ep.rank }

// Incarnation returns the endpoint's incarnation.
func (ep *Endpoint) Incarnation() uint32 { return ep.inc }

// LocalAddr returns the wire's address, which peers pass to AddPeer.
func (ep *Endpoint) LocalAddr() netip.AddrPort { return ep.w.LocalAddr() }

// EagerFragment is the message payload carried by one EAGER packet:
// wire.MaxPayload minus the security overhead and the EAGER header.
func (ep *Endpoint) EagerFragment() int { return ep.fragEager }

// nanotime is monotonic nanoseconds since New.
func (ep *Endpoint) nanotime() int64 { return int64(time.Since(ep.epoch)) }

// AddPeer adds rank at addr, or changes its address (a restarted peer).
// Packets are accepted only from added ranks. AddPeer sends a probe so that
// the peer learns this endpoint's incarnation.
func (ep *Endpoint) AddPeer(rank uint32, addr netip.AddrPort) error {
	if !addr.IsValid() {
		return fmt.Errorf("transport: AddPeer %d: invalid address", rank)
	}
	if rank == AnySource {
		return fmt.Errorf("transport: AddPeer: rank %d is reserved for AnySource", rank)
	}
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		return ErrClosed
	}
	p := ep.peers[rank]
	if p == nil {
		p = ep.newPeer(rank)
		ep.peers[rank] = p
		ep.peerList = append(ep.peerList, p)
	}
	p.addr = addr
	p.pingNow = true
	p.lastHeard = max(p.lastHeard, ep.nanotime())
	ep.mu.Unlock()
	ep.kickTx()
	return nil
}

// RemovePeer forgets rank: its pending operations fail with
// ErrPeerUnreachable and its packets are dropped from now on.
func (ep *Endpoint) RemovePeer(rank uint32) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		return ErrClosed
	}
	p := ep.peers[rank]
	if p == nil {
		return fmt.Errorf("%w: %d", ErrUnknownPeer, rank)
	}
	ep.failPeer(p, errPeerRemoved, true)
	ep.resetPeer(p) // its buffers, and a refused packet's count in nRefused
	p.removed = true
	delete(ep.peers, rank)
	for i, q := range ep.peerList {
		if q == p {
			ep.peerList = append(ep.peerList[:i], ep.peerList[i+1:]...)
			break
		}
	}
	return nil
}

// Shutdown closes the endpoint gracefully. It waits until the endpoint's
// send side is quiet, then closes it as Close does. Quiet means every
// reliable packet it has sent has been acknowledged, and no send, Put or
// Get still waits to start or for its peer's answer. Meanwhile the
// endpoint keeps working: it receives, acknowledges and retransmits as
// usual, and operations started meanwhile are waited for too.
//
// Call it at the end of a job instead of Close. With
// Config.LocalCompletion a send completes before its peer has
// acknowledged it, so the last messages of a rank may still be in flight
// when the rank is done: Close drops them, and their peer waits in vain
// until its PeerTimeout. Shutdown lets them arrive. Receives still
// pending (they may never be matched) are not waited for: they fail with
// ErrClosed.
//
// Shutdown returns nil if everything sent was acknowledged. A peer that
// stops answering fails after PeerTimeout, as usual, and is not waited
// for; if it still had packets of this endpoint's unacknowledged,
// Shutdown returns an error wrapping ErrPeerUnreachable (those messages
// may be lost). Packets to a peer removed (RemovePeer) or restarted
// meanwhile are not reported. If ctx is done first, Shutdown closes the
// endpoint anyway and returns an error wrapping ctx.Err(); if Close is
// called meanwhile, or was before, it returns one wrapping ErrClosed.
//
// A live peer can keep Shutdown waiting: one that never posts the receive
// of a rendezvous send, for instance, answers keepalives and so never
// times out. Give ctx a deadline.
func (ep *Endpoint) Shutdown(ctx context.Context) error {
	// A fallback re-check, in case some state change that quiets the
	// endpoint does not wake it.
	recheck := time.NewTicker(50 * time.Millisecond)
	defer recheck.Stop()
	for {
		ep.mu.Lock()
		if ep.closed {
			ep.mu.Unlock()
			ep.wg.Wait()
			return fmt.Errorf("transport: shutdown: %w", ErrClosed)
		}
		quiet, lost := ep.quietLocked()
		if quiet {
			// Quiet and closing in one critical section: no send can
			// complete locally in between and be dropped.
			err := ep.closeLocked()
			if lost != nil {
				return fmt.Errorf("transport: shutdown: messages to rank %d unacknowledged: %w", lost.rank, ErrPeerUnreachable)
			}
			return err
		}
		if ep.settled == nil {
			ep.settled = make(chan struct{})
		}
		settled := ep.settled
		ep.mu.Unlock()
		select {
		case <-settled:
		case <-recheck.C:
		case <-ctx.Done():
			ep.mu.Lock()
			if q, _ := ep.quietLocked(); q && !ep.closed {
				ep.mu.Unlock()
				continue // quiet at the last moment: the normal path
			}
			ep.mu.Unlock()
			ep.Close()
			return fmt.Errorf("transport: shutdown: sends still unacknowledged: %w", ctx.Err())
		}
	}
}

// quietLocked reports whether no live peer has anything of this
// endpoint's to send or to acknowledge, and returns a failed peer that
// still has unacknowledged packets, if any. Under ep.mu.
func (ep *Endpoint) quietLocked() (quiet bool, lost *peer) {
	for _, p := range ep.peerList {
		if p.down {
			if p.sndUna != p.sndNxt && lost == nil {
				lost = p
			}
			continue
		}
		if p.sndUna != p.sndNxt || len(p.ctrlQ) > 0 || len(p.awaitCTS) > 0 || p.msgQ.peek() != nil || p.dataQ.peek() != nil {
			return false, nil
		}
	}
	return true, lost
}

// wakeShutdown tells a waiting Shutdown to check again. Under ep.mu.
func (ep *Endpoint) wakeShutdown() {
	if ep.settled != nil {
		close(ep.settled)
		ep.settled = nil
	}
}

// Close fails every pending operation with ErrClosed, closes the wire and
// waits for the endpoint's goroutines to exit. Messages that have
// completed locally but are not yet acknowledged (Config.LocalCompletion)
// are dropped: see Shutdown. Close is idempotent.
func (ep *Endpoint) Close() error {
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		ep.wg.Wait()
		return nil
	}
	return ep.closeLocked()
}

// closeLocked closes the endpoint; it is called with ep.mu held and
// releases it.
func (ep *Endpoint) closeLocked() error {
	ep.closed = true
	ep.wakeShutdown()
	// A final cumulative ACK to every peer: a message this endpoint has
	// received may have completed a Recv whose ACK the receive goroutine
	// had not written yet; without it the sender would wait for a peer
	// that is gone until its PeerTimeout.
	var final ctrlBatch
	for _, p := range ep.peerList {
		if p.incKnown {
			p.ackNow = true
			p.pingNow = false
			ep.buildAck(p, &final)
		}
	}
	for _, p := range ep.peerList {
		ep.failPeer(p, ErrClosed, true)
	}
	for r := ep.posted.head; r != nil; {
		next := r.next
		ep.posted.remove(r)
		ep.finishRecv(r, ErrClosed)
		r = next
	}
	for u := ep.unexp.head; u != nil; {
		next := u.next
		ep.dropUnexp(u)
		u = next
	}
	ep.dropWatches()
	ep.mu.Unlock()
	ep.sendCtrl(&final)
	close(ep.done)
	err := ep.w.Close()
	ep.wg.Wait()
	return err
}

// Stats returns the endpoint's counters.
func (ep *Endpoint) Stats() Stats {
	s := Stats{
		PacketsSent:     ep.st.pktsSent.Load(),
		BytesSent:       ep.st.bytesSent.Load(),
		PacketsReceived: ep.st.pktsRecv.Load(),
		BytesReceived:   ep.st.bytesRecv.Load(),
		Retransmits:     ep.st.retransmits.Load(),
		Duplicates:      ep.st.duplicates.Load(),
		AuthFailures:    ep.st.authFailures.Load(),
		Malformed:       ep.st.malformed.Load(),
		UnknownPeer:     ep.st.unknownPeer.Load(),
		Stale:           ep.st.stale.Load(),
		Refused:         ep.st.refused.Load(),
		PeerTimeouts:    ep.st.peerTimeouts.Load(),
		Placed:          ep.st.placed.Load(),
		RTOs:            ep.st.rtos.Load(),
		DeferredRTOs:    ep.st.rtosDeferred.Load(),
		SpuriousRTOs:    ep.st.rtoUndos.Load(),
		PeerRestarts:    ep.st.peerRestarts.Load(),
		SealFailures:    ep.st.sealFailures.Load(),
		RMAPutsServed:   ep.st.rmaPuts.Load(),
		RMAGetsServed:   ep.st.rmaGets.Load(),
		RMANotFound:     ep.st.rmaNotFound.Load(),
		RMADenied:       ep.st.rmaDenied.Load(),
		RMAOutOfBounds:  ep.st.rmaOutOfBounds.Load(),
	}
	cs := ep.codec.cacheStats()
	s.KeyCacheHits, s.KeyCacheMisses = cs.Hits, cs.Misses
	ep.mu.Lock()
	var sum time.Duration
	n := 0
	for _, p := range ep.peerList {
		if p.hasRTT {
			sum += p.srtt
			n++
		}
	}
	ep.mu.Unlock()
	if n > 0 {
		s.SRTT = sum / time.Duration(n)
	}
	return s
}

// armAt makes sure the timer goroutine wakes by deadline t (nanotime).
// Under ep.mu. It only moves the timer earlier: a deadline that is cleared
// before it expires (an RTO whose ACK came) costs at most one spurious wake.
func (ep *Endpoint) armAt(t int64) {
	if t < ep.timerAt {
		ep.timerAt = t
		ep.timer.Reset(time.Duration(max(t-ep.nanotime(), 0)))
	}
}

func (ep *Endpoint) kickTx() {
	select {
	case ep.kick <- struct{}{}:
	default:
	}
}

// write hands msgs to the wire and counts them. No lock is held.
func (ep *Endpoint) write(msgs []wire.Message) {
	for len(msgs) > 0 {
		n, err := ep.w.WriteBatch(msgs)
		for i := range n {
			ep.st.bytesSent.Add(uint64(len(msgs[i].Buf)))
		}
		ep.st.pktsSent.Add(uint64(n))
		if err == nil {
			return
		}
		if errors.Is(err, wire.ErrClosed) {
			return
		}
		// A datagram the wire refused (bad address, too large) is lost
		// like any other; reliability recovers what matters.
		msgs = msgs[min(n+1, len(msgs)):]
	}
}

// ---- receive goroutine ----

// rxItem is one opened packet of a read batch.
type rxItem struct {
	src, inc uint32
	plain    []byte
	// A packet with a clear transport header (rendezvous DATA, MORE), not yet
	// opened: raw is the datagram, hdrLen and clearLen the sizes of its
	// security header and clear part. placeData opens it; if it lands in
	// the receive buffer, payload is where.
	raw              []byte
	hdrLen, clearLen int
	payload          []byte
	// open, if not 0, is 1 + the index of the packet in the batch given
	// to codec.openBatch; the item is filled from its result.
	open int
}

func (ep *Endpoint) rxLoop() {
	defer ep.wg.Done()
	msgs := make([]wire.Message, ep.batch)
	items := make([]rxItem, 0, ep.batch)
	opens := make([]secure.Message, 0, ep.batch)
	var ctl ctrlBatch
	var work []*peer
	for {
		ep.rxHeld.Store(false)
		n, err := ep.w.ReadBatch(msgs)
		ep.rxHeld.Store(err == nil)
		if err != nil {
			if errors.Is(err, wire.ErrClosed) || ep.isDone() {
				return
			}
			time.Sleep(time.Millisecond) // transient socket error
			continue
		}
		items, opens = items[:0], opens[:0]
		for i := range n {
			b := msgs[i].Buf
			ep.st.pktsRecv.Add(1)
			ep.st.bytesRecv.Add(uint64(len(b)))
			if id, hl, cl, ok := ep.codec.peekClear(b); ok {
				// Rendezvous DATA, MORE: opened under ep.mu, into the receive
				// buffer if it can be (placeData).
				items = append(items, rxItem{src: uint32(id >> 32), inc: uint32(id), raw: b, hdrLen: hl, clearLen: cl})
				continue
			}
			opens = append(opens, secure.Message{Packet: b})
			items = append(items, rxItem{open: len(opens)})
		}
		if len(opens) > 0 {
			// Open the rest together, outside ep.mu, keeping the
			// arrival order of the items.
			ep.codec.openBatch(opens)
			k := 0
			for _, it := range items {
				if it.open > 0 {
					id, plain, err := ep.codec.result(&opens[it.open-1])
					if err != nil {
						ep.st.authFailures.Add(1)
						continue
					}
					it = rxItem{src: uint32(id >> 32), inc: uint32(id), plain: plain}
				}
				items[k] = it
				k++
			}
			items = items[:k]
		}
		if len(items) == 0 {
			continue
		}
		ep.mu.Lock()
		if ep.closed {
			ep.mu.Unlock()
			return
		}
		now := ep.nanotime()
		kick := false
		completed := ep.completed
		for i := range items {
			it := &items[i]
			if it.raw != nil && !ep.placeData(it) {
				continue
			}
			if ep.handle(it, now) {
				kick = true
			}
		}
		ep.rxHeld.Store(false) // the batch is handled (deferRTO)
		idle := n < len(msgs)
		if ep.completed != completed {
			// Before the woken goroutines can run: see holdAck.
			for _, p := range ep.peerList {
				ep.holdAck(p, idle, now)
			}
		}
		if ep.completed != completed || idle && ep.ackOwed() {
			// The batch completed operations (goroutines were just made
			// runnable), or ACKs are owed and the socket is drained (a
			// goroutine an earlier batch made runnable may not have run
			// yet: this goroutine kept the processor because its read
			// found data waiting). Let those goroutines run first: they
			// are the critical path (with one processor per rank, the
			// alternative is to wait for the busy poller's yield), and
			// one that answers the peer (the pong of a ping-pong, the
			// next message of an exchange) carries the ACK on its packet,
			// so that no standalone ACK (a system call on each side) is
			// sent. The rx goroutine is runnable again right after.
			//
			// Yielding only on completions is not enough: in a blocking
			// ping-pong (Send waits for its ACK), a standalone ACK
			// completes the Send and readies its goroutine, the reply
			// arrives before that goroutine has posted its Recv, is held
			// as unexpected (no completion) and is acknowledged on its
			// own; each side's standalone ACK then causes the other's,
			// 3.4 instead of 2.06 packets per round trip (docs/
			// performance.md §7, "Session 13").
			ep.mu.Unlock()
			runtime.Gosched()
			ep.mu.Lock()
			if ep.closed {
				ep.mu.Unlock()
				return
			}
		}
		// Immediate ACKs (and ping answers) go out with this batch. A
		// batch shorter than asked for means the socket is drained: the
		// receiver is about to idle, so it acknowledges everything now
		// instead of after AckDelay (a delayed ACK only helps while more
		// packets are queued behind this batch).
		ctl.reset()
		work = work[:0]
		kick = false // decided per peer below, from what it has to send
		for _, p := range ep.peerList {
			switch {
			case p.ackHeld:
				// Held for a woken goroutine (holdAck; its deadline is
				// armed).
			case idle && p.ackIdle:
				p.ackNow = true
			case p.ackDue != 0 && !p.ackNow:
				ep.armAt(p.ackDue)
			}
			if p.ackNow || p.pingNow {
				ep.buildAck(p, &ctl)
			}
			if p.needPump {
				// Control packets only (a CTS or FIN to answer, a CANCEL
				// or REVOKE): send them from this goroutine, at once and
				// without waking the timer goroutine. Data (the window
				// opened, a CTS arrived) goes to the timer goroutine, so
				// that sealing and writing it overlaps with this
				// goroutine's receiving (measured: 20-30 % more streaming
				// bandwidth than pumping it here). Nothing queued (an ACK
				// that opened the window of an idle peer): no wake at all.
				switch p.pumpWork() {
				case workNone:
					p.needPump = false
				case workCtrl:
					p.needPump = false
					work = append(work, p)
				default:
					kick = true
				}
			}
		}
		ep.mu.Unlock()
		ep.sendCtrl(&ctl)
		for _, p := range work {
			ep.pump(p)
		}
		if kick {
			ep.kickTx()
		}
	}
}

// holdAck decides, for a batch that completed operations, whether p's
// immediate ACK (owed for an ACK-NOW packet, or because the socket drained
// with p's packets unacknowledged) waits for the goroutines the batch woke.
// With more than one processor the rx goroutine's yield does not make it
// wait for them: it resumes on another processor at once and would send
// the ACK standalone, just before a woken goroutine answers the peer with
// a packet that carries it (and the two then contend for the lock and the
// socket: 15.5 against 12.6 µs per blocking ping-pong round trip,
// docs/performance.md §7, "Session 14"). A held ACK goes out on the next
// packet to p (piggyback), or when a goroutine blocks in the endpoint
// (flushHeld: a woken receiver that posts its next receive instead of
// answering), or at AckDelay (tick) if none does. Only a small owed ACK
// is held: a cumulative one, with nothing out of order, no echo or
// duplicate to report, fewer than 4 packets pending (a streaming sender's
// ACKs are never held). Under ep.mu.
func (ep *Endpoint) holdAck(p *peer, idle bool, now int64) {
	if !(p.ackNow || idle && p.ackIdle) || p.ackPending >= 4 || p.echoNow || p.dupSeen || p.refused || p.rcvNxt != p.rxMax || !p.incKnown {
		return
	}
	p.ackNow = false
	if !p.ackHeld {
		p.ackHeld = true
		ep.nHeld++
		ep.ackHeld.Store(true)
	}
	if p.ackDue == 0 {
		p.ackDue = now + int64(ep.cfg.AckDelay)
	}
	ep.armAt(p.ackDue)
}

// unhold forgets p's held ACK (sent, carried, or no longer owed). Under
// ep.mu.
func (ep *Endpoint) unhold(p *peer) {
	if p.ackHeld {
		p.ackHeld = false
		ep.nHeld--
		if ep.nHeld == 0 {
			ep.ackHeld.Store(false)
		}
	}
}

// flushHeld sends the ACKs held for woken goroutines (holdAck). A
// goroutine calls it before it blocks in the endpoint: it is not going to
// answer now, so the peers must not wait for its packet. No lock is held.
func (ep *Endpoint) flushHeld() {
	if !ep.ackHeld.Load() {
		return
	}
	c, _ := ep.flushCtl.Get().(*ctrlBatch)
	if c == nil {
		c = new(ctrlBatch)
	}
	ep.mu.Lock()
	if !ep.closed {
		for _, p := range ep.peerList {
			if p.ackHeld {
				p.ackNow = true
				ep.buildAck(p, c) // unholds p
			}
		}
	}
	ep.mu.Unlock()
	ep.sendCtrl(c)
	ep.flushCtl.Put(c)
}

// What a peer has queued to send (pumpWork).
const (
	workNone = iota
	workCtrl // reliable control packets only
	workData // retransmissions, messages, RTS or rendezvous data
)

// pumpWork classifies what p has queued to send. Under ep.mu.
func (p *peer) pumpWork() int {
	if p.nLost > 0 || p.msgQ.peek() != nil || p.dataQ.peek() != nil || !p.incKnown || p.down {
		return workData
	}
	if len(p.ctrlQ) > 0 {
		return workCtrl
	}
	return workNone
}

// ackOwed reports whether some peer is owed an immediate ACK. Under ep.mu.
func (ep *Endpoint) ackOwed() bool {
	for _, p := range ep.peerList {
		if p.ackNow {
			return true
		}
	}
	return false
}

func (ep *Endpoint) isDone() bool {
	select {
	case <-ep.done:
		return true
	default:
		return false
	}
}

// heard records evidence that p was alive at time t (nanotime): a reliable
// packet not seen before, an ACK that acknowledges something new, or the
// echo of our last PING. Nothing a replayed old packet carries counts:
// a duplicate, a stale ACK, a PING (which shows only that the peer's
// packets arrive, not that ours reach it: a peer that timed this endpoint
// out because its packets are lost one way keeps pinging, and were that
// liveness, operations waiting on it would wait forever), an echo of an
// earlier PING. An on-path attacker replaying packets therefore cannot
// keep a dead peer alive. A peer that was down is up again on evidence
// from after it went down: a new PeerTimeout for what is queued to it (the
// CANCELs and NAKs of the failed operations) to get through. Under ep.mu.
func (ep *Endpoint) heard(p *peer, t int64) {
	if p.down {
		if t <= p.downAt {
			// Evidence from before the peer went down (the echo of an
			// earlier PING, held back or replayed): it does not show the
			// peer alive now.
			return
		}
		p.down = false
		p.needPump = true
	}
	p.lastHeard = max(p.lastHeard, t)
}

// placeData opens a packet whose transport header is in clear
// (rendezvous DATA, or an eager MORE fragment). If the header, still
// unauthenticated, names a receive of the sending peer (for MORE: the
// eager message the peer is sending, in order, see eagerTarget), a fresh
// PSN and a range of the message that has not arrived, the payload is
// decrypted straight into the receive buffer, or the unexpected message's
// buffer (Opener.OpenTo): a forged or damaged packet can then only write,
// and on failure clear, bytes that have not arrived, which the genuine
// packet overwrites; delivered bytes are never touched. Otherwise the packet is
// opened in place, as any other. It reports whether the packet opened;
// it.plain is then the transport packet and it.payload, if placed, the
// payload in the receive buffer. Under ep.mu.
func (ep *Endpoint) placeData(it *rxItem) bool {
	b := it.raw
	if dst := ep.placeTarget(it); dst != nil {
		if _, err := ep.codec.opener.OpenTo(dst, b, 0); err != nil {
			ep.st.authFailures.Add(1)
			return false
		}
		it.plain, it.payload = b[it.hdrLen:it.hdrLen+it.clearLen], dst
		ep.st.placed.Add(1)
		return true
	}
	id, plain, err := ep.codec.open(b)
	if err != nil {
		ep.st.authFailures.Add(1)
		return false
	}
	it.src, it.inc, it.plain = uint32(id>>32), uint32(id), plain
	return true
}

// placeTarget returns where a clear-header DATA or MORE packet's payload
// belongs in a receive buffer, or nil if it must be opened in place (see
// placeData). Nothing it reads is authenticated yet.
func (ep *Endpoint) placeTarget(it *rxItem) []byte {
	end := it.hdrLen + it.clearLen
	n := len(it.raw) - end - ep.codec.post
	if n <= 0 {
		return nil
	}
	var h header
	rest, err := h.parse(it.raw[it.hdrLen:end])
	if err != nil || h.Type != typeData && h.Type != typeMore || len(rest) != 0 || h.DstRank != ep.rank || h.DstInc != ep.inc {
		return nil
	}
	p := ep.peers[it.src]
	if p == nil || !p.incKnown || p.inc != it.inc {
		return nil
	}
	if h.Type == typeMore {
		return ep.eagerTarget(p, &h, n)
	}
	switch d := h.PSN - p.rcvNxt; {
	case d == 0:
		if p.refused {
			return nil
		}
	case d >= uint32(ep.cfg.Window) || p.rx[h.PSN&p.mask].state != rxEmpty:
		return nil // a duplicate, or beyond the window
	}
	r := ep.rdvRecvs[h.RecvID]
	if r == nil {
		// A Get's answer lands in the initiator's buffer the same way;
		// a Put's DATA is never placed before it authenticates (a
		// registered region is memory the application may be using).
		s := ep.sinks[h.RecvID]
		if s == nil || s.region != nil || s.p != p {
			return nil
		}
		return s.arrived.slot(s.buf, uint64(len(s.buf)), h.Offset, uint64(n))
	}
	if r.mp != p {
		return nil
	}
	return r.arrived.slot(r.buf, r.accept, h.Offset, uint64(n))
}

// handle processes one authenticated packet under ep.mu. It reports whether
// the timer goroutine should run (work to send).
func (ep *Endpoint) handle(it *rxItem, now int64) bool {
	var h header
	payload, err := h.parse(it.plain)
	if err != nil || h.DstRank != ep.rank {
		ep.st.malformed.Add(1)
		return false
	}
	if it.raw != nil {
		// The clear part of a packet must be a rendezvous DATA or an
		// eager MORE header, exactly.
		if h.Type != typeData && h.Type != typeMore || h.Len() != it.clearLen {
			ep.st.malformed.Add(1)
			return false
		}
		if it.payload != nil {
			payload = it.payload // placed in the receive buffer
		}
	}
	p := ep.peers[it.src]
	if p == nil {
		ep.st.unknownPeer.Add(1)
		return false
	}
	kick := false
	switch {
	case !p.incKnown:
		p.inc, p.incKnown = it.inc, true
		p.needPump = true
		kick = true
	case it.inc < p.inc:
		ep.st.stale.Add(1)
		return false
	case it.inc > p.inc:
		ep.st.peerRestarts.Add(1)
		ep.failPeer(p, errPeerRestarted, true)
		ep.resetPeer(p)
		p.inc, p.incKnown = it.inc, true
		p.needPump = true
		kick = true
	}
	if h.Type == typePing {
		// A PING does not otherwise count as hearing from the peer: it
		// proves only that the peer's packets reach this endpoint, not
		// that this endpoint's reach the peer. A peer that timed this
		// endpoint out because its packets are lost one way keeps
		// pinging; were that liveness, operations waiting on the peer
		// (for an ACK, a CTS, a FIN, DATA) would wait forever. The
		// peer's answers to this endpoint's packets and PINGs (ACKs) and
		// its reliable packets count.
		p.ackNow = true // the answer: an ACK tells our incarnation and state
		p.echo, p.echoNow = h.Echo, true
		return kick
	}
	if h.DstInc != ep.inc {
		// Addressed to an earlier life of this rank: drop, and tell the
		// peer who we are now.
		ep.st.stale.Add(1)
		if now-p.lastPing > int64(ep.cfg.MinRTO) {
			p.pingNow = true
			p.lastPing = now
		}
		return kick
	}
	if h.Type == typeAck {
		k, fresh := ep.onAck(p, &h, now)
		if fresh {
			ep.heard(p, now)
		}
		if e := h.Echo; h.Flags&flagEcho != 0 && e != 0 && e <= p.pingSeq && p.pingSeq-e < uint64(len(p.pingAt)) {
			// The answer to one of our last PINGs: alive after it left.
			ep.heard(p, p.pingAt[e%uint64(len(p.pingAt))])
		}
		return kick || k || p.needPump
	}
	freshAck := false
	if h.Flags&flagPiggyAck != 0 {
		// The acknowledgement riding on the packet: an ACK without SACK
		// ranges (h.NSACK is 0 for reliable types). A retransmission
		// carries an old CumAck, which onAck ignores as stale.
		var k bool
		k, freshAck = ep.onAck(p, &h, now)
		kick = kick || k
	}
	if fresh := ep.onReliable(p, &h, it.plain, payload, now); fresh || freshAck {
		ep.heard(p, now)
	}
	return kick || p.needPump
}

// ---- timer goroutine ----

func (ep *Endpoint) txLoop() {
	defer ep.wg.Done()
	defer ep.timer.Stop()
	var work []*peer
	var ctl ctrlBatch
	for {
		now := ep.nanotime()
		next := now + int64(time.Second)
		work = work[:0]
		ctl.reset()
		ep.mu.Lock()
		if ep.closed {
			ep.mu.Unlock()
			return
		}
		if ep.retryDue {
			ep.retryDue = false
			ep.retryRefused()
		}
		for _, p := range ep.peerList {
			if d := ep.tick(p, now); d < next {
				next = d
			}
			if p.ackNow || p.pingNow {
				ep.buildAck(p, &ctl) // also builds a pending ping
			}
			if p.needPump {
				p.needPump = false
				work = append(work, p)
			}
		}
		// An answer from the wire (deferRTO) serves this pass only.
		probe := ep.probe.want
		ep.probe.want, ep.probe.known = false, false
		next = max(next, now+int64(20*time.Microsecond))
		ep.timerAt = next
		ep.timer.Reset(time.Duration(next - now))
		ep.mu.Unlock()
		ep.sendCtrl(&ctl)
		for _, p := range work {
			ep.pump(p)
		}
		if probe {
			// A timeout is due: ask the socket whether input is waiting,
			// outside mu, and run the next pass at once with the answer.
			pending := ep.pender.InputPending()
			ep.mu.Lock()
			ep.probe.known, ep.probe.pending = true, pending
			ep.mu.Unlock()
			continue
		}
		select {
		case <-ep.done:
			return
		case <-ep.kick:
		case <-ep.timer.C:
		}
	}
}

// tick runs p's timers under ep.mu and returns its next deadline.
func (ep *Endpoint) tick(p *peer, now int64) int64 {
	next := now + int64(time.Second)
	// Delayed ACK.
	if p.ackDue != 0 {
		if now >= p.ackDue {
			p.ackNow = true
		} else {
			next = min(next, p.ackDue)
		}
	}
	// Retransmission timeout.
	if p.rtoAt != 0 {
		if now >= p.rtoAt && !ep.deferRTO(p, now) {
			ep.onRTO(p, now)
		}
		if p.rtoAt != 0 {
			next = min(next, p.rtoAt)
		}
	}
	// Liveness: only peers something waits on are probed and timed out.
	ka := int64(ep.cfg.KeepaliveInterval)
	switch {
	case p.down:
		if now-p.lastPing >= ka {
			p.pingNow = true
			p.lastPing = now
		}
		next = min(next, p.lastPing+ka)
	case p.nOps > 0 || p.sndNxt != p.sndUna || len(p.ctrlQ) > 0 || len(p.rmaIn) > 0:
		base := max(p.lastHeard, p.activeSince)
		if now-base >= int64(ep.cfg.PeerTimeout) {
			ep.st.peerTimeouts.Add(1)
			ep.failPeer(p, errPeerTimeout, false)
			p.down, p.downAt = true, now
			p.pingNow = true
			p.lastPing = now
			next = min(next, now+ka)
			break
		}
		next = min(next, base+int64(ep.cfg.PeerTimeout))
		// Probe a peer that has been silent for a keepalive interval, or
		// whose incarnation is still unknown (with backoff).
		iv := ka
		if !p.incKnown {
			iv = min(p.probeIv, ka)
		}
		if p.incKnown && now-base < iv {
			next = min(next, base+iv)
			break
		}
		if now-p.lastPing >= iv {
			p.pingNow = true
			p.lastPing = now
			if !p.incKnown {
				p.probeIv = min(p.probeIv*2, ka)
			}
		}
		next = min(next, p.lastPing+iv)
	}
	return next
}

// ---- control packets (ACK, PING) ----

// ctrlBatch collects unreliable packets built under ep.mu, sealed and sent
// after it is released.
type ctrlBatch struct {
	bufs []*pbuf
	msgs []wire.Message
}

func (c *ctrlBatch) reset() {
	clear(c.bufs)
	c.bufs = c.bufs[:0]
	clear(c.msgs)
	c.msgs = c.msgs[:0]
}

func (c *ctrlBatch) add(b *pbuf, to netip.AddrPort) {
	c.bufs = append(c.bufs, b)
	c.msgs = append(c.msgs, wire.Message{Buf: b.b, Addr: to})
}

// sendCtrl seals, sends and releases c's packets. No lock is held.
func (ep *Endpoint) sendCtrl(c *ctrlBatch) {
	if len(c.bufs) == 0 {
		return
	}
	k := 0
	for i, b := range c.bufs {
		sealed, err := ep.codec.seal(b.b)
		if err != nil {
			ep.st.sealFailures.Add(1) // wiped by codec.seal, not sent
			continue
		}
		b.b = sealed
		c.msgs[k] = wire.Message{Buf: sealed, Addr: c.msgs[i].Addr}
		k++
	}
	ep.write(c.msgs[:k])
	for _, b := range c.bufs {
		b.release()
	}
	c.reset()
}

// buildAck adds p's pending ACK and ping to c, under ep.mu.
func (ep *Endpoint) buildAck(p *peer, c *ctrlBatch) {
	if p.pingNow {
		p.pingNow = false
		p.lastPing = ep.nanotime()
		p.pingSeq++
		p.pingAt[p.pingSeq%uint64(len(p.pingAt))] = p.lastPing
		h := header{Type: typePing, DstRank: p.rank, DstInc: p.inc, Echo: p.pingSeq}
		b := getPbuf(ep.pktPool)
		b.b = h.AppendTo(b.b[:ep.codec.pre])
		c.add(b, p.addr)
	}
	if !p.ackNow {
		return
	}
	p.ackNow = false
	p.ackDue = 0
	p.ackPending = 0
	p.ackIdle = false
	ep.unhold(p)
	if !p.incKnown {
		return
	}
	h := header{Type: typeAck, DstRank: p.rank, DstInc: p.inc, CumAck: p.rcvNxt}
	if p.dupSeen {
		h.Flags |= flagDup
		h.DupPSN = p.dupPSN
		p.dupSeen = false
	}
	if p.echoNow {
		h.Flags |= flagEcho
		h.Echo = p.echo
		p.echoNow = false
	}
	if !p.refused {
		h.Wnd = uint32(ep.cfg.Window)
	}
	// SACK ranges of what is held beyond the cumulative ACK.
	in := false
	for psn := p.rcvNxt + 1; seqLT(psn, p.rxMax) && h.NSACK < maxSACK; psn++ {
		have := p.rx[psn&p.mask].state != rxEmpty
		switch {
		case have && !in:
			h.SACK[h.NSACK].Start = psn
			in = true
		case !have && in:
			h.SACK[h.NSACK].End = psn
			h.NSACK++
			in = false
		}
	}
	if in {
		h.SACK[h.NSACK].End = p.rxMax
		h.NSACK++
	}
	b := getPbuf(ep.pktPool)
	b.b = h.AppendTo(b.b[:ep.codec.pre])
	c.add(b, p.addr)
}

// seqLT reports a < b in 32-bit serial arithmetic.
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }

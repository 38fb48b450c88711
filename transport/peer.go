package transport

import (
	"math/bits"
	"net/netip"
	"time"

	"github.com/sealring/sealring/transport/wire"
)

// Transmit slot states.
const (
	txFree     = iota
	txInflight // sent, not acknowledged, not deemed lost
	txLost     // deemed lost, waiting for retransmission
	txSacked   // selectively acknowledged (buffer released), below the cumulative ACK's reach
)

// txSlot is one reliable packet between sndUna and sndNxt.
type txSlot struct {
	buf    *pbuf
	op     *sendOp // nil for control packets (CTS, CANCEL, REVOKE, FIN)
	sentAt int64
	txSeq  uint64 // transmission order, for loss detection
	state  uint8
	retx   uint8
}

// Receive slot states.
const (
	rxEmpty    = iota
	rxHeld     // copied, waiting for the packets before it
	rxConsumed // already processed out of order (rendezvous DATA)
)

type rxSlot struct {
	buf   *pbuf
	state uint8
}

// ctrlItem is a reliable control packet waiting to be sent.
type ctrlItem struct {
	typ                   pktType
	msgID, recvID, accept uint64
	code                  uint32 // NAK
}

// peer is the reliability and message state for one remote rank. All
// fields are guarded by Endpoint.mu.
type peer struct {
	rank     uint32
	addr     netip.AddrPort
	inc      uint32
	incKnown bool
	down     bool  // timed out, not heard from since
	downAt   int64 // when it went down (nanotime): older evidence does not bring it back
	removed  bool

	lastHeard, lastPing, activeSince int64
	// pingSeq is the nonce of the last PING sent to the peer and pingAt
	// the send times of the last len(pingAt) PINGs (by nonce): an ACK that
	// echoes one of them shows the peer alive after that PING left (an
	// answer may come after the next PING left, on a slow path). echo is
	// the nonce of the peer's last PING, answered (echoNow) by the next
	// ACK.
	pingSeq, echo uint64
	pingAt        [4]int64
	echoNow       bool
	probeIv       int64
	nOps          int // operations that wait on this peer

	// Send side.
	mask   uint32
	tx     []txSlot
	sndUna uint32 // oldest unacknowledged PSN
	sndNxt uint32 // next PSN to assign
	pipe   int    // slots txInflight
	nLost  int    // slots txLost
	cwnd   float64
	// A retransmission timeout's undo state: the window before the first
	// timeout of the episode, restored if the peer reports a duplicate
	// (the timeout was spurious: the packets were late, not lost).
	rtoUndo                bool
	rtoEpisode             bool   // in recovery after a timeout
	rtoPSN                 uint32 // the oldest packet outstanding at the timeout (resent first)
	rtoResent              int    // times rtoPSN was resent since the timeout
	undoCwnd, undoSsthresh float64
	dupSeen                bool   // receiver: a duplicate arrived since our last ACK
	dupPSN                 uint32 // the lowest such PSN
	ssthresh               float64
	rwnd                   uint32
	inRecovery             bool
	recoverPSN             uint32
	srtt, rttvar           time.Duration
	rto                    time.Duration
	hasRTT                 bool
	rtoAt                  int64
	rtoLate                int64 // the latest a deferred timeout fires (deferRTO); 0 if not deferred
	txSeq                  uint64
	hiDelivered            uint64
	ctrlQ                  []ctrlItem
	msgQ                   opQueue             // eager messages and RTS, in send order
	dataQ                  opQueue             // rendezvous data after CTS
	awaitCTS               map[uint64]*sendOp  // rendezvous sends, Puts and Gets waiting for the peer's answer, by MsgID
	rmaIn                  map[uint64]*rmaSink // Puts from this peer being placed here, by its MsgID
	rmaServe               map[uint64]*sendOp  // Gets from this peer being served here, by its MsgID
	pumping                bool
	pumpAgain              bool
	needPump               bool
	pingNow                bool

	// Pump scratch, reused (only the pumping goroutine touches it).
	wmsgs []wire.Message
	wbufs []*pbuf
	fresh []*pbuf

	// Receive side.
	rx         []rxSlot
	rcvNxt     uint32 // next PSN expected in order
	rxMax      uint32 // one past the highest PSN held out of order
	ackPending int
	ackDue     int64
	ackNow     bool
	ackIdle    bool // a pending packet is acknowledged when the socket drains (it lacked flagAckLazy)
	ackHeld    bool // an owed ACK waits for a woken goroutine (Endpoint.holdAck)
	refused    bool // the packet at rcvNxt is held but was refused (pool full)

	// The eager message being received from this peer (fragments of one
	// message are contiguous in the peer's stream).
	cur curMsg

	sealOps []*sendOp // the pump's scratch: operations it seals from
}

type curMsg struct {
	active  bool
	discard bool // target failed: consume the remaining fragments
	msgID   uint64
	tag     uint64
	total   uint64
	got     uint64
	seq     uint64
	recv    *recvOp
	unexp   *unexpMsg
	// shadow holds the whole message while recv's buffer is shorter than
	// it (a truncating receive), so that if the receive fails or is
	// cancelled before the end the message goes back intact; it is
	// charged to the unexpected pool (shadowCharge bytes).
	shadow       *ubuf
	shadowCharge int
}

// clearCur forgets the eager message arriving from p.
func (ep *Endpoint) clearCur(p *peer) {
	if p.cur.shadow != nil {
		putUbuf(p.cur.shadow)
		ep.unexpRelease(p.cur.shadowCharge)
	}
	p.cur = curMsg{}
}

func (ep *Endpoint) newPeer(rank uint32) *peer {
	n := 1 << bits.Len(uint(ep.cfg.Window-1))
	p := &peer{
		rank:     rank,
		mask:     uint32(n - 1),
		tx:       make([]txSlot, n),
		rx:       make([]rxSlot, n),
		awaitCTS: make(map[uint64]*sendOp),
		rmaIn:    make(map[uint64]*rmaSink),
		rmaServe: make(map[uint64]*sendOp),
		probeIv:  int64(ep.cfg.InitialRTO),
	}
	ep.initReliability(p)
	return p
}

func (ep *Endpoint) initReliability(p *peer) {
	p.sndUna, p.sndNxt, p.rcvNxt, p.rxMax = 0, 0, 0, 0
	p.pipe, p.nLost = 0, 0
	p.cwnd = float64(ep.cfg.InitialCwnd)
	p.ssthresh = float64(ep.cfg.Window)
	p.rwnd = uint32(ep.cfg.Window)
	p.inRecovery = false
	p.rto = ep.cfg.InitialRTO
	p.srtt, p.rttvar, p.hasRTT = 0, 0, false
	p.setRTO(0)
	p.ackPending, p.ackDue, p.ackNow, p.ackIdle = 0, 0, false, false
	ep.unhold(p)
	if p.refused {
		p.refused = false
		ep.nRefused--
	}
	ep.clearCur(p)
	p.probeIv = int64(ep.cfg.InitialRTO)
}

// resetPeer drops all reliability state (the peer restarted).
func (ep *Endpoint) resetPeer(p *peer) {
	for i := range p.tx {
		if s := &p.tx[i]; s.buf != nil {
			s.buf.release()
		}
		p.tx[i] = txSlot{}
	}
	for i := range p.rx {
		if s := &p.rx[i]; s.buf != nil {
			s.buf.release()
		}
		p.rx[i] = rxSlot{}
	}
	p.ctrlQ = p.ctrlQ[:0]
	p.msgQ.clear()
	p.dataQ.clear()
	clear(p.awaitCTS)
	clear(p.rmaIn)
	clear(p.rmaServe)
	ep.initReliability(p)
}

// ---- send side ----

// pump sends what p's windows allow: retransmissions first, then control
// packets, eager fragments and RTS, then rendezvous data. At most one
// goroutine pumps a peer at a time; a concurrent call asks it to go again.
// Packets are built under ep.mu and sealed and written without it.
func (ep *Endpoint) pump(p *peer) {
	ep.mu.Lock()
	if p.pumping {
		p.pumpAgain = true
		ep.mu.Unlock()
		return
	}
	p.pumping = true
	for !ep.closed && !p.removed {
		p.pumpAgain = false
		msgs, bufs, fresh := p.wmsgs[:0], p.wbufs[:0], p.fresh[:0]
		now := ep.nanotime()
		if p.incKnown && !p.down {
			// Retransmissions: the same sealed bytes.
			if p.nLost > 0 {
				for psn := p.sndUna; psn != p.sndNxt && p.nLost > 0 && len(msgs) < ep.batch && float64(p.pipe) < p.cwnd; psn++ {
					s := &p.tx[psn&p.mask]
					if s.state != txLost {
						continue
					}
					s.state = txInflight
					p.nLost--
					p.pipe++
					s.retx++
					if p.rtoUndo && psn == p.rtoPSN {
						p.rtoResent++
					}
					p.txSeq++
					s.txSeq = p.txSeq
					s.sentAt = now
					s.buf.ref()
					bufs = append(bufs, s.buf)
					msgs = append(msgs, wire.Message{Buf: s.buf.b, Addr: p.addr})
					ep.st.retransmits.Add(1)
				}
			}
			// New packets.
			for len(msgs) < ep.batch && float64(p.pipe) < p.cwnd &&
				int(p.sndNxt-p.sndUna) < ep.cfg.Window && p.sndNxt-p.sndUna < p.rwnd {
				b := ep.buildNext(p, now)
				if b == nil {
					break
				}
				b.ref()
				bufs = append(bufs, b)
				fresh = append(fresh, b)
				msgs = append(msgs, wire.Message{Addr: p.addr})
			}
			if p.rtoAt == 0 && p.pipe+p.nLost > 0 {
				p.setRTO(now + int64(p.rto))
				ep.armAt(p.rtoAt)
			}
		}
		if len(msgs) == 0 {
			break
		}
		ep.mu.Unlock()
		// Seal the new packets; msgs holds retransmissions first, then
		// the fresh packets in order.
		off := len(msgs) - len(fresh)
		k := off
		var sealErr error
		sealOps := p.sealOps[:0]
		for i, b := range fresh {
			var sealed []byte
			var err error
			if b.op != nil {
				sealed, err = ep.codec.sealFrom(b.b, b.clear, b.src)
				sealOps = append(sealOps, b.op)
				b.src, b.op = nil, nil
			} else if b.clear > 0 {
				sealed, err = ep.codec.sealClear(b.b, b.clear)
			} else {
				sealed, err = ep.codec.seal(b.b)
			}
			if err != nil {
				// codec.seal wiped the plaintext; the packet is not sent
				// and its operation fails below.
				ep.st.sealFailures.Add(1)
				sealErr = err
				continue
			}
			b.b = sealed
			msgs[k] = wire.Message{Buf: b.b, Addr: msgs[off+i].Addr}
			k++
		}
		ep.write(msgs[:k])
		for _, b := range bufs {
			b.release()
		}
		clear(msgs)
		clear(bufs)
		clear(fresh)
		p.wmsgs, p.wbufs, p.fresh = msgs, bufs, fresh
		ep.mu.Lock()
		ep.sealDone(sealOps)
		clear(sealOps)
		p.sealOps = sealOps[:0]
		if sealErr != nil {
			ep.failPeer(p, sealErr, false)
		}
	}
	p.pumping = false
	p.pumpAgain = false
	ep.mu.Unlock()
}

// sealDone ends the sealing of packets from these operations' buffers
// (one entry per packet) and completes those whose completion waited for
// it. Under ep.mu.
func (ep *Endpoint) sealDone(ops []*sendOp) {
	for _, op := range ops {
		op.inSeal--
		if op.inSeal == 0 && op.late {
			op.late = false
			ep.finishSend(op, op.lateErr)
		}
	}
}

// buildNext builds the next reliable packet for p, or returns nil if there
// is nothing to send. Under ep.mu.
func (ep *Endpoint) buildNext(p *peer, now int64) *pbuf {
	h := header{DstRank: p.rank, DstInc: p.inc, PSN: p.sndNxt}
	var op *sendOp
	var payload []byte
	switch {
	case len(p.ctrlQ) > 0:
		c := p.ctrlQ[0]
		// Shift down (the queue is short) rather than reslice: p.ctrlQ[1:]
		// would lose a slot of capacity per packet, and appends would
		// allocate in steady state.
		p.ctrlQ = p.ctrlQ[:copy(p.ctrlQ, p.ctrlQ[1:])]
		h.Type, h.MsgID, h.RecvID, h.Accept, h.Code = c.typ, c.msgID, c.recvID, c.accept, c.code
	default:
		op = p.msgQ.peek()
		for op != nil && op.kind != opMsg && op.key.inc != p.inc {
			// The key names a region of another incarnation (the peer's
			// incarnation was unknown when the operation started).
			p.msgQ.pop()
			ep.finishSend(op, keyIncarnation(op.key, p))
			op = p.msgQ.peek()
		}
		if op != nil {
			if op.kind != opMsg {
				payload = ep.buildRMA(p, op, &h)
				break
			}
			if op.rdv {
				h.Type, h.MsgID, h.Tag, h.Total = typeRTS, op.msgID, op.tag, uint64(len(op.buf))
				p.msgQ.pop()
				op.phase = phRTS
				op.started = true
				p.awaitCTS[op.msgID] = op
				break
			}
			n := min(len(op.buf)-op.off, ep.fragEager)
			if op.off == 0 {
				h.Type, h.MsgID, h.Tag, h.Total = typeEager, op.msgID, op.tag, uint64(len(op.buf))
			} else {
				// The fragments after the first (which carries the tag
				// and the length) need only the message and the offset:
				// MORE, whose header can go in clear (below).
				h.Type, h.MsgID, h.Offset = typeMore, op.msgID, uint64(op.off)
			}
			payload = op.buf[op.off : op.off+n]
			op.off += n
			op.started = true
			if ep.cfg.LocalCompletion {
				// The send completes once its last fragment is built
				// (completeLocally, below): nobody waits for these ACKs,
				// so the peer need not hurry them (flagAckLazy) and its
				// next packet to us can carry them.
				h.Flags |= flagAckLazy
			} else if op.off == len(op.buf) {
				h.Flags |= flagAckNow
			}
			if op.off == len(op.buf) {
				op.allBuilt = true
				p.msgQ.pop()
			}
			break
		}
		op = p.dataQ.peek()
		if op == nil {
			return nil
		}
		n := min(op.sendLen-op.off, ep.fragData)
		h.Type, h.RecvID, h.Offset = typeData, op.recvID, uint64(op.off)
		payload = op.buf[op.off : op.off+n]
		op.off += n
		op.dataOut = true
		if op.off == op.sendLen {
			h.Flags |= flagAckNow
			op.phase = phFin
			if op.kind == opServe {
				// A served Get has read all it will read of the region;
				// it completes (and is recycled) on the ACK.
				op.allBuilt = true
				ep.st.rmaGets.Add(1)
			}
			p.dataQ.pop()
		}
	}
	ep.piggyback(p, &h)
	b := getPbuf(ep.pktPool)
	b.b = h.AppendTo(b.b[:ep.codec.pre])
	if (h.Type == typeData || h.Type == typeMore) && op.kind == opMsg && ep.codec.sealer != nil {
		// Rendezvous DATA or an eager MORE fragment of a Send: the
		// transport header goes in clear (authenticated) and the pump
		// seals the payload straight from the caller's buffer, so that
		// it is not copied into the packet first; op cannot complete
		// while that is pending (inSeal; with Config.LocalCompletion,
		// completeLocally's finishSend waits for it too).
		b.src, b.clear, b.op = payload, len(b.b)-ep.codec.pre, op
		op.inSeal++
	} else {
		if h.Type == typeData && op.kind == opServe && ep.codec.sealer != nil {
			// A served Get's DATA: copied from the region here (under
			// the lock: Deregister may follow), with the header in clear
			// so that the initiator can place it in its buffer.
			b.clear = len(b.b) - ep.codec.pre
		}
		b.b = append(b.b, payload...)
	}
	s := &p.tx[p.sndNxt&p.mask]
	p.txSeq++
	*s = txSlot{buf: b, op: op, sentAt: now, txSeq: p.txSeq, state: txInflight}
	if op != nil {
		op.unacked++
	}
	p.sndNxt++
	p.pipe++
	if op != nil && op.allBuilt && !op.rdv && !op.done && ep.cfg.LocalCompletion && op.kind == opMsg {
		ep.completeLocally(p, op)
	}
	return b
}

// completeLocally completes an eager send whose fragments are all in the
// retransmission ring (Config.LocalCompletion): the ring holds copies, so
// the caller's buffer is free, and reliability carries on without the
// operation. Its slots forget it so that it can be reused. Under ep.mu.
func (ep *Endpoint) completeLocally(p *peer, op *sendOp) {
	for psn := p.sndNxt - 1; op.unacked > 0 && psn != p.sndUna-1; psn-- {
		if s := &p.tx[psn&p.mask]; s.op == op {
			s.op = nil
			op.unacked--
		}
	}
	ep.finishSend(op, nil)
}

// piggyback puts p's cumulative acknowledgement on the reliable packet h.
// When nothing is held out of order (no SACK ranges to tell) it replaces
// the standalone ACK that p owes: a reply, a CTS or the next fragment
// acknowledges for free. Not while refusing (Wnd 0 and the window update
// stay standalone ACKs). Under ep.mu.
func (ep *Endpoint) piggyback(p *peer, h *header) {
	if !p.incKnown || p.refused {
		return
	}
	h.Flags |= flagPiggyAck
	h.CumAck, h.Wnd = p.rcvNxt, uint32(ep.cfg.Window)
	if !seqLT(p.rcvNxt, p.rxMax) && !p.echoNow { // a PING's answer goes standalone, with its echo
		p.ackNow, p.ackPending, p.ackDue, p.ackIdle = false, 0, 0, false
		ep.unhold(p)
	}
}

// queueCtrl queues a reliable control packet to p. Under ep.mu.
func (ep *Endpoint) queueCtrl(p *peer, c ctrlItem) {
	p.ctrlQ = append(p.ctrlQ, c)
	p.needPump = true
}

// onAck processes an ACK from p under ep.mu; it reports whether the pump
// should run.
func (ep *Endpoint) onAck(p *peer, h *header, now int64) (kick, fresh bool) {
	// A cumulative ACK outside [sndUna, sndNxt] is stale or bogus.
	if int32(h.CumAck-p.sndUna) < 0 || int32(p.sndNxt-h.CumAck) < 0 {
		return false, false
	}
	oldRwnd := p.rwnd
	p.rwnd = h.Wnd
	progress := h.CumAck != p.sndUna
	acked := 0
	var sample time.Duration = -1
	for ; p.sndUna != h.CumAck; p.sndUna++ {
		s := &p.tx[p.sndUna&p.mask]
		if s.state == txInflight || s.state == txLost {
			if s.state == txInflight && s.retx == 0 {
				sample = time.Duration(now - s.sentAt)
			}
			ep.ackSlot(p, s)
			acked++
		}
		*s = txSlot{}
	}
	for i := range int(h.NSACK) {
		r := h.SACK[i]
		start, end := r.Start, r.End
		if seqLT(start, p.sndUna) {
			start = p.sndUna
		}
		if seqLT(p.sndNxt, end) {
			end = p.sndNxt
		}
		if !seqLT(start, end) {
			continue // empty, or entirely outside [sndUna, sndNxt)
		}
		for psn := start; seqLT(psn, end); psn++ {
			s := &p.tx[psn&p.mask]
			if s.state == txInflight || s.state == txLost {
				if s.state == txInflight && s.retx == 0 {
					sample = time.Duration(now - s.sentAt)
				}
				ep.ackSlot(p, s)
				s.state = txSacked
				acked++
			}
		}
	}
	if sample >= 0 {
		ep.rttSample(p, sample)
	}
	if h.Flags&flagDup != 0 && p.rtoUndo && h.DupPSN == p.rtoPSN && p.rtoResent == 1 {
		// The packet the timeout resent first, and only once, arrived
		// twice: its original was late, not lost. (Resent more often,
		// the copies could be two retransmissions.)
		ep.undoRTO(p)
	}
	// Loss detection: a packet is lost once a packet sent 3 transmissions
	// after it was delivered (RACK-like, robust to small reordering).
	lost := false
	if p.pipe > 0 && p.hiDelivered >= 3 {
		for psn := p.sndUna; psn != p.sndNxt; psn++ {
			s := &p.tx[psn&p.mask]
			if s.state != txInflight {
				continue
			}
			if s.txSeq+3 > p.hiDelivered {
				if s.retx == 0 {
					break
				}
				continue
			}
			s.state = txLost
			p.pipe--
			p.nLost++
			lost = true
		}
	}
	if p.inRecovery && !seqLT(p.sndUna, p.recoverPSN) {
		// The duplicate report of a spurious timeout usually comes after
		// the late packets' ACK has ended the recovery: rtoUndo stays
		// until it comes, a loss is detected, or the next timeout.
		p.inRecovery = false
		p.rtoEpisode = false
	}
	if lost {
		p.rtoUndo = false // a real loss since the timeout: nothing to undo
	}
	if lost && !p.inRecovery {
		p.ssthresh = max(p.cwnd/2, minCwnd)
		p.cwnd = p.ssthresh
		p.inRecovery = true
		p.recoverPSN = p.sndNxt
	} else if acked > 0 && !p.inRecovery {
		if p.cwnd < p.ssthresh {
			p.cwnd += float64(acked)
		} else {
			p.cwnd += float64(acked) / p.cwnd
		}
		p.cwnd = min(p.cwnd, float64(ep.cfg.Window))
	}
	if progress {
		ep.computeRTO(p)
		if p.sndUna == p.sndNxt {
			ep.wakeShutdown()
		}
	}
	switch {
	case p.pipe+p.nLost == 0:
		p.setRTO(0)
	case progress || p.rtoAt == 0:
		p.setRTO(now + int64(p.rto))
		ep.armAt(p.rtoAt)
	}
	if acked > 0 || lost || (oldRwnd == 0 && p.rwnd > 0) {
		p.needPump = true
	}
	// Only an ACK that acknowledges something new shows the peer alive
	// now: a replayed old ACK acknowledges nothing new.
	return p.needPump, progress || acked > 0
}

// ackSlot releases an acknowledged packet and credits its operation.
func (ep *Endpoint) ackSlot(p *peer, s *txSlot) {
	if s.state == txInflight {
		p.pipe--
	} else {
		p.nLost--
	}
	p.hiDelivered = max(p.hiDelivered, s.txSeq)
	s.buf.release()
	s.buf = nil
	if op := s.op; op != nil {
		s.op = nil
		op.unacked--
		if op.unacked == 0 && !op.done && (op.allBuilt && !op.rdv || op.finned) {
			ep.finishSend(op, nil)
		}
	}
}

func (ep *Endpoint) rttSample(p *peer, r time.Duration) {
	if !p.hasRTT {
		p.srtt, p.rttvar, p.hasRTT = r, r/2, true
	} else {
		d := p.srtt - r
		if d < 0 {
			d = -d
		}
		p.rttvar = (3*p.rttvar + d) / 4
		p.srtt = (7*p.srtt + r) / 8
	}
}

func (ep *Endpoint) computeRTO(p *peer) {
	if !p.hasRTT {
		p.rto = ep.cfg.InitialRTO
		return
	}
	p.rto = min(max(p.srtt+4*p.rttvar, ep.cfg.MinRTO), ep.cfg.MaxRTO)
}

// undoRTO reverts a spurious retransmission timeout (Eifel-like, on the
// receiver's duplicate report): the window and threshold from before the
// timeout come back, the backoff ends, and packets deemed lost but not yet
// sent again are in flight once more (a real loss among them is found by
// the usual loss detection or the next timeout, which stays armed).
func (ep *Endpoint) undoRTO(p *peer) {
	p.rtoUndo, p.rtoEpisode = false, false
	p.cwnd = max(p.cwnd, p.undoCwnd)
	p.ssthresh = max(p.ssthresh, p.undoSsthresh)
	p.inRecovery = false
	for psn := p.sndUna; psn != p.sndNxt && p.nLost > 0; psn++ {
		if s := &p.tx[psn&p.mask]; s.state == txLost {
			s.state = txInflight
			p.nLost--
			p.pipe++
		}
	}
	ep.computeRTO(p)
	ep.st.rtoUndos.Add(1)
}

// setRTO arms p's retransmission timer for at (nanotime; 0 stops it). A
// new deadline starts a new timeout, which deferRTO may put off afresh.
// Under ep.mu.
func (p *peer) setRTO(at int64) { p.rtoAt, p.rtoLate = at, 0 }

// rtoGrace is how long deferRTO puts a timeout off at a time: time for a
// runnable receive goroutine to get a processor and read.
const rtoGrace = 200 * time.Microsecond

// deferRTO puts off p's expired retransmission timeout, and reports
// whether it did, while this endpoint has input it has not handled: a
// batch the receive goroutine holds, or a datagram queued on the socket
// (wire.InputPender). On a busy host the timer goroutine can run before the
// receive goroutine, and the ACKs that would have stopped the timer are
// then waiting unread: on loopback under load most timeouts fired that way,
// all of them spurious, each collapsing the window. The timeout is put off
// by rtoGrace at a time and by one more RTO at most in all, so that input
// that never holds the peer's ACKs (other peers' traffic, a flood of
// forged datagrams) delays each real timeout by at most one RTO.
//
// The socket is asked outside ep.mu: the first time a pass of the timer
// goroutine needs the answer, deferRTO asks for it (probe.want) and puts
// the decision off to the next pass, which the timer goroutine runs at
// once with the answer. Under ep.mu.
func (ep *Endpoint) deferRTO(p *peer, now int64) bool {
	if p.pipe+p.nLost == 0 {
		return false // nothing outstanding: onRTO just stops the timer
	}
	late := p.rtoLate
	if late == 0 {
		late = p.rtoAt + int64(p.rto)
	}
	if now >= late {
		return false
	}
	pending := ep.rxHeld.Load()
	if !pending && ep.pender != nil {
		if !ep.probe.known {
			ep.probe.want = true
			return true
		}
		pending = ep.probe.pending
	}
	if !pending {
		return false
	}
	if p.rtoLate == 0 {
		ep.st.rtosDeferred.Add(1) // counted once per timeout
	}
	p.rtoLate = late
	p.rtoAt = min(now+int64(rtoGrace), late)
	return true
}

// onRTO handles an expired retransmission timer: every outstanding packet
// is deemed lost, the window collapses and the timer backs off.
func (ep *Endpoint) onRTO(p *peer, now int64) {
	if p.pipe+p.nLost == 0 {
		p.setRTO(0)
		return
	}
	ep.st.rtos.Add(1)
	if p.rtoEpisode {
		// A second timeout before the first's recovery ended: a
		// retransmission was lost too, so the first timeout was real (a
		// duplicate now could be of either transmission): no undo.
		p.rtoUndo = false
	} else {
		// Undoable only if the packet it resends first was never resent
		// before: else a duplicate of it could be two retransmissions.
		p.rtoUndo = p.tx[p.sndUna&p.mask].retx == 0
		p.undoCwnd, p.undoSsthresh = p.cwnd, p.ssthresh
		p.rtoEpisode, p.rtoPSN, p.rtoResent = true, p.sndUna, 0
	}
	for psn := p.sndUna; psn != p.sndNxt; psn++ {
		s := &p.tx[psn&p.mask]
		if s.state == txInflight {
			s.state = txLost
			p.pipe--
			p.nLost++
		}
	}
	p.ssthresh = max(p.cwnd/2, minCwnd)
	p.cwnd = minCwnd
	p.inRecovery = true
	p.recoverPSN = p.sndNxt
	p.rto = min(p.rto*2, ep.cfg.MaxRTO)
	p.setRTO(now + int64(p.rto))
	p.needPump = true
}

// ---- receive side ----

// onReliable processes a reliable packet from p under ep.mu. plain is the
// whole transport packet (header and payload), valid only during the call.
func (ep *Endpoint) onReliable(p *peer, h *header, plain, payload []byte, now int64) (fresh bool) {
	d := h.PSN - p.rcvNxt
	switch {
	case int32(d) < 0:
		ep.st.duplicates.Add(1)
		p.ackNow = true // our ACK may have been lost
		p.noteDup(h.PSN)
		return false
	case d >= uint32(ep.cfg.Window):
		p.ackNow = true // beyond the window: the sender will retransmit
		return false
	case d > 0:
		s := &p.rx[h.PSN&p.mask]
		if s.state != rxEmpty {
			ep.st.duplicates.Add(1)
			p.ackNow = true
			p.noteDup(h.PSN)
			return false
		}
		if h.Type == typeData {
			// Rendezvous data lands in place whatever its order.
			ep.onData(p, h, payload)
			s.state = rxConsumed
		} else {
			b := getPbuf(ep.pktPool)
			b.b = append(b.b, plain...)
			s.buf, s.state = b, rxHeld
		}
		if seqLT(p.rxMax, h.PSN+1) {
			p.rxMax = h.PSN + 1
		}
		p.ackNow = true // out of order: tell the sender at once
		return true
	}
	if p.refused {
		// The slot at rcvNxt is already held (refused earlier): this is a
		// retransmission of it.
		ep.st.duplicates.Add(1)
		p.ackNow = true
		return false
	}
	if !ep.deliver(p, h, payload) {
		b := getPbuf(ep.pktPool)
		b.b = append(b.b, plain...)
		s := &p.rx[h.PSN&p.mask]
		s.buf, s.state = b, rxHeld
		if seqLT(p.rxMax, h.PSN+1) {
			p.rxMax = h.PSN + 1
		}
		ep.refuse(p)
		return true
	}
	p.rcvNxt++
	p.ackPending++
	if h.Flags&flagAckLazy == 0 {
		p.ackIdle = true
	}
	if h.Flags&flagAckNow != 0 || p.ackPending >= 4 {
		p.ackNow = true
	} else if p.ackDue == 0 {
		// Armed by the receive goroutine after the batch, unless the
		// batch ends idle and acknowledges at once.
		p.ackDue = now + int64(ep.cfg.AckDelay)
	}
	if ep.drain(p) > 0 {
		p.ackNow = true
	}
	return true
}

// noteDup records a duplicate reliable packet for the next ACK's DUP
// report (the lowest PSN since the last ACK).
func (p *peer) noteDup(psn uint32) {
	if !p.dupSeen || seqLT(psn, p.dupPSN) {
		p.dupPSN = psn
	}
	p.dupSeen = true
}

func (ep *Endpoint) refuse(p *peer) {
	ep.st.refused.Add(1)
	if !p.refused {
		p.refused = true
		ep.nRefused++
	}
	p.ackNow = true
}

// drain delivers the held packets that are now in order and returns how
// many it consumed.
func (ep *Endpoint) drain(p *peer) int {
	n := 0
	var h header
	for {
		s := &p.rx[p.rcvNxt&p.mask]
		switch s.state {
		case rxEmpty:
			if !seqLT(p.rcvNxt, p.rxMax) {
				p.rxMax = p.rcvNxt
			}
			return n
		case rxConsumed:
		case rxHeld:
			payload, err := h.parse(s.buf.b)
			if err == nil && !ep.deliver(p, &h, payload) {
				if !p.refused {
					ep.refuse(p)
				}
				return n
			}
			s.buf.release()
		}
		*s = rxSlot{}
		p.rcvNxt++
		n++
	}
}

// unexpRelease returns n bytes to the unexpected pool. If a packet was
// refused while the pool was full, the timer goroutine retries it (see
// txLoop): not here, where the caller may be walking the pool or
// delivering another peer's packets. Under ep.mu.
func (ep *Endpoint) unexpRelease(n int) {
	ep.unexpUsed -= n
	ep.scheduleRetry()
}

// scheduleRetry has the timer goroutine retry refused packets (if any)
// at the top of its next pass. Under ep.mu.
func (ep *Endpoint) scheduleRetry() {
	if ep.nRefused > 0 && !ep.retryDue {
		ep.retryDue = true
		ep.kickTx()
	}
}

// retryRefused re-delivers refused packets after the unexpected pool
// freed space. Under ep.mu.
func (ep *Endpoint) retryRefused() {
	if ep.nRefused == 0 {
		return
	}
	for _, p := range ep.peerList {
		if !p.refused {
			continue
		}
		p.refused = false
		ep.nRefused--
		ep.drain(p)
		p.ackNow = true // window update
		p.needPump = true
	}
	ep.kickTx()
}

// deliver hands an in-order reliable packet to the message layer. It
// returns false if the packet must be refused (unexpected pool full).
func (ep *Endpoint) deliver(p *peer, h *header, payload []byte) bool {
	switch h.Type {
	case typeEager, typeMore:
		return ep.onEager(p, h, payload)
	case typeRTS:
		return ep.onRTS(p, h)
	case typeCTS:
		ep.onCTS(p, h)
	case typeData:
		ep.onData(p, h, payload)
	case typeCancel:
		ep.onCancel(p, h)
	case typeRevoke:
		ep.onRevoke(p, h)
	case typeFin:
		ep.onFin(p, h)
	case typePut:
		ep.onPut(p, h, payload)
	case typeGet:
		ep.onGet(p, h)
	case typeNak:
		ep.onNak(p, h)
	}
	return true
}

// failPeer fails every operation that waits on p with err. With reset,
// partial incoming state from p is dropped too (the peer restarted, was
// removed, or the endpoint is closing); without, the reliability state is
// kept so that the stream can resume if the peer answers again.
func (ep *Endpoint) failPeer(p *peer, err error, reset bool) {
	ep.wakeShutdown()
	// One-sided work the peer asked of this endpoint.
	ep.failRMA(p, reset)
	// Sends (Puts and Gets too).
	fail := func(op *sendOp) {
		if op == nil || op.dead {
			return
		}
		op.dead = true
		if !reset && op.started && (op.rdv || !op.allBuilt) {
			ep.queueCtrl(p, ctrlItem{typ: typeCancel, msgID: op.msgID})
		}
		if !op.done {
			ep.finishSend(op, err)
		}
	}
	p.msgQ.live(fail)
	p.msgQ.clear()
	p.dataQ.live(fail)
	p.dataQ.clear()
	for id, op := range p.awaitCTS {
		fail(op)
		delete(p.awaitCTS, id)
	}
	for psn := p.sndUna; psn != p.sndNxt; psn++ {
		fail(p.tx[psn&p.mask].op)
	}
	// Receives.
	if c := &p.cur; c.active {
		switch {
		case c.recv != nil && !reset:
			// The peer may answer again and complete the message, and its
			// send then succeeds: give what arrived back to the unexpected
			// pool (as a cancelled receive does) so that a later receive
			// gets the message whole instead of losing it. Receives
			// already posted that match it fail too (failMatching).
			r := c.recv
			u := ep.returnEager(r)
			ep.finishRecv(r, err)
			if u != nil {
				ep.failMatching(u, err)
			}
		case c.recv != nil:
			ep.finishRecv(c.recv, err)
			c.recv = nil
			c.discard = true
		}
		if reset {
			if c.unexp != nil {
				ep.dropUnexp(c.unexp)
			}
			ep.clearCur(p)
		}
	}
	for id, r := range ep.rdvRecvs {
		if r.p == p {
			delete(ep.rdvRecvs, id)
			if !reset {
				// The peer may come back and is told that the transfer
				// is over: without it, its DATA would be dropped (the
				// RecvID is gone) and its send would wait for a FIN
				// that never comes.
				ep.queueNak(p, r.msgID, nakAborted)
			}
			ep.finishRecv(r, err)
		}
	}
	if reset {
		for u := ep.unexp.head; u != nil; {
			next := u.next
			if u.p == p && (u.rdv || !u.complete) {
				ep.dropUnexp(u)
			}
			u = next
		}
	}
	if err != errPeerRestarted {
		for r := ep.posted.head; r != nil; {
			next := r.next
			if !r.any && r.src == p.rank {
				ep.posted.remove(r)
				ep.finishRecv(r, err)
			}
			r = next
		}
	}
}

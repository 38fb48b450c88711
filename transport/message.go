package transport

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// unexpOverhead is what each unexpected message costs the pool beyond its
// data (an RTS costs only this).
const unexpOverhead = 128

// Send phases.
const (
	phQueued = iota // in msgQ: nothing sent yet
	phRTS           // RTS sent, waiting for CTS
	phData          // sending rendezvous data
	phFin           // all data sent, waiting for FIN
)

type sendOp struct {
	opBase
	dst     *peer
	tag     uint64
	buf     []byte
	msgID   uint64
	rdv     bool
	eager   bool // SendOptions.Eager
	phase   uint8
	off     int // next byte to packetize
	sendLen int // rendezvous: bytes the receiver accepted
	recvID  uint64
	unacked int
	qgen    uint32

	finned   bool // rendezvous: the receiver has all the data
	started  bool // a packet of it was built
	allBuilt bool // eager: every fragment built
	dead     bool // withdrawn or failed: build nothing more
	pooled   bool

	// inSeal counts the packets of op built with their payload still in
	// op.buf (sealed from it by a pump outside ep.mu); while it is not 0
	// a completion is deferred: late and lateErr hold it.
	inSeal  int
	late    bool
	lateErr error

	// One-sided operations (rma.go).
	kind       uint8     // opMsg, opPut, opGet, opServe
	dataOut    bool      // Put: a packet with data was built
	cancelling bool      // Put: cancelled, waiting for the target to confirm
	cancelErr  error     // Put: what the cancellation completes with
	key        RemoteKey // Put, Get: the target region
	roff       uint64    // Put, Get: offset in the target region
	sink       rmaSink   // Get: where the target's DATA lands
	region     *Region   // served Get: the region read
}

// sendOp kinds.
const (
	opMsg   = iota // Send
	opPut          // Put: PUT (+ CTS, DATA) → FIN
	opGet          // Get: GET → DATA into sink (or FIN)
	opServe        // a GET this endpoint serves: DATA from a region
)

// Receive states.
const (
	rPosted = iota
	rEager  // matched to the eager message arriving from mp (mp.cur)
	rRdv    // matched to a rendezvous message, CTS sent
	rDone
)

type recvOp struct {
	opBase
	src  uint32
	any  bool
	tag  uint64
	mask uint64
	buf  []byte
	seq  uint64 // post order

	seqLinks[*recvOp] // in ep.posted

	state  uint8
	mp     *peer // matched message's sender
	msgSeq uint64
	msgID  uint64
	msgTag uint64
	total  uint64
	got    uint64
	accept uint64
	recvID uint64
	pooled bool
	big    bool // counted in ep.bigRecvs (busy-polling gate)
	// arrived: the byte ranges of a rendezvous message that have arrived
	// (DATA is placed only into ranges that have not).
	arrived spans
}

// unexpMsg is a message that arrived before a matching receive: an eager
// message (complete or arriving) or an RTS.
type unexpMsg struct {
	p        *peer
	src      uint32
	tag      uint64
	msgID    uint64
	total    uint64
	got      uint64
	seq      uint64
	rdv      bool
	complete bool
	data     *ubuf
	charge   int

	seqLinks[*unexpMsg] // in ep.unexp
}

func (r *recvOp) links() *seqLinks[*recvOp]     { return &r.seqLinks }
func (r *recvOp) order() uint64                 { return r.seq }
func (u *unexpMsg) links() *seqLinks[*unexpMsg] { return &u.seqLinks }
func (u *unexpMsg) order() uint64               { return u.seq }

var unexpPool = sync.Pool{New: func() any { return new(unexpMsg) }}

func newUnexp(v unexpMsg) *unexpMsg {
	u := unexpPool.Get().(*unexpMsg)
	*u = v
	return u
}

func freeUnexp(u *unexpMsg) {
	*u = unexpMsg{}
	unexpPool.Put(u)
}

// ---- queues ----

type qent struct {
	op  *sendOp
	gen uint32
}

// opQueue is a FIFO of send operations with lazy deletion: an entry is
// live while its generation matches the operation's and the operation is
// not dead.
type opQueue struct {
	ents []qent
	head int
}

func (q *opQueue) push(op *sendOp) {
	op.qgen++
	q.ents = append(q.ents, qent{op, op.qgen})
}

func (q *opQueue) peek() *sendOp {
	for q.head < len(q.ents) {
		e := q.ents[q.head]
		if e.gen == e.op.qgen && !e.op.dead {
			return e.op
		}
		q.ents[q.head] = qent{}
		q.head++
	}
	q.clear()
	return nil
}

func (q *opQueue) pop() {
	q.ents[q.head] = qent{}
	q.head++
	if q.head == len(q.ents) {
		q.clear()
	}
}

func (q *opQueue) clear() {
	clear(q.ents)
	q.ents = q.ents[:0]
	q.head = 0
}

// live calls f for each live operation.
func (q *opQueue) live(f func(*sendOp)) {
	for _, e := range q.ents[q.head:] {
		if e.op != nil && e.gen == e.op.qgen {
			f(e.op)
		}
	}
}

// ---- public API ----

// Send sends buf to peer with tag and returns when the peer has
// acknowledged all of it (eager; with Config.LocalCompletion as soon as all
// of it is copied for retransmission) or received all of it into the
// matching receive (rendezvous). buf must not change until Send returns.
// If ctx ends first, Send returns ctx.Err() and the message is either
// withdrawn or delivered in full, never in part.
func (ep *Endpoint) Send(ctx context.Context, peer uint32, tag uint64, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := sendOpPool.Get().(*sendOp)
	op.tag, op.buf, op.pooled = tag, buf, true
	ep.mu.Lock()
	p, err := ep.startSend(op, peer)
	ep.mu.Unlock()
	if err != nil {
		ep.recycleSend(op)
		return err
	}
	ep.pump(p)
	return ep.waitSend(ctx, op)
}

// waitSend waits for a started blocking send-side operation (Send, Put,
// Get), cancelling it if ctx ends first, and recycles it if it succeeded
// (a failed op may still be referenced by a skipped queue entry).
func (ep *Endpoint) waitSend(ctx context.Context, op *sendOp) error {
	ep.await(ctx, op.sig, op, nil)
	err := op.err
	if err == nil {
		ep.recycleSend(op)
	}
	return err
}

// await waits for a blocking call's operation (op or r) to signal sig,
// cancelling it if ctx ends first. Before it blocks it sends the ACKs held
// for this goroutine to carry (Endpoint.flushHeld): it is not answering
// now.
func (ep *Endpoint) await(ctx context.Context, sig chan struct{}, op *sendOp, r *recvOp) {
	select {
	case <-sig:
		return
	default:
	}
	ep.flushHeld()
	select {
	case <-sig:
	case <-ctx.Done():
		ep.cancel(op, r, ctx.Err())
		<-sig
	}
}

// SendAsync starts a Send and returns its Request. Cancelling ctx cancels
// the send (see Request.Cancel).
func (ep *Endpoint) SendAsync(ctx context.Context, rank uint32, tag uint64, buf []byte) *Request {
	return ep.SendAsyncWith(ctx, rank, tag, buf, SendOptions{})
}

// SendOptions adjust one send (SendAsyncWith). The zero value is
// SendAsync's behaviour.
type SendOptions struct {
	// Eager sends the message eagerly whatever its size (up to
	// MaxEagerLimit), as if it were within Config.EagerLimit: no RTS/CTS
	// handshake, the data follows at once and is copied into the posted
	// receive, or into the unexpected pool (Config.UnexpectedBytes, which
	// admits one message of any size when it is empty) if none is posted
	// yet. Use it when the receiver has most likely posted its receive
	// and nothing else is in flight to it, as in an exchange where both
	// sides post a receive and then send: there the handshake is pure
	// latency, a round trip with a wake-up at each end, which costs more
	// than the two copies up to about 1 MiB (docs/performance.md §7,
	// "Session 9"). Behind other traffic the handshake is hidden and the
	// rendezvous' zero-copy placement wins. The costs: while the
	// receiver's pool has no room for an unmatched message, it and all
	// that follows it from this endpoint wait for a receive; a short
	// receive makes the receiver copy the whole message; and a send
	// cancelled part way is withdrawn with a CANCEL.
	Eager bool
}

// SendAsyncWith is SendAsync with per-send options.
func (ep *Endpoint) SendAsyncWith(ctx context.Context, rank uint32, tag uint64, buf []byte, opts SendOptions) *Request {
	req, op := newAsyncSend(ep, buf)
	op.tag = tag
	op.eager = opts.Eager
	return ep.startAsync(ctx, req, op, func() (*peer, error) { return ep.startSend(op, rank) })
}

// newAsyncSend makes an async request and its send-side operation: one
// allocation (plus a Done channel if someone waits while it is pending).
func newAsyncSend(ep *Endpoint, buf []byte) (*Request, *sendOp) {
	a := &asyncSend{Request: Request{ep: ep}}
	req, op := &a.Request, &a.op
	op.buf = buf
	op.req, req.send = req, op
	return req, op
}

// startAsync queues op with start (called under ep.mu), makes the end of
// ctx cancel it, and pumps its peer; a request that cannot start completes
// at once with the error.
func (ep *Endpoint) startAsync(ctx context.Context, req *Request, op *sendOp, start func() (*peer, error)) *Request {
	if err := ctx.Err(); err != nil {
		return req.failed(err)
	}
	ep.mu.Lock()
	p, err := start()
	if err == nil {
		ep.watch(ctx, req)
	}
	ep.mu.Unlock()
	if err != nil {
		return req.failed(err)
	}
	ep.pump(p)
	return req
}

// asyncSend and asyncRecv allocate an async request with its operation.
type asyncSend struct {
	Request
	op sendOp
}

type asyncRecv struct {
	Request
	op recvOp
}

// startSend validates and queues op. Under ep.mu.
func (ep *Endpoint) startSend(op *sendOp, rank uint32) (*peer, error) {
	if ep.closed {
		return nil, ErrClosed
	}
	p := ep.peers[rank]
	if p == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownPeer, rank)
	}
	if p.down {
		return nil, errPeerDown
	}
	ep.nextMsgID++
	op.msgID = ep.nextMsgID
	op.dst = p
	op.rdv = len(op.buf) > ep.cfg.EagerLimit && !(op.eager && len(op.buf) <= MaxEagerLimit)
	op.phase = phQueued
	ep.associate(&op.opBase, p)
	p.msgQ.push(op)
	return p, nil
}

func (ep *Endpoint) recycleSend(op *sendOp) {
	if !op.pooled {
		return
	}
	*op = sendOp{opBase: opBase{sig: op.sig}}
	sendOpPool.Put(op)
}

// Recv receives a message from peer (or AnySource) whose tag matches:
// (msgTag & tagMask) == (tag & tagMask). Receives are matched in post
// order, and messages from one peer in the order they were sent. A buffer
// shorter than the message gets its first len(buf) bytes and ErrTruncated,
// with Status.Len the message's length. If ctx ends first, Recv returns
// ctx.Err() and no message is consumed.
func (ep *Endpoint) Recv(ctx context.Context, peer uint32, tag, tagMask uint64, buf []byte) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	r := recvOpPool.Get().(*recvOp)
	r.pooled = true
	r.src, r.tag, r.mask, r.buf, r.any = peer, tag, tagMask, buf, peer == AnySource
	ep.mu.Lock()
	p, err := ep.startRecv(r)
	ep.mu.Unlock()
	if err != nil {
		ep.recycleRecv(r)
		return Status{}, err
	}
	if p != nil {
		ep.pump(p)
	}
	ep.await(ctx, r.sig, nil, r)
	st, err := r.status, r.err
	if err == nil || err == ErrTruncated {
		ep.recycleRecv(r)
	}
	return st, err
}

// RecvAsync starts a Recv and returns its Request. Cancelling ctx cancels
// the receive (see Request.Cancel).
func (ep *Endpoint) RecvAsync(ctx context.Context, peer uint32, tag, tagMask uint64, buf []byte) *Request {
	a := &asyncRecv{Request: Request{ep: ep}}
	req, r := &a.Request, &a.op
	r.src, r.tag, r.mask, r.buf, r.any = peer, tag, tagMask, buf, peer == AnySource
	r.req, req.recv = req, r
	if err := ctx.Err(); err != nil {
		return req.failed(err)
	}
	ep.mu.Lock()
	p, err := ep.startRecv(r)
	if err == nil && !r.done {
		ep.watch(ctx, req)
	}
	ep.mu.Unlock()
	if err != nil {
		return req.failed(err)
	}
	if p != nil {
		ep.pump(p)
	}
	return req
}

// startRecv validates and posts r; it returns a peer to pump (a CTS was
// queued). Under ep.mu.
func (ep *Endpoint) startRecv(r *recvOp) (*peer, error) {
	if ep.closed {
		return nil, ErrClosed
	}
	if !r.any {
		p := ep.peers[r.src]
		if p == nil {
			return nil, fmt.Errorf("%w: %d", ErrUnknownPeer, r.src)
		}
		if p.down {
			return nil, errPeerDown
		}
		ep.associate(&r.opBase, p)
	}
	ep.nextSeq++
	r.seq = ep.nextSeq
	if ep.pollGate != nil && len(r.buf) > pollMaxRecv {
		// Bulk traffic is expected: no busy polling while it is.
		r.big = true
		if ep.bigRecvs++; ep.bigRecvs == 1 {
			ep.pollGate.AllowBusyPoll(false)
		}
	}
	p := ep.post(r)
	ep.retryRefused()
	return p, nil
}

// pollMaxRecv is the largest receive buffer that keeps a wire's busy
// polling on (see busyPollGate): a larger pending receive means bulk data
// is coming, which arrives in batches that need no polling.
const pollMaxRecv = 8192

// busyPollGate is implemented by wires that busy poll (wire.UDP with
// UDPConfig.BusyPoll): the endpoint turns polling off while a receive
// larger than pollMaxRecv is pending.
type busyPollGate interface{ AllowBusyPoll(on bool) }

// endBig ends r's part in the busy-polling gate. Under ep.mu.
func (ep *Endpoint) endBig(r *recvOp) {
	if !r.big {
		return
	}
	r.big = false
	if ep.bigRecvs--; ep.bigRecvs == 0 {
		ep.pollGate.AllowBusyPoll(true)
	}
}

func (ep *Endpoint) recycleRecv(r *recvOp) {
	if !r.pooled {
		return
	}
	arrived := r.arrived
	arrived.reset()
	*r = recvOp{opBase: opBase{sig: r.sig}, arrived: arrived}
	recvOpPool.Put(r)
}

func (r *recvOp) matches(src uint32, tag uint64) bool {
	return (r.any || r.src == src) && tag&r.mask == r.tag&r.mask
}

// post matches r against the unexpected messages or queues it. It returns
// the peer to pump if a CTS was queued. Under ep.mu.
func (ep *Endpoint) post(r *recvOp) *peer {
	r.state = rPosted
	for u := ep.unexp.head; u != nil; u = u.next {
		if !r.matches(u.src, u.tag) {
			continue
		}
		ep.unexp.remove(u)
		ep.unexpRelease(u.charge)
		var pumpPeer *peer
		switch {
		case u.rdv:
			ep.startRdv(r, u.p, u.msgID, u.tag, u.total, u.seq)
			pumpPeer = u.p
		case u.complete:
			copy(r.buf, u.data.b[:u.total])
			putUbuf(u.data)
			r.mp, r.msgTag, r.total = u.p, u.tag, u.total
			ep.finishRecvOK(r)
		default:
			// Still arriving: the receive takes over as the target.
			ep.takeOver(r, u)
		}
		freeUnexp(u)
		return pumpPeer
	}
	ep.posted.insert(r)
	return nil
}

// matchPosted returns the first posted receive matching a message.
func (ep *Endpoint) matchPosted(src uint32, tag uint64) *recvOp {
	for r := ep.posted.head; r != nil; r = r.next {
		if r.matches(src, tag) {
			return r
		}
	}
	return nil
}

func (ep *Endpoint) matchEager(r *recvOp, p *peer, msgID, tag, total, seq uint64) {
	ep.posted.remove(r)
	r.state, r.mp, r.msgID, r.msgTag, r.total, r.msgSeq = rEager, p, msgID, tag, total, seq
	ep.associate(&r.opBase, p)
}

// startRdv matches r to a rendezvous message and queues the CTS.
func (ep *Endpoint) startRdv(r *recvOp, p *peer, msgID, tag, total, seq uint64) {
	ep.posted.remove(r)
	r.state, r.mp, r.msgID, r.msgTag, r.total, r.msgSeq = rRdv, p, msgID, tag, total, seq
	r.accept = min(total, uint64(len(r.buf)))
	r.got = 0
	r.arrived.reset()
	ep.associate(&r.opBase, p)
	ep.nextRecvID++
	r.recvID = ep.nextRecvID
	ep.queueCtrl(p, ctrlItem{typ: typeCTS, msgID: msgID, recvID: r.recvID, accept: r.accept})
	if r.accept == 0 {
		ep.queueCtrl(p, ctrlItem{typ: typeFin, msgID: msgID})
		ep.finishRecvOK(r)
		return
	}
	ep.rdvRecvs[r.recvID] = r
}

func (ep *Endpoint) finishRecvOK(r *recvOp) {
	ep.completed++
	ep.endBig(r)
	var err error
	if r.total > uint64(len(r.buf)) {
		err = ErrTruncated
	}
	r.state = rDone
	r.complete(Status{Source: r.mp.rank, Tag: r.msgTag, Len: int(r.total)}, err)
}

func (ep *Endpoint) finishRecv(r *recvOp, err error) {
	ep.completed++
	ep.endBig(r)
	r.state = rDone
	r.complete(Status{}, err)
}

func (ep *Endpoint) finishSend(op *sendOp, err error) {
	if op.inSeal > 0 {
		// A pump is sealing packets straight from op.buf with ep.mu
		// released: the operation completes when it is done (sealDone),
		// so that the caller gets its buffer back only once nothing
		// reads it. The first outcome wins.
		if !op.late {
			op.late, op.lateErr = true, err
			if err != nil {
				op.dead = true
			}
		}
		return
	}
	ep.completed++
	ep.wakeShutdown()
	if err != nil {
		op.dead = true
	}
	if op.kind != opMsg && ep.finishRMA(op, err) {
		return
	}
	op.complete(Status{}, err)
}

func (ep *Endpoint) dropUnexp(u *unexpMsg) {
	ep.unexp.remove(u)
	ep.unexpRelease(u.charge)
	if u.data != nil {
		putUbuf(u.data)
		u.data = nil
	}
	if c := &u.p.cur; c.unexp == u {
		c.unexp = nil
		c.discard = true
	}
	freeUnexp(u)
}

// ---- incoming message packets (under ep.mu) ----

func (ep *Endpoint) admit(charge int) bool {
	return ep.unexpUsed == 0 || ep.unexpUsed+charge <= ep.cfg.UnexpectedBytes
}

func (ep *Endpoint) onEager(p *peer, h *header, payload []byte) bool {
	c := &p.cur
	if h.Offset == 0 {
		if c.active {
			ep.abortCur(p) // the previous message was abandoned
		}
		r := ep.matchPosted(p.rank, h.Tag)
		if r == nil {
			charge := int(h.Total) + unexpOverhead
			if !ep.admit(charge) {
				return false
			}
			ep.nextSeq++
			u := newUnexp(unexpMsg{p: p, src: p.rank, tag: h.Tag, msgID: h.MsgID, total: h.Total,
				seq: ep.nextSeq, charge: charge, data: getUbuf(int(h.Total))})
			ep.unexpUsed += charge
			ep.unexp.insert(u)
			*c = curMsg{active: true, msgID: h.MsgID, tag: h.Tag, total: h.Total, seq: u.seq, unexp: u}
		} else {
			ep.nextSeq++
			ep.matchEager(r, p, h.MsgID, h.Tag, h.Total, ep.nextSeq)
			*c = curMsg{active: true, msgID: h.MsgID, tag: h.Tag, total: h.Total, seq: ep.nextSeq, recv: r}
			if uint64(len(r.buf)) < h.Total && ep.admit(int(h.Total)) {
				// Truncating: a whole copy, charged to the unexpected
				// pool, so that a failed or cancelled receive gives the
				// message back intact (without room, the bytes beyond
				// the buffer are dropped and such a receive consumes it).
				c.shadow, c.shadowCharge = getUbuf(int(h.Total)), int(h.Total)
				ep.unexpUsed += c.shadowCharge
			}
		}
	} else if !c.active || c.msgID != h.MsgID || c.got != h.Offset || h.Type == typeEager && c.total != h.Total ||
		uint64(len(payload)) > c.total-c.got {
		ep.st.malformed.Add(1)
		return true
	}
	// A MORE fragment may already be where it belongs (placeData put it
	// there, eagerTarget): then there is nothing to copy.
	switch {
	case c.shadow != nil:
		moveTo(c.shadow.b[c.got:], payload)
	case c.recv != nil:
		if b := c.recv.buf; c.got < uint64(len(b)) {
			moveTo(b[c.got:], payload)
		}
	case c.unexp != nil:
		moveTo(c.unexp.data.b[c.got:], payload)
		c.unexp.got = c.got + uint64(len(payload))
	}
	c.got += uint64(len(payload))
	if c.got == c.total {
		if c.recv != nil {
			if c.shadow != nil {
				copy(c.recv.buf, c.shadow.b)
			}
			ep.finishRecvOK(c.recv)
		}
		if c.unexp != nil {
			c.unexp.complete = true
		}
		ep.clearCur(p)
	}
	return true
}

// moveTo copies src to the start of dst, unless src is already there.
func moveTo(dst, src []byte) {
	if len(src) > 0 && len(dst) > 0 && &dst[0] == &src[0] {
		return
	}
	copy(dst, src)
}

// eagerTarget returns where the payload of a clear-header MORE fragment
// from p belongs, or nil if it must be opened in place (see placeData).
// Nothing it reads is authenticated yet, so it places only the next
// fragment in order (h.PSN is the next PSN expected from p) of the eager
// message p is sending, at the offset that message has reached: the bytes
// it may write, and on a failed authentication clear, have not arrived.
// n is the payload length. Under ep.mu.
func (ep *Endpoint) eagerTarget(p *peer, h *header, n int) []byte {
	c := &p.cur
	if h.PSN != p.rcvNxt || p.refused || !c.active || c.msgID != h.MsgID || c.got != h.Offset || uint64(n) > c.total-c.got {
		return nil
	}
	end := c.got + uint64(n)
	switch {
	case c.shadow != nil:
		return c.shadow.b[c.got:end]
	case c.recv != nil:
		if end <= uint64(len(c.recv.buf)) {
			return c.recv.buf[c.got:end]
		}
	case c.unexp != nil:
		return c.unexp.data.b[c.got:end]
	}
	return nil
}

// abortCur abandons the eager message arriving from p: its receive goes
// back to the posted queue, or its unexpected buffer is dropped.
func (ep *Endpoint) abortCur(p *peer) {
	c := p.cur
	ep.clearCur(p)
	if c.recv != nil {
		ep.repost(c.recv)
	}
	if c.unexp != nil {
		ep.dropUnexp(c.unexp)
		p.cur = curMsg{}
	}
}

// repost puts a matched receive back in the posted queue at its original
// place (its message was withdrawn).
func (ep *Endpoint) repost(r *recvOp) {
	if r.any {
		r.dissociate()
	}
	r.mp = nil
	if p := ep.post(r); p != nil {
		p.needPump = true
	}
	if r.state == rPosted {
		// A refused packet may match it now.
		ep.scheduleRetry()
	}
}

func (ep *Endpoint) onRTS(p *peer, h *header) bool {
	if r := ep.matchPosted(p.rank, h.Tag); r != nil {
		ep.nextSeq++
		ep.startRdv(r, p, h.MsgID, h.Tag, h.Total, ep.nextSeq)
		return true
	}
	if !ep.admit(unexpOverhead) {
		return false
	}
	ep.nextSeq++
	ep.unexpUsed += unexpOverhead
	ep.unexp.insert(newUnexp(unexpMsg{p: p, src: p.rank, tag: h.Tag, msgID: h.MsgID, total: h.Total,
		seq: ep.nextSeq, rdv: true, charge: unexpOverhead}))
	return true
}

func (ep *Endpoint) onData(p *peer, h *header, payload []byte) {
	r := ep.rdvRecvs[h.RecvID]
	if r == nil {
		if s := ep.sinks[h.RecvID]; s != nil {
			ep.onSinkData(p, s, h, payload)
		}
		return // else its receive was cancelled: stale data
	}
	if r.mp != p {
		return
	}
	if !r.arrived.place(r.buf, r.accept, h.Offset, payload) {
		ep.st.malformed.Add(1) // beyond what was accepted, or already arrived
		return
	}
	r.got += uint64(len(payload))
	if r.got >= r.accept {
		delete(ep.rdvRecvs, r.recvID)
		ep.queueCtrl(p, ctrlItem{typ: typeFin, msgID: r.msgID})
		ep.finishRecvOK(r)
	}
}

func (ep *Endpoint) onCTS(p *peer, h *header) {
	op := p.awaitCTS[h.MsgID]
	if op == nil || op.phase != phRTS || op.kind == opGet || op.cancelling {
		return
	}
	op.recvID = h.RecvID
	op.sendLen = int(min(h.Accept, uint64(len(op.buf))))
	op.off = 0
	if op.sendLen == 0 {
		op.phase = phFin
		return
	}
	op.phase = phData
	p.dataQ.push(op)
	p.needPump = true
}

func (ep *Endpoint) onFin(p *peer, h *header) {
	op := p.awaitCTS[h.MsgID]
	switch {
	case op == nil:
		return
	case op.kind == opGet:
		if len(op.buf) == 0 { // a 0-byte Get is granted by FIN
			ep.getDone(op)
		}
		return
	case op.cancelling:
		// The Put was placed in full before the CANCEL reached the target.
	case op.phase != phFin:
		return
	}
	delete(p.awaitCTS, h.MsgID)
	// Complete once the ring holds no packet of op (the ACK of the last
	// data packet may come after the FIN), so that op can be reused.
	op.finned = true
	if op.unacked == 0 {
		ep.finishSend(op, nil)
	}
}

func (ep *Endpoint) onRevoke(p *peer, h *header) {
	op := p.awaitCTS[h.MsgID]
	if op == nil || op.phase == phRTS || op.kind != opMsg {
		return
	}
	// The receive was cancelled; wait for the next CTS and start over.
	op.qgen++ // drops its dataQ entry
	op.phase = phRTS
	op.off = 0
}

func (ep *Endpoint) onCancel(p *peer, h *header) {
	if s := p.rmaIn[h.MsgID]; s != nil {
		// A Put in progress: confirm that nothing more is written.
		ep.dropSink(s)
		ep.queueNak(p, h.MsgID, nakCanceled)
		return
	}
	if op := p.rmaServe[h.MsgID]; op != nil {
		ep.stopServe(op)
		return
	}
	if c := &p.cur; c.active && c.msgID == h.MsgID {
		ep.abortCur(p)
		return
	}
	for u := ep.unexp.head; u != nil; u = u.next {
		if u.p == p && u.msgID == h.MsgID && (u.rdv || !u.complete) {
			ep.dropUnexp(u)
			return
		}
	}
	for id, r := range ep.rdvRecvs {
		if r.mp == p && r.msgID == h.MsgID {
			delete(ep.rdvRecvs, id)
			ep.repost(r)
			return
		}
	}
}

// ---- cancellation ----

// cancel withdraws a send or receive that has not completed.
func (ep *Endpoint) cancel(op *sendOp, r *recvOp, err error) {
	ep.mu.Lock()
	var p *peer
	if op != nil {
		p = ep.cancelSend(op, err)
	}
	if r != nil {
		p = ep.cancelRecv(r, err)
	}
	ep.mu.Unlock()
	if p != nil {
		ep.kickTx()
	}
}

func (ep *Endpoint) cancelSend(op *sendOp, err error) *peer {
	if op.done {
		return nil
	}
	if op.kind != opMsg {
		return ep.cancelRMA(op, err)
	}
	p := op.dst
	switch {
	case !op.started:
		ep.finishSend(op, err) // its msgQ entry is skipped from now on
		return nil
	case !op.rdv && !op.allBuilt && len(op.buf) > ep.cfg.EagerLimit:
		// A large eager message (SendOptions.Eager), partly sent: withdraw
		// it with a CANCEL, as a rendezvous one, rather than copy the rest
		// under the lock and send it to nobody. The CANCEL follows the
		// fragments already built; the receiver drops what it has of the
		// message (onCancel), and nothing more is built (op is dead).
		ep.finishSend(op, err)
		ep.queueCtrl(p, ctrlItem{typ: typeCancel, msgID: op.msgID})
		return p
	case !op.rdv:
		// Fragments are on the wire: finish the message in the
		// background from a private copy, so that it arrives whole.
		if !op.allBuilt {
			op.buf = bytes.Clone(op.buf)
		}
		op.pooled = false
		op.complete(Status{}, err)
		return nil
	default:
		delete(p.awaitCTS, op.msgID)
		ep.finishSend(op, err)
		ep.queueCtrl(p, ctrlItem{typ: typeCancel, msgID: op.msgID})
		return p
	}
}

func (ep *Endpoint) cancelRecv(r *recvOp, err error) *peer {
	if r.done {
		return nil
	}
	switch r.state {
	case rPosted:
		ep.posted.remove(r)
	case rEager:
		u := ep.returnEager(r)
		ep.finishRecv(r, err)
		if u != nil {
			return ep.rematch(u)
		}
		return nil
	case rRdv:
		p := r.mp
		delete(ep.rdvRecvs, r.recvID)
		ep.queueCtrl(p, ctrlItem{typ: typeRevoke, msgID: r.msgID})
		ep.unexpUsed += unexpOverhead
		u := newUnexp(unexpMsg{p: p, src: p.rank, tag: r.msgTag, msgID: r.msgID, total: r.total,
			seq: r.msgSeq, rdv: true, charge: unexpOverhead})
		ep.unexp.insert(u)
		ep.finishRecv(r, err)
		ep.rematch(u)
		return p
	}
	ep.finishRecv(r, err)
	return nil
}

// returnEager gives the eager message that r was receiving back to the
// unexpected pool, in its place, so that a later receive gets it whole,
// and returns it. If r was truncating without a shadow copy (the pool
// had no room for one), the bytes beyond its buffer are gone: the message
// is consumed (the rest of it is discarded) and returnEager returns nil.
func (ep *Endpoint) returnEager(r *recvOp) *unexpMsg {
	p := r.mp
	c := &p.cur
	data := c.shadow
	if data != nil {
		ep.unexpRelease(c.shadowCharge)
		c.shadow, c.shadowCharge = nil, 0
	} else {
		if c.got > uint64(len(r.buf)) {
			c.recv, c.discard = nil, true
			return nil
		}
		data = getUbuf(int(r.total))
		copy(data.b, r.buf[:c.got])
	}
	u := newUnexp(unexpMsg{p: p, src: p.rank, tag: r.msgTag, msgID: r.msgID, total: r.total,
		got: c.got, seq: r.msgSeq, charge: int(r.total) + unexpOverhead, data: data})
	ep.unexpUsed += u.charge
	ep.unexp.insert(u)
	c.recv, c.unexp = nil, u
	return u
}

// rematch offers u, a message put back in the unexpected pool, to the
// posted receives: no posted receive may match an unexpected message (a
// receive posted after u arrived would otherwise overtake it, or wait
// while u waits). The first match in post order takes it, as post would.
// It returns the peer to pump, if any (a CTS to send).
func (ep *Endpoint) rematch(u *unexpMsg) *peer {
	r := ep.matchPosted(u.src, u.tag)
	if r == nil {
		return nil
	}
	ep.unexp.remove(u)
	ep.unexpRelease(u.charge)
	var pumpPeer *peer
	if u.rdv {
		ep.startRdv(r, u.p, u.msgID, u.tag, u.total, u.seq)
		pumpPeer = u.p
	} else {
		ep.takeOver(r, u)
	}
	freeUnexp(u)
	return pumpPeer
}

// failMatching fails, with err, every posted receive that matches u, an
// eager message of a peer that was just timed out (put back by
// returnEager). Handing it to one of them would tie that receive to a
// silent peer, to wait for the rest of a message that may never come (an
// AnySource receive then fails as MPI's fault-tolerant wildcard receives
// do when a potential sender failed).
func (ep *Endpoint) failMatching(u *unexpMsg, err error) {
	for r := ep.posted.head; r != nil; {
		next := r.next
		if r.matches(u.src, u.tag) {
			ep.posted.remove(r)
			ep.finishRecv(r, err)
		}
		r = next
	}
}

// takeOver makes r the target of u, an eager message still arriving,
// already out of the unexpected list with its charge released.
func (ep *Endpoint) takeOver(r *recvOp, u *unexpMsg) {
	ep.matchEager(r, u.p, u.msgID, u.tag, u.total, u.seq)
	c := &u.p.cur
	c.unexp, c.recv = nil, r
	if uint64(len(r.buf)) < u.total {
		// Truncating: keep the message whole (charged to the pool).
		c.shadow, c.shadowCharge = u.data, int(u.total)
		ep.unexpUsed += c.shadowCharge
	} else {
		copy(r.buf, u.data.b[:u.got])
		putUbuf(u.data)
	}
}

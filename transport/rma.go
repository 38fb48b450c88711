package transport

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
)

// One-sided remote memory access (RMA), in the manner of RDMA verbs: an
// endpoint registers a buffer as a Region and hands its RemoteKey to a
// peer (in a message, or through the rendezvous store); the peer then
// writes (Put) or reads (Get) any range of the region without the owner
// posting a receive. The owner's endpoint checks every access against the
// region's bounds and rights, so a key grants exactly what it says.
//
// Protocol (docs/protocol.md §8): PUT and GET are reliable request packets
// on the peer's ordinary stream, checked by the target in order. A PUT of
// up to one packet carries its data inline and is answered by FIN; a
// larger PUT is answered by CTS and its data follows in DATA packets (the
// rendezvous data path, with its windows, retransmission and flow control)
// until the target, having placed all of it, answers FIN. A GET names a
// receive handle of the initiator; the target answers with DATA packets
// to that handle (FIN for 0 bytes). A refused or abandoned access is
// answered by NAK with a code.

// Access is a set of remote access rights to a Region.
type Access uint8

// Access rights.
const (
	// AccessRemoteRead lets peers Get from the region.
	AccessRemoteRead Access = 1 << iota
	// AccessRemoteWrite lets peers Put to the region.
	AccessRemoteWrite

	accessKnown = AccessRemoteRead | AccessRemoteWrite
)

func (a Access) String() string {
	switch a {
	case 0:
		return "none"
	case AccessRemoteRead:
		return "remote-read"
	case AccessRemoteWrite:
		return "remote-write"
	case AccessRemoteRead | AccessRemoteWrite:
		return "remote-read|remote-write"
	}
	return fmt.Sprintf("Access(%#x)", uint8(a))
}

// RemoteKeySize is the length of an encoded RemoteKey.
const RemoteKeySize = 40

const remoteKeyVersion = 1

// A RemoteKey names a registered Region to the peers that may access it:
// the owner's rank and incarnation, the region's ID, length and rights, and
// a random 64-bit secret. It is a small value, safe to copy, and travels
// in the 40-byte binary form of MarshalBinary (docs/protocol.md §8.6).
//
// Region IDs are never reused within an endpoint's life and a key is valid
// only for the incarnation that issued it, so a key outlives neither its
// region nor its process. Every packet is already authenticated as coming
// from a member of the group; the secret adds that a member must have been
// given the key: a buggy or malicious member cannot reach a region by
// guessing or counting IDs (a wrong secret gets ErrRegionNotFound, like a
// missing region). The secret is never printed by String.
type RemoteKey struct {
	rank, inc uint32
	id        uint64
	length    uint64
	secret    uint64
	access    Access
}

// Rank returns the rank of the region's owner.
func (k RemoteKey) Rank() uint32 { return k.rank }

// Incarnation returns the incarnation of the owner that registered it.
func (k RemoteKey) Incarnation() uint32 { return k.inc }

// Len returns the region's length in bytes.
func (k RemoteKey) Len() int { return int(k.length) }

// Access returns the rights the region grants.
func (k RemoteKey) Access() Access { return k.access }

// String describes the key without its secret.
func (k RemoteKey) String() string {
	return fmt.Sprintf("rkey{rank %d inc %d region %d len %d %v}", k.rank, k.inc, k.id, k.length, k.access)
}

// Key decoding errors: preallocated, all wrap ErrInvalidKey.
var (
	errKeySize     = fmt.Errorf("%w: wrong length (want %d bytes)", ErrInvalidKey, RemoteKeySize)
	errKeyVersion  = fmt.Errorf("%w: unsupported version (want %d)", ErrInvalidKey, remoteKeyVersion)
	errKeyReserved = fmt.Errorf("%w: reserved field not zero", ErrInvalidKey)
	errKeyZeroID   = fmt.Errorf("%w: zero region ID (the zero RemoteKey?)", ErrInvalidKey)
	errKeyNoAccess = fmt.Errorf("%w: grants no access", ErrInvalidKey)
	errKeyAccess   = fmt.Errorf("%w: undefined access bits", ErrInvalidKey)
	errKeyLength   = fmt.Errorf("%w: region length beyond 2^62", ErrInvalidKey)
)

// check validates the key's fields.
func (k *RemoteKey) check() error {
	switch {
	case k.id == 0:
		return errKeyZeroID
	case k.access == 0:
		return errKeyNoAccess
	case k.access&^accessKnown != 0:
		return errKeyAccess
	case k.length > maxRMA:
		return errKeyLength
	}
	return nil
}

// AppendBinary appends the key's binary form to b (encoding.BinaryAppender):
//
//	Version (8) = 1 | Access (8) | Reserved (16) = 0 | Rank (32) |
//	Incarnation (32) | Reserved (32) = 0 | RegionID (64) | Length (64) |
//	Secret (64)
//
// big-endian, 40 bytes. It fails only for an invalid key (the zero value).
func (k RemoteKey) AppendBinary(b []byte) ([]byte, error) {
	if err := k.check(); err != nil {
		return b, err
	}
	be := binary.BigEndian
	b = append(b, remoteKeyVersion, byte(k.access), 0, 0)
	b = be.AppendUint32(b, k.rank)
	b = be.AppendUint32(b, k.inc)
	b = be.AppendUint32(b, 0)
	b = be.AppendUint64(b, k.id)
	b = be.AppendUint64(b, k.length)
	b = be.AppendUint64(b, k.secret)
	return b, nil
}

// MarshalBinary returns the key's binary form (see AppendBinary).
func (k RemoteKey) MarshalBinary() ([]byte, error) {
	return k.AppendBinary(make([]byte, 0, RemoteKeySize))
}

// UnmarshalBinary decodes a key encoded by MarshalBinary. It is strict:
// exactly RemoteKeySize bytes, version 1, reserved fields zero, a non-zero
// region ID, known and non-empty rights, a length of at most 2^62. On error
// (wrapping ErrInvalidKey) k is unchanged.
func (k *RemoteKey) UnmarshalBinary(data []byte) error {
	if len(data) != RemoteKeySize {
		return errKeySize
	}
	if data[0] != remoteKeyVersion {
		return errKeyVersion
	}
	be := binary.BigEndian
	if data[2] != 0 || data[3] != 0 || be.Uint32(data[12:]) != 0 {
		return errKeyReserved
	}
	v := RemoteKey{
		access: Access(data[1]),
		rank:   be.Uint32(data[4:]),
		inc:    be.Uint32(data[8:]),
		id:     be.Uint64(data[16:]),
		length: be.Uint64(data[24:]),
		secret: be.Uint64(data[32:]),
	}
	if err := v.check(); err != nil {
		return err
	}
	*k = v
	return nil
}

// A Region is a buffer registered with an Endpoint for one-sided access
// by peers (Register). Its methods are safe for concurrent use.
//
// While a region is registered, peers holding its key may write (Put) or
// read (Get) its buffer at any time; the owner must order its own
// accesses to the buffer with theirs, as with RDMA: for instance, an
// initiator sends a message after its Put returned, and the owner reads
// the buffer after receiving it. Deregister ends all remote access.
type Region struct {
	ep     *Endpoint
	buf    []byte
	id     uint64
	secret uint64
	access Access
	live   bool // under ep.mu
}

// Key returns the key that names the region to peers.
func (r *Region) Key() RemoteKey {
	return RemoteKey{rank: r.ep.rank, inc: r.ep.inc, id: r.id, length: uint64(len(r.buf)), secret: r.secret, access: r.access}
}

// Len returns the region's length in bytes.
func (r *Region) Len() int { return len(r.buf) }

// Access returns the rights the region grants to peers.
func (r *Region) Access() Access { return r.access }

// randomSecret draws a region's secret.
func randomSecret() uint64 {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return binary.LittleEndian.Uint64(b[:])
}

// Register makes buf accessible to peers with the given rights
// (AccessRemoteRead, AccessRemoteWrite, or both) until Deregister, and
// returns the region; its Key is what peers pass to Put and Get. The
// endpoint keeps buf: it writes to it (Put) and reads from it (Get) on
// behalf of peers. A region may be empty (only 0-byte accesses fit).
func (ep *Endpoint) Register(buf []byte, access Access) (*Region, error) {
	if access == 0 || access&^accessKnown != 0 {
		return nil, fmt.Errorf("%w: Register: access %v: want AccessRemoteRead, AccessRemoteWrite or both", ErrConfig, access)
	}
	if uint64(len(buf)) > maxRMA {
		return nil, fmt.Errorf("%w: Register: region longer than 2^62 bytes", ErrConfig)
	}
	r := &Region{ep: ep, buf: buf, access: access, secret: ep.newSecret(), live: true}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		return nil, ErrClosed
	}
	ep.nextRegion++
	r.id = ep.nextRegion
	ep.regions[r.id] = r
	return r, nil
}

// Deregister ends remote access to r. When it returns the endpoint
// neither writes to nor reads from r's buffer any more: placement of
// incoming data happens under the endpoint's lock, which Deregister takes.
// Accesses that arrive later fail at their initiator with
// ErrRegionNotFound, and so do the Puts and Gets that were in progress on
// r (their data may have been partly placed or delivered). Deregistering a
// region twice returns an error wrapping ErrRegionNotFound. Deregister
// works on a closed Endpoint too.
func (ep *Endpoint) Deregister(r *Region) error {
	if r == nil || r.ep != ep {
		return fmt.Errorf("%w: Deregister: region not registered with this endpoint", ErrRegionNotFound)
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if !r.live {
		return fmt.Errorf("%w: Deregister: region %d already deregistered", ErrRegionNotFound, r.id)
	}
	r.live = false
	delete(ep.regions, r.id)
	kick := false
	for _, s := range ep.sinks {
		if s.region == r {
			ep.dropSink(s)
			ep.queueNak(s.p, s.msgID, nakDeregistered)
			kick = true
		}
	}
	for _, p := range ep.peerList {
		for _, op := range p.rmaServe {
			if op.region == r {
				ep.stopServe(op)
				if !op.allBuilt {
					ep.queueNak(p, op.msgID, nakDeregistered)
					kick = true
				}
			}
		}
	}
	if kick {
		ep.kickTx()
	}
	return nil
}

// Put writes buf to the region named by key, owned by peer, at offset,
// and returns when the target has placed all of it (remote completion).
// buf must not change until Put returns.
//
// key must be one of peer's (else ErrInvalidKey), from its current
// incarnation. The access is checked against the key first (rights, then
// bounds; no packet is sent if it fails) and again by the target against
// its own registration; a refusal from either side wraps
// ErrRegionNotFound, ErrAccessDenied or ErrOutOfBounds, and a refused Put
// writes nothing.
// A Put of the region being deregistered meanwhile fails with
// ErrRegionNotFound and may have placed part of its data.
//
// If ctx ends first, Put returns ctx.Err() once the target will write no
// more of it: at once if no data was sent yet, else after the target has
// confirmed the cancellation (or the peer is declared unreachable). Like an
// RDMA write that is cut short, a cancelled Put may have placed any part of
// its data; if all of it was placed before the cancellation reached the
// target, Put returns nil.
func (ep *Endpoint) Put(ctx context.Context, peer uint32, key RemoteKey, offset int64, buf []byte) error {
	return ep.rmaWait(ctx, opPut, peer, key, offset, buf)
}

// Get reads len(buf) bytes at offset of the region named by key, owned by
// peer, into buf, and returns when all of them are there. Checks and errors
// are as for Put (the region must grant AccessRemoteRead). If Get fails or
// ctx ends first, buf may hold part of the data, but nothing is written to
// it after Get returns.
func (ep *Endpoint) Get(ctx context.Context, peer uint32, key RemoteKey, offset int64, buf []byte) error {
	return ep.rmaWait(ctx, opGet, peer, key, offset, buf)
}

// PutAsync starts a Put and returns its Request. Cancelling ctx (or
// Request.Cancel) cancels it as described for Put; Request.Cancel returns
// once the target writes no more.
func (ep *Endpoint) PutAsync(ctx context.Context, peer uint32, key RemoteKey, offset int64, buf []byte) *Request {
	return ep.rmaAsync(ctx, opPut, peer, key, offset, buf)
}

// GetAsync starts a Get and returns its Request. buf must not be used
// until the request completes.
func (ep *Endpoint) GetAsync(ctx context.Context, peer uint32, key RemoteKey, offset int64, buf []byte) *Request {
	return ep.rmaAsync(ctx, opGet, peer, key, offset, buf)
}

func (ep *Endpoint) rmaWait(ctx context.Context, kind uint8, peer uint32, key RemoteKey, offset int64, buf []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := sendOpPool.Get().(*sendOp)
	op.buf, op.pooled = buf, true
	ep.mu.Lock()
	p, err := ep.startRMA(op, kind, peer, key, offset)
	ep.mu.Unlock()
	if err != nil {
		ep.recycleSend(op)
		return err
	}
	ep.pump(p)
	return ep.waitSend(ctx, op)
}

func (ep *Endpoint) rmaAsync(ctx context.Context, kind uint8, rank uint32, key RemoteKey, offset int64, buf []byte) *Request {
	req, op := newAsyncSend(ep, buf)
	return ep.startAsync(ctx, req, op, func() (*peer, error) { return ep.startRMA(op, kind, rank, key, offset) })
}

// startRMA checks a Put or Get against its key and queues it. Under ep.mu.
func (ep *Endpoint) startRMA(op *sendOp, kind uint8, rank uint32, key RemoteKey, offset int64) (*peer, error) {
	if ep.closed {
		return nil, ErrClosed
	}
	verb, want := "Put", AccessRemoteWrite
	if kind == opGet {
		verb, want = "Get", AccessRemoteRead
	}
	if err := key.check(); err != nil {
		return nil, fmt.Errorf("transport: %s: %w", verb, err)
	}
	if key.rank != rank {
		return nil, fmt.Errorf("%w: %s to peer %d with a key of rank %d", ErrInvalidKey, verb, rank, key.rank)
	}
	if key.access&want == 0 {
		return nil, fmt.Errorf("%w: %s needs %v, the key grants %v", ErrAccessDenied, verb, want, key.access)
	}
	n := uint64(len(op.buf))
	if offset < 0 || uint64(offset) > key.length || n > key.length-uint64(offset) {
		return nil, fmt.Errorf("%w: %s of %d bytes at offset %d, region of %d bytes", ErrOutOfBounds, verb, n, offset, key.length)
	}
	p := ep.peers[rank]
	if p == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownPeer, rank)
	}
	if p.down {
		return nil, errPeerDown
	}
	if p.incKnown {
		if err := keyIncarnation(key, p); err != nil {
			return nil, err
		}
	}
	ep.nextMsgID++
	op.msgID = ep.nextMsgID
	op.dst = p
	op.kind = kind
	op.rdv = true // completes on the target's answer, not on the ACK
	op.key = key
	op.roff = uint64(offset)
	op.phase = phQueued
	if kind == opGet {
		ep.nextRecvID++
		op.recvID = ep.nextRecvID
		op.sink = rmaSink{p: p, msgID: op.msgID, recvID: op.recvID, buf: op.buf, op: op}
		ep.sinks[op.recvID] = &op.sink
	}
	ep.associate(&op.opBase, p)
	p.msgQ.push(op)
	return p, nil
}

// serveOpPool recycles the internal operations that serve Gets.
var serveOpPool = sync.Pool{New: func() any { return new(sendOp) }}

// keyIncarnation checks key against the incarnation known for its owner:
// a key outlives neither its region nor its process. Under ep.mu.
func keyIncarnation(key RemoteKey, p *peer) error {
	switch {
	case key.inc < p.inc:
		return errStaleKey
	case key.inc > p.inc:
		// Requests would be addressed to the old incarnation and fail
		// anyway once the restart is seen.
		return errKeyNewer
	}
	return nil
}

// rmaSink is where DATA for a one-sided access lands: the target's region
// slice of a PUT, or the initiator's buffer of a GET.
type rmaSink struct {
	p      *peer   // the only peer whose DATA may land here
	msgID  uint64  // the initiator's MsgID
	recvID uint64  // the handle DATA names
	buf    []byte  // DATA covers exactly [0, len(buf))
	got    uint64  // bytes placed
	region *Region // PUT target: the region written (nil: a GET's initiator)
	op     *sendOp // GET initiator: the operation
	// arrived: the ranges of buf written (a GET's DATA is placed only
	// into ranges that have not arrived, as a Recv's: spans).
	arrived spans
}

// buildRMA fills h with op's PUT or GET request and returns its inline
// payload. Under ep.mu.
func (ep *Endpoint) buildRMA(p *peer, op *sendOp, h *header) []byte {
	p.msgQ.pop()
	op.started = true
	p.awaitCTS[op.msgID] = op
	h.MsgID, h.Region, h.Secret, h.Offset, h.Length = op.msgID, op.key.id, op.key.secret, op.roff, uint64(len(op.buf))
	if op.kind == opGet {
		h.Type, h.RecvID = typeGet, op.recvID
		op.phase = phRTS
		return nil
	}
	h.Type = typePut
	if len(op.buf) <= ep.fragPut {
		op.phase = phFin // all sent: wait for FIN
		op.dataOut = true
		op.off = len(op.buf)
		return op.buf
	}
	op.phase = phRTS // wait for CTS
	return nil
}

// ---- target side (under ep.mu) ----

// checkAccess checks a PUT or GET against the target's registration and
// returns the region, or a NAK code (counted in Stats). Existence and the
// secret first, so that a peer without the key learns nothing else.
func (ep *Endpoint) checkAccess(h *header, want Access) (*Region, uint32) {
	r := ep.regions[h.Region]
	if r == nil || r.secret != h.Secret {
		ep.st.rmaNotFound.Add(1)
		return nil, nakNotFound
	}
	if r.access&want == 0 {
		ep.st.rmaDenied.Add(1)
		return nil, nakDenied
	}
	if n := uint64(len(r.buf)); h.Offset > n || h.Length > n-h.Offset {
		ep.st.rmaOutOfBounds.Add(1)
		return nil, nakBounds
	}
	return r, 0
}

func (ep *Endpoint) queueNak(p *peer, msgID uint64, code uint32) {
	ep.queueCtrl(p, ctrlItem{typ: typeNak, msgID: msgID, code: code})
}

// onPut handles a PUT request: inline data is placed at once (the whole
// range was checked first), else a sink is set up and a CTS sent.
func (ep *Endpoint) onPut(p *peer, h *header, payload []byte) {
	r, code := ep.checkAccess(h, AccessRemoteWrite)
	if code != 0 {
		ep.queueNak(p, h.MsgID, code)
		return
	}
	if h.Length == 0 || len(payload) != 0 {
		// parse guarantees len(payload) == h.Length.
		copy(r.buf[h.Offset:h.Offset+h.Length], payload)
		ep.queueCtrl(p, ctrlItem{typ: typeFin, msgID: h.MsgID})
		ep.st.rmaPuts.Add(1)
		return
	}
	if old := p.rmaIn[h.MsgID]; old != nil {
		ep.dropSink(old) // a repeated MsgID: only a faulty peer does that
	}
	end := h.Offset + h.Length
	ep.nextRecvID++
	s := &rmaSink{p: p, msgID: h.MsgID, recvID: ep.nextRecvID, buf: r.buf[h.Offset:end:end], region: r}
	ep.sinks[s.recvID] = s
	p.rmaIn[h.MsgID] = s
	ep.queueCtrl(p, ctrlItem{typ: typeCTS, msgID: h.MsgID, recvID: s.recvID, accept: h.Length})
}

// onGet handles a GET request: the checked range is sent back as DATA to
// the initiator's RecvID by an internal send operation.
func (ep *Endpoint) onGet(p *peer, h *header) {
	r, code := ep.checkAccess(h, AccessRemoteRead)
	if code != 0 {
		ep.queueNak(p, h.MsgID, code)
		return
	}
	if h.Length == 0 {
		ep.queueCtrl(p, ctrlItem{typ: typeFin, msgID: h.MsgID})
		ep.st.rmaGets.Add(1)
		return
	}
	if old := p.rmaServe[h.MsgID]; old != nil {
		ep.stopServe(old)
	}
	end := h.Offset + h.Length
	op := serveOpPool.Get().(*sendOp)
	*op = sendOp{kind: opServe, dst: p, msgID: h.MsgID, recvID: h.RecvID,
		buf: r.buf[h.Offset:end:end], sendLen: int(h.Length), phase: phData, region: r}
	p.rmaServe[h.MsgID] = op
	p.dataQ.push(op)
	p.needPump = true
}

// onSinkData places a DATA packet into a PUT's region slice or a GET's
// buffer. Every fragment must fall inside the checked range.
func (ep *Endpoint) onSinkData(p *peer, s *rmaSink, h *header, payload []byte) {
	if s.p != p {
		return
	}
	if !s.arrived.place(s.buf, uint64(len(s.buf)), h.Offset, payload) {
		ep.st.malformed.Add(1)
		return
	}
	s.got += uint64(len(payload))
	if s.got < uint64(len(s.buf)) {
		return
	}
	if s.region != nil {
		ep.dropSink(s)
		ep.queueCtrl(p, ctrlItem{typ: typeFin, msgID: s.msgID})
		ep.st.rmaPuts.Add(1)
		return
	}
	ep.getDone(s.op)
}

// dropSink forgets a sink: later DATA for it is dropped.
func (ep *Endpoint) dropSink(s *rmaSink) {
	if ep.sinks[s.recvID] == s {
		delete(ep.sinks, s.recvID)
	}
	if s.region != nil && s.p.rmaIn[s.msgID] == s {
		delete(s.p.rmaIn, s.msgID)
	}
}

// stopServe ends a GET being served: nothing more of its region is read.
func (ep *Endpoint) stopServe(op *sendOp) {
	op.dead, op.done = true, true
	ep.wakeShutdown()
	if p := op.dst; p.rmaServe[op.msgID] == op {
		delete(p.rmaServe, op.msgID)
	}
}

// ---- initiator side (under ep.mu) ----

// getDone: all of a GET's data is in the caller's buffer (or it was 0
// bytes and the target granted it). It completes once its request packet
// is acknowledged too, so that the operation can be reused.
func (ep *Endpoint) getDone(op *sendOp) {
	ep.dropSink(&op.sink)
	p := op.dst
	if p.awaitCTS[op.msgID] == op {
		delete(p.awaitCTS, op.msgID)
	}
	op.finned = true
	if op.unacked == 0 && !op.done {
		ep.finishSend(op, nil)
	}
}

// onNak fails (or, after a CANCEL, ends) the PUT or GET the target refused,
// or the rendezvous send whose receive the peer failed (NAK ABORTED).
func (ep *Endpoint) onNak(p *peer, h *header) {
	op := p.awaitCTS[h.MsgID]
	if op == nil {
		return
	}
	if op.kind == opMsg {
		if h.Code == nakAborted {
			// The receiver timed this endpoint out and failed the
			// matched receive: no FIN will come.
			delete(p.awaitCTS, h.MsgID)
			ep.finishSend(op, errRecvAborted) // dead: no more DATA is built
		}
		return
	}
	delete(p.awaitCTS, h.MsgID)
	err := errRemoteCanceled
	switch h.Code {
	case nakNotFound:
		err = errRemoteNotFound
	case nakDenied:
		err = errRemoteDenied
	case nakBounds:
		err = errRemoteBounds
	case nakDeregistered:
		err = errRemoteDeregistered
	case nakAborted:
		err = errRemoteAborted
	case nakCanceled:
		if op.cancelling {
			err = op.cancelErr
		}
	}
	ep.finishSend(op, err) // dead: no more DATA is built; a GET's sink goes
}

// finishRMA is finishSend's part for one-sided operations; it reports
// whether the operation has no waiter to complete (served GETs).
func (ep *Endpoint) finishRMA(op *sendOp, err error) bool {
	switch op.kind {
	case opGet:
		ep.dropSink(&op.sink) // nothing lands in the buffer after completion
		if p := op.dst; p.awaitCTS[op.msgID] == op {
			delete(p.awaitCTS, op.msgID)
		}
	case opPut:
		if p := op.dst; p.awaitCTS[op.msgID] == op {
			delete(p.awaitCTS, op.msgID)
		}
	case opServe:
		// Normal completion (every DATA acknowledged): no queue or ring
		// slot refers to op any more, so it can be reused.
		reuse := err == nil && !op.done && op.unacked == 0
		ep.stopServe(op)
		if reuse {
			*op = sendOp{}
			serveOpPool.Put(op)
		}
		return true
	}
	return false
}

// cancelRMA withdraws a Put or Get. A Put whose data may be on its way is
// not complete until the target has confirmed it writes no more (FIN or
// NAK in answer to the CANCEL), or the peer fails. Under ep.mu.
func (ep *Endpoint) cancelRMA(op *sendOp, err error) *peer {
	p := op.dst
	switch {
	case op.cancelling:
		return nil
	case !op.started:
		ep.finishSend(op, err) // its msgQ entry is skipped from now on
		return nil
	case op.kind == opPut && op.dataOut:
		op.cancelling, op.cancelErr = true, err
		op.qgen++ // drops its dataQ entry: no more DATA
		// That entry stays in the queue until skipped: never reuse op,
		// whose generation would restart.
		op.pooled = false
		ep.queueCtrl(p, ctrlItem{typ: typeCancel, msgID: op.msgID})
		return p
	}
	ep.queueCtrl(p, ctrlItem{typ: typeCancel, msgID: op.msgID})
	ep.finishSend(op, err)
	return p
}

// failRMA fails the one-sided work p's peer asked of this endpoint (p
// failed). Without reset the peer may come back, so it is told with a NAK
// that its operations are over. Under ep.mu.
func (ep *Endpoint) failRMA(p *peer, reset bool) {
	for id, s := range p.rmaIn {
		ep.dropSink(s)
		if !reset {
			ep.queueNak(p, id, nakAborted)
		}
	}
	for id, op := range p.rmaServe {
		ep.stopServe(op)
		if !reset && !op.allBuilt {
			ep.queueNak(p, id, nakAborted)
		}
	}
}

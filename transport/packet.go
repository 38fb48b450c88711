package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Transport packet formats (docs/protocol.md §8). Every transport packet is
// the encrypted payload of one sealed datagram: the transport header is
// never in clear. All integers are big-endian.
//
//	common header (12 bytes, every packet)
//	  Type (1) | Flags (1) | Reserved (2) = 0 | DstRank (4) | DstInc (4)
//	reliable packets (Type >= typeEager) add
//	  PSN (4)
//	  [CumAck (4) | Wnd (4)]  if Flags has flagPiggyAck
//	then the type's fixed fields, then (EAGER, MORE, DATA, PUT) the payload.
//
// The exceptions to "never in clear" are DATA and MORE: their transport
// header is the clear, authenticated part of the sealed datagram (the
// security header's crypt offset), so that the receiver can place the
// payload before decrypting it (docs/protocol.md §8.2).

// pktType is the transport packet type.
type pktType uint8

const (
	typeAck    pktType = 1  // cumulative ACK, receive window, SACK ranges (unreliable)
	typePing   pktType = 2  // keepalive / discovery probe, answered by an ACK (unreliable)
	typeEager  pktType = 3  // one fragment of an eager message
	typeRTS    pktType = 4  // rendezvous request to send
	typeCTS    pktType = 5  // rendezvous clear to send
	typeData   pktType = 6  // rendezvous data fragment
	typeCancel pktType = 7  // sender withdraws a message (partial eager, or RTS)
	typeRevoke pktType = 8  // receiver withdraws a CTS (its receive was cancelled)
	typeFin    pktType = 9  // receiver has all of a rendezvous message's data (or of a PUT; or a 0-byte GET is granted)
	typePut    pktType = 10 // one-sided write request to a region, with its data inline or followed by CTS/DATA
	typeGet    pktType = 11 // one-sided read request; the target answers with DATA to the initiator's RecvID
	typeNak    pktType = 12 // the target refuses or ends a PUT or GET, or the receiver ends a rendezvous message, with an error code
	typeMore   pktType = 13 // a later fragment of an eager message (offset > 0), its header in clear
	typeMax            = typeMore
)

var typeNames = [...]string{"?", "ACK", "PING", "EAGER", "RTS", "CTS", "DATA", "CANCEL", "REVOKE", "FIN", "PUT", "GET", "NAK", "MORE"}

func (t pktType) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// reliable reports whether packets of type t carry a PSN and are delivered
// reliably and in order.
func (t pktType) reliable() bool { return t >= typeEager && t <= typeMax }

// Flags.
const (
	// flagAckNow asks the receiver to acknowledge at once (last packet of a
	// message: the sender is waiting).
	flagAckNow = 1 << 0
	// flagPiggyAck (reliable types only): the PSN is followed by
	// CumAck (32) ‖ Wnd (32), an acknowledgement riding on the packet
	// with the meaning of an ACK without SACK ranges.
	flagPiggyAck = 1 << 1
	// flagDup (ACK only): since its previous ACK the receiver got a copy
	// of a packet it already had; DupPSN (32) ‖ 0 (32) follow the fixed
	// part: the lowest such PSN. A sender whose timeout retransmitted
	// that packet once learns that its original was not lost and undoes
	// the window collapse (spurious RTO).
	flagDup = 1 << 2
	// flagEcho (ACK only): the fixed part is followed by Echo (64), the
	// Nonce of the PING this ACK answers, so that the pinging side can
	// tell a live answer from a replayed old ACK.
	flagEcho = 1 << 3
	// flagAckLazy (reliable types only, never with flagAckNow): nothing
	// waits for this packet's acknowledgement (a fragment of an eager send
	// that completed locally, Config.LocalCompletion). The receiver lets
	// it ride on its next packet to the sender, or sends it after
	// AckDelay; draining its socket does not hurry it.
	flagAckLazy = 1 << 4
	flagsKnown  = flagAckNow | flagPiggyAck | flagDup | flagEcho | flagAckLazy
)

// piggyLen is the size of a piggybacked acknowledgement.
const piggyLen = 8

// Header sizes.
const (
	commonLen   = 12
	reliableLen = commonLen + 4
	eagerHdrLen = reliableLen + 8 + 8 + 4 + 4 // msgID, tag, total, offset
	rtsLen      = reliableLen + 8 + 8 + 8     // msgID, tag, total
	ctsLen      = reliableLen + 8 + 8 + 8     // msgID, recvID, accept
	dataHdrLen  = reliableLen + 8 + 8         // recvID, offset
	moreHdrLen  = reliableLen + 8 + 8         // msgID, offset
	msgIDPktLen = reliableLen + 8             // CANCEL, REVOKE, FIN
	putHdrLen   = reliableLen + 5*8           // msgID, region, secret, offset, length
	getLen      = reliableLen + 6*8           // msgID, recvID, region, secret, offset, length
	nakLen      = reliableLen + 8 + 4         // msgID, code
	pingLen     = commonLen + 8               // nonce
	ackFixedLen = commonLen + 4 + 4 + 4       // cum, wnd, n + pad
	echoLen     = 8                           // ACK with flagEcho
	dupLen      = 8                           // ACK with flagDup
	// maxSACK is the most SACK ranges one ACK carries.
	maxSACK   = 16
	ackMaxLen = ackFixedLen + dupLen + echoLen + maxSACK*8
	// maxHdrLen is the longest transport header (payload excluded).
	maxHdrLen = ackMaxLen
)

// Parse errors: preallocated, so a flood of malformed packets allocates
// nothing. All wrap errMalformed.
var (
	errMalformed  = errors.New("transport: malformed packet")
	errShort      = fmt.Errorf("%w: shorter than its header", errMalformed)
	errType       = fmt.Errorf("%w: unknown type", errMalformed)
	errFlags      = fmt.Errorf("%w: undefined flags", errMalformed)
	errReserved   = fmt.Errorf("%w: reserved field not zero", errMalformed)
	errLength     = fmt.Errorf("%w: length does not match type", errMalformed)
	errFragment   = fmt.Errorf("%w: fragment outside its message", errMalformed)
	errEagerTotal = fmt.Errorf("%w: EAGER message longer than MaxEagerLimit", errMalformed)
	errSACKCount  = fmt.Errorf("%w: too many SACK ranges", errMalformed)
	errSACKRange  = fmt.Errorf("%w: empty or backward SACK range", errMalformed)
	errRMALength  = fmt.Errorf("%w: RMA offset or length beyond 2^62", errMalformed)
	errInline     = fmt.Errorf("%w: PUT payload neither empty nor its whole length", errMalformed)
	errNakCode    = fmt.Errorf("%w: unknown NAK code", errMalformed)
)

// maxRMA bounds the offsets and lengths of one-sided accesses (and of
// rendezvous DATA offsets): 2^62, so that offset+length never overflows.
const maxRMA = 1 << 62

// NAK codes: why a target refused or ended a PUT or GET.
const (
	nakNotFound     = 1 // no such region (never registered, deregistered, or wrong secret)
	nakDenied       = 2 // the region does not grant the access
	nakBounds       = 3 // [Offset, Offset+Length) is outside the region
	nakCanceled     = 4 // answer to the initiator's CANCEL: the target writes no more
	nakDeregistered = 5 // the region was deregistered during the transfer
	nakAborted      = 6 // the target failed the transfer (it timed the initiator out)
	nakMax          = nakAborted
)

// sackRange is a half-open PSN range [Start, End) the receiver holds beyond
// its cumulative ACK.
type sackRange struct{ Start, End uint32 }

// header is a decoded transport header. Which fields are meaningful depends
// on Type; the rest are zero.
type header struct {
	Type    pktType
	Flags   uint8
	DstRank uint32
	DstInc  uint32
	PSN     uint32 // reliable types

	MsgID  uint64 // EAGER, MORE, RTS, CTS, CANCEL, REVOKE, FIN
	Tag    uint64 // EAGER, RTS
	Total  uint64 // EAGER (< 2^32), RTS: message length
	Offset uint64 // EAGER (< 2^32), MORE (0 < Offset < MaxEagerLimit), DATA: payload's offset in the message
	RecvID uint64 // CTS, DATA: the receiver's handle for a matched receive
	Accept uint64 // CTS: bytes the receiver accepts (<= Total of the RTS)

	// PUT, GET (Offset above is the offset in the region; RecvID above
	// is, for GET, the initiator's handle the DATA answers carry).
	Region uint64 // the target's region ID
	Secret uint64 // the region's secret, from the RemoteKey
	Length uint64 // bytes to write or read
	Code   uint32 // NAK: why (nak* constants)

	// ACK
	Echo   uint64 // PING: the prober's nonce; ACK with flagEcho: the nonce answered
	DupPSN uint32 // ACK with flagDup: the lowest PSN received twice since the last ACK
	CumAck uint32 // next PSN expected in order
	Wnd    uint32 // packets accepted beyond CumAck (0: stop sending new data)
	NSACK  uint8
	SACK   [maxSACK]sackRange
}

// Len returns the encoded header length (payload excluded), or 0 for an
// unknown type.
func (h *header) Len() int {
	if h.Type.reliable() && h.Flags&flagPiggyAck != 0 {
		return h.baseLen() + piggyLen
	}
	return h.baseLen()
}

func (h *header) baseLen() int {
	switch h.Type {
	case typeAck:
		n := ackFixedLen + int(h.NSACK)*8
		if h.Flags&flagDup != 0 {
			n += dupLen
		}
		if h.Flags&flagEcho != 0 {
			n += echoLen
		}
		return n
	case typePing:
		return pingLen
	case typeEager:
		return eagerHdrLen
	case typeRTS:
		return rtsLen
	case typeCTS:
		return ctsLen
	case typeData:
		return dataHdrLen
	case typeMore:
		return moreHdrLen
	case typeCancel, typeRevoke, typeFin:
		return msgIDPktLen
	case typePut:
		return putHdrLen
	case typeGet:
		return getLen
	case typeNak:
		return nakLen
	}
	return 0
}

// AppendTo appends the encoded header to b. It does not validate field
// ranges beyond what the encoding needs; the sender builds headers from its
// own state. It allocates only if b lacks the capacity.
func (h *header) AppendTo(b []byte) []byte {
	b = append(b, byte(h.Type), h.Flags, 0, 0)
	b = binary.BigEndian.AppendUint32(b, h.DstRank)
	b = binary.BigEndian.AppendUint32(b, h.DstInc)
	be := binary.BigEndian
	if h.Type.reliable() {
		b = be.AppendUint32(b, h.PSN)
		if h.Flags&flagPiggyAck != 0 {
			b = be.AppendUint32(b, h.CumAck)
			b = be.AppendUint32(b, h.Wnd)
		}
	}
	switch h.Type {
	case typePing:
		b = be.AppendUint64(b, h.Echo)
	case typeAck:
		b = be.AppendUint32(b, h.CumAck)
		b = be.AppendUint32(b, h.Wnd)
		b = append(b, h.NSACK, 0, 0, 0)
		if h.Flags&flagDup != 0 {
			b = be.AppendUint32(b, h.DupPSN)
			b = append(b, 0, 0, 0, 0)
		}
		if h.Flags&flagEcho != 0 {
			b = be.AppendUint64(b, h.Echo)
		}
		for i := range int(h.NSACK) {
			b = be.AppendUint32(b, h.SACK[i].Start)
			b = be.AppendUint32(b, h.SACK[i].End)
		}
	case typeEager:
		b = be.AppendUint64(b, h.MsgID)
		b = be.AppendUint64(b, h.Tag)
		b = be.AppendUint32(b, uint32(h.Total))
		b = be.AppendUint32(b, uint32(h.Offset))
	case typeRTS:
		b = be.AppendUint64(b, h.MsgID)
		b = be.AppendUint64(b, h.Tag)
		b = be.AppendUint64(b, h.Total)
	case typeCTS:
		b = be.AppendUint64(b, h.MsgID)
		b = be.AppendUint64(b, h.RecvID)
		b = be.AppendUint64(b, h.Accept)
	case typeData:
		b = be.AppendUint64(b, h.RecvID)
		b = be.AppendUint64(b, h.Offset)
	case typeMore:
		b = be.AppendUint64(b, h.MsgID)
		b = be.AppendUint64(b, h.Offset)
	case typeCancel, typeRevoke, typeFin:
		b = be.AppendUint64(b, h.MsgID)
	case typePut:
		b = be.AppendUint64(b, h.MsgID)
		b = be.AppendUint64(b, h.Region)
		b = be.AppendUint64(b, h.Secret)
		b = be.AppendUint64(b, h.Offset)
		b = be.AppendUint64(b, h.Length)
	case typeGet:
		b = be.AppendUint64(b, h.MsgID)
		b = be.AppendUint64(b, h.RecvID)
		b = be.AppendUint64(b, h.Region)
		b = be.AppendUint64(b, h.Secret)
		b = be.AppendUint64(b, h.Offset)
		b = be.AppendUint64(b, h.Length)
	case typeNak:
		b = be.AppendUint64(b, h.MsgID)
		b = be.AppendUint32(b, h.Code)
	}
	return b
}

// parse decodes the transport header at the start of p (the decrypted
// payload) into h and returns the packet's payload (EAGER, DATA, and a
// PUT's inline data; empty for other types). It checks every length before
// reading, never panics and never allocates.
func (h *header) parse(p []byte) (payload []byte, err error) {
	if len(p) < commonLen {
		return nil, errShort
	}
	*h = header{}
	h.Type = pktType(p[0])
	h.Flags = p[1]
	if h.Type == 0 || h.Type > typeMax {
		return nil, errType
	}
	if h.Flags&^flagsKnown != 0 {
		return nil, errFlags
	}
	if p[2] != 0 || p[3] != 0 {
		return nil, errReserved
	}
	be := binary.BigEndian
	h.DstRank = be.Uint32(p[4:])
	h.DstInc = be.Uint32(p[8:])
	if h.Flags&(flagPiggyAck|flagAckLazy) != 0 && !h.Type.reliable() || h.Flags&(flagDup|flagEcho) != 0 && h.Type != typeAck ||
		h.Flags&(flagAckNow|flagAckLazy) == flagAckNow|flagAckLazy {
		return nil, errFlags
	}
	if h.Type == typeAck {
		if len(p) < ackFixedLen {
			return nil, errShort
		}
		h.CumAck = be.Uint32(p[12:])
		h.Wnd = be.Uint32(p[16:])
		n := int(p[20])
		if p[21] != 0 || p[22] != 0 || p[23] != 0 {
			return nil, errReserved
		}
		if n > maxSACK {
			return nil, errSACKCount
		}
		q := p[ackFixedLen:]
		if h.Flags&flagDup != 0 {
			if len(q) < dupLen {
				return nil, errShort
			}
			h.DupPSN = be.Uint32(q)
			if be.Uint32(q[4:]) != 0 {
				return nil, errReserved
			}
			q = q[dupLen:]
		}
		if h.Flags&flagEcho != 0 {
			if len(q) < echoLen {
				return nil, errShort
			}
			h.Echo = be.Uint64(q)
			q = q[echoLen:]
		}
		if len(q) != 8*n {
			return nil, errLength
		}
		h.NSACK = uint8(n)
		for i := range n {
			r := sackRange{be.Uint32(q[8*i:]), be.Uint32(q[8*i+4:])}
			if int32(r.End-r.Start) <= 0 {
				return nil, errSACKRange
			}
			h.SACK[i] = r
		}
		return nil, nil
	}
	n := h.Len()
	if len(p) < n {
		return nil, errShort
	}
	var q []byte
	if h.Type.reliable() {
		h.PSN = be.Uint32(p[12:])
		q = p[reliableLen:]
		if h.Flags&flagPiggyAck != 0 {
			h.CumAck = be.Uint32(q)
			h.Wnd = be.Uint32(q[4:])
			q = q[piggyLen:]
		}
	}
	switch h.Type {
	case typePing:
		h.Echo = be.Uint64(p[commonLen:])
	case typeEager:
		h.MsgID = be.Uint64(q)
		h.Tag = be.Uint64(q[8:])
		h.Total = uint64(be.Uint32(q[16:]))
		h.Offset = uint64(be.Uint32(q[20:]))
		payload = p[n:]
		if h.Offset > h.Total || uint64(len(payload)) > h.Total-h.Offset {
			return nil, errFragment
		}
		if h.Total > MaxEagerLimit {
			// No sender sends more eagerly (SendOptions.Eager falls back
			// to the rendezvous): this bounds what one unexpected
			// message can make a receiver allocate.
			return nil, errEagerTotal
		}
		return payload, nil
	case typeRTS:
		h.MsgID = be.Uint64(q)
		h.Tag = be.Uint64(q[8:])
		h.Total = be.Uint64(q[16:])
	case typeCTS:
		h.MsgID = be.Uint64(q)
		h.RecvID = be.Uint64(q[8:])
		h.Accept = be.Uint64(q[16:])
	case typeData:
		h.RecvID = be.Uint64(q)
		h.Offset = be.Uint64(q[8:])
		payload = p[n:]
		if h.Offset > maxRMA || uint64(len(payload)) > maxRMA-h.Offset {
			return nil, errFragment
		}
		return payload, nil
	case typeMore:
		h.MsgID = be.Uint64(q)
		h.Offset = be.Uint64(q[8:])
		payload = p[n:]
		// The first fragment is an EAGER (it carries the tag and the
		// length); a MORE continues it. (An empty payload parses: the
		// clear header of a placed MORE is parsed without its payload.)
		if h.Offset == 0 || h.Offset >= MaxEagerLimit || uint64(len(payload)) > MaxEagerLimit-h.Offset {
			return nil, errFragment
		}
		return payload, nil
	case typeCancel, typeRevoke, typeFin:
		h.MsgID = be.Uint64(q)
	case typePut:
		h.MsgID = be.Uint64(q)
		h.Region = be.Uint64(q[8:])
		h.Secret = be.Uint64(q[16:])
		h.Offset = be.Uint64(q[24:])
		h.Length = be.Uint64(q[32:])
		if h.Offset > maxRMA || h.Length > maxRMA {
			return nil, errRMALength
		}
		// The data is inline (all of it) or follows in DATA after a CTS.
		payload = p[n:]
		if len(payload) != 0 && uint64(len(payload)) != h.Length {
			return nil, errInline
		}
		return payload, nil
	case typeGet:
		h.MsgID = be.Uint64(q)
		h.RecvID = be.Uint64(q[8:])
		h.Region = be.Uint64(q[16:])
		h.Secret = be.Uint64(q[24:])
		h.Offset = be.Uint64(q[32:])
		h.Length = be.Uint64(q[40:])
		if h.Offset > maxRMA || h.Length > maxRMA {
			return nil, errRMALength
		}
	case typeNak:
		h.MsgID = be.Uint64(q)
		h.Code = be.Uint32(q[8:])
		if h.Code == 0 || h.Code > nakMax {
			return nil, errNakCode
		}
	}
	if len(p) != n {
		return nil, errLength
	}
	return nil, nil
}

package secure

import (
	"encoding/binary"
	"fmt"
)

// Wire constants of the security header (docs/protocol.md §2).
const (
	// Version is the only header version this package speaks.
	Version = 1
	// TagSize is the AES-GCM tag length at the end of every packet.
	TagSize = 16
	// MaxHeaderLen is the longest header HL can describe (15 words).
	MaxHeaderLen = 60
	// MaxCounter is the largest 48-bit counter value.
	MaxCounter = 1<<48 - 1
	// MaxIOffset is the largest IOffset in 4-byte words.
	MaxIOffset = 15
	// MaxCOffset is the largest COffset in 4-byte words.
	MaxCOffset = 255

	// OptionMasterKey is the type of the master-key option (draft Figure 5).
	OptionMasterKey = 1
	// Option lengths, type and length bytes included.
	optShortLen   = 4
	optLong16Len  = 20
	optLong32Len  = 36
	wordLen       = 4
	epochCtrLen   = 8
	maxGroupIDLen = 32
)

// Mode is the header's V field: which key context and ID form the packet uses.
type Mode uint8

const (
	// ModeSender derives one data key per sender: the 8-byte ID is
	// rank (32) ‖ incarnation (32). The default.
	ModeSender Mode = 1
	// ModeFlow derives one data key per flow: the 8-byte ID is an opaque flow
	// (connection or communicator) ID that the job allocates uniquely, e.g.
	// with the rendezvous store's atomic counter.
	ModeFlow Mode = 2
	// ModeDevice is the draft's 4-byte device-ID form. It has no
	// incarnation: a restarted device must be given a fresh epoch.
	ModeDevice Mode = 3
)

// IDLen returns the length in bytes of the ID field in mode m, or 0 if m is
// not a defined mode.
func (m Mode) IDLen() int {
	switch m {
	case ModeSender, ModeFlow:
		return 8
	case ModeDevice:
		return 4
	}
	return 0
}

func (m Mode) String() string {
	switch m {
	case ModeSender:
		return "sender"
	case ModeFlow:
		return "flow"
	case ModeDevice:
		return "device"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// SenderID builds a ModeSender ID from a rank and an incarnation.
func SenderID(rank, incarnation uint32) uint64 {
	return uint64(rank)<<32 | uint64(incarnation)
}

// KeyIndex is the root-key index byte of the master-key option: a 2-bit key
// generation per level, region in bits 5–4, user in bits 3–2, task in bits
// 1–0. Bits 7–6 are reserved and must be zero.
type KeyIndex uint8

// MakeKeyIndex packs the three levels' 2-bit generations.
func MakeKeyIndex(region, user, task uint8) KeyIndex {
	return KeyIndex((region&3)<<4 | (user&3)<<2 | task&3)
}

// Gen returns the 2-bit generation of level l.
func (k KeyIndex) Gen(l Level) uint8 {
	return uint8(k>>(2*(2-uint(l)))) & 3
}

// OptionForm says whether and how a header carries the master-key option.
type OptionForm uint8

const (
	// OptionShort (the default) carries only the root-key index (4 bytes).
	OptionShort OptionForm = iota
	// OptionLong carries the index and the group's 16- or 32-byte root-key ID.
	OptionLong
	// OptionNone omits the option: the receiver uses its current root keys
	// and its default group. Not rotation-safe: a receiver one rotation
	// behind or ahead cannot open such packets.
	OptionNone
)

// Header is the decoded security header. The zero value is not valid; set
// at least Mode.
type Header struct {
	Mode Mode
	// COffset is the number of 4-byte words after the header that stay in
	// clear but are authenticated.
	COffset uint8
	// IOffset is the number of 4-byte words before the header that are
	// authenticated (a cleartext prefix).
	IOffset uint8
	// ID is the sender (ModeSender), flow (ModeFlow) or device (ModeDevice,
	// low 32 bits only) identifier.
	ID uint64
	// Option selects the master-key option form.
	Option OptionForm
	// KeyIndex is the root-key generations used (OptionShort, OptionLong).
	KeyIndex KeyIndex
	// GroupID holds the group's root-key ID (OptionLong), GroupIDLen bytes.
	GroupID    [maxGroupIDLen]byte
	GroupIDLen uint8
	Epoch      uint16
	// Counter is a 48-bit per-data-key sequence number.
	Counter uint64
}

// Len returns the encoded length of h in bytes, or 0 if h's mode or option
// is invalid.
func (h *Header) Len() int {
	idLen := h.Mode.IDLen()
	if idLen == 0 {
		return 0
	}
	n := wordLen + idLen + epochCtrLen
	switch h.Option {
	case OptionNone:
	case OptionShort:
		n += optShortLen
	case OptionLong:
		n += optShortLen + int(h.GroupIDLen)
	default:
		return 0
	}
	return n
}

// AppendTo appends the encoded header to b. When b has the capacity it
// writes in place without allocating, so AppendTo(pkt[off:off]) fills a
// reserved header slot.
func (h *Header) AppendTo(b []byte) ([]byte, error) {
	n := h.Len()
	if n == 0 {
		if h.Mode.IDLen() == 0 {
			return b, errModeField
		}
		return b, newFieldError(ErrField, "unknown option form")
	}
	if n > MaxHeaderLen {
		return b, errHeaderTooLong
	}
	if h.Mode == ModeDevice && h.ID>>32 != 0 {
		return b, errDeviceIDRange
	}
	if h.Counter > MaxCounter {
		return b, errCounterRange
	}
	if h.IOffset > MaxIOffset {
		return b, errIOffsetRange
	}
	if h.Option != OptionNone && h.KeyIndex>>6 != 0 {
		return b, errIndexField
	}
	if h.Option == OptionLong && h.GroupIDLen != 16 && h.GroupIDLen != 32 {
		return b, errGroupIDLen
	}
	w0 := uint32(Version)<<28 | uint32(n/wordLen)<<24 | uint32(h.Mode)<<20 |
		uint32(h.COffset)<<4 | uint32(h.IOffset)
	b = binary.BigEndian.AppendUint32(b, w0)
	if h.Mode.IDLen() == 8 {
		b = binary.BigEndian.AppendUint64(b, h.ID)
	} else {
		b = binary.BigEndian.AppendUint32(b, uint32(h.ID))
	}
	switch h.Option {
	case OptionShort:
		b = append(b, OptionMasterKey, optShortLen, byte(h.KeyIndex), 0)
	case OptionLong:
		b = append(b, OptionMasterKey, byte(optShortLen+h.GroupIDLen), byte(h.KeyIndex), 0)
		b = append(b, h.GroupID[:h.GroupIDLen]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Epoch)
	b = append(b, byte(h.Counter>>40), byte(h.Counter>>32), byte(h.Counter>>24),
		byte(h.Counter>>16), byte(h.Counter>>8), byte(h.Counter))
	return b, nil
}

// ParseHeader decodes the security header at the start of pkt, which must
// hold the rest of the packet too (header, COffset words, ciphertext, tag):
// ParseHeader checks that COffset and the tag fit. It returns the header and
// its length. It never panics and never allocates; errors wrap one of
// ErrTruncated, ErrVersion, ErrMode, ErrHeaderLen, ErrOption, ErrOffset.
// Reserve bits are ignored (they are authenticated as part of the header).
func ParseHeader(pkt []byte) (h Header, n int, err error) {
	n, err = h.parse(pkt)
	return h, n, err
}

func (h *Header) parse(pkt []byte) (int, error) {
	if len(pkt) < wordLen {
		return 0, errShortWord0
	}
	w0 := binary.BigEndian.Uint32(pkt)
	if w0>>28 != Version {
		return 0, ErrVersion
	}
	n := int(w0>>24&0xf) * wordLen
	h.Mode = Mode(w0 >> 20 & 0xf)
	h.COffset = uint8(w0 >> 4)
	h.IOffset = uint8(w0 & 0xf)
	idLen := h.Mode.IDLen()
	if idLen == 0 {
		return 0, errModeField
	}
	if len(pkt) < n {
		return 0, errShortHeader
	}
	fixed := wordLen + idLen + epochCtrLen
	if n < fixed {
		return 0, errHLSmall
	}
	p := pkt[wordLen:n]
	if idLen == 8 {
		h.ID = binary.BigEndian.Uint64(p)
	} else {
		h.ID = uint64(binary.BigEndian.Uint32(p))
	}
	p = p[idLen:]
	h.Option, h.KeyIndex, h.GroupIDLen = OptionNone, 0, 0
	if optLen := n - fixed; optLen > 0 {
		if optLen < 2 {
			return 0, errOptShort
		}
		if p[0] != OptionMasterKey {
			return 0, errOptType
		}
		l := int(p[1])
		if l != optShortLen && l != optLong16Len && l != optLong32Len {
			return 0, errOptLen
		}
		if l != optLen {
			return 0, errOptLenHL
		}
		h.KeyIndex = KeyIndex(p[2])
		if h.KeyIndex>>6 != 0 {
			return 0, errOptIndex
		}
		// p[3] is padding: zero on send, ignored on receive.
		if l == optShortLen {
			h.Option = OptionShort
		} else {
			h.Option = OptionLong
			h.GroupIDLen = uint8(l - optShortLen)
			copy(h.GroupID[:], p[optShortLen:l])
		}
		p = p[l:]
	}
	h.Epoch = binary.BigEndian.Uint16(p)
	h.Counter = uint64(p[2])<<40 | uint64(p[3])<<32 | uint64(p[4])<<24 |
		uint64(p[5])<<16 | uint64(p[6])<<8 | uint64(p[7])
	if len(pkt)-n < TagSize {
		return 0, errShortTag
	}
	if int(h.COffset)*wordLen > len(pkt)-n-TagSize {
		return 0, errCOffset
	}
	return n, nil
}

// GroupIDBytes returns the group ID carried by a long-form option, or nil.
func (h *Header) GroupIDBytes() []byte {
	if h.Option != OptionLong {
		return nil
	}
	return h.GroupID[:h.GroupIDLen]
}

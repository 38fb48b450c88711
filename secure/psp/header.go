package psp

import (
	"encoding/binary"
	"strconv"
)

// Wire constants of the PSP header (docs/protocol.md, PSP section).
const (
	// BaseHeaderLen is the PSP header without the virtualization cookie:
	// next header, Hdr Ext Len, crypt offset, flags, SPI (4), IV (8).
	BaseHeaderLen = 16
	// VCLen is the length of the optional virtualization cookie.
	VCLen = 8
	// MaxHeaderLen is the longest header this package writes or accepts.
	MaxHeaderLen = BaseHeaderLen + VCLen
	// ICVLen is the length of the integrity check value (the AES-GCM or
	// AES-GMAC tag) that ends every PSP packet.
	ICVLen = 16
	// MaxCryptOffset is the largest crypt offset, in 4-byte words (6 bits).
	MaxCryptOffset = 63
	// DefaultPort is the UDP destination port of PSP (the specification's
	// default, used by the reference implementation).
	DefaultPort = 1000
	// SPIKeySelector is the SPI bit that selects master key 1 over master
	// key 0.
	SPIKeySelector = 1 << 31

	wordLen = 4

	flagSample = 1 << 7
	flagDrop   = 1 << 6
	flagVC     = 1 << 1
	flagOne    = 1 << 0
	verShift   = 2
	verMask    = 0xf
	coMask     = 0x3f
	resShift   = 6
)

// Version is the PSP version: the AEAD and key size.
type Version uint8

// The PSP versions.
const (
	// V0 is AES-GCM with a 128-bit key.
	V0 Version = 0
	// V1 is AES-GCM with a 256-bit key.
	V1 Version = 1
	// V2 is AES-GMAC with a 128-bit key: authentication only, nothing is
	// encrypted.
	V2 Version = 2
	// V3 is AES-GMAC with a 256-bit key.
	V3 Version = 3
)

// Valid reports whether v is one of the four defined versions.
func (v Version) Valid() bool { return v <= V3 }

// KeyLen returns the derived key length of v in bytes: 16 for V0 and V2, 32
// for V1 and V3 (0 if v is not valid).
func (v Version) KeyLen() int {
	switch v {
	case V0, V2:
		return 16
	case V1, V3:
		return 32
	}
	return 0
}

// GMAC reports whether v authenticates without encrypting.
func (v Version) GMAC() bool { return v == V2 || v == V3 }

func (v Version) String() string {
	switch v {
	case V0:
		return "aes-gcm-128"
	case V1:
		return "aes-gcm-256"
	case V2:
		return "aes-gmac-128"
	case V3:
		return "aes-gmac-256"
	}
	return "psp-version(" + strconv.Itoa(int(v)) + ")"
}

// Header is a decoded PSP header:
//
//	byte 0      next header (the protocol of the payload: 6, 17, 4, 41, ...)
//	byte 1      Hdr Ext Len = (header length − 8) / 8: 1, or 2 with a VC
//	byte 2      R (2 bits, reserved) | crypt offset (6 bits, 4-byte words)
//	byte 3      S | D | version (4) | V | 1
//	bytes 4–7   SPI
//	bytes 8–15  IV
//	bytes 16–23 virtualization cookie, if V
//
// The zero value is a valid V0 header without a cookie.
type Header struct {
	NextHeader uint8
	// CryptOffset is the number of 4-byte words after the IV (the VC
	// included) that stay in clear but are authenticated.
	CryptOffset uint8
	// Reserved holds the two R bits of byte 2: zero on send; carried (and
	// authenticated) on receive so that parse and append round-trip.
	Reserved uint8
	Version  Version
	// Sample and Drop are the S and D flags (timestamp sampling and drop
	// hints for the receiver's NIC); authenticated, otherwise unused here.
	Sample, Drop bool
	SPI          uint32
	IV           uint64
	// HasVC says whether the header carries the 8-byte virtualization
	// cookie VC (the V bit).
	HasVC bool
	VC    uint64
}

// Len returns the encoded length of h: 16, or 24 with a VC.
func (h *Header) Len() int {
	if h.HasVC {
		return BaseHeaderLen + VCLen
	}
	return BaseHeaderLen
}

// AppendTo appends the encoded header to b. When b has the capacity it
// writes in place without allocating, so AppendTo(pkt[:0]) fills a reserved
// header slot.
func (h *Header) AppendTo(b []byte) ([]byte, error) {
	if !h.Version.Valid() {
		return b, errVersionField
	}
	if h.CryptOffset > MaxCryptOffset {
		return b, errCryptOffRange
	}
	if h.Reserved > 3 {
		return b, errReservedRange
	}
	ext := byte(1)
	flags := byte(h.Version)<<verShift | flagOne
	if h.HasVC {
		ext = 2
		flags |= flagVC
	}
	if h.Sample {
		flags |= flagSample
	}
	if h.Drop {
		flags |= flagDrop
	}
	b = append(b, h.NextHeader, ext, h.Reserved<<resShift|h.CryptOffset, flags)
	b = binary.BigEndian.AppendUint32(b, h.SPI)
	b = binary.BigEndian.AppendUint64(b, h.IV)
	if h.HasVC {
		b = binary.BigEndian.AppendUint64(b, h.VC)
	}
	return b, nil
}

// ParseHeader decodes the PSP header at the start of pkt and returns it and
// its length. It checks the header alone: ParsePacket also checks that the
// crypt offset and the ICV fit. It never panics and never allocates; errors
// wrap ErrTruncated, ErrHeader or ErrVersion.
//
// Parsing is strict: the always-one bit must be set and Hdr Ext Len must be
// exactly 1 without a VC and 2 with one (PSP defines no other extension).
// The R, S and D bits are returned, not judged: they are authenticated.
func ParseHeader(pkt []byte) (h Header, n int, err error) {
	n, err = h.parse(pkt)
	return h, n, err
}

func (h *Header) parse(pkt []byte) (int, error) {
	if len(pkt) < BaseHeaderLen {
		return 0, errShortHeader
	}
	flags := pkt[3]
	if flags&flagOne == 0 {
		return 0, errAlwaysOne
	}
	h.Version = Version(flags >> verShift & verMask)
	if !h.Version.Valid() {
		return 0, errVersionField
	}
	h.HasVC = flags&flagVC != 0
	n := BaseHeaderLen
	want := byte(1)
	if h.HasVC {
		n, want = BaseHeaderLen+VCLen, 2
	}
	if pkt[1] != want {
		return 0, errExtLen
	}
	if len(pkt) < n {
		return 0, errShortExt
	}
	h.NextHeader = pkt[0]
	h.CryptOffset = pkt[2] & coMask
	h.Reserved = pkt[2] >> resShift
	h.Sample = flags&flagSample != 0
	h.Drop = flags&flagDrop != 0
	h.SPI = binary.BigEndian.Uint32(pkt[4:])
	h.IV = binary.BigEndian.Uint64(pkt[8:])
	h.VC = 0
	if h.HasVC {
		h.VC = binary.BigEndian.Uint64(pkt[16:])
	}
	return n, nil
}

// ParsePacket decodes the PSP header of a whole PSP packet (header,
// payload, ICV) and checks that the crypt offset and the ICV fit in it. It
// never panics and never allocates.
func ParsePacket(pkt []byte) (h Header, n int, err error) {
	n, err = h.parsePacket(pkt)
	return h, n, err
}

func (h *Header) parsePacket(pkt []byte) (int, error) {
	n, err := h.parse(pkt)
	if err != nil {
		return 0, err
	}
	if len(pkt) < n+ICVLen {
		return 0, errShortICV
	}
	// The crypt offset counts from the end of the IV, the VC included.
	if BaseHeaderLen+int(h.CryptOffset)*wordLen > len(pkt)-ICVLen {
		return 0, errCryptOffset
	}
	return n, nil
}

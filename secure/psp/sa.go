package psp

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/sealring/sealring/internal/aesgcm"
	"github.com/sealring/sealring/internal/cpu"
)

// The crypto path is chosen once per process, as in package secure: from
// the CPU's features and SEALRING_CRYPTO.
var defaultPath, defaultPathErr = cpu.Choose(cpu.VAES512)

func pathFor(name string) (cpu.Path, error) {
	if name == "" {
		return defaultPath, defaultPathErr
	}
	p, forced, err := cpu.ParsePath(name)
	if err != nil {
		return cpu.Generic, err
	}
	if !forced {
		return cpu.Best(cpu.VAES512), nil
	}
	if !cpu.Supported(p) {
		return cpu.Generic, fmt.Errorf("crypto path %s is not available on this machine or build", p)
	}
	return p, nil
}

// SA holds the key of one PSP security association (SPI, version, derived
// key), ready to seal and open PSP packets. It is a fixed-size value
// without pointers: Init sets it up in place without allocating, so a
// receiver can derive an SA on the stack for every packet (derive on
// receive) and a table can hold an array of them. After Init, Seal and
// Open may be called concurrently; Init and Wipe must not race with them.
//
// SA.Seal takes the IV from the caller; Sealer wraps an SA with the IV
// counter a sender needs.
type SA struct {
	aead    aesgcm.AEAD
	spi     uint32
	version Version
	ok      bool
}

// Init sets sa up for (key, spi, v). key must be v.KeyLen() bytes. crypto
// forces a crypto path by name ("" = the process default, see
// secure.CryptoPath).
func (sa *SA) Init(key []byte, spi uint32, v Version, crypto string) error {
	p, err := pathFor(crypto)
	if err != nil {
		sa.Wipe()
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return sa.init(p, key, spi, v)
}

func (sa *SA) init(p cpu.Path, key []byte, spi uint32, v Version) error {
	if !v.Valid() {
		sa.Wipe()
		return errVersionField
	}
	if len(key) != v.KeyLen() {
		sa.Wipe()
		return fmt.Errorf("%w: %d-byte key for %s, want %d", ErrKeySize, len(key), v, v.KeyLen())
	}
	if err := sa.aead.Init(p, key); err != nil {
		sa.Wipe()
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	sa.spi, sa.version, sa.ok = spi, v, true
	return nil
}

// Wipe zeroes the key; sa must be initialised again before use.
func (sa *SA) Wipe() {
	sa.aead.Wipe()
	sa.spi, sa.version, sa.ok = 0, 0, false
}

// SPI returns the association's SPI.
func (sa *SA) SPI() uint32 { return sa.spi }

// Version returns the association's PSP version.
func (sa *SA) Version() Version { return sa.version }

var errNotInit = newFieldError(ErrConfig, "security association used before Init")

// Seal protects a PSP packet in place. pkt is laid out as
//
//	pkt[:h.Len()]   room for the PSP header, overwritten with h
//	pkt[h.Len():]   the payload (the protocol h.NextHeader names)
//
// h.SPI and h.Version must be the association's. The first
// 4·h.CryptOffset bytes after the IV (the VC included) stay in clear and
// are authenticated, the rest is encrypted (V0, V1) or only authenticated
// (V2, V3). Seal returns pkt extended by the 16-byte ICV; it allocates only
// if pkt lacks the capacity for it. The caller must never use an IV twice
// with one SA (Sealer does this bookkeeping).
func (sa *SA) Seal(pkt []byte, h *Header) ([]byte, error) {
	if !sa.ok {
		return pkt, errNotInit
	}
	if h.SPI != sa.spi {
		return pkt, errSPIMismatch
	}
	if h.Version != sa.version {
		return pkt, errVersionSA
	}
	hl := h.Len()
	if len(pkt) < hl {
		return pkt, errShortHeader
	}
	if BaseHeaderLen+int(h.CryptOffset)*wordLen > len(pkt) {
		return pkt, errCryptOffset
	}
	if _, err := h.AppendTo(pkt[:0]); err != nil {
		return pkt, err
	}
	if cap(pkt)-len(pkt) < ICVLen {
		pkt = slices.Grow(pkt, ICVLen)
	}
	sa.seal(pkt, int(h.CryptOffset))
	return pkt[:len(pkt)+ICVLen], nil
}

// seal computes the ICV of pkt (header written, payload in clear) into
// pkt[len(pkt):len(pkt)+16], encrypting in place unless the version is
// GMAC. The caller has checked the crypt offset and the capacity.
func (sa *SA) seal(pkt []byte, cryptOff int) {
	var nonce [12]byte
	copy(nonce[:], pkt[4:16]) // SPI ‖ IV, as on the wire
	end := len(pkt)
	if sa.version.GMAC() {
		sa.aead.Seal(pkt[end:end], nonce[:], nil, pkt[:end])
		return
	}
	aadEnd := BaseHeaderLen + cryptOff*wordLen
	sa.aead.Seal(pkt[aadEnd:aadEnd], nonce[:], pkt[aadEnd:end], pkt[:aadEnd])
}

// Opened is the result of Open: the header and the payload, a slice of the
// packet, which was decrypted in place.
type Opened struct {
	// Header is the PSP header; its VC is the decrypted one when the crypt
	// offset left part of the VC encrypted.
	Header Header
	// HeaderLen is the PSP header's length (16 or 24).
	HeaderLen int
	// Payload is the protocol data after the header (and VC), decrypted:
	// pkt[HeaderLen : len(pkt)-16].
	Payload []byte
}

// Open authenticates and decrypts, in place, the PSP packet pkt (header,
// payload, ICV). The packet's SPI and version must be the association's.
// Every packet is authenticated, including one whose encrypted part is
// empty. On failure the encrypted region is zeroed and the error wraps
// ErrAuth, ErrSPI, ErrVersion or a header error. Open does not allocate.
func (sa *SA) Open(pkt []byte) (Opened, error) {
	var r Opened
	if !sa.ok {
		return r, errNotInit
	}
	hl, err := r.Header.parsePacket(pkt)
	if err != nil {
		return r, err
	}
	if r.Header.SPI != sa.spi {
		return r, errSPIMismatch
	}
	if r.Header.Version != sa.version {
		return r, errVersionSA
	}
	if err := sa.open(pkt, &r.Header); err != nil {
		return r, err
	}
	r.HeaderLen = hl
	r.Payload = pkt[hl : len(pkt)-ICVLen]
	return r, nil
}

// open verifies and decrypts a packet whose header h has been parsed and
// checked by parsePacket.
func (sa *SA) open(pkt []byte, h *Header) error {
	var nonce [12]byte
	copy(nonce[:], pkt[4:16])
	end := len(pkt) - ICVLen
	if sa.version.GMAC() {
		if _, err := sa.aead.Open(pkt[end:end], nonce[:], pkt[end:], pkt[:end]); err != nil {
			return errAuth
		}
		return nil
	}
	aadEnd := BaseHeaderLen + int(h.CryptOffset)*wordLen
	if _, err := sa.aead.Open(pkt[aadEnd:aadEnd], nonce[:], pkt[aadEnd:], pkt[:aadEnd]); err != nil {
		return errAuth
	}
	if h.HasVC && aadEnd < BaseHeaderLen+VCLen {
		h.VC = binary.BigEndian.Uint64(pkt[BaseHeaderLen:])
	}
	return nil
}

// SealerConfig configures a Sealer: one sending security association.
type SealerConfig struct {
	// Key is the association's derived key (Version.KeyLen() bytes), as
	// the receiver handed it over.
	Key []byte
	// SPI is the receiver-allocated SPI.
	SPI uint32
	// Version selects the AEAD; the zero value is V0 (AES-GCM-128).
	Version Version
	// FirstIV is the first IV used; 0 means 1 (as the reference
	// implementation does). IVs then increase by one per packet.
	FirstIV uint64
	// VC, when HasVC is set, is the virtualization cookie every header
	// carries.
	HasVC bool
	VC    uint64
	// Port is the UDP destination port of the IP encapsulations; 0 means
	// DefaultPort (1000).
	Port uint16
	// Crypto forces a crypto path by name ("" = the process default).
	Crypto string
}

// Sealer seals packets for one security association: it owns the IV
// counter. It is safe for concurrent use (one atomic add per packet).
type Sealer struct {
	sa         SA
	first      uint64
	n          atomic.Uint64 // IVs handed out
	hasVC      bool
	vc         uint64
	port       uint16
	ext, flags byte // header bytes 1 and 3
}

// NewSealer returns a Sealer for cfg.
func NewSealer(cfg SealerConfig) (*Sealer, error) {
	s := &Sealer{first: cfg.FirstIV, hasVC: cfg.HasVC, vc: cfg.VC, port: cfg.Port}
	if s.first == 0 {
		s.first = 1
	}
	if s.port == 0 {
		s.port = DefaultPort
	}
	if err := s.sa.Init(cfg.Key, cfg.SPI, cfg.Version, cfg.Crypto); err != nil {
		return nil, err
	}
	h := Header{Version: cfg.Version, HasVC: cfg.HasVC}
	var hb [MaxHeaderLen]byte
	if _, err := h.AppendTo(hb[:0]); err != nil {
		return nil, err
	}
	s.ext, s.flags = hb[1], hb[3]
	return s, nil
}

// HeaderLen is the PSP header length this Sealer writes: 16, or 24 with a
// VC.
func (s *Sealer) HeaderLen() int {
	if s.hasVC {
		return BaseHeaderLen + VCLen
	}
	return BaseHeaderLen
}

// Overhead is what Seal adds around the payload: header and ICV.
func (s *Sealer) Overhead() int { return s.HeaderLen() + ICVLen }

// SPI returns the association's SPI.
func (s *Sealer) SPI() uint32 { return s.sa.spi }

// Wipe zeroes the key; Seal fails afterwards. It must not race with Seal.
func (s *Sealer) Wipe() { s.sa.Wipe() }

// nextIV hands out the next IV, failing once the 64-bit space is used up.
func (s *Sealer) nextIV() (uint64, error) {
	n := s.n.Add(1) - 1
	if n > math.MaxUint64-s.first {
		return 0, ErrIVExhausted
	}
	return s.first + n, nil
}

// Seal protects a PSP packet in place with the next IV: pkt[:HeaderLen()]
// is room for the header, pkt[HeaderLen():] the payload, whose protocol
// nextHeader names; cryptOffset words after the IV stay in clear (see
// SA.Seal). It returns pkt extended by the ICV.
func (s *Sealer) Seal(pkt []byte, nextHeader, cryptOffset uint8) ([]byte, error) {
	if !s.sa.ok {
		return pkt, errNotInit
	}
	hl := s.HeaderLen()
	if len(pkt) < hl {
		return pkt, errShortHeader
	}
	if cryptOffset > MaxCryptOffset {
		return pkt, errCryptOffRange
	}
	if BaseHeaderLen+int(cryptOffset)*wordLen > len(pkt) {
		return pkt, errCryptOffset
	}
	iv, err := s.nextIV()
	if err != nil {
		return pkt, err
	}
	if cap(pkt)-len(pkt) < ICVLen {
		pkt = slices.Grow(pkt, ICVLen)
	}
	// The header of Header.AppendTo, written directly: the fields are
	// checked already, and this is the per-packet path.
	pkt[0], pkt[1], pkt[2], pkt[3] = nextHeader, s.ext, cryptOffset, s.flags
	binary.BigEndian.PutUint32(pkt[4:], s.sa.spi)
	binary.BigEndian.PutUint64(pkt[8:], iv)
	if s.hasVC {
		binary.BigEndian.PutUint64(pkt[16:], s.vc)
	}
	s.sa.seal(pkt, int(cryptOffset))
	return pkt[:len(pkt)+ICVLen], nil
}

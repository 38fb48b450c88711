package secure

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sealring/sealring/internal/cpu"
)

// SealerConfig configures a Sealer.
type SealerConfig struct {
	// Mode is the key-context mode; zero means ModeSender.
	Mode Mode
	// ID is the sender ID (SenderID(rank, incarnation)), flow ID or device
	// ID. It must be unique to this Sealer within the group: two Sealers
	// with one ID and one epoch would reuse nonces.
	ID uint64
	// Option selects the master-key option form; the zero value,
	// OptionShort, carries the root-key generations (rotation-safe).
	// OptionLong adds the group ID (for receivers holding several groups).
	Option OptionForm
	// Crypto forces a crypto path by name ("" = the process default).
	Crypto string
}

// Sealer seals packets for one sender. It owns the sender's counter and is
// safe for concurrent use: the hot path is one atomic add and one atomic
// load, with no lock.
type Sealer struct {
	group  *Group
	mode   Mode
	id     uint64
	option OptionForm
	path   cpu.Path
	hdrLen int

	mu    sync.Mutex // serialises re-derivation
	state atomic.Pointer[sealState]
}

// sealState pairs the group snapshot the Sealer last saw with the data key
// in use. A snapshot change that leaves the key alone (an epoch bump the
// sender is already past) keeps the same *sealKey, and so the same counter.
type sealState struct {
	snap *groupSnap
	key  *sealKey
}

// sealKey is one data key (master key generations, epoch) and its counter.
type sealKey struct {
	epoch   uint16
	index   KeyIndex
	counter atomic.Uint64 // last counter handed out
	hdr     [MaxHeaderLen]byte
	keys    derived
}

// NewSealer returns a Sealer for group g.
func NewSealer(g *Group, cfg SealerConfig) (*Sealer, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: nil group", ErrConfig)
	}
	if cfg.Mode == 0 {
		cfg.Mode = ModeSender
	}
	if cfg.Mode.IDLen() == 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errModeField)
	}
	if cfg.Mode == ModeDevice && cfg.ID>>32 != 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errDeviceIDRange)
	}
	if cfg.Option > OptionNone {
		return nil, fmt.Errorf("%w: unknown option form %d", ErrConfig, cfg.Option)
	}
	p, err := pathFor(cfg.Crypto)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Sealer{group: g, mode: cfg.Mode, id: cfg.ID, option: cfg.Option, path: p}
	s.hdrLen = s.template(&Header{}).Len()
	snap := g.snap.Load()
	if err := s.install(snap, snap.epoch); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sealer) template(h *Header) *Header {
	h.Mode, h.ID, h.Option = s.mode, s.id, s.option
	if s.option == OptionLong {
		h.GroupIDLen = s.group.idLen
		h.GroupID = s.group.id
	}
	return h
}

// install derives the data key for (snap's current keys, epoch).
func (s *Sealer) install(snap *groupSnap, epoch uint16) error {
	k := &sealKey{epoch: epoch, index: snap.current}
	m := snap.byIndex[snap.current]
	if err := m.derive(&k.keys, s.path, s.mode, s.id, epoch); err != nil {
		return fmt.Errorf("secure: deriving data key: %w", err)
	}
	h := s.template(&Header{})
	h.KeyIndex, h.Epoch = k.index, epoch
	if _, err := h.AppendTo(k.hdr[:0]); err != nil {
		return err
	}
	s.state.Store(&sealState{snap: snap, key: k})
	return nil
}

// HeaderLen is the length of the security header this Sealer writes.
func (s *Sealer) HeaderLen() int { return s.hdrLen }

// Overhead is the bytes Seal adds around the payload: header and tag.
func (s *Sealer) Overhead() int { return s.hdrLen + TagSize }

// Epoch returns the epoch of the data key in use.
func (s *Sealer) Epoch() uint16 { return s.state.Load().key.epoch }

// ID returns the sealer's sender, flow or device ID.
func (s *Sealer) ID() uint64 { return s.id }

// BumpEpoch moves this sender to the next epoch (a fresh data key and
// counter) ahead of the group, for instance after ErrCounterExhausted.
// Receivers accept one epoch ahead of the group's; bumping further than
// that needs the controller to bump the group's epoch.
func (s *Sealer) BumpEpoch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.group.snap.Load()
	e := max(s.state.Load().key.epoch, snap.epoch)
	if e == 0xffff {
		return ErrEpochExhausted
	}
	return s.install(snap, e+1)
}

// current returns the data key to seal with, following the group's
// rotations and epoch bumps.
func (s *Sealer) current() (*sealKey, error) {
	st := s.state.Load()
	if snap := s.group.snap.Load(); st.snap != snap {
		s.mu.Lock()
		defer s.mu.Unlock()
		st = s.state.Load()
		snap = s.group.snap.Load()
		if st.snap != snap {
			epoch := max(st.key.epoch, snap.epoch)
			if snap.current == st.key.index && epoch == st.key.epoch && snap.byIndex[snap.current] == st.snap.byIndex[st.key.index] {
				s.state.Store(&sealState{snap: snap, key: st.key})
			} else if err := s.install(snap, epoch); err != nil {
				return nil, err
			}
			st = s.state.Load()
		}
	}
	return st.key, nil
}

// Seal encrypts and authenticates a packet in place. pkt is laid out as
//
//	pkt[:hdrOff]                       cleartext prefix, authenticated (IOffset = hdrOff/4)
//	pkt[hdrOff:hdrOff+HeaderLen()]     room for the security header, overwritten
//	next clearLen bytes                cleartext, authenticated (COffset = clearLen/4)
//	the rest                           plaintext, encrypted in place
//
// hdrOff and clearLen must be multiples of 4, at most 60 and 1020. Seal
// returns pkt extended by the 16-byte tag; it allocates only if pkt lacks
// the capacity for it.
func (s *Sealer) Seal(pkt []byte, hdrOff, clearLen int) ([]byte, error) {
	return s.seal(pkt, hdrOff, clearLen, nil, false)
}

// SealFrom is Seal with the plaintext taken from payload instead of from
// the packet: pkt holds only the prefix, the room for the header and the
// clear part (len(pkt) is hdrOff+HeaderLen()+clearLen), and SealFrom
// appends the ciphertext of payload and the tag. It saves the copy of the
// payload into the packet when the payload sits elsewhere, such as an
// application's send buffer. payload must not overlap pkt's spare
// capacity. It allocates only if pkt lacks the capacity for
// len(payload)+TagSize more bytes.
func (s *Sealer) SealFrom(pkt []byte, hdrOff, clearLen int, payload []byte) ([]byte, error) {
	if payload == nil {
		payload = []byte{}
	}
	return s.seal(pkt, hdrOff, clearLen, payload, true)
}

func (s *Sealer) seal(pkt []byte, hdrOff, clearLen int, payload []byte, from bool) ([]byte, error) {
	if hdrOff < 0 || hdrOff%wordLen != 0 || hdrOff > MaxIOffset*wordLen {
		return pkt, fmt.Errorf("%w: header offset %d is not a multiple of 4 in 0..60", ErrOffset, hdrOff)
	}
	if clearLen < 0 || clearLen%wordLen != 0 || clearLen > MaxCOffset*wordLen {
		return pkt, fmt.Errorf("%w: clear length %d is not a multiple of 4 in 0..1020", ErrOffset, clearLen)
	}
	aadEnd := hdrOff + s.hdrLen + clearLen
	if len(pkt) < aadEnd {
		return pkt, fmt.Errorf("%w: packet of %d bytes has no room for prefix, header and clear part (%d)", ErrTruncated, len(pkt), aadEnd)
	}
	if from && len(pkt) != aadEnd {
		return pkt, fmt.Errorf("%w: SealFrom's packet holds %d bytes after the clear part", ErrOffset, len(pkt)-aadEnd)
	}
	k, err := s.current()
	if err != nil {
		return pkt, err
	}
	ctr := k.counter.Add(1)
	if ctr > MaxCounter {
		return pkt, ErrCounterExhausted
	}
	if cap(pkt)-len(pkt) < len(payload)+TagSize {
		pkt = slices.Grow(pkt, len(payload)+TagSize)
	}
	h := pkt[hdrOff : hdrOff+s.hdrLen]
	copy(h, k.hdr[:s.hdrLen])
	h[2] = byte(clearLen / wordLen >> 4)
	h[3] = byte(clearLen/wordLen)<<4 | byte(hdrOff/wordLen)
	c := h[s.hdrLen-6:]
	c[0], c[1], c[2], c[3], c[4], c[5] = byte(ctr>>40), byte(ctr>>32), byte(ctr>>24), byte(ctr>>16), byte(ctr>>8), byte(ctr)
	var n [nonceSize]byte
	nonce(&n, &k.keys.ivMask, s.id, k.epoch, ctr)
	if from {
		return k.keys.aead.Seal(pkt, n[:], payload, pkt[:aadEnd]), nil
	}
	pt := pkt[aadEnd:]
	k.keys.aead.Seal(pt[:0], n[:], pt, pkt[:aadEnd])
	return pkt[:len(pkt)+TagSize], nil
}

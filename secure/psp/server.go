package psp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealring/sealring/internal/cpu"
)

// MaxSPIIndex is the largest SPI index under one master key: an SPI is
// (master-key selector bit 31) ‖ (31-bit index), and index 0 is never
// allocated.
const MaxSPIIndex = 1<<31 - 1

// ServerConfig configures a Server. The zero value is usable: random master
// keys, the process's crypto path.
type ServerConfig struct {
	// MasterKeys, if non-nil, are the initial master keys 0 and 1 (for
	// example the reference's decrypt.cfg, or keys restored after a
	// restart); nil draws both at random. Slot 0 is current.
	//
	// The Server cannot know which SPIs were already handed out under
	// given keys, and handing one out again would give a second sender
	// the first one's key (both counting IVs from 1). So unless Allocated
	// says where allocation stopped, a Server with given MasterKeys
	// allocates nothing under them: NewSA and AllocatePair fail with
	// ErrSPIExhausted until Rotate replaces a key. Derivation and Open
	// work at once.
	MasterKeys *[2][MasterKeyLen]byte
	// Allocated, with MasterKeys, is the last SPI index handed out under
	// each master key, as Server.Allocated reported it before the
	// restart; allocation resumes after it. Ignored without MasterKeys.
	Allocated *[2]uint32
	// Rand is the source of fresh master keys; nil means crypto/rand.
	Rand io.Reader
	// Crypto forces a crypto path by name ("" = the process default).
	Crypto string
}

// Server is the receiving side of PSP as the specification models it: it
// holds two master keys, selected by SPI bit 31; it allocates SPIs under
// the current master key (never the same SPI twice under one master key)
// and derives each association's key from its master key and SPI; it keeps
// no per-association state, so on receive it derives the key from the
// packet's SPI (derive on receive). Rotate replaces the older master key
// with a fresh one and makes it current, so associations created under the
// previous key keep working until the next rotation.
//
// A Server is safe for concurrent use; Open takes no lock.
type Server struct {
	path cpu.Path
	rand io.Reader

	mu   sync.Mutex // serialises allocation and rotation
	next [2]uint32  // last SPI index handed out, per slot (guarded by mu)

	state atomic.Pointer[serverKeys]

	ivBase uint64 // wall-clock nanoseconds when the Server was created
	ivN    atomic.Uint64
}

// serverKeys is an immutable snapshot of the master keys, each prepared
// for derivation.
type serverKeys struct {
	prf     [2]prf
	current uint8     // slot new associations use
	gen     [2]uint64 // rotation generation of each slot's key
}

// NewServer returns a Server for cfg.
func NewServer(cfg ServerConfig) (*Server, error) {
	p, err := pathFor(cfg.Crypto)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Server{path: p, rand: cfg.Rand, ivBase: uint64(time.Now().UnixNano())}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if cfg.MasterKeys != nil {
		s.next = [2]uint32{MaxSPIIndex, MaxSPIIndex}
		if cfg.Allocated != nil {
			if max(cfg.Allocated[0], cfg.Allocated[1]) > MaxSPIIndex {
				return nil, fmt.Errorf("%w: allocated SPI index %d over %d", ErrConfig, max(cfg.Allocated[0], cfg.Allocated[1]), MaxSPIIndex)
			}
			s.next = *cfg.Allocated
		}
	}
	k := new(serverKeys)
	for i := range k.prf {
		var mk [MasterKeyLen]byte
		var err error
		if cfg.MasterKeys != nil {
			mk = cfg.MasterKeys[i]
		} else if _, err = io.ReadFull(s.rand, mk[:]); err != nil {
			err = fmt.Errorf("psp: drawing master key %d: %w", i, err)
		}
		if err == nil {
			err = k.prf[i].init(p, &mk)
		}
		clear(mk[:])
		if err != nil {
			k.prf[0].wipe()
			k.prf[1].wipe()
			return nil, err
		}
	}
	k.gen = [2]uint64{0, 1}
	s.state.Store(k)
	return s, nil
}

// SAKey is what a receiver hands to a sender, out of band, for one
// association: the SPI, the version and the derived key.
type SAKey struct {
	SPI     uint32
	Version Version
	// Key holds the derived key in its first Version.KeyLen() bytes.
	Key [32]byte
}

// Bytes returns the derived key, Version.KeyLen() bytes.
func (k *SAKey) Bytes() []byte { return k.Key[:k.Version.KeyLen()] }

// Wipe zeroes the key.
func (k *SAKey) Wipe() { clear(k.Key[:]) }

// NewSA allocates a fresh SPI under the current master key and returns the
// association's key for version v. The caller hands it to the sender over
// an authenticated, confidential channel. It fails with ErrSPIExhausted
// when the current master key has handed out all 2^31−1 SPIs: Rotate.
func (s *Server) NewSA(v Version) (SAKey, error) {
	spi, err := s.allocate(1)
	if err != nil {
		return SAKey{}, err
	}
	return s.DeriveSA(spi, v)
}

// AllocatePair allocates two SPIs, spi and spi|1 (spi is even), under the
// current master key, for a pair of associations whose second member a
// stateless peer finds from the first (one per direction).
func (s *Server) AllocatePair() (uint32, error) { return s.allocate(2) }

// AllocatePairRotating is AllocatePair, except that when the current
// master key has no SPI pair left it rotates first (see Rotate) and
// allocates under the fresh key. Callers that find the key exhausted at
// the same time rotate once between them, not once each: a second
// rotation would end the associations of the previous key too.
func (s *Server) AllocatePairRotating() (uint32, error) {
	var fresh [MasterKeyLen]byte
	defer clear(fresh[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	spi, err := s.allocateLocked(2)
	if !errors.Is(err, ErrSPIExhausted) {
		return spi, err
	}
	if _, err := io.ReadFull(s.rand, fresh[:]); err != nil {
		return 0, fmt.Errorf("psp: drawing a master key: %w", err)
	}
	if err := s.rotateLocked(&fresh); err != nil {
		return 0, err
	}
	return s.allocateLocked(2)
}

// allocate hands out n (1 or 2) consecutive SPI indexes, the first a
// multiple of n, under the current master key.
func (s *Server) allocate(n uint32) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allocateLocked(n)
}

func (s *Server) allocateLocked(n uint32) (uint32, error) {
	cur := s.state.Load().current
	i := s.next[cur] + 1
	if r := i % n; r != 0 {
		i += n - r
	}
	if i > MaxSPIIndex-(n-1) {
		return 0, ErrSPIExhausted
	}
	s.next[cur] = i + n - 1
	return uint32(cur)<<31 | i, nil
}

// Allocated returns the last SPI index handed out under each master key
// (slot 0 and 1), the state ServerConfig.Allocated restores.
func (s *Server) Allocated() [2]uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// DeriveSA derives the key of association (spi, v) from the master key spi
// selects (the derivation of DeriveKey, with the master key's AES schedule
// and CMAC subkey prepared once). It does not allocate: it is how the
// receive side and a restarted server recompute a key.
func (s *Server) DeriveSA(spi uint32, v Version) (SAKey, error) {
	k := SAKey{SPI: spi, Version: v}
	if !v.Valid() {
		return k, errVersionField
	}
	s.state.Load().prf[spi>>31].derive(k.Key[:v.KeyLen()], spi, v)
	return k, nil
}

// InitSA derives the key of (spi, v) and initialises sa with it, in place.
func (s *Server) InitSA(sa *SA, spi uint32, v Version) error {
	k, err := s.DeriveSA(spi, v)
	if err != nil {
		return err
	}
	err = sa.init(s.path, k.Bytes(), spi, v)
	k.Wipe()
	return err
}

// NextIV returns a fresh IV for a packet that the Server's owner seals
// itself under a key this Server derives (a reply to a sender, under the
// sender's paired SPI). All such packets must take their IVs here, however
// many goroutines or endpoints share the Server: IVs come from one atomic
// counter started at the wall-clock time in nanoseconds when the Server
// was created, so no IV repeats under a key, also not across a restart
// with the same master keys, as long as the clock does not go back and
// fewer than one IV per nanosecond is drawn on average. Two Servers with
// the same master keys running at once do not share the counter and must
// not both seal under the same keys.
func (s *Server) NextIV() uint64 { return s.ivBase + s.ivN.Add(1) }

// Rotate replaces the older master key with a fresh random one and makes
// it current. The previous current key stays, so associations created
// under it keep working; associations created under the replaced key stop
// working (their packets fail authentication). SPI allocation under the
// fresh key starts again at 1: an SPI is never reused under one master
// key.
func (s *Server) Rotate() error {
	var fresh [MasterKeyLen]byte
	if _, err := io.ReadFull(s.rand, fresh[:]); err != nil {
		return fmt.Errorf("psp: drawing a master key: %w", err)
	}
	return s.rotateTo(&fresh)
}

func (s *Server) rotateTo(fresh *[MasterKeyLen]byte) error {
	defer clear(fresh[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotateLocked(fresh)
}

func (s *Server) rotateLocked(fresh *[MasterKeyLen]byte) error {
	old := s.state.Load()
	k := *old
	slot := 1 - old.current
	if err := k.prf[slot].init(s.path, fresh); err != nil {
		return err
	}
	k.current = slot
	k.gen[slot] = max(old.gen[0], old.gen[1]) + 1
	s.next[slot] = 0
	s.state.Store(&k)
	return nil
}

// Current returns the slot (0 or 1, the SPI bit 31 of new associations)
// and the rotation generation of the current master key.
func (s *Server) Current() (slot int, generation uint64) {
	k := s.state.Load()
	return int(k.current), k.gen[k.current]
}

// Open authenticates and decrypts, in place, a PSP packet sent under any
// association this Server's two master keys can derive: it derives the key
// from the packet's SPI and version (no per-association state). It does
// not allocate. Errors are those of SA.Open.
func (s *Server) Open(pkt []byte) (Opened, error) {
	var r Opened
	hl, err := r.Header.parsePacket(pkt)
	if err != nil {
		return r, err
	}
	var sa SA
	if err := s.InitSA(&sa, r.Header.SPI, r.Header.Version); err != nil {
		return r, err
	}
	err = sa.open(pkt, &r.Header)
	sa.Wipe()
	if err != nil {
		return r, err
	}
	r.HeaderLen = hl
	r.Payload = pkt[hl : len(pkt)-ICVLen]
	return r, nil
}

// OpenIP is OpenIP(pkt, port, s.Open).
func (s *Server) OpenIP(pkt []byte, port uint16) (Decapsulated, error) {
	return OpenIP(pkt, port, s.Open)
}

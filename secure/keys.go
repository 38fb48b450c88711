package secure

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/sealring/sealring/internal/cpu"
)

// Level names one of the three root-key levels that combine into a group's
// master key (draft §4.1).
type Level uint8

const (
	// Region is the trust-region root key, held by the infrastructure provider.
	Region Level = iota
	// User is the user-group root key, held by the user group's administrator.
	User
	// Task is the task-group root key: one job or sub-communicator.
	Task
	numLevels = 3
)

func (l Level) String() string {
	switch l {
	case Region:
		return "region"
	case User:
		return "user"
	case Task:
		return "task"
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

// KeySize is the size of root keys, master keys and data keys (AES-256).
const KeySize = 32

// RootKey is one root key and its 2-bit generation. Generations count
// rotations modulo 4; a level holds at most three consecutive generations
// (previous, current, next), so the fourth value is never ambiguous.
//
// RootKey never prints its key: String, GoString and Format all redact it.
type RootKey struct {
	Gen uint8
	Key [KeySize]byte
}

// GenerateRootKey returns a fresh random root key of generation gen.
func GenerateRootKey(gen uint8) (RootKey, error) {
	k := RootKey{Gen: gen & 3}
	if _, err := io.ReadFull(rand.Reader, k.Key[:]); err != nil {
		return RootKey{}, fmt.Errorf("secure: generating root key: %w", err)
	}
	return k, nil
}

func (k RootKey) String() string   { return fmt.Sprintf("RootKey{Gen: %d, Key: REDACTED}", k.Gen) }
func (k RootKey) GoString() string { return k.String() }

// Format redacts the key for every fmt verb (%x and %d included).
func (k RootKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LevelKeys are one level's slots. Previous is optional (a new job has
// none); Current and Next are required, and their generations must follow
// each other: Next.Gen == Current.Gen+1 mod 4 (and Previous.Gen ==
// Current.Gen-1 mod 4).
type LevelKeys struct {
	Previous *RootKey
	Current  RootKey
	Next     RootKey
}

// GenerateLevelKeys makes random current and next keys with generations 0 and 1.
func GenerateLevelKeys() (LevelKeys, error) {
	cur, err := GenerateRootKey(0)
	if err != nil {
		return LevelKeys{}, err
	}
	next, err := GenerateRootKey(1)
	if err != nil {
		return LevelKeys{}, err
	}
	return LevelKeys{Current: cur, Next: next}, nil
}

// Combiner says how a group's three root keys become its master key.
type Combiner uint8

const (
	// CombineHKDF (the default) is HKDF-SHA256 over region ‖ user ‖ task,
	// salted with the group ID. No administrator of one level can shift the
	// master key by a chosen delta.
	CombineHKDF Combiner = iota
	// CombineXOR is the draft's region ⊕ user ⊕ task, for interoperability.
	// It lets whoever holds one root key move the master key by a known
	// delta (a related-key setting); prefer CombineHKDF.
	CombineXOR
)

const hkdfInfo = "sealring master key v1"

// GroupConfig describes a trust group.
type GroupConfig struct {
	// ID is the group's root-key ID, 16 or 32 bytes, carried in long-form
	// master-key options so that a receiver holding several groups (a
	// gateway) picks the right one.
	ID       []byte
	Keys     [numLevels]LevelKeys
	Combiner Combiner
	// Epoch is the group's initial epoch.
	Epoch uint16
}

// Group is a trust group: the root keys its members share, their master
// keys, and the group's current epoch. It is safe for concurrent use;
// Rotate and SetEpoch publish a new immutable snapshot, so sealing and
// opening never take a lock.
//
// Group never prints its keys.
type Group struct {
	id       [maxGroupIDLen]byte
	idLen    uint8
	combiner Combiner
	path     cpu.Path

	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[groupSnap]
}

// slot numbers within a level.
const (
	slotPrev = iota
	slotCur
	slotNext
	numSlots
)

// groupSnap is an immutable view of a group's keys and epoch.
type groupSnap struct {
	keys    [numLevels][numSlots]RootKey
	present [numLevels][numSlots]bool
	// byIndex maps a 6-bit root-key index to the master key of that
	// combination of generations, nil where a level lacks that generation.
	byIndex [64]*masterKey
	current KeyIndex
	epoch   uint16
}

// NewGroup validates cfg and computes the master keys of every combination
// of held root keys.
func NewGroup(cfg GroupConfig) (*Group, error) {
	return newGroup(cfg, defaultPath)
}

func newGroup(cfg GroupConfig, path cpu.Path) (*Group, error) {
	if defaultPathErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, defaultPathErr)
	}
	if len(cfg.ID) != 16 && len(cfg.ID) != 32 {
		return nil, fmt.Errorf("%w: group ID is %d bytes, want 16 or 32", ErrConfig, len(cfg.ID))
	}
	if cfg.Combiner > CombineXOR {
		return nil, fmt.Errorf("%w: unknown combiner %d", ErrConfig, cfg.Combiner)
	}
	g := &Group{idLen: uint8(len(cfg.ID)), combiner: cfg.Combiner, path: path}
	copy(g.id[:], cfg.ID)
	var s groupSnap
	for l := range numLevels {
		lk := cfg.Keys[l]
		if lk.Next.Gen&3 != (lk.Current.Gen+1)&3 || lk.Current.Gen > 3 || lk.Next.Gen > 3 {
			return nil, fmt.Errorf("%w: %v level: next generation %d does not follow current %d", ErrConfig, Level(l), lk.Next.Gen, lk.Current.Gen)
		}
		if lk.Previous != nil {
			if lk.Previous.Gen > 3 || (lk.Previous.Gen+1)&3 != lk.Current.Gen {
				return nil, fmt.Errorf("%w: %v level: previous generation %d does not precede current %d", ErrConfig, Level(l), lk.Previous.Gen, lk.Current.Gen)
			}
			s.keys[l][slotPrev], s.present[l][slotPrev] = *lk.Previous, true
		}
		s.keys[l][slotCur], s.present[l][slotCur] = lk.Current, true
		s.keys[l][slotNext], s.present[l][slotNext] = lk.Next, true
	}
	s.epoch = cfg.Epoch
	if err := g.computeMasters(&s, nil); err != nil {
		return nil, err
	}
	g.snap.Store(&s)
	return g, nil
}

// computeMasters fills s.byIndex and s.current. Master keys whose three root
// keys are unchanged from old are reused.
func (g *Group) computeMasters(s *groupSnap, old *groupSnap) error {
	s.current = MakeKeyIndex(s.keys[Region][slotCur].Gen, s.keys[User][slotCur].Gen, s.keys[Task][slotCur].Gen)
	s.byIndex = [64]*masterKey{}
	for a := range numSlots {
		for b := range numSlots {
			for c := range numSlots {
				if !s.present[Region][a] || !s.present[User][b] || !s.present[Task][c] {
					continue
				}
				ka, kb, kc := &s.keys[Region][a], &s.keys[User][b], &s.keys[Task][c]
				idx := MakeKeyIndex(ka.Gen, kb.Gen, kc.Gen)
				if old != nil {
					if m := old.byIndex[idx]; m != nil && sameKeys(old, idx, ka, kb, kc) {
						s.byIndex[idx] = m
						continue
					}
				}
				m, err := g.newMaster(ka, kb, kc)
				if err != nil {
					return err
				}
				s.byIndex[idx] = m
			}
		}
	}
	return nil
}

// sameKeys reports whether old holds exactly ka, kb, kc under idx.
func sameKeys(old *groupSnap, idx KeyIndex, ka, kb, kc *RootKey) bool {
	want := [numLevels]*RootKey{ka, kb, kc}
	for l := range numLevels {
		found := false
		for sl := range numSlots {
			k := &old.keys[l][sl]
			if old.present[l][sl] && k.Gen == idx.Gen(Level(l)) {
				found = subtle.ConstantTimeCompare(k.Key[:], want[l].Key[:]) == 1
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (g *Group) newMaster(ka, kb, kc *RootKey) (*masterKey, error) {
	var mk [KeySize]byte
	switch g.combiner {
	case CombineXOR:
		for i := range mk {
			mk[i] = ka.Key[i] ^ kb.Key[i] ^ kc.Key[i]
		}
	default:
		var ikm [3 * KeySize]byte
		copy(ikm[0:], ka.Key[:])
		copy(ikm[KeySize:], kb.Key[:])
		copy(ikm[2*KeySize:], kc.Key[:])
		out, err := hkdf.Key(sha256.New, ikm[:], g.id[:g.idLen], hkdfInfo, KeySize)
		clear(ikm[:])
		if err != nil {
			return nil, fmt.Errorf("secure: combining root keys: %w", err)
		}
		copy(mk[:], out)
		clear(out)
	}
	m, err := newMasterKey(g.path, mk[:])
	clear(mk[:])
	return m, err
}

// ID returns a copy of the group's root-key ID.
func (g *Group) ID() []byte { return bytes.Clone(g.id[:g.idLen]) }

func (g *Group) hasID(id []byte) bool { return bytes.Equal(g.id[:g.idLen], id) }

// Epoch returns the group's current epoch.
func (g *Group) Epoch() uint16 { return g.snap.Load().epoch }

// KeyIndex returns the generations of the current root keys.
func (g *Group) KeyIndex() KeyIndex { return g.snap.Load().current }

// String describes the group without its keys.
func (g *Group) String() string {
	s := g.snap.Load()
	return fmt.Sprintf("Group{ID: %x, Epoch: %d, Current: %#02x, Keys: REDACTED}", g.id[:g.idLen], s.epoch, uint8(s.current))
}

// Rotate advances one level: next becomes current, current becomes
// previous, and newNext (supplied by the level's controller, the same on
// every member) becomes next with the following generation. The old
// previous key is forgotten.
//
// Rotation never stops traffic as long as every member of the group is
// within one rotation of every other: a member that has rotated seals with
// the new current generation, which lagging members hold as next, and still
// opens the lagging members' packets with its previous key. The controller
// (rendezvous) ensures it by waiting for every member to confirm rotation k
// before starting rotation k+1.
func (g *Group) Rotate(level Level, newNext [KeySize]byte) error {
	if level >= numLevels {
		return fmt.Errorf("%w: no root-key level %d", ErrConfig, level)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.snap.Load()
	s := *old
	lk := &s.keys[level]
	pr := &s.present[level]
	lk[slotPrev], pr[slotPrev] = lk[slotCur], pr[slotCur]
	lk[slotCur], pr[slotCur] = lk[slotNext], pr[slotNext]
	lk[slotNext], pr[slotNext] = RootKey{Gen: (lk[slotCur].Gen + 1) & 3, Key: newNext}, true
	if err := g.computeMasters(&s, old); err != nil {
		return err
	}
	g.snap.Store(&s)
	return nil
}

// SetEpoch sets the group's current epoch. Receivers accept packets from
// the current epoch, one ahead, and OpenerConfig.EpochWindow behind; senders
// follow the group's epoch on their next packet. Lowering the epoch is
// refused: it would let a sender reuse a data key with a reset counter.
func (g *Group) SetEpoch(epoch uint16) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.snap.Load()
	if epoch < old.epoch {
		return fmt.Errorf("%w: epoch %d is below the current %d", ErrConfig, epoch, old.epoch)
	}
	s := *old
	s.epoch = epoch
	g.snap.Store(&s)
	return nil
}

// BumpEpoch advances the group's epoch by one and returns the new value.
func (g *Group) BumpEpoch() (uint16, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.snap.Load()
	if old.epoch == 0xffff {
		return old.epoch, ErrEpochExhausted
	}
	s := *old
	s.epoch++
	g.snap.Store(&s)
	return s.epoch, nil
}

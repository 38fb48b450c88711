package rendezvous

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sealring/sealring/secure"
)

// Binary encodings of the key material that the KeyController publishes
// and members fetch (see JOIN_NOTES.md). Both are versioned and strict:
// every length is checked, trailing bytes are refused, and decoding errors
// never include key bytes.
//
// Key state (store key "keys/state"), version 1, big-endian:
//
//	"SRKS" | version u8 = 1 | combiner u8 | epoch u16 | seq u64 |
//	idLen u8 (16 or 32) | groupID | jobIDLen u8 | jobID (ASCII) |
//	3 × level (region, user, task):
//	    flags u8 (bit 0: previous present; others zero) |
//	    [prevGen u8 | prevKey 32] | curGen u8 | curKey 32 | nextGen u8 | nextKey 32
//
// Control event (store key "keys/ev/<seq>"), version 1:
//
//	"SRKE" | version u8 = 1 | kind u8 | seq u64 | idLen u8 | groupID | body
//	kind 1 (rotate): level u8 | gen u8 (generation of the new next key) | key 32
//	kind 2 (epoch):  epoch u16 (the group's new epoch, absolute)

const (
	keyFormatVersion = 1
	stateMagic       = "SRKS"
	eventMagic       = "SRKE"
)

// Event kinds.
const (
	eventRotate = 1
	eventEpoch  = 2
)

var errKeyFormat = errors.New("rendezvous: malformed key material")

// keyState is a trust group's complete key configuration after seq control
// events: what a joining member needs to build its secure.Group.
type keyState struct {
	seq      uint64
	jobID    string
	groupID  []byte
	combiner secure.Combiner
	epoch    uint16
	levels   [3]secure.LevelKeys
}

// String never prints keys.
func (s *keyState) String() string {
	return fmt.Sprintf("keyState{seq: %d, group: %x, epoch: %d, keys: REDACTED}", s.seq, s.groupID, s.epoch)
}

func (s *keyState) groupConfig() secure.GroupConfig {
	cfg := secure.GroupConfig{ID: append([]byte(nil), s.groupID...), Combiner: s.combiner, Epoch: s.epoch}
	for l := range s.levels {
		cfg.Keys[l] = s.levels[l]
		if p := s.levels[l].Previous; p != nil {
			pc := *p
			cfg.Keys[l].Previous = &pc
		}
	}
	return cfg
}

// wipe clears the key bytes held by s (best effort: Go may have copied them).
func (s *keyState) wipe() {
	for l := range s.levels {
		if p := s.levels[l].Previous; p != nil {
			clear(p.Key[:])
		}
		clear(s.levels[l].Current.Key[:])
		clear(s.levels[l].Next.Key[:])
	}
}

// clone returns a deep copy of s.
func (s *keyState) clone() *keyState {
	c := *s
	c.groupID = append([]byte(nil), s.groupID...)
	for l := range c.levels {
		if p := s.levels[l].Previous; p != nil {
			pc := *p
			c.levels[l].Previous = &pc
		}
	}
	return &c
}

// apply returns the state after ev, or an error if ev does not follow s.
func (s *keyState) apply(ev *keyEvent) (*keyState, error) {
	if ev.seq != s.seq+1 {
		return nil, fmt.Errorf("rendezvous: key event %d does not follow state %d: %w", ev.seq, s.seq, errKeyFormat)
	}
	n := s.clone()
	n.seq = ev.seq
	switch ev.kind {
	case eventRotate:
		lk := &n.levels[ev.level]
		if want := (lk.Next.Gen + 1) & 3; ev.gen != want {
			return nil, fmt.Errorf("rendezvous: key event %d rotates %v to generation %d, want %d: %w", ev.seq, ev.level, ev.gen, want, errKeyFormat)
		}
		prev := lk.Current
		lk.Previous = &prev
		lk.Current = lk.Next
		lk.Next = secure.RootKey{Gen: ev.gen, Key: ev.key}
	case eventEpoch:
		if ev.epoch < n.epoch {
			return nil, fmt.Errorf("rendezvous: key event %d lowers the epoch from %d to %d: %w", ev.seq, n.epoch, ev.epoch, errKeyFormat)
		}
		n.epoch = ev.epoch
	}
	return n, nil
}

func appendRootKey(b []byte, k *secure.RootKey) []byte {
	b = append(b, k.Gen)
	return append(b, k.Key[:]...)
}

func (s *keyState) marshal() []byte {
	b := make([]byte, 0, 4+1+1+2+8+1+len(s.groupID)+1+len(s.jobID)+3*(1+3*33))
	b = append(b, stateMagic...)
	b = append(b, keyFormatVersion, byte(s.combiner))
	b = binary.BigEndian.AppendUint16(b, s.epoch)
	b = binary.BigEndian.AppendUint64(b, s.seq)
	b = append(b, byte(len(s.groupID)))
	b = append(b, s.groupID...)
	b = append(b, byte(len(s.jobID)))
	b = append(b, s.jobID...)
	for l := range s.levels {
		lk := &s.levels[l]
		if lk.Previous != nil {
			b = append(b, 1)
			b = appendRootKey(b, lk.Previous)
		} else {
			b = append(b, 0)
		}
		b = appendRootKey(b, &lk.Current)
		b = appendRootKey(b, &lk.Next)
	}
	return b
}

// reader is a bounds-checked cursor over an encoded value.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) rootKey() secure.RootKey {
	var k secure.RootKey
	k.Gen = r.u8()
	if v := r.take(secure.KeySize); v != nil {
		copy(k.Key[:], v)
	}
	if k.Gen > 3 {
		r.bad = true
	}
	return k
}

func (r *reader) header(magic string) (kindOrCombiner uint8, ok bool) {
	if string(r.take(4)) != magic {
		return 0, false
	}
	if r.u8() != keyFormatVersion {
		return 0, false
	}
	return r.u8(), !r.bad
}

func (r *reader) groupID() []byte {
	n := int(r.u8())
	if n != 16 && n != 32 {
		r.bad = true
		return nil
	}
	return append([]byte(nil), r.take(n)...)
}

func unmarshalState(b []byte) (*keyState, error) {
	r := &reader{b: b}
	comb, ok := r.header(stateMagic)
	if !ok {
		return nil, fmt.Errorf("rendezvous: key state: bad magic or unsupported version: %w", errKeyFormat)
	}
	s := &keyState{combiner: secure.Combiner(comb)}
	if s.combiner > secure.CombineXOR {
		return nil, fmt.Errorf("rendezvous: key state: unknown combiner %d: %w", comb, errKeyFormat)
	}
	s.epoch = r.u16()
	s.seq = r.u64()
	s.groupID = r.groupID()
	s.jobID = string(r.take(int(r.u8())))
	for l := range s.levels {
		flags := r.u8()
		if flags&^1 != 0 {
			r.bad = true
		}
		if flags&1 != 0 {
			p := r.rootKey()
			s.levels[l].Previous = &p
		}
		s.levels[l].Current = r.rootKey()
		s.levels[l].Next = r.rootKey()
	}
	if r.bad || len(r.b) != 0 {
		s.wipe()
		return nil, fmt.Errorf("rendezvous: key state: truncated, oversized or invalid field: %w", errKeyFormat)
	}
	return s, nil
}

// keyEvent is one control event.
type keyEvent struct {
	seq     uint64
	kind    uint8
	groupID []byte
	// rotate
	level secure.Level
	gen   uint8
	key   [secure.KeySize]byte
	// epoch
	epoch uint16
}

func (e *keyEvent) String() string {
	switch e.kind {
	case eventRotate:
		return fmt.Sprintf("event %d (rotate %v root key to generation %d)", e.seq, e.level, e.gen)
	case eventEpoch:
		return fmt.Sprintf("event %d (epoch %d)", e.seq, e.epoch)
	}
	return fmt.Sprintf("event %d (kind %d)", e.seq, e.kind)
}

func (e *keyEvent) marshal() []byte {
	b := make([]byte, 0, 4+2+8+1+len(e.groupID)+2+secure.KeySize)
	b = append(b, eventMagic...)
	b = append(b, keyFormatVersion, e.kind)
	b = binary.BigEndian.AppendUint64(b, e.seq)
	b = append(b, byte(len(e.groupID)))
	b = append(b, e.groupID...)
	switch e.kind {
	case eventRotate:
		b = append(b, byte(e.level), e.gen)
		b = append(b, e.key[:]...)
	case eventEpoch:
		b = binary.BigEndian.AppendUint16(b, e.epoch)
	}
	return b
}

func unmarshalEvent(b []byte) (*keyEvent, error) {
	r := &reader{b: b}
	kind, ok := r.header(eventMagic)
	if !ok {
		return nil, fmt.Errorf("rendezvous: key event: bad magic or unsupported version: %w", errKeyFormat)
	}
	e := &keyEvent{kind: kind}
	e.seq = r.u64()
	e.groupID = r.groupID()
	switch kind {
	case eventRotate:
		e.level = secure.Level(r.u8())
		e.gen = r.u8()
		if v := r.take(secure.KeySize); v != nil {
			copy(e.key[:], v)
		}
		if e.level > secure.Task || e.gen > 3 {
			r.bad = true
		}
	case eventEpoch:
		e.epoch = r.u16()
	default:
		return nil, fmt.Errorf("rendezvous: key event: unknown kind %d: %w", kind, errKeyFormat)
	}
	if r.bad || len(r.b) != 0 {
		clear(e.key[:])
		return nil, fmt.Errorf("rendezvous: key event: truncated, oversized or invalid field: %w", errKeyFormat)
	}
	return e, nil
}

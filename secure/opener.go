package secure

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sealring/sealring/internal/cpu"
)

// DefaultEpochWindow is how many epochs behind the group's current epoch an
// Opener accepts when OpenerConfig.EpochWindow is zero.
const DefaultEpochWindow = 2

// OpenerConfig configures an Opener.
type OpenerConfig struct {
	// Groups are the trust groups this receiver holds. The first is the
	// default, used for packets that carry no group ID; a gateway holds
	// several and tells them apart by the long-form option's group ID.
	Groups []*Group
	// CacheCapacity bounds the soft cache of derived data keys, in
	// entries. 0 keeps no cache: every packet derives its key (the pure
	// stateless mode).
	CacheCapacity int
	// ExpandedCapacity bounds how many cached keys also keep their
	// expanded form (AES round keys and GHASH powers, ~530 bytes each
	// against ~96 for the bare key), so that a packet under them skips the
	// key expansion too. 0 means min(CacheCapacity,
	// DefaultExpandedCapacity); a negative value keeps none expanded.
	ExpandedCapacity int
	// EpochWindow is how many epochs behind the group's current epoch are
	// still accepted; 0 means DefaultEpochWindow, a negative value accepts
	// only the current epoch (and the one ahead). One epoch ahead is always
	// accepted, since a sender may switch before this receiver learns of a
	// bump.
	EpochWindow int
	// Crypto forces a crypto path by name ("" = the process default).
	Crypto string
}

// Opener authenticates and decrypts packets for one or more trust groups.
// It keeps no per-peer state: everything it needs comes from the packet's
// header and the groups' root keys. It is safe for concurrent use.
type Opener struct {
	groups []*Group
	window uint16
	path   cpu.Path
	cache  *keyCache
	pool   sync.Pool // *[2]derived: scratch for derivations on a miss (two for OpenBatch's pairs)
	misses atomic.Uint64
}

// Opened is the result of Open: slices of the packet, which was decrypted
// in place.
type Opened struct {
	Header Header
	// HeaderLen is the security header's length in bytes.
	HeaderLen int
	// Prefix is the authenticated cleartext before the header (IOffset words).
	Prefix []byte
	// Clear is the authenticated cleartext after the header (COffset words).
	Clear []byte
	// Payload is the decrypted payload.
	Payload []byte
}

// NewOpener returns an Opener for cfg.Groups.
func NewOpener(cfg OpenerConfig) (*Opener, error) {
	if len(cfg.Groups) == 0 {
		return nil, fmt.Errorf("%w: an opener needs at least one group", ErrConfig)
	}
	for i, g := range cfg.Groups {
		if g == nil {
			return nil, fmt.Errorf("%w: group %d is nil", ErrConfig, i)
		}
		for _, h := range cfg.Groups[:i] {
			if h.hasID(g.id[:g.idLen]) {
				return nil, fmt.Errorf("%w: two groups share ID %x", ErrConfig, g.id[:g.idLen])
			}
		}
	}
	if cfg.CacheCapacity < 0 {
		return nil, fmt.Errorf("%w: negative cache capacity", ErrConfig)
	}
	expanded := cfg.ExpandedCapacity
	if expanded == 0 {
		expanded = DefaultExpandedCapacity
	}
	p, err := pathFor(cfg.Crypto)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	w := cfg.EpochWindow
	switch {
	case w == 0:
		w = DefaultEpochWindow
	case w < 0:
		w = 0
	case w > 0xffff:
		w = 0xffff
	}
	o := &Opener{
		groups: append([]*Group(nil), cfg.Groups...),
		window: uint16(w),
		path:   p,
		cache:  newKeyCache(cfg.CacheCapacity, expanded),
	}
	o.pool.New = func() any { return new([2]derived) }
	return o, nil
}

// CacheStats reports the key cache's counters. Without a cache, Misses
// counts derivations.
func (o *Opener) CacheStats() CacheStats {
	if o.cache == nil {
		return CacheStats{Misses: o.misses.Load()}
	}
	return o.cache.stats()
}

// PurgeCache drops and wipes every cached data key.
func (o *Opener) PurgeCache() { o.cache.purge() }

func (o *Opener) group(h *Header) (*Group, error) {
	if h.Option != OptionLong {
		return o.groups[0], nil
	}
	id := h.GroupID[:h.GroupIDLen]
	for _, g := range o.groups {
		if g.hasID(id) {
			return g, nil
		}
	}
	return nil, ErrUnknownGroup
}

// Open authenticates and decrypts, in place, the packet whose security
// header starts at pkt[hdrOff]. The IOffset words before the header are
// authenticated (so hdrOff must be at least 4*IOffset); bytes before them
// are not. pkt must end with the tag. On success Opened's slices point into
// pkt; on failure the payload region is zeroed and the error wraps ErrAuth,
// a header error, ErrUnknownGroup, ErrKeyIndex or ErrEpoch.
func (o *Opener) Open(pkt []byte, hdrOff int) (Opened, error) {
	return o.open(pkt, hdrOff, nil)
}

// OpenTo is Open, except that the payload is decrypted into dst, which
// must be at least as long as the payload and must not overlap pkt (that
// fails with ErrOverlap), and
// pkt is left unchanged. It saves a copy when the payload's destination is
// known, such as a receive buffer posted by the application. Opened.Payload
// is dst[:payload length]. A dst that is too short fails with ErrTruncated
// before any work is done.
func (o *Opener) OpenTo(dst, pkt []byte, hdrOff int) (Opened, error) {
	if dst == nil {
		dst = []byte{}
	}
	return o.open(pkt, hdrOff, dst)
}

func (o *Opener) open(pkt []byte, hdrOff int, dst []byte) (Opened, error) {
	var r Opened
	m, start, hl, aadEnd, err := o.check(&r.Header, pkt, hdrOff)
	if err != nil {
		return r, err
	}
	ct := pkt[aadEnd:]
	aad := pkt[start:aadEnd]
	out := ct
	if dst != nil {
		if len(dst) < len(ct)-TagSize {
			return r, errShortDst
		}
		if overlaps(dst[:len(ct)-TagSize], pkt[start:]) {
			return r, ErrOverlap
		}
		out = dst
	}
	err = o.openKeys(m, &r.Header, out, ct, aad)
	if err != nil {
		return r, err
	}
	r.HeaderLen = hl
	r.Prefix = pkt[start:hdrOff]
	r.Clear = pkt[hdrOff+hl : aadEnd]
	r.Payload = out[:len(ct)-TagSize]
	return r, nil
}

// check parses pkt's header into h and checks it against the Opener's
// groups: all of Open before the opening. It returns the master key and
// where the authenticated part starts, the header's length and where the
// ciphertext starts. (Only scalars and one pointer, so that they come back
// in registers: a struct of slices written through a pointer cost Open
// 5-10 %.)
func (o *Opener) check(h *Header, pkt []byte, hdrOff int) (m *masterKey, start, hl, aadEnd int, err error) {
	if hdrOff < 0 || hdrOff > len(pkt) {
		return nil, 0, 0, 0, errIOffset
	}
	hl, err = h.parse(pkt[hdrOff:])
	if err != nil {
		return nil, 0, 0, 0, err
	}
	start = hdrOff - int(h.IOffset)*wordLen
	if start < 0 {
		return nil, 0, 0, 0, errIOffset
	}
	g, err := o.group(h)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	snap := g.snap.Load()
	if h.Epoch > snap.epoch+1 && snap.epoch != 0xffff || int(h.Epoch)+int(o.window) < int(snap.epoch) {
		return nil, 0, 0, 0, ErrEpoch
	}
	idx := snap.current
	if h.Option != OptionNone {
		idx = h.KeyIndex
	}
	m = snap.byIndex[idx]
	if m == nil {
		return nil, 0, 0, 0, ErrKeyIndex
	}
	return m, start, hl, hdrOff + hl + int(h.COffset)*wordLen, nil
}

// openKeys opens ct under the data key of (m, h): a cached one, or one
// derived into scratch and offered to the cache if the packet
// authenticates.
func (o *Opener) openKeys(m *masterKey, h *Header, out, ct, aad []byte) error {
	if o.cache != nil {
		return o.openCached(m, h, out, ct, aad)
	}
	o.misses.Add(1)
	return o.openDerived(m, h, out, ct, aad)
}

// openDerived derives the data key into scratch and opens with it.
func (o *Opener) openDerived(m *masterKey, h *Header, out, ct, aad []byte) error {
	sc := o.pool.Get().(*[2]derived)
	d := &sc[0]
	err := m.derive(d, o.path, h.Mode, h.ID, h.Epoch)
	if err == nil {
		err = openWith(d, h, out, ct, aad)
	}
	d.aead.Wipe()
	clear(d.ivMask[:])
	o.pool.Put(sc)
	return err
}

func (o *Opener) openCached(m *masterKey, h *Header, out, ct, aad []byte) error {
	// route, spelled out: the call cost Open 1.3 % at 64 B (paired).
	ck := cacheKey{master: m.id, id: h.ID, epoch: h.Epoch, mode: h.Mode}
	hash := ck.hash()
	if sh := o.cache.shardOf(hash); sh.skip(h.ID, h.Counter) {
		sh.bypassed.Add(1)
		return o.openDerived(m, h, out, ct, aad)
	}
	return o.openLookup(m, h, ck, hash, out, ct, aad)
}

// route computes the packet's cache key and its hash and reports whether
// the packet's shard bypasses the cache for it (counted in Bypassed), as
// openCached does, for OpenBatch.
func (o *Opener) route(m *masterKey, h *Header) (ck cacheKey, hash uint64, bypass bool) {
	ck = cacheKey{master: m.id, id: h.ID, epoch: h.Epoch, mode: h.Mode}
	hash = ck.hash()
	if sh := o.cache.shardOf(hash); sh.skip(h.ID, h.Counter) {
		sh.bypassed.Add(1)
		return ck, hash, true
	}
	return ck, hash, false
}

// openLookup is openCached for a packet whose shard is not bypassed.
func (o *Opener) openLookup(m *masterKey, h *Header, ck cacheKey, hash uint64, out, ct, aad []byte) error {
	var mat material
	c, sh, slot, compact := o.cache.lookup(ck, hash, &mat)
	if c != nil {
		return openLocked(c, sh, slot, h, out, ct, aad)
	}
	sc := o.pool.Get().(*[2]derived)
	d := &sc[0]
	var err error
	if compact {
		// A cached key held without its expansion: expand it again.
		err = d.aead.Init(o.path, mat.key[:])
		d.ivMask = mat.ivMask
		mat = material{}
	} else {
		err = m.derive(d, o.path, h.Mode, h.ID, h.Epoch)
	}
	if err == nil {
		err = openWith(d, h, out, ct, aad)
	}
	switch {
	case compact && err == nil:
		o.cache.promote(ck, hash, d)
	case compact:
	case err == nil:
		o.cache.admit(ck, hash, d)
	default:
		sh.deferred.Add(1)
	}
	d.aead.Wipe()
	clear(d.ivMask[:])
	o.pool.Put(sc)
	return err
}

// overlaps reports whether a and b share memory.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, b0 := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return a0 < b0+uintptr(len(b)) && b0 < a0+uintptr(len(a))
}

// openLocked opens under an expanded cache entry of shard sh, which is
// read-locked, and unlocks it, also if the open panics.
func openLocked(d *derived, sh *cacheShard, slot int, h *Header, out, ct, aad []byte) error {
	defer sh.mu.RUnlock()
	err := openWith(d, h, out, ct, aad)
	if err == nil {
		sh.hit(slot)
	}
	return err
}

func openWith(d *derived, h *Header, out, ct, aad []byte) error {
	var n [nonceSize]byte
	nonce(&n, &d.ivMask, h.ID, h.Epoch, h.Counter)
	if _, err := d.aead.Open(out[:0], n[:], ct, aad); err != nil {
		return ErrAuth
	}
	return nil
}

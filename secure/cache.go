package secure

import (
	"sync"
	"sync/atomic"
)

// The key cache is soft state: it saves derivations, never decides
// anything. Every entry is keyed by everything that enters the derivation
// (master key, mode, ID, epoch), so a hit returns exactly what a derivation
// would. With capacity 0 there is no cache and every packet derives its key.
//
// It has two tiers, because the two things a derivation produces differ
// twelvefold in size. Every entry holds the KDF's output, the 32-byte data
// key and 12-byte IV mask (80 bytes with its key and bookkeeping, plus 16
// bytes of index): a hit on it skips the three-block KDF and only expands
// the key again (AES round keys and GHASH powers). The most used entries
// also keep that expansion (a further ~530 bytes), so a hit on them costs
// nothing but the open. A 65 536-entry cache with the default 1 024
// expanded entries takes about 6.8 MB; with every entry expanded it would
// take ~40 MB, as much as ~48 000 of the standard library's AES-GCM
// instances.

type cacheKey struct {
	master uint64
	id     uint64
	epoch  uint16
	mode   Mode
}

// CacheStats counts key-cache events since the Opener was made.
type CacheStats struct {
	// Hits counts packets that authenticated under a cached key; Misses
	// lookups that found no entry, forged packets included. (A forged
	// packet naming a cached sender is in neither.)
	Hits, Misses, Evictions uint64
	// Deferred counts misses whose keys were not cached: the packet
	// failed to authenticate, or its key context was seen for the first
	// time (see Opener's admission rule).
	Deferred uint64
	// Expansions counts the hits on entries held without their expanded
	// key, which was rebuilt for the packet; Promotions those after which
	// the entry was given an expanded slot.
	Expansions, Promotions uint64
	// Bypassed counts packets that skipped the cache because it was
	// hardly ever hitting (see bypass below).
	Bypassed uint64
	// Capacity is the cache's bound in entries, Expanded how many of them
	// can keep their expanded key (at least one per shard when
	// ExpandedCapacity > 0); Len the entries held.
	Capacity, Expanded, Len int
}

// The cache admits an entry only after a packet under it authenticated, and
// only on the second sighting of its key context within a doorkeeper
// period (TinyLFU's doorkeeper: a bit per hashed key context, cleared when
// a quarter of the bits are set). So forged packets, which anyone can make
// with any sender ID, cannot evict live entries, and a receiver facing far
// more senders than it can cache does not churn its cache on senders it
// sees once. An entry is admitted compact; a later packet that hits it and
// authenticates promotes it to an expanded slot (CLOCK among the expanded
// slots), so the expanded tier holds the senders seen at least three times
// recently. A derivation on a miss goes into a pooled scratch entry.

// A cache that almost never hits (far more live senders than entries, as
// for a server facing a million clients) costs more than it saves: a miss
// probes a cold index and doorkeeper and may evict, about as much as a
// derivation again. So each shard watches its hit rate among packets that
// authenticated, over windows of bypassWindow such packets; below
// 1/bypassEnter it bypasses itself for all but one packet in bypassSample
// (chosen by sender ID and counter), which keep measuring and admitting;
// at 1/bypassExit or more it turns back on. Forged packets never reach the
// rate (they fail before admission), so an attacker cannot switch a
// shard's cache off unless genuine hits are a tiny share of what
// authenticates.
const (
	bypassWindow = 256
	bypassEnter  = 128
	bypassExit   = 32
	bypassSample = 16
)

type keyCache struct {
	shards      []cacheShard
	mask        uint64
	cap, expCap int
}

type cacheShard struct {
	mu sync.RWMutex
	// idx is an open-addressing (linear probing) index of the slots:
	// 0 = empty, else fingerprint<<32 | slot+1, where the fingerprint is
	// the key hash's high 32 bits and also picks the home position. At
	// most half full.
	idx      []uint64
	slots    []cacheSlot
	exp      []expSlot
	hand     int
	expHand  int
	n        int // slots in use
	hits     atomic.Uint64
	misses   atomic.Uint64
	evicts   atomic.Uint64
	deferred atomic.Uint64
	expands  atomic.Uint64
	promotes atomic.Uint64
	bypassed atomic.Uint64
	admits   atomic.Uint64 // authenticated misses
	lastHits atomic.Uint64 // hits and admits at the last evaluation
	lastAdm  atomic.Uint64
	bypass   atomic.Bool
	door     []atomic.Uint64 // doorkeeper bits
	doorSet  atomic.Int64    // bits set since the last clear
	_        [64]byte        // keep neighbouring shards' locks apart
}

// material is what the KDF produces for a key context.
type material struct {
	key    [32]byte
	ivMask [nonceSize]byte
}

type cacheSlot struct {
	key  cacheKey
	mat  material
	used bool
	ref  atomic.Bool // CLOCK reference bit
	exp  int32       // this entry's slot in the expanded tier, or -1
}

type expSlot struct {
	owner int32 // the cacheSlot this expands, or -1
	ref   atomic.Bool
	keys  derived
}

const maxShards = 64

// DefaultExpandedCapacity is how many cached keys keep their expanded form
// when OpenerConfig.ExpandedCapacity is 0 (at most CacheCapacity).
const DefaultExpandedCapacity = 1024

func newKeyCache(capacity, expanded int) *keyCache {
	if capacity <= 0 {
		return nil
	}
	expanded = min(max(expanded, 0), capacity)
	n := 1
	for n < maxShards && n*16 < capacity {
		n *= 2
	}
	c := &keyCache{shards: make([]cacheShard, n), mask: uint64(n - 1), cap: capacity}
	for i := range c.shards {
		sh := &c.shards[i]
		sz := share(capacity, n, i)
		sh.slots = make([]cacheSlot, sz)
		for j := range sh.slots {
			sh.slots[j].exp = -1
		}
		ni := 8
		for ni < 2*sz {
			ni *= 2
		}
		sh.idx = make([]uint64, ni)
		ne := share(expanded, n, i)
		if expanded > 0 {
			// A shard without an expanded slot would expand its hot
			// senders again on every packet.
			ne = max(ne, 1)
		}
		c.expCap += ne
		sh.exp = make([]expSlot, ne)
		for j := range sh.exp {
			sh.exp[j].owner = -1
		}
		// 4 bits per slot, at least one word.
		sh.door = make([]atomic.Uint64, (4*sz+63)/64)
	}
	return c
}

// share is shard i's part of total split over n shards, exactly.
func share(total, n, i int) int {
	s := total / n
	if i < total%n {
		s++
	}
	return s
}

func (k *cacheKey) hash() uint64 {
	h := k.master ^ k.id*0x9e3779b97f4a7c15 ^ uint64(k.epoch)<<48 ^ uint64(k.mode)<<40
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return h
}

// find returns the slot holding k and its index position, or -1. The
// caller holds sh.mu.
func (sh *cacheShard) find(k cacheKey, h uint64) (slot, pos int) {
	fp := h >> 32
	m := len(sh.idx) - 1
	for p := int(fp) & m; ; p = (p + 1) & m {
		e := sh.idx[p]
		if e == 0 {
			return -1, -1
		}
		if e>>32 == fp {
			if i := int(uint32(e)) - 1; sh.slots[i].key == k {
				return i, p
			}
		}
	}
}

// insert indexes slot i under hash h; the index always has a free place.
func (sh *cacheShard) insert(h uint64, i int) {
	fp := h >> 32
	m := len(sh.idx) - 1
	p := int(fp) & m
	for sh.idx[p] != 0 {
		p = (p + 1) & m
	}
	sh.idx[p] = fp<<32 | uint64(i+1)
}

// unindex removes the index entry at p, shifting later entries of the
// probe run back (linear probing's deletion without tombstones).
func (sh *cacheShard) unindex(p int) {
	m := len(sh.idx) - 1
	for {
		sh.idx[p] = 0
		j := p
		for {
			j = (j + 1) & m
			e := sh.idx[j]
			if e == 0 {
				return
			}
			home := int(e>>32) & m
			// The entry at j may stay if its home lies cyclically in (p, j].
			if p <= j && p < home && home <= j || p > j && (p < home || home <= j) {
				continue
			}
			sh.idx[p] = e
			p = j
			break
		}
	}
}

// lookup finds k. On a hit on an expanded entry it returns d and the
// slot with the shard read-locked; the caller must call sh.mu.RUnlock when
// done with d, so the entry cannot be evicted while in use, and call
// sh.hit(slot) first if the packet authenticated. On a hit on a compact
// entry it copies the material to mat and returns compact == true, nothing
// locked. On a miss it returns d == nil, compact == false.
//
// Reference bits and hits are set only for packets that authenticate, so a
// forged packet naming a cached sender (its ID is in clear) cannot keep an
// entry looking used.
func (c *keyCache) lookup(k cacheKey, h uint64, mat *material) (d *derived, sh *cacheShard, slot int, compact bool) {
	sh = &c.shards[h&c.mask]
	sh.mu.RLock()
	if i, _ := sh.find(k, h); i >= 0 {
		sl := &sh.slots[i]
		if e := sl.exp; e >= 0 {
			return &sh.exp[e].keys, sh, i, false
		}
		*mat = sl.mat
		sh.mu.RUnlock()
		sh.expands.Add(1)
		return nil, sh, i, true
	}
	sh.mu.RUnlock()
	sh.misses.Add(1)
	return nil, sh, -1, false
}

// hit records an authenticated packet under slot i: its reference bits
// and the hit count. The caller holds sh.mu (read or write) and slot i
// holds the key the packet was opened with.
func (sh *cacheShard) hit(i int) {
	sl := &sh.slots[i]
	if !sl.ref.Load() {
		sl.ref.Store(true)
	}
	if e := sl.exp; e >= 0 && !sh.exp[e].ref.Load() {
		sh.exp[e].ref.Store(true)
	}
	if sh.hits.Add(1)%bypassWindow == 0 {
		sh.evaluate()
	}
}

// admit is called after a miss whose packet authenticated under d: it
// caches d's key material if the doorkeeper has seen k before, evicting an
// entry chosen by CLOCK.
func (c *keyCache) admit(k cacheKey, h uint64, d *derived) {
	sh := &c.shards[h&c.mask]
	if sh.admits.Add(1)%bypassWindow == 0 {
		sh.evaluate()
	}
	if !sh.seenBefore(h >> 32) {
		sh.deferred.Add(1)
		return
	}
	var mat material
	if d.aead.Key(&mat.key) != len(mat.key) {
		return // not a 256-bit key: cannot happen with the KDF's output
	}
	mat.ivMask = d.ivMask
	sh.mu.Lock()
	sh.put(k, h, &mat)
	sh.mu.Unlock()
	mat = material{}
}

// put caches mat under k unless k is cached already. The caller holds
// sh.mu for writing.
func (sh *cacheShard) put(k cacheKey, h uint64, mat *material) {
	if i, _ := sh.find(k, h); i >= 0 { // admitted by a concurrent opener
		return
	}
	i := sh.victim()
	sl := &sh.slots[i]
	if sl.used {
		sh.evict(i)
		sh.evicts.Add(1)
	}
	sl.key, sl.mat, sl.used, sl.exp = k, *mat, true, -1
	sl.ref.Store(true)
	sh.insert(h, i)
	sh.n++
}

// evaluate turns the shard's bypass on or off from its hit rate among
// authenticated packets since the last evaluation. Concurrent calls may
// each see part of a window; the rate is a heuristic, never a decision
// about a packet.
func (sh *cacheShard) evaluate() {
	h, a := sh.hits.Load(), sh.admits.Load()
	dh, da := h-sh.lastHits.Swap(h), a-sh.lastAdm.Swap(a)
	total := dh + da
	if total < bypassWindow/2 {
		return
	}
	switch on := sh.bypass.Load(); {
	case !on && dh*bypassEnter < total:
		sh.bypass.Store(true)
	case on && dh*bypassExit >= total:
		sh.bypass.Store(false)
	}
}

// skip reports whether a packet with this sender ID and counter should
// bypass shard sh.
func (sh *cacheShard) skip(id, ctr uint64) bool {
	return sh.bypass.Load() && (id^ctr)%bypassSample != 0
}

// evict drops slot i's index entry and expanded slot and wipes it. The
// caller holds sh.mu for writing.
func (sh *cacheShard) evict(i int) {
	sl := &sh.slots[i]
	if _, p := sh.find(sl.key, sl.key.hash()); p >= 0 {
		sh.unindex(p)
	}
	if e := sl.exp; e >= 0 {
		x := &sh.exp[e]
		x.owner = -1
		x.keys.aead.Wipe()
		clear(x.keys.ivMask[:])
	}
	sl.used, sl.exp = false, -1
	sl.mat = material{}
	sh.n--
}

// promote records a hit on k's compact entry and gives it an expanded
// slot holding d, evicting the expanded form of another entry chosen by
// CLOCK. It is called after a packet authenticated under d, an expansion
// of k's material.
func (c *keyCache) promote(k cacheKey, h uint64, d *derived) {
	sh := &c.shards[h&c.mask]
	if len(sh.exp) == 0 {
		sh.mu.RLock()
		if i, _ := sh.find(k, h); i >= 0 {
			sh.hit(i)
		}
		sh.mu.RUnlock()
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, _ := sh.find(k, h)
	if i < 0 { // evicted meanwhile
		return
	}
	sh.hit(i)
	if sh.slots[i].exp >= 0 { // promoted concurrently
		return
	}
	e := sh.expVictim()
	x := &sh.exp[e]
	if x.owner >= 0 {
		sh.slots[x.owner].exp = -1
	}
	x.keys = *d
	x.owner = int32(i)
	x.ref.Store(true)
	sh.slots[i].exp = int32(e)
	sh.promotes.Add(1)
}

// seenBefore sets the doorkeeper bit of a key-context hash and reports
// whether it was already set.
func (sh *cacheShard) seenBefore(h uint64) bool {
	nbits := uint64(len(sh.door)) * 64
	b := h % nbits
	w := &sh.door[b/64]
	m := uint64(1) << (b % 64)
	if w.Load()&m != 0 {
		return true
	}
	if w.Or(m)&m != 0 {
		return true
	}
	if sh.doorSet.Add(1) >= int64(nbits/4) {
		sh.doorSet.Store(0)
		for i := range sh.door {
			sh.door[i].Store(0)
		}
	}
	return false
}

// victim picks a slot with the CLOCK algorithm: a free slot, or the first
// one whose reference bit is clear, clearing bits on the way.
func (sh *cacheShard) victim() int {
	for {
		i := sh.hand
		sh.hand++
		if sh.hand == len(sh.slots) {
			sh.hand = 0
		}
		sl := &sh.slots[i]
		if !sl.used || !sl.ref.Load() {
			return i
		}
		sl.ref.Store(false)
	}
}

// expVictim is victim for the expanded tier.
func (sh *cacheShard) expVictim() int {
	for {
		i := sh.expHand
		sh.expHand++
		if sh.expHand == len(sh.exp) {
			sh.expHand = 0
		}
		x := &sh.exp[i]
		if x.owner < 0 || !x.ref.Load() {
			return i
		}
		x.ref.Store(false)
	}
}

func (c *keyCache) stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	s := CacheStats{Capacity: c.cap, Expanded: c.expCap}
	for i := range c.shards {
		sh := &c.shards[i]
		s.Hits += sh.hits.Load()
		s.Misses += sh.misses.Load()
		s.Evictions += sh.evicts.Load()
		s.Deferred += sh.deferred.Load()
		s.Expansions += sh.expands.Load()
		s.Promotions += sh.promotes.Load()
		s.Bypassed += sh.bypassed.Load()
		sh.mu.RLock()
		s.Len += sh.n
		sh.mu.RUnlock()
	}
	return s
}

// purge drops and wipes every entry.
func (c *keyCache) purge() {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.idx)
		sh.n = 0
		for j := range sh.slots {
			sh.slots[j].used, sh.slots[j].exp = false, -1
			sh.slots[j].mat = material{}
		}
		for j := range sh.exp {
			sh.exp[j].owner = -1
			sh.exp[j].keys.aead.Wipe()
			clear(sh.exp[j].keys.ivMask[:])
		}
		sh.mu.Unlock()
	}
}

func (c *keyCache) shardOf(h uint64) *cacheShard { return &c.shards[h&c.mask] }

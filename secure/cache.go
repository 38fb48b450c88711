package secure

import (
	"sync"
	"sync/atomic"
)

// The key cache is soft state: it saves derivations, never decides
// anything. Every entry is keyed by everything that enters the derivation
// (master key, mode, ID, epoch), so a hit returns exactly what a derivation
// would. With capacity 0 there is no cache and every packet derives its key.

type cacheKey struct {
	master uint64
	id     uint64
	epoch  uint16
	mode   Mode
}

// CacheStats counts key-cache events since the Opener was made.
type CacheStats struct {
	Hits, Misses, Evictions uint64
	// Deferred counts misses whose keys were not cached: the packet
	// failed to authenticate, or its key context was seen for the first
	// time (see Opener's admission rule).
	Deferred uint64
	// Capacity is the cache's bound in entries; Len the entries held.
	Capacity, Len int
}

// The cache admits an entry only after a packet under it authenticated, and
// only on the second sighting of its key context within a doorkeeper
// period (TinyLFU's doorkeeper: a bit per hashed key context, cleared when
// a quarter of the bits are set). So forged packets, which anyone can make
// with any sender ID, cannot evict live entries, and a receiver facing far
// more senders than it can cache does not churn its cache on senders it
// sees once. A derivation on a miss goes into a pooled scratch entry and is
// copied into a slot when admitted.

type keyCache struct {
	shards []cacheShard
	mask   uint64
	cap    int
}

type cacheShard struct {
	mu                      sync.RWMutex
	index                   map[cacheKey]int32
	slots                   []cacheSlot
	hand                    int
	hits, misses, evictions atomic.Uint64
	deferred                atomic.Uint64
	door                    []atomic.Uint64 // doorkeeper bits
	doorSet                 atomic.Int64    // bits set since the last clear
	_                       [64]byte        // keep neighbouring shards' locks apart
}

type cacheSlot struct {
	key  cacheKey
	used bool
	ref  atomic.Bool // CLOCK reference bit
	keys derived
}

const maxShards = 64

func newKeyCache(capacity int) *keyCache {
	if capacity <= 0 {
		return nil
	}
	n := 1
	for n < maxShards && n*16 < capacity {
		n *= 2
	}
	c := &keyCache{shards: make([]cacheShard, n), mask: uint64(n - 1), cap: capacity}
	per, extra := capacity/n, capacity%n
	for i := range c.shards {
		sz := per
		if i < extra {
			sz++
		}
		c.shards[i].index = make(map[cacheKey]int32, sz)
		c.shards[i].slots = make([]cacheSlot, sz)
		// 4 bits per slot, at least one word.
		c.shards[i].door = make([]atomic.Uint64, (4*sz+63)/64)
	}
	return c
}

func (k *cacheKey) hash() uint64 {
	h := k.master ^ k.id*0x9e3779b97f4a7c15 ^ uint64(k.epoch)<<48 ^ uint64(k.mode)<<40
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return h
}

// lookup returns the cached keys of k with its shard read-locked, or
// ok == false (and nothing locked) on a miss. After a hit the caller must
// call sh.mu.RUnlock when done with d, so the entry cannot be evicted while
// in use.
func (c *keyCache) lookup(k cacheKey) (d *derived, sh *cacheShard, ok bool) {
	h := k.hash()
	sh = &c.shards[h&c.mask]
	sh.mu.RLock()
	if i, ok := sh.index[k]; ok {
		sl := &sh.slots[i]
		if !sl.ref.Load() {
			sl.ref.Store(true)
		}
		sh.hits.Add(1)
		return &sl.keys, sh, true
	}
	sh.mu.RUnlock()
	sh.misses.Add(1)
	return nil, sh, false
}

// admit is called after a miss whose packet authenticated under d: it
// caches a copy of d if the doorkeeper has seen k before, evicting an entry
// chosen by CLOCK.
func (c *keyCache) admit(k cacheKey, d *derived) {
	h := k.hash()
	sh := &c.shards[h&c.mask]
	if !sh.seenBefore(h >> 32) {
		sh.deferred.Add(1)
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.index[k]; ok { // admitted by a concurrent opener
		return
	}
	i := sh.victim()
	sl := &sh.slots[i]
	if sl.used {
		delete(sh.index, sl.key)
		sh.evictions.Add(1)
	}
	sl.keys = *d
	sl.key, sl.used = k, true
	sl.ref.Store(true)
	sh.index[k] = int32(i)
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

func (c *keyCache) stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	s := CacheStats{Capacity: c.cap}
	for i := range c.shards {
		sh := &c.shards[i]
		s.Hits += sh.hits.Load()
		s.Misses += sh.misses.Load()
		s.Evictions += sh.evictions.Load()
		s.Deferred += sh.deferred.Load()
		sh.mu.RLock()
		s.Len += len(sh.index)
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
		clear(sh.index)
		for j := range sh.slots {
			sh.slots[j].used = false
			sh.slots[j].keys.aead.Wipe()
			clear(sh.slots[j].keys.ivMask[:])
		}
		sh.mu.Unlock()
	}
}

func (c *keyCache) shardOf(k cacheKey) *cacheShard { return &c.shards[k.hash()&c.mask] }

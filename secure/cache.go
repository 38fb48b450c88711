package secure

import (
	"sync"
	"sync/atomic"

	"github.com/sealring/sealring/internal/cpu"
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
	// Capacity is the cache's bound in entries; Len the entries held.
	Capacity, Len int
}

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
	_                       [64]byte // keep neighbouring shards' locks apart
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

// acquire returns the derived keys of k with its shard locked (shared on
// a hit, exclusive after a miss, when it derives them from m into a slot
// chosen by CLOCK), so the entry cannot be evicted while in use. The caller
// must call release(sh, excl) when done, also after an error.
func (c *keyCache) acquire(k cacheKey, m *masterKey, p cpu.Path) (d *derived, sh *cacheShard, excl bool, err error) {
	sh = &c.shards[k.hash()&c.mask]
	sh.mu.RLock()
	if i, ok := sh.index[k]; ok {
		sl := &sh.slots[i]
		if !sl.ref.Load() {
			sl.ref.Store(true)
		}
		sh.hits.Add(1)
		return &sl.keys, sh, false, nil
	}
	sh.mu.RUnlock()

	sh.mu.Lock()
	if i, ok := sh.index[k]; ok { // filled while we waited
		sh.hits.Add(1)
		sh.slots[i].ref.Store(true)
		return &sh.slots[i].keys, sh, true, nil
	}
	sh.misses.Add(1)
	i := sh.victim()
	sl := &sh.slots[i]
	if sl.used {
		delete(sh.index, sl.key)
		sh.evictions.Add(1)
		sl.used = false
	}
	if err := m.derive(&sl.keys, p, k.mode, k.id, k.epoch); err != nil {
		sl.keys.aead.Wipe()
		return nil, sh, true, err
	}
	sl.key, sl.used = k, true
	sl.ref.Store(true)
	sh.index[k] = int32(i)
	return &sl.keys, sh, true, nil
}

func release(sh *cacheShard, excl bool) {
	if excl {
		sh.mu.Unlock()
	} else {
		sh.mu.RUnlock()
	}
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

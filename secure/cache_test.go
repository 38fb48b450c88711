package secure

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

func TestCacheStats(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, cpu.Generic)}, CacheCapacity: 4})
	var sealers []*Sealer
	for i := range 8 {
		sealers = append(sealers, newTestSealer(t, g, SealerConfig{ID: uint64(i)}))
	}
	open := func(s *Sealer) {
		pkt, _ := s.Seal(packet(s, nil, nil, []byte("p")), 0, 0)
		if _, err := o.Open(pkt, 0); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		open(sealers[0])
	}
	// The first packet of a key context is not cached (doorkeeper), the
	// second is, the third hits.
	st := o.CacheStats()
	if st.Misses != 2 || st.Deferred != 1 || st.Hits != 1 || st.Len != 1 || st.Capacity != 4 {
		t.Fatalf("after 3 packets from one sender: %+v", st)
	}
	for _, s := range sealers {
		open(s)
		open(s)
	}
	st = o.CacheStats()
	if st.Len > 4 {
		t.Fatalf("cache holds %d entries, capacity 4", st.Len)
	}
	if st.Hits+st.Misses != 3+16 || st.Evictions == 0 || st.Deferred > st.Misses || st.Misses < 8 {
		t.Fatalf("after 8 senders: %+v", st)
	}
	o.PurgeCache()
	if st := o.CacheStats(); st.Len != 0 {
		t.Fatalf("after purge: %+v", st)
	}
	open(sealers[0])
	// Without a cache every packet is a derivation.
	o0 := newTestOpener(t, OpenerConfig{Groups: []*Group{g}})
	for range 5 {
		pkt, _ := sealers[1].Seal(packet(sealers[1], nil, nil, []byte("p")), 0, 0)
		o0.Open(pkt, 0)
	}
	if st := o0.CacheStats(); st.Misses != 5 || st.Hits != 0 || st.Capacity != 0 {
		t.Fatalf("no cache: %+v", st)
	}
}

// TestCacheForgedPacketsDoNotEvict: packets that fail to authenticate,
// whatever sender IDs they name, never enter the cache, so a flood of them
// cannot evict the keys of live senders.
func TestCacheForgedPacketsDoNotEvict(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, cpu.Generic)}, CacheCapacity: 4})
	live := newTestSealer(t, g, SealerConfig{ID: 1})
	open := func(s *Sealer, corrupt bool) error {
		pkt, err := s.Seal(packet(s, nil, nil, []byte("payload")), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if corrupt {
			pkt[len(pkt)-1] ^= 1
		}
		_, err = o.Open(pkt, 0)
		return err
	}
	for range 2 {
		if err := open(live, false); err != nil {
			t.Fatal(err)
		}
	}
	before := o.CacheStats()
	if before.Len != 1 {
		t.Fatalf("live sender not cached: %+v", before)
	}
	// Forged: right format, tags that fail, 64 sender IDs, each twice.
	for i := range 64 {
		f := newTestSealer(t, g, SealerConfig{ID: uint64(1000 + i)})
		for range 2 {
			if err := open(f, true); !errors.Is(err, ErrAuth) {
				t.Fatalf("forged packet: %v", err)
			}
		}
	}
	after := o.CacheStats()
	if after.Len != 1 || after.Evictions != 0 || after.Deferred != before.Deferred+128 {
		t.Fatalf("forged packets changed the cache: before %+v, after %+v", before, after)
	}
	if err := open(live, false); err != nil {
		t.Fatal(err)
	}
	if st := o.CacheStats(); st.Hits != after.Hits+1 {
		t.Fatalf("live sender no longer hits: %+v", st)
	}
}

// TestCacheCapacityBound: capacities that are not multiples of the shard
// count are honoured exactly.
func TestCacheCapacityBound(t *testing.T) {
	for _, c := range []int{1, 2, 15, 16, 17, 100, 1000, 1025} {
		kc := newKeyCache(c, DefaultExpandedCapacity)
		total := 0
		for i := range kc.shards {
			total += len(kc.shards[i].slots)
		}
		if total != c {
			t.Fatalf("capacity %d: %d slots", c, total)
		}
	}
}

// TestConcurrentOpenEviction hammers a tiny cache from many goroutines and
// senders, so entries are evicted while others are in use (run with -race).
func TestConcurrentOpenEviction(t *testing.T) {
	for _, p := range testPaths() {
		for _, exp := range []int{0, 1, -1} { // all, some, none expanded
			testConcurrentOpenEviction(t, p, exp)
		}
	}
}

func testConcurrentOpenEviction(t *testing.T, p cpu.Path, expanded int) {
	{
		g := newTestGroup(t, 1, p)
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, p)}, CacheCapacity: 3, ExpandedCapacity: expanded, Crypto: p.String()})
		var sealers []*Sealer
		for i := range 16 {
			sealers = append(sealers, newTestSealer(t, g, SealerConfig{ID: SenderID(uint32(i), 7), Crypto: p.String()}))
		}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 150 {
					// Three packets per sender in a row: the second is
					// admitted (doorkeeper), the third usually hits, so
					// the hit rate stays far above the adaptive bypass's
					// threshold and admissions (and evictions: 16
					// senders, 3 entries) keep happening whatever the
					// interleaving. One sender per packet let a run
					// admit nothing (every sighting a first one, the
					// shards bypassed) and fail on Evictions == 0.
					s := sealers[(w*7+i/3)%len(sealers)]
					msg := pattern(100+i, byte(w))
					pkt, err := s.Seal(packet(s, nil, nil, msg), 0, 0)
					if err != nil {
						t.Error(err)
						return
					}
					r, err := o.Open(pkt, 0)
					if err != nil || !bytes.Equal(r.Payload, msg) {
						t.Errorf("%v: open under eviction: %v", p, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if st := o.CacheStats(); st.Evictions == 0 || st.Len > 3 {
			t.Fatalf("%v: %+v", p, st)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	for _, p := range testPaths() {
		g := newTestGroup(t, 1, p)
		s := newTestSealer(t, g, SealerConfig{ID: 1, Crypto: p.String()})
		buf := packet(s, nil, nil, make([]byte, 1400))
		n := len(buf)
		if a := testing.AllocsPerRun(200, func() { s.Seal(buf[:n], 0, 0) }); a != 0 {
			t.Errorf("%v: Seal allocates %v", p, a)
		}
		m := g.snap.Load().byIndex[g.KeyIndex()]
		var d derived
		if a := testing.AllocsPerRun(200, func() { m.derive(&d, p, ModeSender, 5, 6) }); a != 0 {
			t.Errorf("%v: derive allocates %v", p, a)
		}
		for _, cc := range []struct{ cache, expanded int }{{0, 0}, {16, 0}, {16, -1}} {
			cache := cc.cache
			o := newTestOpener(t, OpenerConfig{Groups: []*Group{g}, CacheCapacity: cache, ExpandedCapacity: cc.expanded, Crypto: p.String()})
			pkt, _ := s.Seal(buf[:n], 0, 0)
			work := make([]byte, len(pkt))
			for range 3 { // warm the cache and the pool
				o.Open(append(work[:0], pkt...), 0)
			}
			if a := testing.AllocsPerRun(200, func() {
				copy(work, pkt)
				if _, err := o.Open(work, 0); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("%v cache %+v: Open allocates %v", p, cc, a)
			}
			bad := bytes.Clone(pkt)
			bad[30] ^= 1
			if a := testing.AllocsPerRun(200, func() {
				copy(work, bad)
				o.Open(work, 0)
			}); a != 0 {
				t.Errorf("%v cache %+v: failing Open allocates %v", p, cc, a)
			}
		}
	}
}

// TestCacheTiers: entries are admitted compact (data key and IV mask
// only), a later authenticated hit expands and promotes them, the
// expanded tier keeps its bound, and every packet opens correctly whichever
// tier its key came from. A forged packet naming a cached sender never
// promotes it.
func TestCacheTiers(t *testing.T) {
	for _, p := range testPaths() {
		g := newTestGroup(t, 1, p)
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, p)}, CacheCapacity: 8, ExpandedCapacity: 2, Crypto: p.String()})
		var sealers []*Sealer
		for i := range 8 {
			sealers = append(sealers, newTestSealer(t, g, SealerConfig{ID: uint64(100 + i), Crypto: p.String()}))
		}
		open := func(s *Sealer, corrupt bool) error {
			t.Helper()
			msg := pattern(300, byte(s.id))
			pkt, err := s.Seal(packet(s, nil, nil, msg), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if corrupt {
				pkt[len(pkt)-3] ^= 0x10
			}
			r, err := o.Open(pkt, 0)
			if err == nil && !bytes.Equal(r.Payload, msg) {
				t.Fatalf("%v: sender %d: wrong payload", p, s.id)
			}
			return err
		}
		for i, s := range sealers {
			// The doorkeeper admits a sender on its first or (usually)
			// second packet, compact.
			for n := 0; o.CacheStats().Len == i; n++ {
				if n == 2 {
					t.Fatalf("%v: sender %d not admitted", p, i)
				}
				if err := open(s, false); err != nil {
					t.Fatal(err)
				}
			}
		}
		st0 := o.CacheStats()
		if st0.Len != 8 || st0.Hits != 0 || st0.Expansions != 0 || st0.Promotions != 0 || st0.Expanded != 2 {
			t.Fatalf("%v: after admission: %+v", p, st0)
		}
		// A forged packet under a cached sender: a compact hit that fails
		// and promotes nothing.
		if err := open(sealers[0], true); !errors.Is(err, ErrAuth) {
			t.Fatalf("%v: forged packet: %v", p, err)
		}
		if st := o.CacheStats(); st.Expansions != 1 || st.Promotions != 0 {
			t.Fatalf("%v: forged packet promoted: %+v", p, st)
		}
		for _, s := range sealers { // each expanded and promoted in turn
			if err := open(s, false); err != nil {
				t.Fatal(err)
			}
		}
		st := o.CacheStats()
		if st.Expansions != 9 || st.Promotions != 8 || st.Len != 8 || st.Evictions != 0 || st.Misses != st0.Misses {
			t.Fatalf("%v: after one hit each: %+v", p, st)
		}
		// The last two promoted are expanded: hits without expansion.
		for _, s := range sealers[6:] {
			if err := open(s, false); err != nil {
				t.Fatal(err)
			}
		}
		if st2 := o.CacheStats(); st2.Expansions != st.Expansions || st2.Hits != st.Hits+2 {
			t.Fatalf("%v: expanded entries were not hit: %+v then %+v", p, st, st2)
		}
		// Count the expanded slots in use: never more than the bound, and
		// every one linked both ways.
		used := 0
		for i := range o.cache.shards {
			sh := &o.cache.shards[i]
			for e := range sh.exp {
				if ow := sh.exp[e].owner; ow >= 0 {
					used++
					if sh.slots[ow].exp != int32(e) {
						t.Fatalf("%v: expanded slot %d owned by %d, which points at %d", p, e, ow, sh.slots[ow].exp)
					}
				}
			}
		}
		if used != 2 {
			t.Fatalf("%v: %d expanded slots in use, bound 2", p, used)
		}
		// Compact only: every hit expands, nothing is promoted.
		oc := newTestOpener(t, OpenerConfig{Groups: []*Group{g}, CacheCapacity: 8, ExpandedCapacity: -1, Crypto: p.String()})
		o = oc
		for range 5 {
			if err := open(sealers[3], false); err != nil {
				t.Fatal(err)
			}
		}
		if st := oc.CacheStats(); st.Hits != 3 || st.Expansions != 3 || st.Promotions != 0 || st.Expanded != 0 {
			t.Fatalf("%v: compact-only cache: %+v", p, st)
		}
		oc.PurgeCache()
		if st := oc.CacheStats(); st.Len != 0 {
			t.Fatalf("%v: after purge: %+v", p, st)
		}
	}
}

// TestCacheIndex drives one shard's open-addressing index through random
// admissions and CLOCK evictions (small tables, so probe runs collide and
// wrap around) and checks after every step that exactly the used slots are
// found and nothing else is.
func TestCacheIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, capacity := range []int{1, 3, 4, 7, 16} {
		c := newKeyCache(capacity, 0)
		sh := &c.shards[0]
		keys := make([]cacheKey, 3*capacity+2)
		for i := range keys {
			keys[i] = cacheKey{master: 7, id: r.Uint64(), epoch: uint16(i)}
		}
		for step := range 3000 {
			k := keys[r.IntN(len(keys))]
			mat := material{key: [32]byte{byte(step)}}
			sh.put(k, k.hash(), &mat)
			if step%7 == 0 {
				sh.slots[r.IntN(len(sh.slots))].ref.Store(false)
			}
			inUse := 0
			for i := range sh.slots {
				if sh.slots[i].used {
					inUse++
				}
			}
			filled := 0
			for _, e := range sh.idx {
				if e != 0 {
					filled++
				}
			}
			if inUse != sh.n || filled != sh.n || sh.n > capacity {
				t.Fatalf("cap %d step %d: %d slots used, n %d, %d index entries", capacity, step, inUse, sh.n, filled)
			}
			for _, q := range keys {
				i, _ := sh.find(q, q.hash())
				want := -1
				for j := range sh.slots {
					if sh.slots[j].used && sh.slots[j].key == q {
						want = j
					}
				}
				if i != want {
					t.Fatalf("cap %d step %d: find(%v) = %d, want %d", capacity, step, q, i, want)
				}
			}
		}
	}
}

// TestCacheBypass: a shard whose cache hardly ever hits among authenticated
// packets bypasses itself for most packets, and turns back on when senders
// repeat again; forged packets, however many, never switch it off.
func TestCacheBypass(t *testing.T) {
	g := newTestGroup(t, 1, defaultPath)
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, defaultPath)}, CacheCapacity: 16})
	if len(o.cache.shards) != 1 {
		t.Fatalf("%d shards", len(o.cache.shards))
	}
	open := func(s *Sealer, corrupt bool) error {
		t.Helper()
		msg := pattern(40, byte(s.id))
		pkt, err := s.Seal(packet(s, nil, nil, msg), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if corrupt {
			pkt[len(pkt)-1] ^= 1
		}
		r, err := o.Open(pkt, 0)
		if err == nil && !bytes.Equal(r.Payload, msg) {
			t.Fatal("wrong payload")
		}
		return err
	}
	hot := make([]*Sealer, 4)
	for i := range hot {
		hot[i] = newTestSealer(t, g, SealerConfig{ID: uint64(i + 1)})
	}
	for i := range 2000 {
		if err := open(hot[i%4], false); err != nil {
			t.Fatal(err)
		}
	}
	// Forged packets from many IDs, 50 for every genuine one: the cache
	// keeps hitting on what authenticates and stays on.
	for i := range 20000 {
		if i%50 == 0 {
			if err := open(hot[i%4], false); err != nil {
				t.Fatal(err)
			}
			continue
		}
		f := newTestSealer(t, g, SealerConfig{ID: uint64(1000 + i)})
		if err := open(f, true); !errors.Is(err, ErrAuth) {
			t.Fatalf("forged packet: %v", err)
		}
	}
	if st := o.CacheStats(); st.Bypassed != 0 || o.cache.shards[0].bypass.Load() {
		t.Fatalf("forged packets turned the cache off: %+v", st)
	}
	// 6000 genuine senders, once each: nothing hits, the shard bypasses.
	for i := range 6000 {
		if err := open(newTestSealer(t, g, SealerConfig{ID: uint64(100000 + i)}), false); err != nil {
			t.Fatal(err)
		}
	}
	st := o.CacheStats()
	if st.Bypassed < 3000 || !o.cache.shards[0].bypass.Load() {
		t.Fatalf("one-off senders: the cache was not bypassed: %+v", st)
	}
	// The hot senders return: sampled packets re-admit them, the hit rate
	// climbs and the cache turns back on.
	for i := range 20000 {
		if err := open(hot[i%4], false); err != nil {
			t.Fatal(err)
		}
	}
	if o.cache.shards[0].bypass.Load() {
		t.Fatalf("hot senders again: still bypassed: %+v", o.CacheStats())
	}
	st2 := o.CacheStats()
	for i := range 400 {
		if err := open(hot[i%4], false); err != nil {
			t.Fatal(err)
		}
	}
	if st3 := o.CacheStats(); st3.Hits != st2.Hits+400 || st3.Bypassed != st2.Bypassed {
		t.Fatalf("after the cache turned back on: %+v then %+v", st2, st3)
	}
}

// TestCacheEveryShardExpands: with fewer expanded entries asked for than
// shards, every shard still gets an expanded slot, so a hot sender is
// never expanded again on every packet (found in review: a shard with no
// expanded slot never promoted).
func TestCacheEveryShardExpands(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, cpu.Generic)}, CacheCapacity: 4096, ExpandedCapacity: 8})
	if st := o.CacheStats(); st.Expanded != len(o.cache.shards) {
		t.Fatalf("%d shards, %d expanded slots", len(o.cache.shards), st.Expanded)
	}
	for i := range o.cache.shards {
		if len(o.cache.shards[i].exp) == 0 {
			t.Fatalf("shard %d has no expanded slot", i)
		}
	}
	for id := range uint64(70) { // senders over many shards, 4 packets each
		s := newTestSealer(t, g, SealerConfig{ID: id + 1})
		for range 4 {
			pkt, _ := s.Seal(packet(s, nil, nil, []byte("hot")), 0, 0)
			if _, err := o.Open(pkt, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := o.CacheStats(); st.Promotions < 70 {
		t.Fatalf("senders were not promoted: %+v", st)
	}
}

// TestCacheForgedPacketsDoNotTouch: a forged packet naming a cached sender
// (whose ID travels in clear) sets no reference bit and counts no hit, so
// it cannot keep a silent sender's entry from eviction or demotion.
func TestCacheForgedPacketsDoNotTouch(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	for _, exp := range []int{1, -1} {
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, cpu.Generic)}, CacheCapacity: 4, ExpandedCapacity: exp})
		s := newTestSealer(t, g, SealerConfig{ID: 42})
		open := func(corrupt bool) error {
			pkt, _ := s.Seal(packet(s, nil, nil, []byte("x")), 0, 0)
			if corrupt {
				pkt[len(pkt)-1] ^= 1
			}
			_, err := o.Open(pkt, 0)
			return err
		}
		for range 3 { // admitted, then hit (and promoted if it can be)
			if err := open(false); err != nil {
				t.Fatal(err)
			}
		}
		sh := &o.cache.shards[0]
		slot := -1
		for i := range sh.slots {
			if sh.slots[i].used {
				slot = i
			}
		}
		if slot < 0 || (exp > 0) != (sh.slots[slot].exp >= 0) {
			t.Fatalf("expanded %d: entry not cached as expected", exp)
		}
		sh.slots[slot].ref.Store(false) // as a CLOCK sweep leaves them
		if e := sh.slots[slot].exp; e >= 0 {
			sh.exp[e].ref.Store(false)
		}
		before := o.CacheStats()
		if err := open(true); !errors.Is(err, ErrAuth) {
			t.Fatalf("forged packet: %v", err)
		}
		e := sh.slots[slot].exp
		if sh.slots[slot].ref.Load() || e >= 0 && sh.exp[e].ref.Load() || o.CacheStats().Hits != before.Hits {
			t.Fatalf("expanded %d: a forged packet touched the entry", exp)
		}
		if err := open(false); err != nil {
			t.Fatal(err)
		}
		if !sh.slots[slot].ref.Load() || e >= 0 && !sh.exp[e].ref.Load() || o.CacheStats().Hits != before.Hits+1 {
			t.Fatalf("expanded %d: a genuine packet did not touch the entry", exp)
		}
	}
}

// TestOpenToOverlap: a destination overlapping the packet is refused with
// ErrOverlap (it used to panic in the AEAD with the cache shard locked),
// and the cache stays usable.
func TestOpenToOverlap(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, cpu.Generic)}, CacheCapacity: 4})
	s := newTestSealer(t, g, SealerConfig{ID: 42})
	seal := func() []byte {
		pkt, _ := s.Seal(packet(s, nil, nil, pattern(64, 1)), 0, 0)
		return pkt
	}
	for range 3 {
		if _, err := o.Open(seal(), 0); err != nil {
			t.Fatal(err)
		}
	}
	pkt := seal()
	for _, dst := range [][]byte{pkt[1:], pkt, pkt[len(pkt)-70:]} {
		if _, err := o.OpenTo(dst, pkt, 0); !errors.Is(err, ErrOverlap) {
			t.Fatalf("overlapping dst: %v", err)
		}
	}
	o.PurgeCache()
	dst := make([]byte, 64)
	if r, err := o.OpenTo(dst, pkt, 0); err != nil || !bytes.Equal(r.Payload, pattern(64, 1)) {
		t.Fatalf("after refusals: %v", err)
	}
}

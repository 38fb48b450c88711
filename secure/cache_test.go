package secure

import (
	"bytes"
	"errors"
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
		kc := newKeyCache(c)
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
		g := newTestGroup(t, 1, p)
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, p)}, CacheCapacity: 3, Crypto: p.String()})
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
					s := sealers[(w*7+i)%len(sealers)]
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
		for _, cache := range []int{0, 16} {
			o := newTestOpener(t, OpenerConfig{Groups: []*Group{g}, CacheCapacity: cache, Crypto: p.String()})
			pkt, _ := s.Seal(buf[:n], 0, 0)
			work := make([]byte, len(pkt))
			o.Open(append(work[:0], pkt...), 0) // warm the cache and the pool
			if a := testing.AllocsPerRun(200, func() {
				copy(work, pkt)
				if _, err := o.Open(work, 0); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("%v cache %d: Open allocates %v", p, cache, a)
			}
			bad := bytes.Clone(pkt)
			bad[30] ^= 1
			if a := testing.AllocsPerRun(200, func() {
				copy(work, bad)
				o.Open(work, 0)
			}); a != 0 {
				t.Errorf("%v cache %d: failing Open allocates %v", p, cache, a)
			}
		}
	}
}

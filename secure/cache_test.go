package secure

import (
	"bytes"
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
	st := o.CacheStats()
	if st.Misses != 1 || st.Hits != 2 || st.Len != 1 || st.Capacity != 4 {
		t.Fatalf("after 3 packets from one sender: %+v", st)
	}
	for _, s := range sealers {
		open(s)
	}
	st = o.CacheStats()
	if st.Len > 4 {
		t.Fatalf("cache holds %d entries, capacity 4", st.Len)
	}
	if st.Misses != 8 || st.Evictions != 4 {
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

package secure

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/sealring/sealring/internal/cpu"
)

// batchCorpus seals n packets from many senders (every mode and option
// form, prefixes and clear parts, payloads of 0..1500 bytes) and damages
// some: a flipped bit anywhere after the header's first word, a cut
// packet, random bytes, a bad header offset. senders bounds the distinct
// sender IDs.
func batchCorpus(t testing.TB, g *Group, r *rand.Rand, n, senders int) ([][]byte, []int) {
	return batchCorpusOpts(t, g, r, n, senders, []OptionForm{OptionNone, OptionShort, OptionLong})
}

// batchCorpusOpts is batchCorpus with the option forms to use.
func batchCorpusOpts(t testing.TB, g *Group, r *rand.Rand, n, senders int, opts []OptionForm) ([][]byte, []int) {
	t.Helper()
	modes := []Mode{ModeSender, ModeFlow, ModeDevice}
	sealers := map[[3]uint64]*Sealer{}
	var pkts [][]byte
	var offs []int
	for len(pkts) < n {
		mode, opt := modes[r.IntN(3)], opts[r.IntN(len(opts))]
		id := uint64(r.IntN(senders) + 1)
		if mode == ModeDevice {
			id &= 0xffffffff
		}
		k := [3]uint64{uint64(mode), uint64(opt), id}
		s := sealers[k]
		if s == nil {
			s = newTestSealer(t, g, SealerConfig{Mode: mode, ID: id, Option: opt})
			sealers[k] = s
		}
		pre, clr := 4*r.IntN(3), 4*r.IntN(3)
		pkt, err := s.Seal(packet(s, pattern(pre, 1), pattern(clr, 2), pattern(r.IntN(1501), byte(len(pkts)))), pre, clr)
		if err != nil {
			t.Fatal(err)
		}
		off := pre
		switch r.IntN(12) {
		case 0:
			pkt[4+r.IntN(len(pkt)-4)] ^= 1 << r.IntN(8)
		case 1:
			pkt = pkt[:r.IntN(len(pkt))]
		case 2:
			pkt = pattern(r.IntN(80), byte(r.Uint32()))
			off = 0
		case 3:
			off = []int{-4, len(pkt) + 1, pre + 4}[r.IntN(3)]
		}
		pkts, offs = append(pkts, pkt), append(offs, off)
	}
	return pkts, offs
}

func sameOpened(a, b Opened) bool {
	return a.Header == b.Header && a.HeaderLen == b.HeaderLen && bytes.Equal(a.Prefix, b.Prefix) &&
		bytes.Equal(a.Clear, b.Clear) && bytes.Equal(a.Payload, b.Payload) &&
		(a.Payload == nil) == (b.Payload == nil)
}

// TestOpenBatch: OpenBatch gives every message exactly what Open gives it
// (result, error, the packet's bytes afterwards) and leaves the cache
// counters where the same packets opened one by one leave them, without a
// cache, with both tiers, compact-only, and with a cache that mostly
// misses so that its shards bypass it, for batches of 1 to 33 packets.
func TestOpenBatch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       OpenerConfig
		n, sender int
	}{
		{"nocache", OpenerConfig{}, 600, 50},
		{"twogroups", OpenerConfig{}, 600, 50},
		{"cached", OpenerConfig{CacheCapacity: 1024}, 600, 50},
		{"compact", OpenerConfig{CacheCapacity: 64, ExpandedCapacity: -1}, 600, 50},
		{"bypass", OpenerConfig{CacheCapacity: 64}, 12000, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, uint64(len(tc.name))))
			g := newTestGroup(t, 1, defaultPath)
			pkts, offs := batchCorpus(t, g, r, tc.n, tc.sender)
			tc.cfg.Groups = []*Group{g}
			if tc.name == "twogroups" {
				// A gateway's receiver: the second group's packets name
				// it (long option), so pairs mix master keys.
				g2 := newTestGroup(t, 2, defaultPath)
				p2, o2 := batchCorpusOpts(t, g2, r, tc.n, tc.sender, []OptionForm{OptionLong})
				for i := range p2 {
					j := r.IntN(len(pkts) + 1)
					pkts = append(pkts[:j], append([][]byte{p2[i]}, pkts[j:]...)...)
					offs = append(offs[:j], append([]int{o2[i]}, offs[j:]...)...)
				}
				tc.cfg.Groups = append(tc.cfg.Groups, g2)
			}
			one, batch := newTestOpener(t, tc.cfg), newTestOpener(t, tc.cfg)
			var msgs []Message
			for i := 0; i < len(pkts); {
				k := min(1+r.IntN(33), len(pkts)-i)
				msgs = msgs[:0]
				for j := i; j < i+k; j++ {
					msgs = append(msgs, Message{Packet: bytes.Clone(pkts[j]), HdrOff: offs[j], Err: errors.New("stale")})
				}
				batch.OpenBatch(msgs)
				for j := range msgs {
					want := bytes.Clone(pkts[i+j])
					r, err := one.Open(want, offs[i+j])
					m := &msgs[j]
					where := fmt.Sprintf("packet %d (batch of %d)", i+j, k)
					if (err == nil) != (m.Err == nil) || err != nil && err.Error() != m.Err.Error() {
						t.Fatalf("%s: OpenBatch error %v, Open %v", where, m.Err, err)
					}
					if !sameOpened(r, m.Opened) {
						t.Fatalf("%s: OpenBatch result differs from Open's", where)
					}
					if !bytes.Equal(m.Packet, want) {
						t.Fatalf("%s: packet bytes differ after OpenBatch and Open", where)
					}
					if err == nil {
						p := uintptr(unsafe.Pointer(unsafe.SliceData(m.Packet)))
						q := uintptr(unsafe.Pointer(unsafe.SliceData(m.Opened.Payload)))
						if len(m.Opened.Payload) > 0 && (q < p || q >= p+uintptr(len(m.Packet))) {
							t.Fatalf("%s: payload does not point into the packet", where)
						}
					}
				}
				i += k
			}
			s1, s2 := one.CacheStats(), batch.CacheStats()
			if s1 != s2 {
				t.Fatalf("cache counters differ:\nOpen      %+v\nOpenBatch %+v", s1, s2)
			}
			switch tc.name {
			case "nocache", "twogroups":
				if s2.Misses < uint64(tc.n/2) {
					t.Fatalf("only %d derivations", s2.Misses)
				}
			case "bypass":
				if s2.Bypassed < uint64(tc.n/4) {
					t.Fatalf("only %d packets bypassed the cache; the pairing of bypassed packets is not exercised", s2.Bypassed)
				}
			}
		})
	}
}

func TestOpenBatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	g := newTestGroup(t, 1, defaultPath)
	r := rand.New(rand.NewPCG(1, 2))
	pkts, offs := batchCorpus(t, g, r, 16, 4)
	for _, capacity := range []int{0, 64} {
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{g}, CacheCapacity: capacity})
		msgs := make([]Message, len(pkts))
		work := make([][]byte, len(pkts))
		for i := range work {
			work[i] = make([]byte, len(pkts[i]))
		}
		n := testing.AllocsPerRun(50, func() {
			for i := range msgs {
				copy(work[i], pkts[i])
				msgs[i] = Message{Packet: work[i], HdrOff: offs[i]}
			}
			o.OpenBatch(msgs)
		})
		if n != 0 {
			t.Errorf("capacity %d: OpenBatch allocates %v times per batch", capacity, n)
		}
	}
}

// TestOpenBatchWipes: after a pair and a single derivation the pooled
// scratch holds no key material.
func TestOpenBatchWipes(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	g := newTestGroup(t, 1, defaultPath)
	r := rand.New(rand.NewPCG(7, 8))
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{g}})
	for _, n := range []int{2, 3} {
		var msgs []Message
		for len(msgs) < n {
			s := newTestSealer(t, g, SealerConfig{ID: uint64(len(msgs) + 1)})
			pkt, err := s.Seal(packet(s, nil, nil, pattern(100+r.IntN(100), 1)), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, Message{Packet: pkt})
		}
		runtime.LockOSThread()
		o.OpenBatch(msgs)
		sc := o.pool.Get().(*[2]derived)
		runtime.UnlockOSThread()
		for i := range msgs {
			if msgs[i].Err != nil {
				t.Fatal(msgs[i].Err)
			}
		}
		if *sc != ([2]derived{}) {
			t.Fatalf("batch of %d: key material left in the pooled scratch", n)
		}
		o.pool.Put(sc)
	}
}

// TestOpenBatchDeriveError: a derivation that fails fails both packets of
// its pair with Open's error, and neither is left looking opened.
func TestOpenBatchDeriveError(t *testing.T) {
	g := newTestGroup(t, 1, defaultPath)
	r := rand.New(rand.NewPCG(9, 10))
	pkts, offs := batchCorpus(t, g, r, 40, 10)
	one := newTestOpener(t, OpenerConfig{Groups: []*Group{g}})
	batch := newTestOpener(t, OpenerConfig{Groups: []*Group{g}})
	one.path, batch.path = cpu.Path(200), cpu.Path(200) // every derivation fails
	msgs := make([]Message, len(pkts))
	for i := range pkts {
		msgs[i] = Message{Packet: bytes.Clone(pkts[i]), HdrOff: offs[i]}
	}
	batch.OpenBatch(msgs)
	for i := range msgs {
		want := bytes.Clone(pkts[i])
		res, err := one.Open(want, offs[i])
		if err == nil || msgs[i].Err == nil || err.Error() != msgs[i].Err.Error() || !sameOpened(res, msgs[i].Opened) || msgs[i].Opened.Payload != nil {
			t.Fatalf("packet %d: OpenBatch %v, Open %v", i, msgs[i].Err, err)
		}
	}
}

// TestOpenBatchConcurrent runs batches on one Opener from several
// goroutines (for -race), checking every genuine packet opens.
func TestOpenBatchConcurrent(t *testing.T) {
	g := newTestGroup(t, 1, defaultPath)
	r := rand.New(rand.NewPCG(3, 4))
	pkts, offs := batchCorpus(t, g, r, 64, 1<<20)
	ref := newTestOpener(t, OpenerConfig{Groups: []*Group{g}})
	var good []bool
	for i := range pkts {
		_, err := ref.Open(bytes.Clone(pkts[i]), offs[i])
		good = append(good, err == nil)
	}
	for _, capacity := range []int{0, 16} {
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{g}, CacheCapacity: capacity})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msgs := make([]Message, len(pkts))
				for range 20 {
					for i := range msgs {
						msgs[i] = Message{Packet: bytes.Clone(pkts[i]), HdrOff: offs[i]}
					}
					o.OpenBatch(msgs[w:])
					for i := w; i < len(msgs); i++ {
						if (msgs[i].Err == nil) != good[i] {
							t.Errorf("capacity %d, packet %d: %v", capacity, i, msgs[i].Err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
	}
}

// FuzzOpenBatch: arbitrary bytes cut into up to four packets get from
// OpenBatch what Open gives each of them.
func FuzzOpenBatch(f *testing.F) {
	g := newTestGroup(f, 1, defaultPath)
	r := rand.New(rand.NewPCG(5, 6))
	pkts, _ := batchCorpus(f, g, r, 8, 3)
	for i := 0; i+1 < len(pkts); i += 2 {
		f.Add(append(bytes.Clone(pkts[i]), pkts[i+1]...), uint16(len(pkts[i])), uint16(len(pkts[i])+1), uint16(len(pkts[i])+2))
	}
	one := newTestOpener(f, OpenerConfig{Groups: []*Group{g}})
	batch := newTestOpener(f, OpenerConfig{Groups: []*Group{g}})
	f.Fuzz(func(t *testing.T, b []byte, c1, c2, c3 uint16) {
		cuts := []int{0, min(int(c1), len(b)), min(int(c2), len(b)), min(int(c3), len(b)), len(b)}
		var msgs []Message
		for i := 0; i+1 < len(cuts); i++ {
			if cuts[i] <= cuts[i+1] {
				msgs = append(msgs, Message{Packet: bytes.Clone(b[cuts[i]:cuts[i+1]])})
			}
		}
		batch.OpenBatch(msgs)
		k := 0
		for i := 0; i+1 < len(cuts); i++ {
			if cuts[i] > cuts[i+1] {
				continue
			}
			pkt := bytes.Clone(b[cuts[i]:cuts[i+1]])
			r, err := one.Open(pkt, 0)
			m := &msgs[k]
			k++
			if (err == nil) != (m.Err == nil) || err != nil && err.Error() != m.Err.Error() || !sameOpened(r, m.Opened) || !bytes.Equal(pkt, m.Packet) {
				t.Fatalf("packet %d: OpenBatch (%v) differs from Open (%v)", i, m.Err, err)
			}
		}
	})
}

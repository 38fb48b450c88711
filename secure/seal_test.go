package secure

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

var roundTripSizes = []int{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257,
	1399, 1400, 1401, 4095, 4096, 4097, 8191, 8192, 8193, 9000}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, p := range testPaths() {
		g := newTestGroup(t, 1, p)
		rg := cloneGroup(t, 1, p)
		for _, cache := range []int{0, 64} {
			o := newTestOpener(t, OpenerConfig{Groups: []*Group{rg}, CacheCapacity: cache, Crypto: p.String()})
			for _, mode := range []Mode{ModeSender, ModeFlow, ModeDevice} {
				for _, opt := range []OptionForm{OptionShort, OptionLong, OptionNone} {
					s := newTestSealer(t, g, SealerConfig{Mode: mode, ID: 0x1234 + uint64(mode), Option: opt, Crypto: p.String()})
					for _, off := range [][2]int{{0, 0}, {4, 0}, {0, 4}, {60, 1020}, {8, 12}} {
						for _, n := range roundTripSizes {
							name := fmt.Sprintf("%v/cache%d/%v/opt%d/io%d/co%d/%d", p, cache, mode, opt, off[0], off[1], n)
							prefix, clr, pl := pattern(off[0], 1), pattern(off[1], 2), pattern(n, 3)
							pkt, err := s.Seal(packet(s, prefix, clr, pl), off[0], off[1])
							if err != nil {
								t.Fatalf("%s: seal: %v", name, err)
							}
							if len(pkt) != off[0]+s.Overhead()+off[1]+n {
								t.Fatalf("%s: sealed length %d", name, len(pkt))
							}
							if n >= 16 && bytes.Contains(pkt, pl[:16]) {
								t.Fatalf("%s: plaintext visible in packet", name)
							}
							r, err := o.Open(pkt, off[0])
							if err != nil {
								t.Fatalf("%s: open: %v", name, err)
							}
							if !bytes.Equal(r.Payload, pl) || !bytes.Equal(r.Clear, clr) || !bytes.Equal(r.Prefix, prefix) {
								t.Fatalf("%s: round trip mismatch", name)
							}
							if r.Header.Mode != mode || r.Header.ID != s.ID() || r.HeaderLen != s.HeaderLen() ||
								int(r.Header.IOffset) != off[0]/4 || int(r.Header.COffset) != off[1]/4 {
								t.Fatalf("%s: header %+v", name, r.Header)
							}
						}
					}
				}
			}
		}
	}
}

// TestPathsAgree: every crypto path produces the same packets and opens the
// others' packets (differential test between implementations).
func TestPathsAgree(t *testing.T) {
	paths := testPaths()
	if len(paths) < 2 {
		t.Logf("only %v available; differential test compares it with itself", paths)
	}
	var ref [][]byte
	for pi, p := range paths {
		g := newTestGroup(t, 3, p)
		s := newTestSealer(t, g, SealerConfig{ID: SenderID(1, 2), Crypto: p.String()})
		for i, n := range roundTripSizes {
			pkt, err := s.Seal(packet(s, pattern(4, 9), pattern(8, 8), pattern(n, 7)), 4, 8)
			if err != nil {
				t.Fatal(err)
			}
			if pi == 0 {
				ref = append(ref, pkt)
			} else if !bytes.Equal(pkt, ref[i]) {
				t.Fatalf("%v and %v disagree at %d bytes", p, paths[0], n)
			}
		}
	}
	for _, p := range paths {
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{newTestGroup(t, 3, p)}, Crypto: p.String()})
		for i, pkt := range ref {
			if r, err := o.Open(bytes.Clone(pkt), 4); err != nil || !bytes.Equal(r.Payload, pattern(roundTripSizes[i], 7)) {
				t.Fatalf("%v cannot open %v's packet: %v", p, paths[0], err)
			}
		}
	}
}

func TestSealOffsetsErrors(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	s := newTestSealer(t, g, SealerConfig{ID: 1})
	buf := make([]byte, 200)
	for _, c := range [][2]int{{2, 0}, {64, 0}, {-4, 0}, {0, 3}, {0, 1024}, {0, -4}} {
		if _, err := s.Seal(buf, c[0], c[1]); !errors.Is(err, ErrOffset) {
			t.Errorf("Seal(hdrOff %d, clear %d): %v, want ErrOffset", c[0], c[1], err)
		}
	}
	if _, err := s.Seal(buf[:10], 0, 0); !errors.Is(err, ErrTruncated) {
		t.Errorf("short packet: %v", err)
	}
	// Without tag capacity Seal still works (it grows the slice).
	pkt := append([]byte(nil), packet(s, nil, nil, []byte("hi"))...)
	pkt = pkt[:len(pkt):len(pkt)]
	out, err := s.Seal(pkt, 0, 0)
	if err != nil || len(out) != s.Overhead()+2 {
		t.Fatalf("seal without capacity: %v", err)
	}
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{g}})
	if _, err := o.Open(out, 4); err == nil {
		t.Error("Open at a wrong header offset succeeded")
	}
	if _, err := o.Open(out, -1); !errors.Is(err, ErrOffset) {
		t.Errorf("negative offset: %v", err)
	}
	if _, err := o.Open(out, len(out)+1); !errors.Is(err, ErrOffset) {
		t.Errorf("offset past end: %v", err)
	}
	// IOffset claims more prefix than the packet has before the header.
	pkt2, _ := s.Seal(packet(s, make([]byte, 8), nil, []byte("x")), 8, 0)
	if _, err := o.Open(pkt2[4:], 4); !errors.Is(err, ErrOffset) {
		t.Errorf("IOffset before start: %v", err)
	}
}

// TestBitFlips: every single-bit flip anywhere in an authenticated packet
// fails, with ErrAuth or a header error, and never panics.
func TestBitFlips(t *testing.T) {
	for _, p := range testPaths() {
		g := newTestGroup(t, 1, p)
		for _, opt := range []OptionForm{OptionShort, OptionLong} {
			s := newTestSealer(t, g, SealerConfig{ID: SenderID(3, 4), Option: opt, Crypto: p.String()})
			o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, p)}, CacheCapacity: 8, Crypto: p.String()})
			pkt, err := s.Seal(packet(s, pattern(8, 1), pattern(8, 2), pattern(45, 3)), 8, 8)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := o.Open(bytes.Clone(pkt), 8); err != nil {
				t.Fatal(err)
			}
			for bit := 0; bit < len(pkt)*8; bit++ {
				b := bytes.Clone(pkt)
				b[bit/8] ^= 1 << (bit % 8)
				r, err := o.Open(b, 8)
				if err == nil {
					t.Fatalf("%v: flip of bit %d accepted", p, bit)
				}
				if r.Payload != nil {
					t.Fatalf("payload returned on error")
				}
				hdrByte := bit/8 - 8
				if hdrByte < 0 || hdrByte >= s.HeaderLen() {
					if !errors.Is(err, ErrAuth) {
						t.Fatalf("%v: flip of bit %d outside the header: %v, want ErrAuth", p, bit, err)
					}
				}
			}
		}
	}
}

func TestWrongGroupFails(t *testing.T) {
	ga := newTestGroup(t, 1, cpu.Generic)
	gb := newTestGroup(t, 2, cpu.Generic)
	s := newTestSealer(t, ga, SealerConfig{ID: 5})
	pkt, _ := s.Seal(packet(s, nil, nil, []byte("secret")), 0, 0)
	ob := newTestOpener(t, OpenerConfig{Groups: []*Group{gb}})
	if _, err := ob.Open(bytes.Clone(pkt), 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("other group's key: %v, want ErrAuth", err)
	}
	sl := newTestSealer(t, ga, SealerConfig{ID: 5, Option: OptionLong})
	pkt, _ = sl.Seal(packet(sl, nil, nil, []byte("secret")), 0, 0)
	if _, err := ob.Open(bytes.Clone(pkt), 0); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("long option naming a group not held: %v, want ErrUnknownGroup", err)
	}
	// A gateway holding both groups opens both.
	gw := newTestOpener(t, OpenerConfig{Groups: []*Group{gb, cloneGroup(t, 1, cpu.Generic)}})
	if r, err := gw.Open(bytes.Clone(pkt), 0); err != nil || string(r.Payload) != "secret" {
		t.Fatalf("gateway: %v", err)
	}
	// Same combiner choice matters: XOR and HKDF masters differ.
	cfg := testGroupConfig(1, 16)
	cfg.Combiner = CombineXOR
	gx, err := NewGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ox := newTestOpener(t, OpenerConfig{Groups: []*Group{gx}})
	if _, err := ox.Open(bytes.Clone(pkt), 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("XOR-combined group opened an HKDF packet: %v", err)
	}
}

func TestEpochWindow(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic) // epoch 10
	rg := cloneGroup(t, 1, cpu.Generic)
	s := newTestSealer(t, g, SealerConfig{ID: 1})
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{rg}, EpochWindow: 2, CacheCapacity: 16})
	seal := func() []byte {
		pkt, err := s.Seal(packet(s, nil, nil, []byte("e")), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	at10 := seal()
	// The sender moves ahead by one: accepted.
	if err := g.SetEpoch(11); err != nil {
		t.Fatal(err)
	}
	at11 := seal()
	if s.Epoch() != 11 {
		t.Fatalf("sealer did not follow the group epoch: %d", s.Epoch())
	}
	if _, err := o.Open(bytes.Clone(at11), 0); err != nil {
		t.Fatalf("one ahead: %v", err)
	}
	g.SetEpoch(12)
	if _, err := o.Open(seal(), 0); !errors.Is(err, ErrEpoch) {
		t.Fatalf("two ahead: %v, want ErrEpoch", err)
	}
	rg.SetEpoch(12)
	if _, err := o.Open(bytes.Clone(at10), 0); err != nil {
		t.Fatalf("two behind with window 2: %v", err)
	}
	rg.SetEpoch(13)
	if _, err := o.Open(bytes.Clone(at10), 0); !errors.Is(err, ErrEpoch) {
		t.Fatalf("three behind: %v, want ErrEpoch", err)
	}
	if err := rg.SetEpoch(5); !errors.Is(err, ErrConfig) {
		t.Fatalf("lowering the epoch: %v", err)
	}
	// Different epochs derive different keys: an epoch-11 packet relabelled
	// as epoch 12 fails authentication.
	b := bytes.Clone(at11)
	b[s.HeaderLen()-7] = 12
	if _, err := o.Open(b, 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("relabelled epoch: %v", err)
	}
}

func TestRotation(t *testing.T) {
	for _, lvl := range []Level{Region, User, Task} {
		a := newTestGroup(t, 1, cpu.Generic) // sender's view
		b := cloneGroup(t, 1, cpu.Generic)   // receiver's view
		sa := newTestSealer(t, a, SealerConfig{ID: 1})
		sb := newTestSealer(t, b, SealerConfig{ID: 2})
		oa := newTestOpener(t, OpenerConfig{Groups: []*Group{a}, CacheCapacity: 32})
		ob := newTestOpener(t, OpenerConfig{Groups: []*Group{b}, CacheCapacity: 32})
		send := func(s *Sealer, o *Opener, msg string) error {
			pkt, err := s.Seal(packet(s, nil, nil, []byte(msg)), 0, 0)
			if err != nil {
				return err
			}
			r, err := o.Open(pkt, 0)
			if err == nil && string(r.Payload) != msg {
				t.Fatal("wrong payload")
			}
			return err
		}
		before := send(sa, ob, "old")
		inflight, _ := sa.Seal(packet(sa, nil, nil, []byte("inflight")), 0, 0)
		newKey := fixedKey(0x99, 0).Key
		if err := a.Rotate(lvl, newKey); err != nil {
			t.Fatal(err)
		}
		// a has rotated, b has not: traffic flows both ways.
		if err := send(sa, ob, "a rotated"); err != nil || before != nil {
			t.Fatalf("%v: rotated sender to lagging receiver: %v", lvl, err)
		}
		if err := send(sb, oa, "b lagging"); err != nil {
			t.Fatalf("%v: lagging sender to rotated receiver: %v", lvl, err)
		}
		if _, err := oa.Open(inflight, 0); err != nil {
			t.Fatalf("%v: packet sealed before rotation: %v", lvl, err)
		}
		if err := b.Rotate(lvl, newKey); err != nil {
			t.Fatal(err)
		}
		if err := send(sb, oa, "both"); err != nil {
			t.Fatalf("%v: after both rotated: %v", lvl, err)
		}
		// Receiver rotates twice more: the sender's generation is gone.
		b.Rotate(lvl, fixedKey(0x98, 0).Key)
		b.Rotate(lvl, fixedKey(0x97, 0).Key)
		if err := send(sa, ob, "stale"); !errors.Is(err, ErrKeyIndex) {
			t.Fatalf("%v: stale generation: %v, want ErrKeyIndex", lvl, err)
		}
		// Generations: current moved on by one per rotation.
		if got := a.KeyIndex().Gen(lvl); got != 1 {
			t.Fatalf("%v: current generation %d after one rotation", lvl, got)
		}
	}
	g := newTestGroup(t, 1, cpu.Generic)
	if err := g.Rotate(Level(3), [32]byte{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("rotate level 3: %v", err)
	}
}

func TestGroupConfigErrors(t *testing.T) {
	bad := func(mod func(*GroupConfig)) error {
		cfg := testGroupConfig(1, 16)
		mod(&cfg)
		_, err := NewGroup(cfg)
		return err
	}
	for name, mod := range map[string]func(*GroupConfig){
		"ID 15":      func(c *GroupConfig) { c.ID = c.ID[:15] },
		"next gen":   func(c *GroupConfig) { c.Keys[1].Next.Gen = 3 },
		"prev gen":   func(c *GroupConfig) { p := fixedKey(1, 1); c.Keys[2].Previous = &p },
		"gen over 3": func(c *GroupConfig) { c.Keys[0].Current.Gen = 4; c.Keys[0].Next.Gen = 5 },
		"combiner 7": func(c *GroupConfig) { c.Combiner = 7 },
	} {
		if err := bad(mod); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	if err := bad(func(c *GroupConfig) { c.Keys[0].Previous = nil; c.ID = make([]byte, 32) }); err != nil {
		t.Errorf("valid config without previous key: %v", err)
	}
	if _, err := NewSealer(nil, SealerConfig{}); !errors.Is(err, ErrConfig) {
		t.Error("nil group")
	}
	g := newTestGroup(t, 1, cpu.Generic)
	for _, c := range []SealerConfig{{Mode: 7}, {Mode: ModeDevice, ID: 1 << 40}, {Option: 9}, {Crypto: "bogus"}} {
		if _, err := NewSealer(g, c); !errors.Is(err, ErrConfig) {
			t.Errorf("sealer %+v: %v", c, err)
		}
	}
	for _, c := range []OpenerConfig{{}, {Groups: []*Group{nil}}, {Groups: []*Group{g, g}}, {Groups: []*Group{g}, CacheCapacity: -1}, {Groups: []*Group{g}, Crypto: "sse9"}} {
		if _, err := NewOpener(c); !errors.Is(err, ErrConfig) {
			t.Errorf("opener %+v: %v", c, err)
		}
	}
}

func TestCounterExhaustion(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	s := newTestSealer(t, g, SealerConfig{ID: 1})
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, cpu.Generic)}})
	s.state.Load().key.counter.Store(MaxCounter - 1)
	pkt, err := s.Seal(packet(s, nil, nil, []byte("last")), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := o.Open(pkt, 0)
	if err != nil || r.Header.Counter != MaxCounter {
		t.Fatalf("last counter: %v %d", err, r.Header.Counter)
	}
	if _, err := s.Seal(packet(s, nil, nil, []byte("x")), 0, 0); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("after last counter: %v", err)
	}
	if err := s.BumpEpoch(); err != nil {
		t.Fatal(err)
	}
	pkt, err = s.Seal(packet(s, nil, nil, []byte("fresh")), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err = o.Open(pkt, 0)
	if err != nil || r.Header.Counter != 1 || r.Header.Epoch != 11 {
		t.Fatalf("after bump: %v counter %d epoch %d", err, r.Header.Counter, r.Header.Epoch)
	}
	// The group catching up to the sender's epoch keeps the sender's counter.
	g.SetEpoch(11)
	pkt, _ = s.Seal(packet(s, nil, nil, []byte("again")), 0, 0)
	if r, err := o.Open(pkt, 0); err != nil || r.Header.Counter != 2 {
		t.Fatalf("group caught up: %v counter %d", err, r.Header.Counter)
	}
	g.SetEpoch(0xffff)
	if err := s.BumpEpoch(); !errors.Is(err, ErrEpochExhausted) {
		t.Fatalf("bump past 0xffff: %v", err)
	}
	if _, err := g.BumpEpoch(); !errors.Is(err, ErrEpochExhausted) {
		t.Fatalf("group bump past 0xffff: %v", err)
	}
}

// TestNonceUniqueness: across many senders, incarnations, modes and epochs,
// no (data key, nonce) pair repeats, and data keys are distinct per
// (mode, ID, epoch).
func TestNonceUniqueness(t *testing.T) {
	g := newTestGroup(t, 1, cpu.Generic)
	m := g.snap.Load().byIndex[g.KeyIndex()]
	type kn struct{ key, nonce [12]byte }
	keys := map[[16]byte]string{}
	seen := map[kn]bool{}
	probe := make([]byte, 12)
	for _, mode := range []Mode{ModeSender, ModeFlow, ModeDevice} {
		for rank := uint32(0); rank < 12; rank++ {
			for inc := uint32(0); inc < 3; inc++ {
				id := SenderID(rank, inc)
				if mode == ModeDevice {
					id = uint64(rank)<<8 | uint64(inc)
				}
				for epoch := uint16(0); epoch < 4; epoch++ {
					var d derived
					if err := m.derive(&d, cpu.Generic, mode, id, epoch); err != nil {
						t.Fatal(err)
					}
					// Fingerprint the data key by its output on a fixed probe.
					fp := d.aead.Seal(nil, probe, nil, nil)
					var fk [16]byte
					copy(fk[:], fp)
					name := fmt.Sprintf("%v/%x/%d", mode, id, epoch)
					if prev, dup := keys[fk]; dup {
						t.Fatalf("data key of %s equals that of %s", name, prev)
					}
					keys[fk] = name
					var kid [12]byte
					copy(kid[:], fk[:12])
					for ctr := uint64(1); ctr <= 64; ctr++ {
						var n [12]byte
						nonce(&n, &d.ivMask, id, epoch, ctr)
						e := kn{kid, n}
						if seen[e] {
							t.Fatalf("(key, nonce) repeats for %s counter %d", name, ctr)
						}
						seen[e] = true
					}
				}
			}
		}
	}
	// One Sealer under concurrency hands out every counter exactly once.
	s := newTestSealer(t, g, SealerConfig{ID: 9})
	o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, cpu.Generic)}, CacheCapacity: 4})
	var mu sync.Mutex
	ctrs := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				pkt, err := s.Seal(packet(s, nil, nil, []byte("c")), 0, 0)
				if err != nil {
					t.Error(err)
					return
				}
				r, err := o.Open(pkt, 0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ctrs[r.Header.Counter] {
					t.Errorf("counter %d used twice", r.Header.Counter)
				}
				ctrs[r.Header.Counter] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(ctrs) != 1600 {
		t.Fatalf("%d distinct counters, want 1600", len(ctrs))
	}
}

func TestRedaction(t *testing.T) {
	k := fixedKey(0x5a, 1)
	lk := LevelKeys{Previous: &k, Current: k, Next: k}
	g := newTestGroup(t, 1, cpu.Generic)
	for _, v := range []any{k, &k, lk} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
			out := fmt.Sprintf(verb, v)
			for _, leak := range []string{fmt.Sprintf("%x", k.Key[:4]), fmt.Sprintf("%d", k.Key[:4])[1:8]} {
				if bytes.Contains([]byte(out), []byte(leak)) {
					t.Fatalf("%s of %T leaks key bytes: %s", verb, v, out)
				}
			}
		}
	}
	gk := testGroupConfig(1, 16).Keys[0].Current.Key
	if s := fmt.Sprintf("%v %+v %#v", g, g, g); bytes.Contains([]byte(s), []byte(fmt.Sprintf("%x", gk[:4]))) {
		t.Fatalf("group leaks keys: %s", s)
	}
}

func TestOpenTo(t *testing.T) {
	for _, p := range testPaths() {
		g := newTestGroup(t, 1, p)
		s := newTestSealer(t, g, SealerConfig{ID: 77, Crypto: p.String()})
		for _, cache := range []int{0, 8} {
			o := newTestOpener(t, OpenerConfig{Groups: []*Group{g}, CacheCapacity: cache, Crypto: p.String()})
			for _, n := range []int{0, 1, 100, 1400, 8193} {
				msg := pattern(n, 4)
				pkt, _ := s.Seal(packet(s, pattern(4, 1), pattern(4, 2), msg), 4, 4)
				orig := bytes.Clone(pkt)
				dst := make([]byte, n+10)
				r, err := o.OpenTo(dst, pkt, 4)
				if err != nil || !bytes.Equal(r.Payload, msg) || &r.Payload[:1][0] != &dst[0] {
					t.Fatalf("%v OpenTo %d: %v", p, n, err)
				}
				if !bytes.Equal(pkt, orig) {
					t.Fatal("OpenTo modified the packet")
				}
				if n > 0 {
					if _, err := o.OpenTo(dst[:n-1], pkt, 4); !errors.Is(err, ErrTruncated) {
						t.Fatalf("short dst: %v", err)
					}
				}
				bad := bytes.Clone(pkt)
				bad[len(bad)-1] ^= 1
				if _, err := o.OpenTo(dst, bad, 4); !errors.Is(err, ErrAuth) {
					t.Fatalf("tampered: %v", err)
				}
				if n > 0 && !bytes.Equal(dst[:n], make([]byte, n)) {
					t.Fatal("dst not zeroed after a failed open")
				}
			}
		}
	}
}

// TestSealFrom: SealFrom produces the packet Seal produces from the same
// bytes (two sealers with the same identity and counters), on every crypto
// path, offset and size; it checks the packet's length and allocates
// nothing with the capacity given.
func TestSealFrom(t *testing.T) {
	for _, p := range testPaths() {
		g := newTestGroup(t, 1, p)
		o := newTestOpener(t, OpenerConfig{Groups: []*Group{cloneGroup(t, 1, p)}, Crypto: p.String()})
		a := newTestSealer(t, g, SealerConfig{ID: SenderID(3, 4), Crypto: p.String()})
		b := newTestSealer(t, g, SealerConfig{ID: SenderID(3, 4), Crypto: p.String()})
		for _, off := range [][2]int{{0, 0}, {0, 32}, {4, 40}, {60, 1020}} {
			for _, n := range roundTripSizes {
				name := fmt.Sprintf("%v/io%d/co%d/%d", p, off[0], off[1], n)
				prefix, clr, pl := pattern(off[0], 1), pattern(off[1], 2), pattern(n, 3)
				want, err := a.Seal(packet(a, prefix, clr, pl), off[0], off[1])
				if err != nil {
					t.Fatalf("%s: Seal: %v", name, err)
				}
				head := packet(b, prefix, clr, nil)
				pkt := make([]byte, len(head), len(head)+n+TagSize)
				copy(pkt, head)
				got, err := b.SealFrom(pkt, off[0], off[1], pl)
				if err != nil {
					t.Fatalf("%s: SealFrom: %v", name, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: SealFrom and Seal disagree", name)
				}
				if &got[0] != &pkt[0] {
					t.Fatalf("%s: SealFrom reallocated a packet with room", name)
				}
				dst := make([]byte, n)
				if r, err := o.OpenTo(dst, got, off[0]); err != nil || !bytes.Equal(r.Payload, pl) || !bytes.Equal(r.Clear, clr) {
					t.Fatalf("%s: OpenTo: %v", name, err)
				}
			}
		}
		// The packet must end at the clear part.
		head := packet(b, nil, pattern(8, 2), pattern(4, 3))
		if _, err := b.SealFrom(head, 0, 8, pattern(10, 4)); !errors.Is(err, ErrOffset) {
			t.Fatalf("SealFrom after a payload: %v, want ErrOffset", err)
		}
		// Too small a capacity grows the packet rather than failing.
		head = packet(b, nil, pattern(8, 2), nil)
		got, err := b.SealFrom(head[:len(head):len(head)], 0, 8, pattern(100, 4))
		if err != nil || len(got) != len(head)+100+TagSize {
			t.Fatalf("SealFrom without capacity: %d bytes, %v", len(got), err)
		}
		pl := pattern(1400, 5)
		buf := make([]byte, 0, b.HeaderLen()+32+len(pl)+TagSize)
		if allocs := testing.AllocsPerRun(100, func() {
			pkt := buf[:b.HeaderLen()+32]
			if _, err := b.SealFrom(pkt, 0, 32, pl); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Fatalf("%v: SealFrom allocates %.1f times", p, allocs)
		}
	}
}

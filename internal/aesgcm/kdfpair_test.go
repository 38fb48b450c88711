package aesgcm

import (
	"math/rand/v2"
	"testing"

	"github.com/sealring/sealring/internal/benchutil"
	"github.com/sealring/sealring/internal/cpu"
)

// checkPair compares InitKDFPair with two InitKDF calls (themselves
// checked against EncryptBlocks + Init by TestInitKDF).
func checkPair(t *testing.T, p cpu.Path, ka, kb *Block, hiA, loA, hiB, loB uint64) {
	t.Helper()
	var a, b, wa, wb AEAD
	var ma, mb, wma, wmb [12]byte
	a.htab[1], b.blk.rk[7] = 5, 9 // stale state must be overwritten
	errGot := InitKDFPair(p, &a, ka, hiA, loA, &ma, &b, kb, hiB, loB, &mb)
	errA := wa.InitKDF(p, ka, hiA, loA, &wma)
	errB := wb.InitKDF(p, kb, hiB, loB, &wmb)
	if errGot != nil || errA != nil || errB != nil {
		t.Fatalf("%v: errors %v, %v, %v", p, errGot, errA, errB)
	}
	if a != wa || b != wb || ma != wma || mb != wmb {
		t.Fatalf("aead %v, kdf %v/%d and %v/%d, inputs %x %x %x %x: InitKDFPair differs from two InitKDF calls",
			p, ka.path, ka.nr, kb.path, kb.nr, hiA, loA, hiB, loB)
	}
}

// TestInitKDFPair: on every AEAD path and every pair of KDF keys (both
// sizes, every path; the interleaved call is VAES512 with two AES-256
// keys), InitKDFPair is exactly two InitKDF calls.
func TestInitKDFPair(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var keys []*Block
	for _, kp := range testPaths() {
		for _, ks := range []int{16, 32} {
			k := new(Block)
			if err := k.Init(kp, randBytes(r, ks)); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
	}
	for _, p := range testPaths() {
		for _, ka := range keys {
			for _, kb := range keys {
				for i := 0; i < 20; i++ {
					checkPair(t, p, ka, kb, r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64())
				}
				checkPair(t, p, ka, kb, 0, 0, 0, 0)
			}
		}
	}
	// The same AEAD twice ends with the second key, as two calls do.
	var a, w AEAD
	var m, wm [12]byte
	k := keys[len(keys)-1]
	if err := InitKDFPair(testPaths()[len(testPaths())-1], &a, k, 1, 2, &m, &a, k, 3, 4, &m); err != nil {
		t.Fatal(err)
	}
	if err := w.InitKDF(testPaths()[len(testPaths())-1], k, 3, 4, &wm); err != nil {
		t.Fatal(err)
	}
	if a != w || m != wm {
		t.Fatal("InitKDFPair with a == b does not end with the second derivation")
	}
}

// TestInitKDFPairContract: a failing first derivation still runs (and so
// wipes) the second, as two calls do, and KDF keys that are the AEADs' own
// blocks give what two calls give (not the fast path's simultaneous view).
func TestInitKDFPairContract(t *testing.T) {
	p := testPaths()[len(testPaths())-1]
	var k Block
	if err := k.Init(p, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	var a, b AEAD
	var ma, mb [12]byte
	if err := b.Init(p, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if err := InitKDFPair(cpu.Path(200), &a, &k, 1, 2, &ma, &b, &k, 3, 4, &mb); err == nil {
		t.Fatal("invalid path accepted")
	}
	if b != (AEAD{}) {
		t.Fatal("b not wiped when the derivations fail")
	}
	for _, alias := range []string{"ka=a", "kb=a", "ka=b", "kb=b"} {
		var a, b, wa, wb AEAD
		for _, x := range []*AEAD{&a, &b, &wa, &wb} {
			if err := x.Init(p, make([]byte, 32)); err != nil {
				t.Fatal(err)
			}
		}
		pick := func(x, y *AEAD, which string) (*Block, *Block) {
			ka, kb := &k, &k
			switch which {
			case "ka=a":
				ka = &x.blk
			case "kb=a":
				kb = &x.blk
			case "ka=b":
				ka = &y.blk
			case "kb=b":
				kb = &y.blk
			}
			return ka, kb
		}
		ka, kb := pick(&a, &b, alias)
		if err := InitKDFPair(p, &a, ka, 1, 2, &ma, &b, kb, 3, 4, &mb); err != nil {
			t.Fatal(err)
		}
		var wma, wmb [12]byte
		wka, wkb := pick(&wa, &wb, alias)
		if err := wa.InitKDF(p, wka, 1, 2, &wma); err != nil {
			t.Fatal(err)
		}
		if err := wb.InitKDF(p, wkb, 3, 4, &wmb); err != nil {
			t.Fatal(err)
		}
		if a != wa || b != wb || ma != wma || mb != wmb {
			t.Fatalf("%s: InitKDFPair differs from two InitKDF calls", alias)
		}
	}
}

func TestInitKDFPairAllocs(t *testing.T) {
	for _, p := range testPaths() {
		var k Block
		if err := k.Init(p, make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		var a, b AEAD
		var ma, mb [12]byte
		if n := testing.AllocsPerRun(100, func() { _ = InitKDFPair(p, &a, &k, 1, 2, &ma, &b, &k, 3, 4, &mb) }); n != 0 {
			t.Errorf("%v: InitKDFPair allocates %v times", p, n)
		}
	}
}

// FuzzInitKDFPair compares InitKDFPair with two InitKDF calls for
// arbitrary keys and inputs on every path.
func FuzzInitKDFPair(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 32), false, true, uint64(0), uint64(0), uint64(0), uint64(0))
	f.Add([]byte{1}, []byte{2, 3}, true, false, uint64(1)<<63, ^uint64(0), uint64(3), uint64(1)<<40)
	f.Fuzz(func(t *testing.T, keyA, keyB []byte, shortA, shortB bool, hiA, loA, hiB, loB uint64) {
		// Any bytes make a key: padded or cut to 16 or 32 bytes.
		key := func(b []byte, short bool) []byte {
			n := 32
			if short {
				n = 16
			}
			k := make([]byte, n)
			copy(k, b)
			return k
		}
		for _, p := range testPaths() {
			var ka, kb Block
			if err := ka.Init(p, key(keyA, shortA)); err != nil {
				t.Fatal(err)
			}
			if err := kb.Init(p, key(keyB, shortB)); err != nil {
				t.Fatal(err)
			}
			checkPair(t, p, &ka, &kb, hiA, loA, hiB, loB)
		}
	})
}

// BenchmarkInitKDFPair: one InitKDFPair against two InitKDF calls, as a
// paired ratio.
//
//	go test -run=^$ -bench=InitKDFPair -benchtime=2000x ./internal/aesgcm/
func BenchmarkInitKDFPair(b *testing.B) {
	for _, p := range []cpu.Path{cpu.AESNI, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			var k Block
			if err := k.Init(p, make([]byte, 32)); err != nil {
				b.Skip(err)
			}
			var x, y AEAD
			var mx, my [12]byte
			id := uint64(0)
			benchutil.Paired(b, func() {
				id += 2
				_ = InitKDFPair(p, &x, &k, id, 7, &mx, &y, &k, id+1, 7, &my)
			}, func() {
				id += 2
				_ = x.InitKDF(p, &k, id, 7, &mx)
				_ = y.InitKDF(p, &k, id+1, 7, &my)
			})
		})
	}
}

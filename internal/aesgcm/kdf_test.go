package aesgcm

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/cpu"
)

// initKDFRef is InitKDF spelled out with EncryptBlocks and Init.
func initKDFRef(t *testing.T, a *AEAD, p cpu.Path, kdf *Block, hi, lo uint64, mask *[12]byte) {
	var blocks [48]byte
	for i := range 3 {
		binary.BigEndian.PutUint64(blocks[i*16:], hi^uint64(i+1)<<56)
		binary.BigEndian.PutUint64(blocks[i*16+8:], lo)
	}
	kdf.EncryptBlocks(blocks[:], blocks[:])
	if err := a.Init(p, blocks[:32]); err != nil {
		t.Fatal(err)
	}
	copy(mask[:], blocks[32:44])
}

// TestInitKDF checks that InitKDF produces exactly the key schedule, GHASH
// table and mask of EncryptBlocks + Init, for every pair of paths and
// both KDF key sizes, and that the resulting AEAD matches crypto/cipher.
func TestInitKDF(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, kp := range testPaths() {
		for _, p := range testPaths() {
			for _, ks := range []int{16, 32} {
				var kdf Block
				if err := kdf.Init(kp, randBytes(r, ks)); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 200; i++ {
					hi, lo := r.Uint64(), r.Uint64()
					if i == 0 {
						hi, lo = 0, 0
					}
					var got, want AEAD
					var gm, wm [12]byte
					got.htab[3] = 99 // stale state must be overwritten
					if err := got.InitKDF(p, &kdf, hi, lo, &gm); err != nil {
						t.Fatal(err)
					}
					initKDFRef(t, &want, p, &kdf, hi, lo, &wm)
					if got != want || gm != wm {
						t.Fatalf("kdf %v/%d, aead %v, hi %x lo %x: InitKDF differs from EncryptBlocks+Init", kp, ks, p, hi, lo)
					}
					if i < 3 {
						// Check the AEAD against crypto/cipher with the derived key.
						var blocks [32]byte
						for j := range 2 {
							binary.BigEndian.PutUint64(blocks[j*16:], hi^uint64(j+1)<<56)
							binary.BigEndian.PutUint64(blocks[j*16+8:], lo)
						}
						kdf.EncryptBlocks(blocks[:], blocks[:])
						ref := stdGCM(t, blocks[:])
						nonce, pt, aad := randBytes(r, 12), randBytes(r, 1400), randBytes(r, 24)
						if !bytes.Equal(got.Seal(nil, nonce, pt, aad), ref.Seal(nil, nonce, pt, aad)) {
							t.Fatalf("kdf %v, aead %v: Seal after InitKDF differs from crypto/cipher", kp, p)
						}
					}
				}
			}
		}
	}
}

func TestInitKDFAllocs(t *testing.T) {
	for _, p := range testPaths() {
		var kdf Block
		if err := kdf.Init(p, make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		var a AEAD
		var m [12]byte
		if n := testing.AllocsPerRun(100, func() { _ = a.InitKDF(p, &kdf, 1, 2, &m) }); n != 0 {
			t.Errorf("%v: InitKDF allocates %v times", p, n)
		}
	}
}

func BenchmarkInitKDF(b *testing.B) {
	for _, p := range []cpu.Path{cpu.Generic, cpu.AESNI, cpu.VAES256, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			var kdf Block
			if err := kdf.Init(p, make([]byte, 32)); err != nil {
				b.Skip(err)
			}
			var a AEAD
			var m [12]byte
			b.ReportAllocs()
			id := uint64(0)
			for b.Loop() {
				id++
				_ = a.InitKDF(p, &kdf, id, 7, &m)
			}
		})
	}
}

// TestPairedKDF measures InitKDF + Seal(1400) against a Seal(1400) with a
// cached key (the derive+seal ratio of package secure, without its
// header work), and the fused InitKDF against EncryptBlocks + Init, with
// the paired method of TestPairedSpeed. AESGCM_PAIRED=1 enables it.
func TestPairedKDF(t *testing.T) {
	if os.Getenv("AESGCM_PAIRED") == "" {
		t.Skip("set AESGCM_PAIRED=1 to run")
	}
	for _, p := range testPaths() {
		if p == cpu.Generic {
			continue
		}
		t.Run(p.String(), func(t *testing.T) {
			var kdf Block
			if err := kdf.Init(p, make([]byte, 32)); err != nil {
				t.Fatal(err)
			}
			var a, c AEAD
			var m [12]byte
			if err := c.Init(p, make([]byte, 32)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1400+tagSize)
			nonce, aad := make([]byte, 12), make([]byte, aadLenKDF)
			id := uint64(0)
			pairedRatio(t, "InitKDF+Seal/1400 vs Seal/1400", 64,
				func() { id++; _ = a.InitKDF(p, &kdf, id, 7, &m); a.Seal(buf[:0], m[:], buf[:1400], aad) },
				func() { c.Seal(buf[:0], nonce, buf[:1400], aad) })
			pairedRatio(t, "InitKDF+cachedSeal vs Seal/1400", 64,
				func() { id++; _ = a.InitKDF(p, &kdf, id, 7, &m); c.Seal(buf[:0], nonce, buf[:1400], aad) },
				func() { c.Seal(buf[:0], nonce, buf[:1400], aad) })
			big := make([]byte, 8192+tagSize)
			pairedRatio(t, "InitKDF+cachedSeal8K vs Seal8K", 16,
				func() { id++; _ = a.InitKDF(p, &kdf, id, 7, &m); c.Seal(big[:0], nonce, big[:8192], aad) },
				func() { c.Seal(big[:0], nonce, big[:8192], aad) })
			var blocks [48]byte
			pairedRatio(t, "InitKDF vs EncryptBlocks+Init", 256,
				func() { id++; _ = a.InitKDF(p, &kdf, id, 7, &m) },
				func() {
					id++
					blocks[0] = byte(id)
					kdf.EncryptBlocks(blocks[:], blocks[:])
					_ = a.Init(p, blocks[:32])
				})
		})
	}
}

func pairedRatio(t *testing.T, name string, ops int, ours, base func()) {
	pairedRatioN(t, name, ops, ours, base)
}

func pairedRatioN(t *testing.T, name string, ops int, ours, base func()) {
	measure := func(f func()) float64 {
		start := time.Now()
		for i := 0; i < ops; i++ {
			f()
		}
		return float64(time.Since(start).Nanoseconds()) / float64(ops)
	}
	var ro, rb, ratio []float64
	for round := 0; round < 301; round++ {
		var o, b float64
		if round%2 == 0 {
			o, b = measure(ours), measure(base)
		} else {
			b, o = measure(base), measure(ours)
		}
		ro, rb, ratio = append(ro, o), append(rb, b), append(ratio, o/b)
	}
	slices.Sort(ro)
	slices.Sort(rb)
	slices.Sort(ratio)
	t.Logf("%-34s ours %7.1f ns  base %7.1f ns  median ratio %.3f", name, ro[len(ro)/2], rb[len(rb)/2], ratio[len(ratio)/2])
}

var aadLenKDF = func() int {
	if v := os.Getenv("AADLEN"); v != "" {
		n := 0
		for _, c := range v {
			n = n*10 + int(c-'0')
		}
		return n
	}
	return 24
}()

// BenchmarkInitKDFLatency chains derivations (each one's input depends on
// the previous one's last GHASH power), so it measures latency, not
// throughput.
func BenchmarkInitKDFLatency(b *testing.B) {
	for _, p := range []cpu.Path{cpu.AESNI, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			var kdf Block
			if err := kdf.Init(p, make([]byte, 32)); err != nil {
				b.Skip(err)
			}
			var a AEAD
			var m [12]byte
			for b.Loop() {
				_ = a.InitKDF(p, &kdf, a.htab[0], 7, &m)
			}
		})
	}
}

// FuzzInitKDF compares InitKDF with EncryptBlocks + Init on every path
// pair for arbitrary KDF keys and inputs.
func FuzzInitKDF(f *testing.F) {
	f.Add(make([]byte, 32), uint64(0), uint64(0))
	f.Add(make([]byte, 16), uint64(1)<<63, ^uint64(0))
	f.Fuzz(func(t *testing.T, key []byte, hi, lo uint64) {
		if len(key) != 16 && len(key) != 32 {
			return
		}
		for _, kp := range testPaths() {
			var kdf Block
			if err := kdf.Init(kp, key); err != nil {
				t.Fatal(err)
			}
			for _, p := range testPaths() {
				var got, want AEAD
				var gm, wm [12]byte
				if err := got.InitKDF(p, &kdf, hi, lo, &gm); err != nil {
					t.Fatal(err)
				}
				initKDFRef(t, &want, p, &kdf, hi, lo, &wm)
				if got != want || gm != wm {
					t.Fatalf("kdf %v, aead %v: InitKDF differs", kp, p)
				}
			}
		}
	})
}

// TestKey: Key returns the key Init was given and the key InitKDF derived,
// on every path, so a key cache can keep the bare key and expand it again.
func TestKey(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var a AEAD
	var k [32]byte
	if n := a.Key(&k); n != 0 {
		t.Fatalf("uninitialised AEAD: Key = %d", n)
	}
	for _, p := range testPaths() {
		for _, ks := range []int{16, 32} {
			key := randBytes(r, ks)
			if err := a.Init(p, key); err != nil {
				t.Fatal(err)
			}
			if n := a.Key(&k); n != ks || !bytes.Equal(k[:n], key) {
				t.Fatalf("%v/%d: Key = %x (%d), want %x", p, ks, k[:n], n, key)
			}
			// InitKDF: Init with the returned key must rebuild the same AEAD.
			var kdf Block
			if err := kdf.Init(p, key); err != nil {
				t.Fatal(err)
			}
			var d, again AEAD
			var m [12]byte
			if err := d.InitKDF(p, &kdf, r.Uint64(), r.Uint64(), &m); err != nil {
				t.Fatal(err)
			}
			n := d.Key(&k)
			if n != 32 {
				t.Fatalf("%v: InitKDF key length %d", p, n)
			}
			if err := again.Init(p, k[:n]); err != nil {
				t.Fatal(err)
			}
			if again != d {
				t.Fatalf("%v/%d: Init(Key()) differs from InitKDF's AEAD", p, ks)
			}
		}
	}
	a.Wipe()
	if n := a.Key(&k); n != 0 {
		t.Fatalf("wiped AEAD: Key = %d", n)
	}
}

package aesgcm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

var _ cipher.AEAD = (*AEAD)(nil)

func stdGCM(t testing.TB, key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// diffLengths are the plaintext lengths of the differential test.
func diffLengths() []int {
	var ls []int
	for n := 0; n <= 1100; n++ {
		ls = append(ls, n)
	}
	ls = append(ls, 4095, 4096, 4097, 4098, 4099, 4100, 8191, 8192, 8193)
	for _, d := range []int{0, 1, 15, 17, 63} {
		ls = append(ls, 65536+d)
	}
	return append(ls, 70000)
}

// checkOne seals and opens one message on a with the stdlib as reference,
// out of place and in place.
func checkOne(t *testing.T, a *AEAD, ref cipher.AEAD, nonce, pt, aad []byte) {
	t.Helper()
	want := ref.Seal(nil, nonce, pt, aad)

	// Out of place, with a prefix in dst that must be preserved.
	prefix := []byte("prefix")
	got := a.Seal(append([]byte(nil), prefix...), nonce, pt, aad)
	if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("%v len(pt)=%d len(aad)=%d key=%d: Seal mismatch\n got %x\nwant %x", a.Path(), len(pt), len(aad), 32*(int(a.blk.nr)-6), got[len(prefix):], want)
	}
	dec, err := a.Open(append([]byte(nil), prefix...), nonce, want, aad)
	if err != nil || !bytes.Equal(dec[:len(prefix)], prefix) || !bytes.Equal(dec[len(prefix):], pt) {
		t.Fatalf("%v len(pt)=%d len(aad)=%d: Open failed: %v", a.Path(), len(pt), len(aad), err)
	}

	// Spare capacity after the output must not be touched.
	spare := make([]byte, len(want)+32)
	for i := range spare {
		spare[i] = 0x5c
	}
	a.Seal(spare[:0], nonce, pt, aad)
	if !bytes.Equal(spare[:len(want)], want) || !bytes.Equal(spare[len(want):], bytes.Repeat([]byte{0x5c}, 32)) {
		t.Fatalf("%v len(pt)=%d: Seal wrote past its output", a.Path(), len(pt))
	}
	for i := range spare {
		spare[i] = 0x5c
	}
	a.Open(spare[:0], nonce, want, aad)
	if !bytes.Equal(spare[:len(pt)], pt) || !bytes.Equal(spare[len(pt):], bytes.Repeat([]byte{0x5c}, len(spare)-len(pt))) {
		t.Fatalf("%v len(pt)=%d: Open wrote past its output", a.Path(), len(pt))
	}

	// In place: Seal(pt[:0]) with capacity for the tag, Open(ct[:0]).
	buf := make([]byte, len(pt), len(pt)+tagSize)
	copy(buf, pt)
	ct := a.Seal(buf[:0], nonce, buf, aad)
	if !bytes.Equal(ct, want) || &ct[0] != &buf[:1][0] {
		t.Fatalf("%v len(pt)=%d: in-place Seal mismatch", a.Path(), len(pt))
	}
	dec, err = a.Open(ct[:0], nonce, ct, aad)
	if err != nil || !bytes.Equal(dec, pt) {
		t.Fatalf("%v len(pt)=%d: in-place Open failed: %v", a.Path(), len(pt), err)
	}
}

func TestDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lengths := diffLengths()
	for _, p := range testPaths() {
		for _, ks := range []int{16, 32} {
			key := randBytes(r, ks)
			ref := stdGCM(t, key)
			var a AEAD
			if err := a.Init(p, key); err != nil {
				t.Fatal(err)
			}
			for i, n := range lengths {
				if raceEnabled && n > 1100 && i%3 != 0 {
					continue
				}
				aad := randBytes(r, i%81)
				checkOne(t, &a, ref, randBytes(r, nonceSize), randBytes(r, n), aad)
			}
			// Every AAD length with a few plaintext lengths.
			for al := 0; al <= 80; al++ {
				for _, n := range []int{0, 1, 16, 17, 127, 128, 129, 300} {
					checkOne(t, &a, ref, randBytes(r, nonceSize), randBytes(r, n), randBytes(r, al))
				}
			}
			// Long AAD.
			for _, al := range []int{127, 128, 129, 255, 256, 1000, 4097} {
				checkOne(t, &a, ref, randBytes(r, nonceSize), randBytes(r, 33), randBytes(r, al))
			}
			// Every AAD length across one and two 256-byte GHASH chunks
			// (the VAES512 path hashes AAD sixteen blocks at a time).
			for al := 81; al <= 530; al++ {
				n := []int{0, 64, 300}[al%3]
				checkOne(t, &a, ref, randBytes(r, nonceSize), randBytes(r, n), randBytes(r, al))
			}
		}
	}
}

// TestDifferentialBulkTails covers every tail length mod 256 after
// several bulk iterations, for the assembly paths (the 8-block and
// 16-block loops), with short and long AAD.
func TestDifferentialBulkTails(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, p := range testPaths() {
		if p == cpu.Generic {
			continue
		}
		for _, ks := range []int{16, 32} {
			key := randBytes(r, ks)
			ref := stdGCM(t, key)
			var a AEAD
			if err := a.Init(p, key); err != nil {
				t.Fatal(err)
			}
			var lengths []int
			for d := -16; d < 272; d++ {
				lengths = append(lengths, 4096+d)
			}
			for d := 0; d < 256; d += 5 {
				lengths = append(lengths, 65536+d)
			}
			for i, n := range lengths {
				if raceEnabled && i%4 != 0 {
					continue
				}
				aad := randBytes(r, []int{0, 13, 80, 300}[i%4])
				checkOne(t, &a, ref, randBytes(r, nonceSize), randBytes(r, n), aad)
			}
		}
	}
}

// TestReinit checks that Init overwrites a previous key completely,
// including switching key sizes and paths.
func TestReinit(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var a AEAD
	for i := 0; i < 40; i++ {
		paths := testPaths()
		p := paths[i%len(paths)]
		ks := 16 + 16*(i/len(paths)%2)
		key := randBytes(r, ks)
		if err := a.Init(p, key); err != nil {
			t.Fatal(err)
		}
		checkOne(t, &a, stdGCM(t, key), randBytes(r, 12), randBytes(r, 200), randBytes(r, 20))
	}
}

func TestBitFlips(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, p := range testPaths() {
		for _, ks := range []int{16, 32} {
			key := randBytes(r, ks)
			var a AEAD
			if err := a.Init(p, key); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, 1, 15, 16, 17, 64, 129, 255, 256, 300} {
				for _, al := range []int{0, 13} {
					nonce := randBytes(r, nonceSize)
					pt := randBytes(r, n)
					aad := randBytes(r, al)
					ct := a.Seal(nil, nonce, pt, aad)
					check := func(what string, bit int, ct, aad []byte) {
						dst := make([]byte, 0, len(ct))
						out := dst[:len(ct)-tagSize]
						for i := range out {
							out[i] = 0xaa
						}
						res, err := a.Open(dst, nonce, ct, aad)
						if !errors.Is(err, ErrOpen) || res != nil {
							t.Fatalf("%v n=%d: flipped %s bit %d: Open = %v, %v", p, n, what, bit, res, err)
						}
						for i, c := range out {
							if c != 0 {
								t.Fatalf("%v n=%d: flipped %s bit %d: output byte %d not zeroed", p, n, what, bit, i)
							}
						}
					}
					for bit := 0; bit < 8*len(ct); bit++ {
						ct[bit/8] ^= 1 << (bit % 8)
						check("ct", bit, ct, aad)
						ct[bit/8] ^= 1 << (bit % 8)
					}
					for bit := 0; bit < 8*len(aad); bit++ {
						aad[bit/8] ^= 1 << (bit % 8)
						check("aad", bit, ct, aad)
						aad[bit/8] ^= 1 << (bit % 8)
					}
					// Wrong nonce, truncated and extended ciphertext.
					nonce[0] ^= 1
					if _, err := a.Open(nil, nonce, ct, aad); err != ErrOpen {
						t.Fatalf("wrong nonce accepted")
					}
					nonce[0] ^= 1
					if _, err := a.Open(nil, nonce, ct[:len(ct)-1], aad); err != ErrOpen {
						t.Fatalf("truncated ciphertext accepted")
					}
					if _, err := a.Open(nil, nonce, append(ct, 0), aad); err != ErrOpen {
						t.Fatalf("extended ciphertext accepted")
					}
					if res, err := a.Open(nil, nonce, ct, aad); err != nil || !bytes.Equal(res, pt) {
						t.Fatalf("round trip failed after flips")
					}
				}
			}
			if _, err := a.Open(nil, make([]byte, 12), make([]byte, 15), nil); err != ErrOpen {
				t.Fatalf("short ciphertext: %v", err)
			}
		}
	}
}

func TestInitErrors(t *testing.T) {
	var a AEAD
	var b Block
	for _, n := range []int{0, 1, 15, 17, 24, 31, 33, 64} {
		if err := a.Init(cpu.Generic, make([]byte, n)); err != ErrKeySize {
			t.Errorf("AEAD.Init(%d-byte key) = %v, want ErrKeySize", n, err)
		}
		if err := b.Init(cpu.Generic, make([]byte, n)); err != ErrKeySize {
			t.Errorf("Block.Init(%d-byte key) = %v, want ErrKeySize", n, err)
		}
	}
	for _, p := range []cpu.Path{cpu.VAES512 + 1, cpu.Path(200)} {
		if err := a.Init(p, make([]byte, 32)); err == nil {
			t.Errorf("AEAD.Init(%v) succeeded", p)
		} else {
			t.Logf("AEAD.Init(%v): %v", p, err)
		}
		if err := b.Init(p, make([]byte, 32)); err == nil {
			t.Errorf("Block.Init(%v) succeeded", p)
		}
	}
	if !cpu.Supported(cpu.AESNI) {
		if err := a.Init(cpu.AESNI, make([]byte, 32)); err == nil {
			t.Errorf("AEAD.Init(AESNI) succeeded on a build without it")
		}
	}
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", name)
		}
	}()
	f()
}

func TestPanics(t *testing.T) {
	for _, p := range testPaths() {
		var a AEAD
		var b Block
		mustPanic(t, "Seal before Init", func() { a.Seal(nil, make([]byte, 12), nil, nil) })
		mustPanic(t, "Encrypt before Init", func() { b.Encrypt(make([]byte, 16), make([]byte, 16)) })
		if err := a.Init(p, make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		if err := b.Init(p, make([]byte, 16)); err != nil {
			t.Fatal(err)
		}
		for _, nl := range []int{0, 8, 11, 13, 16} {
			mustPanic(t, "Seal with bad nonce", func() { a.Seal(nil, make([]byte, nl), nil, nil) })
			mustPanic(t, "Open with bad nonce", func() { a.Open(nil, make([]byte, nl), make([]byte, 16), nil) })
		}
		buf := make([]byte, 100)
		mustPanic(t, "Seal inexact overlap", func() { a.Seal(buf[1:1], make([]byte, 12), buf[:50], nil) })
		mustPanic(t, "Open inexact overlap", func() { a.Open(buf[1:1], make([]byte, 12), buf[:50], nil) })
		mustPanic(t, "Seal aad overlap", func() { a.Seal(buf[:0], make([]byte, 12), buf[:10], buf[20:30]) })
		mustPanic(t, "Encrypt short src", func() { b.Encrypt(make([]byte, 16), make([]byte, 15)) })
		mustPanic(t, "Encrypt short dst", func() { b.Encrypt(make([]byte, 15), make([]byte, 16)) })
		mustPanic(t, "EncryptBlocks partial", func() { b.EncryptBlocks(make([]byte, 32), make([]byte, 17)) })
		mustPanic(t, "EncryptBlocks short dst", func() { b.EncryptBlocks(make([]byte, 16), make([]byte, 32)) })
		mustPanic(t, "EncryptBlocks overlap", func() { b.EncryptBlocks(buf[1:33], buf[:32]) })
		a.Wipe()
		b.Wipe()
		mustPanic(t, "Seal after Wipe", func() { a.Seal(nil, make([]byte, 12), nil, nil) })
		mustPanic(t, "Encrypt after Wipe", func() { b.Encrypt(make([]byte, 16), make([]byte, 16)) })
		if a != (AEAD{}) || b != (Block{}) {
			t.Errorf("Wipe left state behind")
		}
	}
}

func TestEncryptBlocksDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, p := range testPaths() {
		for _, ks := range []int{16, 32} {
			key := randBytes(r, ks)
			ref, _ := aes.NewCipher(key)
			var b Block
			if err := b.Init(p, key); err != nil {
				t.Fatal(err)
			}
			for nb := 0; nb <= 40; nb++ {
				src := randBytes(r, 16*nb)
				want := make([]byte, len(src))
				for i := 0; i < len(src); i += 16 {
					ref.Encrypt(want[i:], src[i:])
				}
				got := make([]byte, len(src)+16) // longer dst is allowed
				b.EncryptBlocks(got, src)
				if !bytes.Equal(got[:len(src)], want) || !bytes.Equal(got[len(src):], make([]byte, 16)) {
					t.Fatalf("%v key=%d blocks=%d: EncryptBlocks mismatch", p, ks, nb)
				}
				b.EncryptBlocks(src, src)
				if !bytes.Equal(src, want) {
					t.Fatalf("%v key=%d blocks=%d: in-place EncryptBlocks mismatch", p, ks, nb)
				}
				if nb > 0 {
					one := make([]byte, 16)
					b.Encrypt(one, src[:16])
					ref.Encrypt(want[:16], src[:16])
					if !bytes.Equal(one, want[:16]) {
						t.Fatalf("%v: Encrypt mismatch", p)
					}
				}
			}
		}
	}
}

func TestAllocs(t *testing.T) {
	key := make([]byte, 32)
	nonce := make([]byte, 12)
	for _, p := range testPaths() {
		var a AEAD
		var b Block
		if n := testing.AllocsPerRun(100, func() {
			if err := b.Init(p, key); err != nil {
				panic(err)
			}
		}); n != 0 {
			t.Errorf("%v Block.Init: %v allocs", p, n)
		}
		if n := testing.AllocsPerRun(100, func() {
			if err := a.Init(p, key); err != nil {
				panic(err)
			}
		}); n != 0 {
			t.Errorf("%v AEAD.Init: %v allocs", p, n)
		}
		if n := testing.AllocsPerRun(100, func() { _ = a.Init(cpu.Path(200), key) }); n != 0 {
			t.Errorf("%v failing AEAD.Init: %v allocs", p, n)
		}
		_ = a.Init(p, key)
		for _, size := range []int{0, 1, 64, 1400, 8192} {
			pt := make([]byte, size)
			aad := make([]byte, 13)
			buf := make([]byte, 0, size+tagSize)
			var ct []byte
			if n := testing.AllocsPerRun(100, func() { ct = a.Seal(buf[:0], nonce, pt, aad) }); n != 0 {
				t.Errorf("%v Seal(%d): %v allocs", p, size, n)
			}
			out := make([]byte, 0, size)
			if n := testing.AllocsPerRun(100, func() {
				if _, err := a.Open(out, nonce, ct, aad); err != nil {
					panic(err)
				}
			}); n != 0 {
				t.Errorf("%v Open(%d): %v allocs", p, size, n)
			}
			if n := testing.AllocsPerRun(100, func() { _, _ = a.Open(out, nonce[:12], ct[:len(ct)-1], aad) }); n != 0 {
				t.Errorf("%v failing Open(%d): %v allocs", p, size, n)
			}
		}
		blk := make([]byte, 48)
		if n := testing.AllocsPerRun(100, func() { b.EncryptBlocks(blk, blk); b.Encrypt(blk, blk) }); n != 0 {
			t.Errorf("%v EncryptBlocks: %v allocs", p, n)
		}
	}
}

func TestConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, p := range testPaths() {
		key := randBytes(r, 32)
		ref := stdGCM(t, key)
		var a AEAD
		if err := a.Init(p, key); err != nil {
			t.Fatal(err)
		}
		type msg struct{ nonce, pt, aad, ct []byte }
		var msgs []msg
		for _, n := range []int{0, 5, 64, 200, 1400, 5000} {
			m := msg{randBytes(r, 12), randBytes(r, n), randBytes(r, n%30), nil}
			m.ct = ref.Seal(nil, m.nonce, m.pt, m.aad)
			msgs = append(msgs, m)
		}
		iters := 200
		if raceEnabled {
			iters = 20
		}
		var wg sync.WaitGroup
		errc := make(chan string, 8)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < iters; i++ {
					m := msgs[(i+g)%len(msgs)]
					if ct := a.Seal(nil, m.nonce, m.pt, m.aad); !bytes.Equal(ct, m.ct) {
						errc <- "Seal mismatch"
						return
					}
					if pt, err := a.Open(nil, m.nonce, m.ct, m.aad); err != nil || !bytes.Equal(pt, m.pt) {
						errc <- "Open mismatch"
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for e := range errc {
			t.Errorf("%v: %s", p, e)
		}
	}
}

// TestValueCopy checks that AEAD and Block are plain values: a copy works
// on its own, and an array of them can be re-keyed in place.
func TestValueCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, p := range testPaths() {
		var cache [4]AEAD
		keys := make([][]byte, len(cache))
		for i := range cache {
			keys[i] = randBytes(r, 32)
			if err := cache[i].Init(p, keys[i]); err != nil {
				t.Fatal(err)
			}
		}
		for i := range cache {
			c := cache[i]
			checkOne(t, &c, stdGCM(t, keys[i]), randBytes(r, 12), randBytes(r, 100), nil)
		}
	}
}

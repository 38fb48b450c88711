//go:build linux

package aesgcm

import (
	"bytes"
	"crypto/aes"
	"math/rand/v2"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
	"golang.org/x/sys/unix"
)

// guarded is one accessible page between two PROT_NONE pages, so that any
// access before its start or after its end faults.
type guarded struct {
	mem  []byte
	page []byte
}

func newGuarded(t *testing.T) *guarded {
	ps := unix.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 3*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mprotect(mem[:ps], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mprotect(mem[2*ps:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	g := &guarded{mem: mem, page: mem[ps : 2*ps : 2*ps]}
	t.Cleanup(func() { unix.Munmap(mem) })
	return g
}

// at returns an n-byte slice (capacity n) that starts at the page start
// (atEnd false) or ends at the page end (atEnd true), filled with src.
func (g *guarded) at(n int, atEnd bool, src []byte) []byte {
	off := 0
	if atEnd {
		off = len(g.page) - n
	}
	s := g.page[off : off+n : off+n]
	copy(s, src)
	return s
}

func TestGuardPages(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	gIn, gOut, gAAD, gNonce := newGuarded(t), newGuarded(t), newGuarded(t), newGuarded(t)
	for _, p := range testPaths() {
		for _, ks := range []int{16, 32} {
			key := randBytes(r, ks)
			ref := stdGCM(t, key)
			var a AEAD
			if err := a.Init(p, key); err != nil {
				t.Fatal(err)
			}
			var b Block
			if err := b.Init(p, key); err != nil {
				t.Fatal(err)
			}
			for n := 0; n <= 600; n++ {
				if p == cpu.Generic && n > 300 {
					break
				}
				pt := randBytes(r, n)
				aadSrc := randBytes(r, n%40+(n%7)*50) // up to 339: several AAD chunks
				nonceSrc := randBytes(r, 12)
				want := ref.Seal(nil, nonceSrc, pt, aadSrc)
				for mode := 0; mode < 4; mode++ {
					inEnd, outEnd := mode&1 != 0, mode&2 != 0
					nonce := gNonce.at(12, inEnd, nonceSrc)
					aad := gAAD.at(len(aadSrc), !inEnd, aadSrc)

					// Seal out of place: exact-size dst.
					in := gIn.at(n, inEnd, pt)
					out := gOut.at(n+tagSize, outEnd, nil)
					ct := a.Seal(out[:0], nonce, in, aad)
					if !bytes.Equal(ct, want) {
						t.Fatalf("%v n=%d mode=%d: Seal mismatch", p, n, mode)
					}
					// Open out of place: ciphertext and exact-size dst at guards.
					cin := gIn.at(n+tagSize, inEnd, want)
					dec := gOut.at(n, outEnd, nil)
					res, err := a.Open(dec[:0], nonce, cin, aad)
					if err != nil || !bytes.Equal(res, pt) {
						t.Fatalf("%v n=%d mode=%d: Open failed: %v", p, n, mode, err)
					}
					// Failing Open zeroes exactly the output.
					cin[0] ^= 1
					if _, err := a.Open(dec[:0], nonce, cin, aad); err != ErrOpen {
						t.Fatalf("%v n=%d: tampered Open: %v", p, n, err)
					}
					// In place, buffer with room for the tag at either edge.
					buf := gIn.at(n+tagSize, inEnd, pt)
					ct = a.Seal(buf[:0], nonce, buf[:n], aad)
					if !bytes.Equal(ct, want) {
						t.Fatalf("%v n=%d mode=%d: in-place Seal mismatch", p, n, mode)
					}
					res, err = a.Open(buf[:0], nonce, buf, aad)
					if err != nil || !bytes.Equal(res, pt) {
						t.Fatalf("%v n=%d mode=%d: in-place Open failed: %v", p, n, mode, err)
					}
				}
				if n%16 == 0 {
					// ECB, and single blocks, against the edges.
					src := gIn.at(n, n%32 == 0, pt)
					dst := gOut.at(n, n%32 != 0, nil)
					b.EncryptBlocks(dst, src)
					refc, _ := aes.NewCipher(key)
					wantECB := make([]byte, n)
					for i := 0; i < n; i += 16 {
						refc.Encrypt(wantECB[i:], pt[i:])
					}
					if !bytes.Equal(dst, wantECB) {
						t.Fatalf("%v n=%d: EncryptBlocks at guard mismatch", p, n)
					}
					if n >= 16 {
						one := gOut.at(16, n%32 == 0, nil)
						b.Encrypt(one, gIn.at(16, n%32 != 0, pt))
						if !bytes.Equal(one, wantECB[:16]) {
							t.Fatalf("%v: Encrypt at guard mismatch", p)
						}
					}
				}
			}
		}
	}
}

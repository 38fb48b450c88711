package aesgcm

import (
	"crypto/aes"
	"crypto/cipher"
	"strconv"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

func stdBlock(t testing.TB, key []byte) cipher.Block {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var benchSizes = []int{64, 1400, 8192, 65536}

func benchAEAD(b *testing.B, p cpu.Path) *AEAD {
	var a AEAD
	if err := a.Init(p, make([]byte, 32)); err != nil {
		b.Skip(err)
	}
	return &a
}

func BenchmarkSeal(b *testing.B) {
	for _, p := range []cpu.Path{cpu.Generic, cpu.AESNI, cpu.VAES256, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			for _, n := range benchSizes {
				b.Run(strconv.Itoa(n), func(b *testing.B) {
					a := benchAEAD(b, p)
					nonce, aad := make([]byte, 12), make([]byte, 13)
					buf := make([]byte, n+tagSize)
					b.SetBytes(int64(n))
					b.ReportAllocs()
					for b.Loop() {
						a.Seal(buf[:0], nonce, buf[:n], aad)
					}
				})
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, p := range []cpu.Path{cpu.Generic, cpu.AESNI, cpu.VAES256, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			for _, n := range benchSizes {
				b.Run(strconv.Itoa(n), func(b *testing.B) {
					a := benchAEAD(b, p)
					nonce, aad := make([]byte, 12), make([]byte, 13)
					ct := a.Seal(nil, nonce, make([]byte, n), aad)
					out := make([]byte, n)
					b.SetBytes(int64(n))
					b.ReportAllocs()
					for b.Loop() {
						if _, err := a.Open(out[:0], nonce, ct, aad); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

func BenchmarkStdlibSeal(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			g := stdGCM(b, make([]byte, 32))
			nonce, aad := make([]byte, 12), make([]byte, 13)
			buf := make([]byte, n+tagSize)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				g.Seal(buf[:0], nonce, buf[:n], aad)
			}
		})
	}
}

func BenchmarkStdlibOpen(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			g := stdGCM(b, make([]byte, 32))
			nonce, aad := make([]byte, 12), make([]byte, 13)
			ct := g.Seal(nil, nonce, make([]byte, n), aad)
			out := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.Open(out[:0], nonce, ct, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkInit(b *testing.B) {
	for _, p := range []cpu.Path{cpu.Generic, cpu.AESNI, cpu.VAES256, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			var a AEAD
			key := make([]byte, 32)
			if err := a.Init(p, key); err != nil {
				b.Skip(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = a.Init(p, key)
			}
		})
	}
}

func BenchmarkStdlibNewGCM(b *testing.B) {
	key := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		c, _ := aes.NewCipher(key)
		_, _ = cipher.NewGCM(c)
	}
}

func BenchmarkBlockInit(b *testing.B) {
	for _, p := range []cpu.Path{cpu.Generic, cpu.AESNI, cpu.VAES256, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			var blk Block
			key := make([]byte, 32)
			if err := blk.Init(p, key); err != nil {
				b.Skip(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = blk.Init(p, key)
			}
		})
	}
}

func BenchmarkEncryptBlocks3(b *testing.B) {
	for _, p := range []cpu.Path{cpu.Generic, cpu.AESNI, cpu.VAES256, cpu.VAES512} {
		b.Run(p.String(), func(b *testing.B) {
			var blk Block
			if err := blk.Init(p, make([]byte, 32)); err != nil {
				b.Skip(err)
			}
			buf := make([]byte, 48)
			b.SetBytes(48)
			b.ReportAllocs()
			for b.Loop() {
				blk.EncryptBlocks(buf, buf)
			}
		})
	}
}

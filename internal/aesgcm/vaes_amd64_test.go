//go:build !purego

package aesgcm

import (
	"math/rand/v2"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

// TestDeriveGCMVAES2 calls the interleaved assembly directly (so that a
// change to InitKDFPair's fast-path condition cannot leave it untested)
// and compares it with two deriveGCMVAES calls.
func TestDeriveGCMVAES2(t *testing.T) {
	if !cpu.Supported(cpu.VAES512) {
		t.Skip("VAES512 not supported")
	}
	r := rand.New(rand.NewPCG(9, 10))
	var ka, kb Block
	for i := 0; i < 200; i++ {
		if i%20 == 0 {
			if err := ka.Init(cpu.VAES512, randBytes(r, 32)); err != nil {
				t.Fatal(err)
			}
			if err := kb.Init(cpu.AESNI, randBytes(r, 32)); err != nil {
				t.Fatal(err)
			}
		}
		hiA, loA, hiB, loB := r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()
		var a, b, wa, wb AEAD
		var ma, mb, wma, wmb [12]byte
		deriveGCMVAES2(&ka.rk, hiA, loA, &a.blk.rk, &a.htab, &ma, &kb.rk, hiB, loB, &b.blk.rk, &b.htab, &mb)
		deriveGCMVAES(14, &ka.rk, hiA, loA, &wa.blk.rk, &wa.htab, &wma)
		deriveGCMVAES(14, &kb.rk, hiB, loB, &wb.blk.rk, &wb.htab, &wmb)
		if a != wa || b != wb || ma != wma || mb != wmb {
			t.Fatalf("derivation %d: deriveGCMVAES2 differs from two deriveGCMVAES calls", i)
		}
	}
}

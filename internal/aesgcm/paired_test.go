package aesgcm

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/cpu"
)

// TestPairedSpeed compares this package with crypto/cipher on a shared,
// noisy machine: it alternates short chunks of each (so both see the same
// background load) and reports the median ratio of the paired chunks.
// It only runs with AESGCM_PAIRED=1:
//
//	AESGCM_PAIRED=1 go test -run TestPairedSpeed -v ./internal/aesgcm/
func TestPairedSpeed(t *testing.T) {
	if os.Getenv("AESGCM_PAIRED") == "" {
		t.Skip("set AESGCM_PAIRED=1 to run")
	}
	for _, p := range testPaths() {
		if p != cpu.Generic {
			t.Run(p.String(), func(t *testing.T) { pairedSpeed(t, p) })
		}
	}
}

func pairedSpeed(t *testing.T, p cpu.Path) {
	key, nonce, aad := make([]byte, 32), make([]byte, 12), make([]byte, 13)
	var a AEAD
	if err := a.Init(p, key); err != nil {
		t.Fatal(err)
	}
	g := stdGCM(t, key)
	measure := func(ops int, f func()) float64 {
		start := time.Now()
		for i := 0; i < ops; i++ {
			f()
		}
		return float64(time.Since(start).Nanoseconds()) / float64(ops)
	}
	pair := func(name string, ops int, ours, std func()) {
		var ro, rs, ratio []float64
		for round := 0; round < 301; round++ {
			var o, s float64
			if round%2 == 0 {
				o, s = measure(ops, ours), measure(ops, std)
			} else {
				s, o = measure(ops, std), measure(ops, ours)
			}
			ro, rs, ratio = append(ro, o), append(rs, s), append(ratio, o/s)
		}
		slices.Sort(ro)
		slices.Sort(rs)
		slices.Sort(ratio)
		t.Logf("%-12s ours %8.1f ns (min %8.1f)  stdlib %8.1f ns (min %8.1f)  median ratio %.3f",
			name, ro[len(ro)/2], ro[0], rs[len(rs)/2], rs[0], ratio[len(ratio)/2])
	}
	for _, n := range []int{64, 1400, 8192, 65536} {
		buf := make([]byte, n+tagSize)
		ops := max(4, 200000/(n+100))
		pair("Seal/"+itoa(n), ops,
			func() { a.Seal(buf[:0], nonce, buf[:n], aad) },
			func() { g.Seal(buf[:0], nonce, buf[:n], aad) })
		ct := g.Seal(nil, nonce, make([]byte, n), aad)
		out := make([]byte, n)
		pair("Open/"+itoa(n), ops,
			func() { a.Open(out[:0], nonce, ct, aad) },
			func() { g.Open(out[:0], nonce, ct, aad) })
	}
	pair("Init-vs-New", 2000,
		func() { _ = a.Init(p, key) },
		func() { stdGCM(t, key) })
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

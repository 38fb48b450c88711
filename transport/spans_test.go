package transport

import (
	"math/rand/v2"
	"testing"
)

// TestSpans checks spans against a byte map under random, non-overlapping
// insertions in random order, and the overlap test for random ranges.
func TestSpans(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		const size = 300
		// Cut [0, size) into random pieces, add them in random order.
		var cuts []uint64
		for x := uint64(0); x < size; {
			n := 1 + rng.Uint64N(20)
			cuts = append(cuts, x)
			x = min(x+n, size)
		}
		cuts = append(cuts, size)
		order := rng.Perm(len(cuts) - 1)
		var s spans
		have := make([]bool, size)
		for k, i := range order {
			lo, hi := cuts[i], cuts[i+1]
			if s.overlaps(lo, hi) {
				t.Fatalf("round %d: [%d,%d) reported overlapping before it was added", round, lo, hi)
			}
			s.add(lo, hi)
			for x := lo; x < hi; x++ {
				have[x] = true
			}
			for range 20 {
				a := rng.Uint64N(size)
				b := a + 1 + rng.Uint64N(30)
				want := false
				for x := a; x < min(b, size); x++ {
					want = want || have[x]
				}
				if got := s.overlaps(a, b); got != want {
					t.Fatalf("round %d step %d: overlaps(%d,%d) = %v, want %v (%+v)", round, k, a, b, got, want, s)
				}
			}
			// The representation stays canonical: prefix maximal, extra
			// sorted, disjoint, not adjacent, not touching the prefix.
			prev := s.prefix
			for j, e := range s.extra {
				if e.lo >= e.hi || e.lo <= prev {
					t.Fatalf("round %d: span %d %+v after %d: not canonical (%+v)", round, j, e, prev, s)
				}
				prev = e.hi
			}
		}
		if s.prefix != size || len(s.extra) != 0 {
			t.Fatalf("round %d: all added, spans %+v", round, s)
		}
	}
}

// TestSpansInOrderNoAlloc: arriving in order allocates nothing.
func TestSpansInOrderNoAlloc(t *testing.T) {
	var s spans
	if n := testing.AllocsPerRun(100, func() {
		s.reset()
		for i := range uint64(64) {
			s.add(i*100, i*100+100)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations", n)
	}
}

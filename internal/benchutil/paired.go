// Package benchutil holds benchmark helpers shared by several packages'
// tests.
package benchutil

import (
	"slices"
	"testing"
	"time"
)

// Paired runs ours and base alternately in chunks of 32 calls, alternating
// which goes first, and reports the median per-chunk time ratio ours/base
// ("ratio") with its 10th and 90th percentiles. On a noisy machine the
// ratio of interleaved chunks is far steadier than two separate
// benchmarks.
func Paired(b *testing.B, ours, base func()) {
	const chunk = 32
	for range chunk { // warm both
		ours()
		base()
	}
	run := func(f func()) time.Duration {
		t0 := time.Now()
		for range chunk {
			f()
		}
		return time.Since(t0)
	}
	var ratios []float64
	i := 0
	for b.Loop() {
		var to, tb time.Duration
		if i%2 == 0 {
			to, tb = run(ours), run(base)
		} else {
			tb, to = run(base), run(ours)
		}
		i++
		ratios = append(ratios, float64(to)/float64(tb))
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
	b.ReportMetric(ratios[len(ratios)/10], "p10")
	b.ReportMetric(ratios[len(ratios)*9/10], "p90")
}

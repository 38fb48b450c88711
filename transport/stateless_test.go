package transport

import (
	"testing"
	"time"

	"github.com/sealring/sealring/transport/wire"
)

// TestStatelessMode runs endpoints without a key cache (CacheCapacity < 0:
// every packet's key is derived, the receive loop opens each batch with
// Opener.OpenBatch, which derives them two at a time): messages of every
// path (eager, fragmented, rendezvous) arrive intact in both directions at
// once, no packet is served from a cache, and none is resent or seen
// twice (a batch whose results went to the wrong packets would be
// repaired by retransmissions: the timeout is long enough that none is
// spurious).
func TestStatelessMode(t *testing.T) {
	for _, kind := range []string{"mem", "udp"} {
		t.Run(kind, func(t *testing.T) {
			c := newCluster(t, kind, 2, func(cfg *Config) { cfg.CacheCapacity, cfg.MinRTO, cfg.MaxRTO = -1, time.Second, 2*time.Second }, nil)
			a, b := c.eps[0], c.eps[1]
			f := a.EagerFragment()
			ctx := ctxT(t)
			for i, n := range []int{0, 1, f + 1, 3 * f, DefaultEagerLimit + 1, 1 << 20} {
				tag := uint64(i)
				ma, mb := pattern(n, 0, tag, i), pattern(n, 1, tag, i)
				ba, bb := make([]byte, n), make([]byte, n)
				ra := a.RecvAsync(ctx, 1, tag, ^uint64(0), ba)
				rb := b.RecvAsync(ctx, 0, tag, ^uint64(0), bb)
				sa := a.SendAsync(ctx, 1, tag, ma)
				sb := b.SendAsync(ctx, 0, tag, mb)
				for _, r := range []*Request{sa, sb, ra, rb} {
					if _, err := r.Wait(ctx); err != nil {
						t.Fatalf("size %d: %v", n, err)
					}
				}
				checkPattern(t, ba, 1, tag, i)
				checkPattern(t, bb, 0, tag, i)
			}
			for _, ep := range c.eps {
				st := ep.Stats()
				if st.KeyCacheHits != 0 || st.KeyCacheMisses == 0 || st.KeyCacheMisses+st.AuthFailures < st.PacketsReceived {
					t.Fatalf("rank %d: %d hits, %d derivations, %d auth failures for %d packets received", ep.rank, st.KeyCacheHits, st.KeyCacheMisses, st.AuthFailures, st.PacketsReceived)
				}
				if st.AuthFailures != 0 {
					t.Fatalf("rank %d: %d auth failures", ep.rank, st.AuthFailures)
				}
				// On the in-memory wire nothing is lost unless a queue
				// overflows (counted), so nothing may be resent.
				if m, ok := ep.w.(*wire.Mem); ok && m.Stats().Dropped == 0 && (st.Retransmits != 0 || st.Duplicates != 0) {
					t.Fatalf("rank %d: %d retransmits, %d duplicates on a lossless wire", ep.rank, st.Retransmits, st.Duplicates)
				}
			}
		})
	}
}

package secure

import (
	"fmt"
	"testing"

	"github.com/sealring/sealring/internal/benchutil"
)

// BenchmarkRatio interleaves short chunks of our operation and its baseline
// and reports the median of the per-chunk time ratios ("ratio" = ours /
// baseline). Alternating in one loop cancels the load drift that makes
// ratios of separately run benchmarks unreliable on shared machines.
//
//	go test -run=^$ -bench=Ratio -benchtime=400x ./secure/
func BenchmarkRatio(b *testing.B) {
	g := benchGroup(b)
	s := newTestSealer(b, g, SealerConfig{ID: SenderID(1, 1)})
	o := newTestOpener(b, OpenerConfig{Groups: []*Group{g}, CacheCapacity: 1024})
	o0 := newTestOpener(b, OpenerConfig{Groups: []*Group{g}})
	std := stdlibGCM(b)
	non, aad := make([]byte, 12), make([]byte, s.HeaderLen())
	m := g.snap.Load().byIndex[g.KeyIndex()]

	for _, n := range []int{1400, 8192} {
		buf := packet(s, nil, nil, make([]byte, n))
		l := len(buf)
		sbuf := make([]byte, n, n+16)
		b.Run("Seal-vs-StdlibGCM/"+itoa(n), func(b *testing.B) {
			benchutil.Paired(b, func() { s.Seal(buf[:l], 0, 0) }, func() { std.Seal(sbuf[:0], non, sbuf, aad) })
		})
		pkt, _ := s.Seal(packet(s, nil, nil, make([]byte, n)), 0, 0)
		work := make([]byte, len(pkt))
		ct := std.Seal(nil, non, make([]byte, n), aad)
		swork := make([]byte, len(ct))
		b.Run("Open-vs-StdlibGCMOpen/"+itoa(n), func(b *testing.B) {
			benchutil.Paired(b, func() { copy(work, pkt); o.Open(work, 0) },
				func() { copy(swork, ct); std.Open(swork[:0], non, swork, aad) })
		})
	}
	buf := packet(s, nil, nil, make([]byte, 1400))
	l := len(buf)
	var d derived
	var nn [nonceSize]byte
	id := uint64(0)
	dbuf := make([]byte, 24+1400, 24+1400+16)
	b.Run("DeriveSeal-vs-Seal/1400", func(b *testing.B) {
		benchutil.Paired(b, func() {
			id++
			m.derive(&d, defaultPath, ModeSender, id, 7)
			nonce(&nn, &d.ivMask, id, 7, 1)
			d.aead.Seal(dbuf[24:24], nn[:], dbuf[24:], dbuf[:24])
		}, func() { s.Seal(buf[:l], 0, 0) })
	})
	pkt, _ := s.Seal(packet(s, nil, nil, make([]byte, 1400)), 0, 0)
	work := make([]byte, len(pkt))
	b.Run("OpenNoCache-vs-Open/1400", func(b *testing.B) {
		benchutil.Paired(b, func() { copy(work, pkt); o0.Open(work, 0) }, func() { copy(work, pkt); o.Open(work, 0) })
	})
	// Batches of 32 packets from 32 senders (as a recvmmsg receiver opens
	// them): without a cache the derivations go two at a time. Against
	// the cached Open of one packet in one L1-hot buffer, 32 times (the
	// strictest baseline: the batch's 32 buffers, 45 KB, do not fit in
	// L1), against cached batches of the same buffers, and against
	// cache-less Opens of them one by one.
	const batchN = 32
	bpkts := make([][]byte, batchN)
	for i := range bpkts {
		bs := newTestSealer(b, g, SealerConfig{ID: SenderID(uint32(i), 1)})
		bpkts[i], _ = bs.Seal(packet(bs, nil, nil, make([]byte, 1400)), 0, 0)
	}
	bwork := make([][]byte, batchN)
	for i := range bwork {
		bwork[i] = make([]byte, len(bpkts[i]))
	}
	msgs := make([]Message, batchN)
	openBatch := func(o *Opener) func() {
		return func() {
			for i := range msgs {
				copy(bwork[i], bpkts[i])
				msgs[i] = Message{Packet: bwork[i]}
			}
			o.OpenBatch(msgs)
		}
	}
	openEach := func(o *Opener) func() {
		return func() {
			for i := range bwork {
				copy(bwork[i], bpkts[i])
				o.Open(bwork[i], 0)
			}
		}
	}
	openBatch(o)() // admit the 32 senders
	openBatch(o)() // and expand them
	b.Run("BatchNoCache-vs-Open/1400", func(b *testing.B) {
		benchutil.Paired(b, openBatch(o0), func() {
			for range batchN {
				copy(work, pkt)
				o.Open(work, 0)
			}
		})
	})
	b.Run("BatchNoCache-vs-Batch/1400", func(b *testing.B) {
		benchutil.Paired(b, openBatch(o0), openBatch(o))
	})
	b.Run("BatchNoCache-vs-OpenNoCache/1400", func(b *testing.B) {
		benchutil.Paired(b, openBatch(o0), openEach(o0))
	})
	// A hit on a compact cache entry (bare key, expanded again per packet)
	// against a hit on an expanded one.
	oc := newTestOpener(b, OpenerConfig{Groups: []*Group{g}, CacheCapacity: 1024, ExpandedCapacity: -1})
	for _, n := range []int{64, 1400} {
		pkt, _ := s.Seal(packet(s, nil, nil, make([]byte, n)), 0, 0)
		work := make([]byte, len(pkt))
		for range 3 {
			copy(work, pkt)
			oc.Open(work, 0) // admit
		}
		b.Run(fmt.Sprintf("OpenCompact-vs-Open/%d", n), func(b *testing.B) {
			benchutil.Paired(b, func() { copy(work, pkt); oc.Open(work, 0) }, func() { copy(work, pkt); o.Open(work, 0) })
		})
		b.Run(fmt.Sprintf("OpenNoCache-vs-OpenCompact/%d", n), func(b *testing.B) {
			benchutil.Paired(b, func() { copy(work, pkt); o0.Open(work, 0) }, func() { copy(work, pkt); oc.Open(work, 0) })
		})
	}
}

func itoa(n int) string {
	if n == 1400 {
		return "1400"
	}
	return "8192"
}

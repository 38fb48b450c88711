package secure

import (
	"crypto/aes"
	"crypto/cipher"
	"strconv"
	"testing"
)

// Benchmarks with fixed names (tracked in docs/performance.md). They use
// the process's crypto path: run with SEALRING_CRYPTO=generic|aesni to
// compare paths. Open benchmarks copy the sealed packet into the work
// buffer every iteration (Open decrypts in place); BenchmarkStdlibGCMOpen
// does the same so the ratio is fair.

var benchSizes = []int{64, 1400, 8192}

func benchGroup(b *testing.B) *Group {
	g, err := NewGroup(testGroupConfig(1, 16))
	if err != nil {
		b.Fatal(err)
	}
	return g
}

func BenchmarkSeal(b *testing.B) {
	g := benchGroup(b)
	s := newTestSealer(b, g, SealerConfig{ID: SenderID(1, 1)})
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			buf := packet(s, nil, nil, make([]byte, n))
			l := len(buf)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(buf[:l], 0, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	g := benchGroup(b)
	s := newTestSealer(b, g, SealerConfig{ID: SenderID(1, 1)})
	o := newTestOpener(b, OpenerConfig{Groups: []*Group{g}, CacheCapacity: 1024})
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			pkt, _ := s.Seal(packet(s, nil, nil, make([]byte, n)), 0, 0)
			work := make([]byte, len(pkt))
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				copy(work, pkt)
				if _, err := o.Open(work, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func stdlibGCM(b *testing.B) cipher.AEAD {
	blk, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkStdlibGCM is raw crypto/cipher AES-256-GCM sealing in place with
// the same 24-byte AAD as our header: the baseline for BenchmarkSeal.
func BenchmarkStdlibGCM(b *testing.B) {
	a := stdlibGCM(b)
	nonce := make([]byte, 12)
	aad := make([]byte, 24)
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			buf := make([]byte, n, n+16)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				a.Seal(buf[:0], nonce, buf, aad)
			}
		})
	}
}

// BenchmarkStdlibGCMOpen is the baseline for BenchmarkOpen.
func BenchmarkStdlibGCMOpen(b *testing.B) {
	a := stdlibGCM(b)
	nonce := make([]byte, 12)
	aad := make([]byte, 24)
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			ct := a.Seal(nil, nonce, make([]byte, n), aad)
			work := make([]byte, len(ct))
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				copy(work, ct)
				if _, err := a.Open(work[:0], nonce, work, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDerive is one cache miss: data key and IV mask from the master
// key (three AES-256 blocks) and the AEAD set up for it.
func BenchmarkDerive(b *testing.B) {
	g := benchGroup(b)
	m := g.snap.Load().byIndex[g.KeyIndex()]
	var d derived
	b.ReportAllocs()
	id := uint64(0)
	for b.Loop() {
		id++
		if err := m.derive(&d, defaultPath, ModeSender, id, 7); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeriveSeal is the stateless worst case: derive a fresh data key,
// then seal 1400 bytes with it (target ≤ 1.2× BenchmarkSeal/1400).
func BenchmarkDeriveSeal(b *testing.B) {
	g := benchGroup(b)
	m := g.snap.Load().byIndex[g.KeyIndex()]
	b.Run("1400", func(b *testing.B) {
		var d derived
		buf := make([]byte, 24+1400, 24+1400+16)
		var n [nonceSize]byte
		b.SetBytes(1400)
		b.ReportAllocs()
		id := uint64(0)
		for b.Loop() {
			id++
			if err := m.derive(&d, defaultPath, ModeSender, id, 7); err != nil {
				b.Fatal(err)
			}
			nonce(&n, &d.ivMask, id, 7, 1)
			d.aead.Seal(buf[24:24], n[:], buf[24:], buf[:24])
		}
	})
}

// BenchmarkOpenNoCache is a full Open with a capacity-0 cache: parse,
// derive, authenticate and decrypt every packet.
func BenchmarkOpenNoCache(b *testing.B) {
	g := benchGroup(b)
	s := newTestSealer(b, g, SealerConfig{ID: SenderID(1, 1)})
	o := newTestOpener(b, OpenerConfig{Groups: []*Group{g}})
	b.Run("1400", func(b *testing.B) {
		pkt, _ := s.Seal(packet(s, nil, nil, make([]byte, 1400)), 0, 0)
		work := make([]byte, len(pkt))
		b.SetBytes(1400)
		b.ReportAllocs()
		for b.Loop() {
			copy(work, pkt)
			if _, err := o.Open(work, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStdlibNewGCMSeal is the naive stateless baseline: a new
// crypto/cipher AES-GCM per packet.
func BenchmarkStdlibNewGCMSeal(b *testing.B) {
	b.Run("1400", func(b *testing.B) {
		key := make([]byte, 32)
		nonce := make([]byte, 12)
		buf := make([]byte, 1400, 1416)
		aad := make([]byte, 24)
		b.SetBytes(1400)
		b.ReportAllocs()
		for b.Loop() {
			key[0]++
			blk, _ := aes.NewCipher(key)
			a, _ := cipher.NewGCM(blk)
			a.Seal(buf[:0], nonce, buf, aad)
		}
	})
}

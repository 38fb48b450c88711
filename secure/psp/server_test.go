package psp

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

func newTestServer(t testing.TB) *Server {
	t.Helper()
	s, err := NewServer(ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sealWith seals a small packet under k and returns it.
func sealWith(t testing.TB, k SAKey, payload []byte) []byte {
	t.Helper()
	s, err := NewSealer(SealerConfig{Key: k.Bytes(), SPI: k.SPI, Version: k.Version})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, BaseHeaderLen+len(payload), BaseHeaderLen+len(payload)+ICVLen)
	copy(buf[BaseHeaderLen:], payload)
	pkt, err := s.Seal(buf, 17, 0)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func TestServerDeriveOnReceive(t *testing.T) {
	srv := newTestServer(t)
	for _, v := range allVersions {
		k, err := srv.NewSA(v)
		if err != nil {
			t.Fatal(err)
		}
		if k.SPI>>31 != 0 || k.SPI == 0 {
			t.Fatalf("first SPI %08x", k.SPI)
		}
		pkt := sealWith(t, k, []byte("hello, server"))
		r, err := srv.Open(pkt)
		if err != nil || string(r.Payload) != "hello, server" {
			t.Fatalf("%v: %q %v", v, r.Payload, err)
		}
	}
}

func TestServerAllocation(t *testing.T) {
	srv := newTestServer(t)
	seen := map[uint32]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				k, err := srv.NewSA(V0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[k.SPI] {
					t.Errorf("SPI %08x allocated twice", k.SPI)
				}
				seen[k.SPI] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	p, err := srv.AllocatePair()
	if err != nil || p%2 != 0 || seen[p] || seen[p|1] {
		t.Fatalf("pair %08x: %v", p, err)
	}
	q, _ := srv.AllocatePair()
	if q != p+2 {
		t.Fatalf("next pair %08x after %08x", q, p)
	}
}

func TestServerSPIExhaustion(t *testing.T) {
	srv := newTestServer(t)
	srv.next[0] = MaxSPIIndex - 1
	k, err := srv.NewSA(V0)
	if err != nil || k.SPI != MaxSPIIndex {
		t.Fatalf("last SPI: %08x %v", k.SPI, err)
	}
	if _, err := srv.NewSA(V0); !errors.Is(err, ErrSPIExhausted) {
		t.Fatalf("after the last SPI: %v", err)
	}
	if _, err := srv.AllocatePair(); !errors.Is(err, ErrSPIExhausted) {
		t.Fatalf("pair after the last SPI: %v", err)
	}
	if err := srv.Rotate(); err != nil {
		t.Fatal(err)
	}
	k, err = srv.NewSA(V0)
	if err != nil || k.SPI != SPIKeySelector|1 {
		t.Fatalf("after rotation: %08x %v", k.SPI, err)
	}
}

// TestServerRotation: an association survives one rotation (its master key
// is kept as the previous one) and dies at the second (its key is
// replaced); SPIs restart under the fresh key.
func TestServerRotation(t *testing.T) {
	srv := newTestServer(t)
	a, _ := srv.NewSA(V1)
	pa := sealWith(t, a, []byte("a"))
	if slot, gen := srv.Current(); slot != 0 || gen != 0 {
		t.Fatalf("initial slot %d gen %d", slot, gen)
	}
	if err := srv.Rotate(); err != nil {
		t.Fatal(err)
	}
	if slot, gen := srv.Current(); slot != 1 || gen != 2 {
		t.Fatalf("after one rotation: slot %d gen %d", slot, gen)
	}
	b, _ := srv.NewSA(V1)
	if b.SPI != SPIKeySelector|1 {
		t.Fatalf("first SPI under slot 1: %08x", b.SPI)
	}
	pb := sealWith(t, b, []byte("b"))
	if _, err := srv.Open(bytes.Clone(pa)); err != nil {
		t.Fatalf("association of the previous key after one rotation: %v", err)
	}
	if _, err := srv.Open(bytes.Clone(pb)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Open(bytes.Clone(pa)); !errors.Is(err, ErrAuth) {
		t.Fatalf("association of the replaced key: %v, want ErrAuth", err)
	}
	if _, err := srv.Open(bytes.Clone(pb)); err != nil {
		t.Fatalf("association of the previous key: %v", err)
	}
	c, _ := srv.NewSA(V1)
	if c.SPI != 1 {
		t.Fatalf("first SPI under the fresh slot-0 key: %08x", c.SPI)
	}
	// Same SPI number as a, different master key: different key.
	if bytes.Equal(c.Bytes(), a.Bytes()) {
		t.Fatal("fresh master key derived the old key")
	}
}

func TestServerFixedKeysAndErrors(t *testing.T) {
	var mk [2][MasterKeyLen]byte
	copy(mk[1][:], pattern(32, 7))
	srv, err := NewServer(ServerConfig{MasterKeys: &mk})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 16)
	DeriveKey(want, &mk, 0x80000005, V0)
	k, _ := srv.DeriveSA(0x80000005, V0)
	if !bytes.Equal(k.Bytes(), want) {
		t.Fatal("DeriveSA disagrees with DeriveKey")
	}
	if _, err := srv.DeriveSA(1, 4); !errors.Is(err, ErrVersion) {
		t.Errorf("version 4: %v", err)
	}
	if _, err := NewServer(ServerConfig{Rand: bytes.NewReader(nil)}); err == nil {
		t.Error("empty random source accepted")
	}
	if _, err := NewServer(ServerConfig{Crypto: "bogus"}); !errors.Is(err, ErrConfig) {
		t.Errorf("bad crypto path: %v", err)
	}
	if _, err := srv.Open([]byte{1, 2, 3}); !errors.Is(err, ErrTruncated) {
		t.Errorf("short packet: %v", err)
	}
}

// TestRestoredKeysNoSPIReuse: a server restarted with the master keys of
// an earlier one must not hand out the SPIs (and so the keys) that the
// earlier one handed out: the new sender would hold the old sender's key,
// and both count their IVs from 1. Without the allocation state it
// allocates nothing under the restored keys (ErrSPIExhausted: rotate);
// with it, allocation resumes after the last SPI handed out.
func TestRestoredKeysNoSPIReuse(t *testing.T) {
	var mk [2][MasterKeyLen]byte
	copy(mk[0][:], pattern(32, 1))
	copy(mk[1][:], pattern(32, 2))
	first, err := NewServer(ServerConfig{MasterKeys: &mk, Allocated: &[2]uint32{}})
	if err != nil {
		t.Fatal(err)
	}
	old, err := first.NewSA(V0)
	if err != nil || old.SPI != 1 {
		t.Fatalf("first SA under fresh allocation state: %08x %v", old.SPI, err)
	}
	restarted, err := NewServer(ServerConfig{MasterKeys: &mk})
	if err != nil {
		t.Fatal(err)
	}
	k, err := restarted.NewSA(V0)
	if err == nil && bytes.Equal(k.Bytes(), old.Bytes()) {
		t.Fatalf("restarted server handed out SPI %08x again, with the same key", k.SPI)
	}
	if !errors.Is(err, ErrSPIExhausted) {
		t.Fatalf("allocation under restored keys without their state: %v, want ErrSPIExhausted", err)
	}
	if _, err := restarted.AllocatePair(); !errors.Is(err, ErrSPIExhausted) {
		t.Fatalf("pair under restored keys without their state: %v", err)
	}
	if err := restarted.Rotate(); err != nil {
		t.Fatal(err)
	}
	if k, err = restarted.NewSA(V0); err != nil || k.SPI != SPIKeySelector|1 {
		t.Fatalf("after rotation: %08x %v", k.SPI, err)
	}
	// The restored key still opens the old association's packets.
	if _, err := restarted.Open(sealWith(t, old, []byte("old"))); err != nil {
		t.Fatalf("old association after restart: %v", err)
	}
	// With the allocation state, allocation resumes.
	state := first.Allocated()
	resumed, err := NewServer(ServerConfig{MasterKeys: &mk, Allocated: &state})
	if err != nil {
		t.Fatal(err)
	}
	if k, err = resumed.NewSA(V0); err != nil || k.SPI != 2 {
		t.Fatalf("resumed allocation: %08x %v", k.SPI, err)
	}
	if _, err := NewServer(ServerConfig{MasterKeys: &mk, Allocated: &[2]uint32{MaxSPIIndex + 1, 0}}); !errors.Is(err, ErrConfig) {
		t.Fatalf("allocation state past the SPI space: %v", err)
	}
}

// TestAllocatePairRotatingOnce: callers that find the current key
// exhausted at the same time rotate once between them, so the previous
// key (and its associations) survives. Rotating on ErrSPIExhausted with
// AllocatePair and Rotate, as a caller would, rotates once per caller.
func TestAllocatePairRotatingOnce(t *testing.T) {
	var mk [2][MasterKeyLen]byte
	for round := range 50 {
		srv, err := NewServer(ServerConfig{MasterKeys: &mk})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		spis := make([]uint32, 8)
		for i := range spis {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				spi, err := srv.AllocatePairRotating()
				if err != nil {
					t.Error(err)
				}
				spis[i] = spi
			}()
		}
		close(start)
		wg.Wait()
		if slot, gen := srv.Current(); slot != 1 || gen != 2 {
			t.Fatalf("round %d: slot %d generation %d, want one rotation (1, 2)", round, slot, gen)
		}
		seen := map[uint32]bool{}
		for _, spi := range spis {
			if spi>>31 != 1 || spi&1 != 0 || seen[spi] {
				t.Fatalf("round %d: SPIs %08x", round, spis)
			}
			seen[spi] = true
		}
	}
}

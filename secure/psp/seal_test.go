package psp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
)

// refSeal is PSP sealing written against crypto/cipher, straight from the
// specification: nonce = SPI ‖ IV, AAD = header ‖ crypt-offset bytes,
// the rest encrypted (GCM) or everything authenticated (GMAC).
func refSeal(t testing.TB, key []byte, h *Header, payload []byte) []byte {
	t.Helper()
	blk, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := h.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	pkt := append(hdr[:BaseHeaderLen:BaseHeaderLen], append(hdr[BaseHeaderLen:], payload...)...)
	nonce := pkt[4:16]
	if h.Version.GMAC() {
		return g.Seal(bytes.Clone(pkt), nonce, nil, pkt)
	}
	aadEnd := BaseHeaderLen + int(h.CryptOffset)*4
	return g.Seal(bytes.Clone(pkt[:aadEnd]), nonce, pkt[aadEnd:], pkt[:aadEnd])
}

// TestSealOpenDifferential compares SA.Seal with crypto/cipher on every
// crypto path, version, VC setting, crypt offset and a range of sizes, and
// opens the result.
func TestSealOpenDifferential(t *testing.T) {
	for _, p := range testPaths() {
		for _, v := range allVersions {
			key := testKey(v, byte(v)+1)
			var sa SA
			if err := sa.init(p, key, 0x80000042, v); err != nil {
				t.Fatal(err)
			}
			for _, vc := range []bool{false, true} {
				for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 64, 255, 1400} {
					for _, co := range []uint8{0, 1, 2, 3, 6, 63} {
						hl := BaseHeaderLen
						if vc {
							hl += VCLen
						}
						if BaseHeaderLen+int(co)*4 > hl+n {
							continue
						}
						h := Header{NextHeader: 17, CryptOffset: co, Version: v, SPI: 0x80000042, IV: uint64(n)<<8 | uint64(co), HasVC: vc}
						if vc {
							h.VC = 0x1122334455667788
						}
						payload := pattern(n, byte(co))
						want := refSeal(t, key, &h, payload)
						buf := make([]byte, hl+n, hl+n+ICVLen)
						copy(buf[hl:], payload)
						got, err := sa.Seal(buf, &h)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("%v %v vc=%v n=%d co=%d:\n got %x\nwant %x", p, v, vc, n, co, got, want)
						}
						if &got[0] != &buf[0] {
							t.Fatal("Seal did not work in place")
						}
						r, err := sa.Open(got)
						if err != nil {
							t.Fatalf("%v %v vc=%v n=%d co=%d: open: %v", p, v, vc, n, co, err)
						}
						if r.Header != h || r.HeaderLen != hl || !bytes.Equal(r.Payload, payload) {
							t.Fatalf("%v %v: opened %+v %x", p, v, r.Header, r.Payload)
						}
					}
				}
			}
		}
	}
}

func TestOpenRejects(t *testing.T) {
	key := testKey(V0, 9)
	s, err := NewSealer(SealerConfig{Key: key, SPI: 7, Version: V0})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, s.HeaderLen()+40, s.HeaderLen()+40+ICVLen)
	pkt, err := s.Seal(buf, 6, 2)
	if err != nil {
		t.Fatal(err)
	}
	var sa SA
	if err := sa.Init(key, 7, V0, ""); err != nil {
		t.Fatal(err)
	}
	for i := range len(pkt) * 8 {
		c := bytes.Clone(pkt)
		c[i/8] ^= 1 << (i % 8)
		if _, err := sa.Open(c); err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
	}
	var other SA
	if err := other.Init(key, 8, V0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(bytes.Clone(pkt)); !errors.Is(err, ErrSPI) {
		t.Errorf("wrong SPI: %v", err)
	}
	if err := other.Init(testKey(V2, 9), 7, V2, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(bytes.Clone(pkt)); !errors.Is(err, ErrVersion) {
		t.Errorf("wrong version: %v", err)
	}
	// A failed open zeroes the plaintext it would have produced.
	c := bytes.Clone(pkt)
	c[len(c)-1] ^= 1
	if _, err := sa.Open(c); !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered ICV: %v", err)
	}
	if !bytes.Equal(c[BaseHeaderLen+8:len(c)-ICVLen], make([]byte, 32)) {
		t.Error("failed open left plaintext in the buffer")
	}
	var zero SA
	if _, err := zero.Open(bytes.Clone(pkt)); !errors.Is(err, ErrConfig) {
		t.Errorf("uninitialised SA: %v", err)
	}
}

// TestEmptyCiphertextAuthenticated: with everything after the header in
// the crypt offset, the encrypted part is empty; the ICV must still be
// checked (the reference's decryptor skips it).
func TestEmptyCiphertextAuthenticated(t *testing.T) {
	for _, v := range allVersions {
		key := testKey(v, 3)
		s, err := NewSealer(SealerConfig{Key: key, SPI: 9, Version: v})
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := s.Seal(make([]byte, 24, 40), 17, 2)
		if err != nil {
			t.Fatal(err)
		}
		var sa SA
		sa.Init(key, 9, v, "")
		for _, i := range []int{len(pkt) - 1, 20, 2} {
			c := bytes.Clone(pkt)
			c[i] ^= 0x10
			if _, err := sa.Open(c); err == nil {
				t.Errorf("%v: byte %d tampered, accepted", v, i)
			}
		}
		if _, err := sa.Open(pkt); err != nil {
			t.Errorf("%v: %v", v, err)
		}
	}
}

func TestSealerIVs(t *testing.T) {
	s, err := NewSealer(SealerConfig{Key: testKey(V1, 1), SPI: 3, Version: V1, FirstIV: 1<<64 - 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{1<<64 - 2, 1<<64 - 1} {
		pkt, err := s.Seal(make([]byte, 20, 36), 17, 0)
		if err != nil {
			t.Fatal(err)
		}
		h, _, _ := ParsePacket(pkt)
		if h.IV != want {
			t.Fatalf("IV %x, want %x", h.IV, want)
		}
	}
	if _, err := s.Seal(make([]byte, 20, 36), 17, 0); !errors.Is(err, ErrIVExhausted) {
		t.Fatalf("after the last IV: %v", err)
	}
	if _, err := NewSealer(SealerConfig{Key: testKey(V0, 1), Version: V1}); !errors.Is(err, ErrKeySize) {
		t.Errorf("16-byte key for V1: %v", err)
	}
	if _, err := NewSealer(SealerConfig{Key: testKey(V0, 1), Crypto: "nonsense"}); !errors.Is(err, ErrConfig) {
		t.Errorf("bad crypto path: %v", err)
	}
	s2, _ := NewSealer(SealerConfig{Key: testKey(V0, 1)})
	if _, err := s2.Seal(make([]byte, 20, 36), 17, 2); !errors.Is(err, ErrTruncated) {
		t.Errorf("crypt offset past the payload: %v", err)
	}
	if _, err := s2.Seal(make([]byte, 20, 36), 17, 64); !errors.Is(err, ErrField) {
		t.Errorf("crypt offset 64: %v", err)
	}
	if _, err := s2.Seal(make([]byte, 10), 17, 0); !errors.Is(err, ErrTruncated) {
		t.Errorf("no room for the header: %v", err)
	}
}

func TestSealOpenNoAlloc(t *testing.T) {
	key := testKey(V1, 1)
	s, _ := NewSealer(SealerConfig{Key: key, SPI: 0x80000003, Version: V1, HasVC: true})
	var sa SA
	sa.Init(key, 0x80000003, V1, "")
	var mk [2][MasterKeyLen]byte
	srv, _ := NewServer(ServerConfig{MasterKeys: &mk})
	k, _ := srv.DeriveSA(0x80000003, V1)
	s3, _ := NewSealer(SealerConfig{Key: k.Bytes(), SPI: 0x80000003, Version: V1})
	buf := make([]byte, 24+1400, 24+1400+ICVLen)
	n := testing.AllocsPerRun(50, func() {
		pkt, err := s.Seal(buf[:24+1400], 6, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sa.Open(pkt); err != nil {
			t.Fatal(err)
		}
		pkt, err = s3.Seal(buf[:16+1400], 6, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Open(pkt); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per seal+open", n)
	}
}

// TestSealerMatchesSA: Sealer.Seal's direct header write equals
// Header.AppendTo + SA.Seal, with and without a VC, for every version.
func TestSealerMatchesSA(t *testing.T) {
	for _, v := range allVersions {
		for _, vc := range []bool{false, true} {
			key := testKey(v, 4)
			s, err := NewSealer(SealerConfig{Key: key, SPI: 0x8000abcd, Version: v, HasVC: vc, VC: 0xfeedface, FirstIV: 77})
			if err != nil {
				t.Fatal(err)
			}
			var sa SA
			sa.Init(key, 0x8000abcd, v, "")
			for i, co := range []uint8{0, 1, 5} {
				payload := pattern(100, byte(i))
				hl := s.HeaderLen()
				a := append(make([]byte, hl, hl+100+ICVLen), payload...)
				got, err := s.Seal(a, 6, co)
				if err != nil {
					t.Fatal(err)
				}
				h := Header{NextHeader: 6, CryptOffset: co, Version: v, SPI: 0x8000abcd, IV: 77 + uint64(i), HasVC: vc}
				if vc {
					h.VC = 0xfeedface
				}
				want, err := sa.Seal(append(make([]byte, hl, hl+100+ICVLen), payload...), &h)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%v vc=%v co=%d:\n got %x\nwant %x", v, vc, co, got, want)
				}
			}
		}
	}
}

// TestSealerWipe: Wipe zeroes the Sealer's key; sealing afterwards is an
// error, not a panic.
func TestSealerWipe(t *testing.T) {
	s, err := NewSealer(SealerConfig{Key: testKey(V0, 1), SPI: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Wipe()
	if _, err := s.Seal(make([]byte, 20, 36), 17, 0); !errors.Is(err, ErrConfig) {
		t.Fatalf("Seal after Wipe: %v", err)
	}
	p := ipv4Packet(17, 0, l4(1, 2, 8))
	buf := make([]byte, 64+len(p), 64+len(p)+ICVLen)
	copy(buf[64:], p)
	if _, err := s.SealTunnel(buf, 64, 0); !errors.Is(err, ErrConfig) {
		t.Fatalf("SealTunnel after Wipe: %v", err)
	}
}

package psp

import (
	"bytes"
	"testing"

	"github.com/sealring/sealring/secure"
)

// TestKDFVectors reproduces the PSP specification's key-derivation
// examples (../shared/vectors/psp-kdf.txt).
func TestKDFVectors(t *testing.T) {
	var mk [2][MasterKeyLen]byte
	n := 0
	for _, l := range vectorLines(t, sharedVectors(t, "psp-kdf.txt")) {
		switch l[0] {
		case "master_key0":
			copy(mk[0][:], unhex(t, l[1]))
		case "master_key1":
			copy(mk[1][:], unhex(t, l[1]))
		default:
			v := Version(l[0][0] - '0')
			spiB, want := unhex(t, l[1]), unhex(t, l[2])
			spi := uint32(spiB[0])<<24 | uint32(spiB[1])<<16 | uint32(spiB[2])<<8 | uint32(spiB[3])
			got := make([]byte, v.KeyLen())
			if err := DeriveKey(got, &mk, spi, v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("v%d SPI %08x: %x, want %x", v, spi, got, want)
			}
			// The Server derives the same key, and GMAC versions share
			// the derivation of their key length.
			srv, err := NewServer(ServerConfig{MasterKeys: &mk})
			if err != nil {
				t.Fatal(err)
			}
			for _, vv := range []Version{v, v + 2} {
				k, err := srv.DeriveSA(spi, vv)
				if err != nil || !bytes.Equal(k.Bytes(), want) {
					t.Errorf("Server.DeriveSA(%08x, %v) = %x, %v", spi, vv, k.Bytes(), err)
				}
			}
			n++
		}
	}
	if n != 3 {
		t.Fatalf("ran %d KDF vectors, want 3", n)
	}
}

// TestDeriveKeyIsCounterKDF spells the fixed input out byte by byte.
func TestDeriveKeyIsCounterKDF(t *testing.T) {
	var mk [2][MasterKeyLen]byte
	copy(mk[0][:], pattern(32, 1))
	copy(mk[1][:], pattern(32, 2))
	for _, v := range allVersions {
		for _, spi := range []uint32{1, 0x7fffffff, 0x80000001, 0xffffffff} {
			got := make([]byte, v.KeyLen())
			if err := DeriveKey(got, &mk, spi, v); err != nil {
				t.Fatal(err)
			}
			label, l := byte('0'), []byte{0, 0, 0, 0x80}
			if v.KeyLen() == 32 {
				label, l = '1', []byte{0, 0, 1, 0}
			}
			fixed := append([]byte{'P', 'v', label, 0, byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}, l...)
			want := make([]byte, v.KeyLen())
			if err := secure.CounterKDF(mk[spi>>31][:], fixed, 4, want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%v %08x: %x, want %x", v, spi, got, want)
			}
		}
	}
	if err := DeriveKey(make([]byte, 16), &mk, 1, V1); err == nil {
		t.Error("16-byte output for V1 accepted")
	}
	if err := DeriveKey(make([]byte, 16), &mk, 1, 7); err == nil {
		t.Error("version 7 accepted")
	}
}

func TestDeriveKeyNoAlloc(t *testing.T) {
	var mk [2][MasterKeyLen]byte
	out := make([]byte, 32)
	if n := testing.AllocsPerRun(100, func() { DeriveKey(out, &mk, 5, V1) }); n != 0 {
		t.Fatalf("%v allocations per derivation", n)
	}
}

// TestFastDerive: the Server's prepared derivation equals DeriveKey (which
// is secure.CounterKDF) on every crypto path, for both master keys and
// every version.
func TestFastDerive(t *testing.T) {
	var mk [2][MasterKeyLen]byte
	copy(mk[0][:], pattern(32, 0x80)) // a key whose E_K(0) likely has its top bit set for one of the two
	copy(mk[1][:], pattern(32, 0x11))
	for _, p := range testPaths() {
		var prfs [2]prf
		for i := range prfs {
			if err := prfs[i].init(p, &mk[i]); err != nil {
				t.Fatal(err)
			}
		}
		for _, v := range allVersions {
			for spi := uint32(0); spi < 64; spi++ {
				for _, s := range []uint32{spi, spi | SPIKeySelector, spi*0x01010101 ^ 0x5a5a5a5a} {
					want := make([]byte, v.KeyLen())
					if err := DeriveKey(want, &mk, s, v); err != nil {
						t.Fatal(err)
					}
					got := make([]byte, v.KeyLen())
					prfs[s>>31].derive(got, s, v)
					if !bytes.Equal(got, want) {
						t.Fatalf("%v %v spi %08x: %x, want %x", p, v, s, got, want)
					}
				}
			}
		}
	}
}

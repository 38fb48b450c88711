package aesgcm

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

// testPaths lists every path this machine supports that the package
// implements.
func testPaths() []cpu.Path {
	var ps []cpu.Path
	for _, p := range cpu.SupportedPaths() {
		if p <= maxImplemented {
			ps = append(ps, p)
		}
	}
	return ps
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// FIPS 197 Appendix B and C.1/C.3.
var blockVectors = []struct{ key, pt, ct string }{
	{"2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734", "3925841d02dc09fbdc118597196a0b32"},
	{"000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff", "69c4e0d86a7b0430d8cdb78070b4c55a"},
	{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089"},
}

func TestBlockVectors(t *testing.T) {
	for _, p := range testPaths() {
		for i, v := range blockVectors {
			var b Block
			if err := b.Init(p, unhex(v.key)); err != nil {
				t.Fatal(err)
			}
			if b.Path() != p {
				t.Fatalf("Path() = %v, want %v", b.Path(), p)
			}
			got := make([]byte, 16)
			b.Encrypt(got, unhex(v.pt))
			if want := unhex(v.ct); !bytes.Equal(got, want) {
				t.Errorf("%v #%d: Encrypt = %x, want %x", p, i, got, want)
			}
			// In place, and via EncryptBlocks.
			buf := unhex(v.pt)
			b.Encrypt(buf, buf)
			if !bytes.Equal(buf, got) {
				t.Errorf("%v #%d: in-place Encrypt = %x", p, i, buf)
			}
			multi := bytes.Repeat(unhex(v.pt), 11)
			b.EncryptBlocks(multi, multi)
			if !bytes.Equal(multi, bytes.Repeat(got, 11)) {
				t.Errorf("%v #%d: EncryptBlocks = %x", p, i, multi)
			}
		}
	}
}

// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test
// cases with 96-bit IVs (1-4 AES-128, 13-16 AES-256).
var gcmVectors = []struct {
	name, key, iv, pt, aad, ct, tag string
}{
	{"TC1", "00000000000000000000000000000000", "000000000000000000000000", "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"},
	{"TC2", "00000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"},
	{"TC3", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
		"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255", "",
		"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
		"4d5c2af327cd64a62cf35abd2ba6fab4"},
	{"TC4", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
		"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
		"feedfacedeadbeeffeedfacedeadbeefabaddad2",
		"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
		"5bc94fbc3221a5db94fae95ae7121a47"},
	{"TC13", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
	{"TC14", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
	{"TC15", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
		"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255", "",
		"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
		"b094dac5d93471bdec1a502270e3cc6c"},
	{"TC16", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
		"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
		"feedfacedeadbeeffeedfacedeadbeefabaddad2",
		"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
		"76fc6ece0f4e1768cddf8853bb2d551b"},
}

func TestGCMVectors(t *testing.T) {
	for _, p := range testPaths() {
		for _, v := range gcmVectors {
			var a AEAD
			if err := a.Init(p, unhex(v.key)); err != nil {
				t.Fatal(err)
			}
			want := append(unhex(v.ct), unhex(v.tag)...)
			got := a.Seal(nil, unhex(v.iv), unhex(v.pt), unhex(v.aad))
			if !bytes.Equal(got, want) {
				t.Errorf("%v %s: Seal = %x, want %x", p, v.name, got, want)
			}
			pt, err := a.Open(nil, unhex(v.iv), want, unhex(v.aad))
			if err != nil || !bytes.Equal(pt, unhex(v.pt)) {
				t.Errorf("%v %s: Open = %x, %v", p, v.name, pt, err)
			}
		}
	}
}

package cpu

import (
	"testing"
)

func TestParsePath(t *testing.T) {
	for _, p := range []Path{Generic, AESNI, VAES256, VAES512} {
		got, forced, err := ParsePath(p.String())
		if err != nil || !forced || got != p {
			t.Fatalf("ParsePath(%q) = %v, %v, %v", p.String(), got, forced, err)
		}
	}
	if _, forced, err := ParsePath("auto"); forced || err != nil {
		t.Fatalf("auto: forced=%v err=%v", forced, err)
	}
	if _, _, err := ParsePath("sse9"); err == nil {
		t.Fatal("unknown path accepted")
	}
}

func TestChoose(t *testing.T) {
	if p, err := choose("", VAES512); err != nil || p != Best(VAES512) {
		t.Fatalf("auto: %v %v", p, err)
	}
	if p, err := choose("generic", VAES512); err != nil || p != Generic {
		t.Fatalf("generic: %v %v", p, err)
	}
	if _, err := choose("vaes-avx512", AESNI); err == nil {
		t.Fatal("forcing an unimplemented path must fail")
	}
	if _, err := choose("bogus", AESNI); err == nil {
		t.Fatal("bogus value must fail")
	}
	for _, p := range SupportedPaths() {
		if !Supported(p) {
			t.Fatalf("%v listed but unsupported", p)
		}
	}
	if Best(Generic) != Generic {
		t.Fatal("Best(Generic) must be Generic")
	}
	// VAES256 is chosen only where VAES512 is not supported.
	if Supported(VAES512) && Best(VAES512) != VAES512 {
		t.Fatal("Best must prefer vaes-avx512")
	}
	if Supported(VAES256) && !Supported(VAES512) && Best(VAES512) != VAES256 {
		t.Fatal("Best must choose vaes-avx2 without AVX-512")
	}
}

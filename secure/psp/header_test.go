package psp

import (
	"bytes"
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{},
		{NextHeader: 17, CryptOffset: 1, Version: V0, SPI: 0x9a345678, IV: 1},
		{NextHeader: 41, CryptOffset: 63, Version: V3, SPI: 1, IV: 1<<64 - 1, HasVC: true, VC: 0x0102030405060708, Sample: true, Drop: true, Reserved: 3},
		{NextHeader: 4, Version: V2, HasVC: true},
	} {
		b, err := h.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != h.Len() {
			t.Fatalf("len %d, Len() %d", len(b), h.Len())
		}
		got, n, err := ParseHeader(b)
		if err != nil || n != len(b) || got != h {
			t.Fatalf("round trip of %+v: %+v, %d, %v", h, got, n, err)
		}
	}
}

// TestHeaderWire pins the byte layout against the reference's captures:
// byte 3 is 0x01 (v0), 0x05 (v1), 0x03 (v0+VC), 0x07 (v1+VC).
func TestHeaderWire(t *testing.T) {
	for _, c := range []struct {
		h    Header
		want string
	}{
		{Header{NextHeader: 17, CryptOffset: 1, Version: V0, SPI: 0x9a345678, IV: 1}, "110101019a3456780000000000000001"},
		{Header{NextHeader: 41, CryptOffset: 12, Version: V1, SPI: 0x1a345678, IV: 1}, "29010c051a3456780000000000000001"},
		{Header{NextHeader: 6, Version: V0, HasVC: true, SPI: 2, IV: 3}, "0602000300000002000000000000000300000000" + "00000000"},
		{Header{NextHeader: 6, Version: V1, HasVC: true, VC: 5}, "060200070000000000000000000000000000000000000005"},
		{Header{Version: V2}, "00010009000000000000000000000000"},
		{Header{Version: V3, Sample: true, Drop: true}, "000100cd000000000000000000000000"},
	} {
		b, err := c.h.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		want := unhex(t, c.want)
		if !bytes.Equal(b, want) {
			t.Errorf("%+v: %x, want %x", c.h, b, want)
		}
	}
}

func TestHeaderAppendErrors(t *testing.T) {
	for _, c := range []struct {
		h    Header
		want error
	}{
		{Header{Version: 4}, ErrVersion},
		{Header{CryptOffset: 64}, ErrField},
		{Header{Reserved: 4}, ErrField},
	} {
		b := []byte{0xaa}
		got, err := c.h.AppendTo(b)
		if !errors.Is(err, c.want) || len(got) != 1 {
			t.Errorf("%+v: %v (len %d), want %v", c.h, err, len(got), c.want)
		}
	}
}

func TestParseHeaderErrors(t *testing.T) {
	good := unhex(t, "110101019a3456780000000000000001")
	vc := unhex(t, "110201039a3456780000000000000001aabbccddeeff0011")
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"15 bytes", good[:15], ErrTruncated},
		{"VC truncated", vc[:20], ErrTruncated},
		{"always-one clear", set(good, 3, 0x00), ErrHeader},
		{"version 4", set(good, 3, 4<<2|1), ErrVersion},
		{"version 15", set(good, 3, 15<<2|1), ErrVersion},
		{"ext len 0", set(good, 1, 0), ErrHeader},
		{"ext len 2 without V", set(good, 1, 2), ErrHeader},
		{"ext len 1 with V", set(vc, 1, 1), ErrHeader},
		{"ext len 3", set(vc, 1, 3), ErrHeader},
	} {
		_, _, err := ParseHeader(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// ParsePacket also needs the ICV and the crypt offset.
	if _, _, err := ParsePacket(good); !errors.Is(err, ErrTruncated) {
		t.Errorf("no ICV: %v", err)
	}
	pkt := append(bytes.Clone(good), make([]byte, 16+3)...)
	if _, _, err := ParsePacket(set(pkt, 2, 1)); !errors.Is(err, ErrTruncated) {
		t.Errorf("crypt offset past the ICV: %v", err)
	}
	if _, _, err := ParsePacket(set(pkt, 2, 0)); err != nil {
		t.Errorf("crypt offset 0: %v", err)
	}
}

func set(b []byte, i int, v byte) []byte {
	c := bytes.Clone(b)
	c[i] = v
	return c
}

func TestParseHeaderNoAlloc(t *testing.T) {
	b := unhex(t, "110201039a3456780000000000000001aabbccddeeff0011")
	bad := set(b, 1, 7)
	n := testing.AllocsPerRun(100, func() {
		ParseHeader(b)
		ParseHeader(bad)
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func TestVersion(t *testing.T) {
	for v, want := range map[Version][3]any{V0: {16, false, "aes-gcm-128"}, V1: {32, false, "aes-gcm-256"}, V2: {16, true, "aes-gmac-128"}, V3: {32, true, "aes-gmac-256"}, 9: {0, false, "psp-version(9)"}} {
		if v.KeyLen() != want[0] || v.GMAC() != want[1] || v.String() != want[2] {
			t.Errorf("%d: %d %v %s", v, v.KeyLen(), v.GMAC(), v)
		}
	}
}

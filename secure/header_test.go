package secure

import (
	"bytes"
	"errors"
	"testing"
)

func sampleHeaders() []Header {
	var hs []Header
	gid := [32]byte{}
	for i := range gid {
		gid[i] = byte(0xa0 + i)
	}
	for _, m := range []Mode{ModeSender, ModeFlow, ModeDevice} {
		for _, opt := range []OptionForm{OptionNone, OptionShort, OptionLong} {
			for _, gl := range []uint8{16, 32} {
				if opt != OptionLong && gl == 32 {
					continue
				}
				h := Header{Mode: m, COffset: 3, IOffset: 2, ID: 0x12345678, Option: opt,
					KeyIndex: MakeKeyIndex(1, 2, 3), Epoch: 0xbeef, Counter: MaxCounter}
				if m != ModeDevice {
					h.ID = 0x0102030405060708
				}
				if opt == OptionNone {
					h.KeyIndex = 0
				}
				if opt == OptionLong {
					h.GroupIDLen = gl
					copy(h.GroupID[:gl], gid[:gl])
				}
				hs = append(hs, h)
			}
		}
	}
	return hs
}

// withRoom returns the header's encoding followed by COffset words and a tag.
func withRoom(t testing.TB, h *Header) []byte {
	b, err := h.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, make([]byte, int(h.COffset)*4+TagSize)...)
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range sampleHeaders() {
		pkt := withRoom(t, &h)
		if n := h.Len(); n%4 != 0 || n > MaxHeaderLen {
			t.Fatalf("%+v: Len %d", h, n)
		}
		got, n, err := ParseHeader(pkt)
		if err != nil {
			t.Fatalf("%v/%v: %v", h.Mode, h.Option, err)
		}
		if n != h.Len() || got != h {
			t.Fatalf("round trip: got %+v (n=%d), want %+v (n=%d)", got, n, h, h.Len())
		}
		if !bytes.Equal(got.GroupIDBytes(), h.GroupIDBytes()) {
			t.Fatal("group ID bytes")
		}
	}
}

// TestHeaderLayout pins the byte layout documented in docs/protocol.md.
func TestHeaderLayout(t *testing.T) {
	h := Header{Mode: ModeSender, COffset: 0x12, IOffset: 3, ID: SenderID(7, 9), Option: OptionShort,
		KeyIndex: MakeKeyIndex(1, 2, 3), Epoch: 5, Counter: 0x010203040506}
	b, err := h.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x16, 0x10, 0x01, 0x23, // version 1, HL 6, V 1, reserve 0, COffset 0x12, IOffset 3
		0, 0, 0, 7, 0, 0, 0, 9, // rank 7, incarnation 9
		1, 4, 0x1b, 0, // option type 1, length 4, index 01 10 11, pad
		0, 5, 1, 2, 3, 4, 5, 6, // epoch 5, counter
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("layout\n got %x\nwant %x", b, want)
	}
	if h.KeyIndex.Gen(Region) != 1 || h.KeyIndex.Gen(User) != 2 || h.KeyIndex.Gen(Task) != 3 {
		t.Fatal("KeyIndex.Gen")
	}
}

func TestHeaderAppendInPlace(t *testing.T) {
	h := sampleHeaders()[1]
	buf := make([]byte, 64)
	out, err := h.AppendTo(buf[8:8])
	if err != nil {
		t.Fatal(err)
	}
	if &out[0] != &buf[8] {
		t.Fatal("AppendTo did not write in place")
	}
	if n := testing.AllocsPerRun(100, func() { h.AppendTo(buf[8:8]) }); n != 0 {
		t.Fatalf("AppendTo allocates %v", n)
	}
	pkt := withRoom(t, &h)
	if n := testing.AllocsPerRun(100, func() { ParseHeader(pkt) }); n != 0 {
		t.Fatalf("ParseHeader allocates %v", n)
	}
}

func TestHeaderEncodeErrors(t *testing.T) {
	cases := []struct {
		name string
		h    Header
		want error
	}{
		{"mode 0", Header{}, ErrMode},
		{"mode 9", Header{Mode: 9}, ErrMode},
		{"device ID over 32 bits", Header{Mode: ModeDevice, ID: 1 << 32}, ErrField},
		{"counter over 48 bits", Header{Mode: ModeSender, Counter: MaxCounter + 1}, ErrField},
		{"IOffset 16", Header{Mode: ModeSender, IOffset: 16}, ErrField},
		{"index bit 6", Header{Mode: ModeSender, Option: OptionShort, KeyIndex: 0x40}, ErrField},
		{"group ID 20", Header{Mode: ModeSender, Option: OptionLong, GroupIDLen: 20}, ErrField},
		{"option form 7", Header{Mode: ModeSender, Option: 7}, ErrField},
	}
	for _, c := range cases {
		if _, err := c.h.AppendTo(nil); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestHeaderParseErrors(t *testing.T) {
	good := Header{Mode: ModeSender, Option: OptionShort, COffset: 1, Epoch: 1, Counter: 1}
	base := withRoom(t, &good) // 24-byte header, 4 clear, 16 tag
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(base)) }
	cases := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"3 bytes", base[:3], ErrTruncated},
		{"version 0", mut(func(b []byte) []byte { b[0] &^= 0xf0; return b }), ErrVersion},
		{"version 2", mut(func(b []byte) []byte { b[0] = b[0]&0x0f | 0x20; return b }), ErrVersion},
		{"mode 0", mut(func(b []byte) []byte { b[1] &^= 0xf0; return b }), ErrMode},
		{"mode 15", mut(func(b []byte) []byte { b[1] |= 0xf0; return b }), ErrMode},
		{"shorter than HL", base[:20], ErrTruncated},
		{"HL below fixed", mut(func(b []byte) []byte { b[0] = 0x14; return b }), ErrHeaderLen},
		{"HL one word over option", mut(func(b []byte) []byte { b[0] = 0x17; return b }), ErrHeaderLen},
		{"unknown option type", mut(func(b []byte) []byte { b[12] = 9; return b }), ErrOption},
		{"option length 8", mut(func(b []byte) []byte { b[13] = 8; return b }), ErrOption},
		{"option length 20 in 4 bytes", mut(func(b []byte) []byte { b[13] = 20; return b }), ErrHeaderLen},
		{"index reserved bits", mut(func(b []byte) []byte { b[14] |= 0x80; return b }), ErrOption},
		{"no tag", base[:24+15], ErrTruncated},
		{"COffset eats the tag", base[:24+4+15], ErrOffset},
		{"COffset past packet", mut(func(b []byte) []byte { b[3] = 0x20; return b }), ErrOffset},
	}
	for _, c := range cases {
		_, _, err := ParseHeader(c.pkt)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	// Reserve bits and option padding are ignored on receive.
	b := mut(func(b []byte) []byte { b[1] |= 0x0f; b[2] |= 0xf0; b[15] = 0xff; return b })
	if h, _, err := ParseHeader(b); err != nil || h != good {
		t.Fatalf("reserve/padding not ignored: %v %+v", err, h)
	}
}

// FuzzParseHeader: decoding never panics, and whatever decodes re-encodes
// to the same bytes (with reserve bits and padding, which are ignored,
// cleared); and every encodable header decodes to itself.
func FuzzParseHeader(f *testing.F) {
	for _, h := range sampleHeaders() {
		f.Add(withRoom(f, &h))
	}
	f.Add([]byte{0x13, 0x10, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			if n != 0 {
				t.Fatal("n != 0 on error")
			}
			return
		}
		enc, err := h.AppendTo(nil)
		if err != nil {
			t.Fatalf("decoded header does not encode: %v (%+v)", err, h)
		}
		want := bytes.Clone(b[:n])
		want[1] &= 0xf0 // reserve
		want[2] &= 0x0f
		if h.Option != OptionNone {
			want[4+h.Mode.IDLen()+3] = 0 // padding
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("re-encode\n got %x\nwant %x", enc, want)
		}
		h2, n2, err := ParseHeader(append(enc, b[n:]...))
		if err != nil || n2 != n || h2 != h {
			t.Fatalf("decode(encode(h)) != h: %v", err)
		}
	})
}

package rendezvous

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleFrames() []frame {
	return []frame{
		{Kind: kindHello, MaxKey: 1024, MaxValue: 1 << 20},
		{Kind: kindSet, ID: 1, Key: "k", Value: []byte("v")},
		{Kind: kindSet, ID: 2, Key: "k", Value: []byte{}},
		{Kind: kindGet, ID: 3, Key: "some/key"},
		{Kind: kindAdd, ID: 4, Key: "c", Int: -9},
		{Kind: kindCAS, ID: 5, Key: "c", HasOld: true, Old: []byte("a"), Value: []byte("b")},
		{Kind: kindCAS, ID: 6, Key: "c", HasOld: true, Old: []byte{}, Value: []byte{}},
		{Kind: kindCAS, ID: 7, Key: "c", Value: []byte("b")},
		{Kind: kindWait, ID: 8, Int: 1500, Keys: []string{"a", "b/c"}},
		{Kind: kindWait, ID: 9},
		{Kind: kindDelete, ID: 10, Key: "x"},
		{Kind: kindCancel, ID: 8},
		{Kind: kindPing, ID: 0xffffffff},
		{Kind: kindResponse, ID: 3, HasValue: true, Value: []byte("v")},
		{Kind: kindResponse, ID: 5, HasValue: true, Value: []byte{}, Swapped: true},
		{Kind: kindResponse, ID: 8, Status: statusTimeout, Int: 1500, Msg: "timed out", Keys: []string{"b/c"}},
		{Kind: kindResponse, ID: 4, Int: -9},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range sampleFrames() {
		b, err := appendFrame(nil, &f)
		if err != nil {
			t.Fatalf("%v: %v", f.Kind, err)
		}
		g, err := decodeFrame(b)
		if err != nil {
			t.Fatalf("%v: decode: %v", f.Kind, err)
		}
		if !reflect.DeepEqual(f, g) {
			t.Errorf("round trip of %v:\n got %#v\nwant %#v", f.Kind, g, f)
		}
		// Through the stream reader too.
		g2, err := readFrame(bufio.NewReader(bytes.NewReader(b)), 1<<20, nil)
		if err != nil || !reflect.DeepEqual(f, g2) {
			t.Errorf("readFrame(%v) = %#v, %v", f.Kind, g2, err)
		}
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	valid, _ := appendFrame(nil, &frame{Kind: kindSet, ID: 1, Key: "k", Value: []byte("v")})
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	cases := map[string][]byte{
		"short header":    valid[:5],
		"length too big":  mut(func(b []byte) []byte { b[3]++; return b }),
		"length too low":  mut(func(b []byte) []byte { b[3]--; return b }),
		"bad version":     mut(func(b []byte) []byte { b[4] = 2; return b }),
		"unknown kind":    mut(func(b []byte) []byte { b[5] = 77; return b }),
		"trailing byte":   mut(func(b []byte) []byte { b = append(b, 0); b[3]++; return b }),
		"truncated value": mut(func(b []byte) []byte { b = b[:len(b)-1]; b[3]--; return b }),
		"value length lie": mut(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[frameHeaderLen+3:], 0xffffffff)
			return b
		}),
		"bad bool": func() []byte {
			b, _ := appendFrame(nil, &frame{Kind: kindCAS, Key: "k", HasOld: true, Old: []byte{}, Value: []byte{}})
			b[frameHeaderLen+3] = 2
			return b
		}(),
		"negative timeout": func() []byte {
			b, _ := appendFrame(nil, &frame{Kind: kindWait, Int: 1})
			binary.BigEndian.PutUint64(b[frameHeaderLen:], 1<<63)
			return b
		}(),
		"huge key count": func() []byte {
			b, _ := appendFrame(nil, &frame{Kind: kindWait})
			binary.BigEndian.PutUint32(b[frameHeaderLen+8:], 0xffffffff)
			return b
		}(),
		"reserved flag": func() []byte {
			b, _ := appendFrame(nil, &frame{Kind: kindResponse})
			b[frameHeaderLen+1] = 0x80
			return b
		}(),
		"unknown status": func() []byte {
			b, _ := appendFrame(nil, &frame{Kind: kindResponse})
			b[frameHeaderLen] = 200
			return b
		}(),
	}
	for name, b := range cases {
		_, err := decodeFrame(b)
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: decode = %v, want ErrProtocol", name, err)
		}
	}
}

func TestReadFrameLimit(t *testing.T) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 0xfffffff0)
	_, err := readFrame(bufio.NewReader(bytes.NewReader(append(b[:], 1, 2, 3))), 1<<20, nil)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized frame: %v", err)
	}
}

// FuzzDecodeFrame checks that the parser never panics and that every frame
// it accepts has exactly one encoding: re-encoding gives the input back.
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, err := appendFrame(nil, &fr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 6, 1, 9, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		out, err := appendFrame(nil, &fr)
		if err != nil {
			t.Fatalf("re-encode of an accepted frame failed: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
		// And the stream reader agrees with the buffer parser.
		fr2, err := readFrame(bufio.NewReader(bytes.NewReader(b)), len(b), nil)
		if err != nil || !reflect.DeepEqual(fr, fr2) {
			t.Fatalf("readFrame disagrees: %#v, %v", fr2, err)
		}
	})
}

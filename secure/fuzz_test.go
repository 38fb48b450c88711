package secure

import (
	"bytes"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

// FuzzOpen feeds arbitrary bytes to Open: it must never panic, and
// anything it accepts must be one of the genuine packets (a forgery would
// need the keys), with slices inside the packet.
func FuzzOpen(f *testing.F) {
	g := newTestGroup(f, 1, cpu.Generic)
	var genuine [][]byte
	for _, opt := range []OptionForm{OptionShort, OptionLong, OptionNone} {
		for _, mode := range []Mode{ModeSender, ModeFlow, ModeDevice} {
			s := newTestSealer(f, g, SealerConfig{Mode: mode, ID: 42, Option: opt})
			pkt, err := s.Seal(packet(s, pattern(4, 1), pattern(4, 2), pattern(33, 3)), 4, 4)
			if err != nil {
				f.Fatal(err)
			}
			genuine = append(genuine, pkt)
			f.Add(bytes.Clone(pkt), 4)
		}
	}
	f.Add([]byte{}, 0)
	f.Add([]byte{0x16, 0x10, 0, 0}, 0)
	o, err := NewOpener(OpenerConfig{Groups: []*Group{g}, CacheCapacity: 8, ExpandedCapacity: 1}) // both tiers in use
	if err != nil {
		f.Fatal(err)
	}
	// What a genuine packet authenticates: from IOffset words before its
	// header to its end. Bytes before that are not authenticated, so the
	// same region behind other leading bytes, at another offset, is the
	// same packet.
	var authentic [][]byte
	for _, gpk := range genuine {
		r, err := o.Open(bytes.Clone(gpk), 4)
		if err != nil {
			f.Fatal(err)
		}
		authentic = append(authentic, gpk[4-len(r.Prefix):])
	}
	f.Fuzz(func(t *testing.T, b []byte, off int) {
		in := bytes.Clone(b)
		r, err := o.Open(b, off)
		if err != nil {
			return
		}
		ok := false
		for _, a := range authentic {
			ok = ok || bytes.Equal(in[off-len(r.Prefix):], a)
		}
		if !ok {
			t.Fatalf("accepted a packet that was never sealed: %x at %d", in, off)
		}
		if !bytes.Equal(r.Payload, pattern(33, 3)) {
			t.Fatal("wrong payload")
		}
	})
}

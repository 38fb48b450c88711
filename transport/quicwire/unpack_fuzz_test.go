package quicwire

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/sealring/sealring/transport/wire"
)

// FuzzUnpack feeds arbitrary received QUIC datagrams to the unpacking of
// length-prefixed frames: it never panics, every message it yields lies
// inside the datagram with capacity equal to its length, and the messages
// plus their prefixes cover a prefix of the datagram exactly.
func FuzzUnpack(f *testing.F) {
	f.Add([]byte{0, 3, 'a', 'b', 'c', 0, 0, 0, 1, 'z'})
	f.Add([]byte{0, 9, 'x'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		w := &Wire{}
		w.pend = b
		w.pendAddr = netip.MustParseAddrPort("127.0.0.1:1")
		msgs := make([]wire.Message, 4)
		var got []byte
		for rounds := 0; len(w.pend) > 0 && rounds < len(b)+1; rounds++ {
			n := w.unpack(msgs, 0)
			for _, m := range msgs[:n] {
				if cap(m.Buf) != len(m.Buf) {
					t.Fatal("message capacity exceeds its length")
				}
				got = append(got, byte(len(m.Buf)>>8), byte(len(m.Buf)))
				got = append(got, m.Buf...)
			}
			if n == 0 && len(w.pend) > 0 {
				t.Fatal("no progress")
			}
		}
		if !bytes.HasPrefix(b, got) {
			t.Fatal("unpacked frames are not the datagram's prefix")
		}
	})
}

//go:build linux

package wire

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// aligned copies b into 8-byte-aligned memory, as control buffers are.
func aligned(b []byte) []byte {
	w := make([]uint64, (len(b)+7)/8)
	a := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), len(w)*8)[:len(b)]
	copy(a, b)
	return a
}

func TestGROSegSize(t *testing.T) {
	seg := []byte{0x78, 0x05, 0, 0} // 1400, little-endian int
	other := cmsg(unix.SOL_IP, unix.IP_TOS, []byte{1, 0, 0, 0})
	for _, c := range []struct {
		name string
		ctrl []byte
		want int
	}{
		{"empty", nil, 0},
		{"gro", cmsg(unix.SOL_UDP, unix.UDP_GRO, seg), 1400},
		{"after another", append(other, cmsg(unix.SOL_UDP, unix.UDP_GRO, seg)...), 1400},
		{"other only", other, 0},
		{"short data", cmsg(unix.SOL_UDP, unix.UDP_GRO, seg[:2]), 0},
		{"truncated", cmsg(unix.SOL_UDP, unix.UDP_GRO, seg)[:unix.CmsgLen(4)-1], 0},
		{"header only", make([]byte, unix.SizeofCmsghdr-1), 0},
	} {
		if got := groSegSize(aligned(c.ctrl)); got != c.want {
			t.Errorf("%s: groSegSize = %d, want %d", c.name, got, c.want)
		}
	}
}

// FuzzGROSegSize checks that no control buffer makes the parser read out
// of bounds or loop forever.
func FuzzGROSegSize(f *testing.F) {
	f.Add(cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{0x78, 0x05, 0, 0}))
	f.Add(append(cmsg(unix.SOL_IP, unix.IP_TOS, []byte{1}), cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{1, 0, 0, 0})...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		groSegSize(aligned(b))
	})
}

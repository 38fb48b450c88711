package psp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// ipv4Packet builds an IPv4 packet with a valid checksum; opts adds IHL
// option words.
func ipv4Packet(proto uint8, opts int, payload []byte) []byte {
	hl := 20 + 4*opts
	p := make([]byte, hl+len(payload))
	p[0] = 0x40 | byte(hl/4)
	p[1] = 0x10
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x1234)
	p[6] = 0x40
	p[8], p[9] = 64, proto
	copy(p[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	for i := 20; i < hl; i++ {
		p[i] = 1 // NOP options
	}
	binary.BigEndian.PutUint16(p[10:], ipv4Checksum(p[:hl]))
	copy(p[hl:], payload)
	return p
}

func ipv6Packet(next uint8, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0], p[1] = 0x60, 0x0a
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6], p[7] = next, 64
	p[23], p[39] = 1, 2
	copy(p[40:], payload)
	return p
}

func l4(sport, dport uint16, n int) []byte {
	b := pattern(n, 5)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

func TestIPRoundTrip(t *testing.T) {
	srv := newTestServer(t)
	packets := map[string][]byte{
		"v4 udp":      ipv4Packet(17, 0, l4(1111, 2222, 100)),
		"v4 tcp opts": ipv4Packet(6, 2, l4(80, 443, 1000)),
		"v4 icmp":     ipv4Packet(1, 0, pattern(30, 1)),
		"v4 empty":    ipv4Packet(17, 0, nil),
		"v6 udp":      ipv6Packet(17, l4(5, 6, 1300)),
		"v6 tcp":      ipv6Packet(6, l4(7, 8, 20)),
	}
	for _, v := range allVersions {
		k, err := srv.NewSA(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, vc := range []bool{false, true} {
			s, err := NewSealer(SealerConfig{Key: k.Bytes(), SPI: k.SPI, Version: v, HasVC: vc, VC: 42, Port: 4000})
			if err != nil {
				t.Fatal(err)
			}
			var sa SA
			sa.Init(k.Bytes(), k.SPI, v, "")
			for name, p := range packets {
				for _, mode := range []Mode{Transport, Tunnel} {
					buf := make([]byte, 80+len(p), 80+len(p)+ICVLen)
					copy(buf[80:], p)
					var out []byte
					if mode == Transport {
						out, err = s.SealTransport(buf, 80, 0)
					} else {
						out, err = s.SealTunnel(buf, 80, 1)
					}
					if err != nil {
						t.Fatalf("%v %s %v: %v", v, name, mode, err)
					}
					ip, err := parseIP(out)
					if err != nil || ip.proto != 17 {
						t.Fatalf("%v %s %v: outer packet %v proto %d", v, name, mode, err, ip.proto)
					}
					if !ip.v6 && ipv4Checksum(out[:ip.hl]) != 0 {
						t.Fatalf("%v %s %v: bad outer IPv4 checksum", v, name, mode)
					}
					udp := out[ip.hl:]
					if binary.BigEndian.Uint16(udp[2:]) != 4000 || binary.BigEndian.Uint16(udp[6:]) != 0 {
						t.Fatalf("UDP header %x", udp[:8])
					}
					for _, open := range []OpenFunc{sa.Open, srv.Open} {
						work := bytes.Clone(out)
						d, err := OpenIP(work, 4000, open)
						if err != nil {
							t.Fatalf("%v %s %v vc=%v: open: %v", v, name, mode, vc, err)
						}
						if d.Mode != mode || !bytes.Equal(d.Packet, p) {
							t.Fatalf("%v %s %v: got %v\n%x\nwant\n%x", v, name, mode, d.Mode, d.Packet, p)
						}
					}
					if _, err := OpenIP(bytes.Clone(out), 0, srv.Open); !errors.Is(err, ErrNotPSP) {
						t.Fatalf("wrong port: %v", err)
					}
				}
			}
		}
	}
}

func TestIPErrors(t *testing.T) {
	k := testKey(V0, 1)
	s, _ := NewSealer(SealerConfig{Key: k, SPI: 1})
	p := ipv4Packet(17, 0, l4(1, 2, 8))
	buf := make([]byte, 100)
	copy(buf[10:], p)
	if _, err := s.SealTransport(buf[:10+len(p)], 10, 0); !errors.Is(err, ErrConfig) {
		t.Errorf("no headroom: %v", err)
	}
	copy(buf[60:], p)
	if _, err := s.SealTransport(buf[:60+len(p)], 60, 3); !errors.Is(err, ErrTruncated) {
		t.Errorf("crypt offset past the payload: %v", err)
	}
	bad := bytes.Clone(p)
	bad[3]++
	copy(buf[60:], bad)
	if _, err := s.SealTunnel(buf[:60+len(p)], 60, 0); !errors.Is(err, ErrIP) {
		t.Errorf("wrong IPv4 length: %v", err)
	}
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrIP},
		{"v5", []byte{0x50, 0, 0, 0}, ErrIP},
		{"short v4", []byte{0x45, 0, 0, 4}, ErrIP},
		{"ihl 4", set(ipv4Packet(17, 0, l4(1, 2, 20)), 0, 0x44), ErrIP},
		{"ihl 15", set(ipv4Packet(17, 0, l4(1, 2, 20)), 0, 0x4f), ErrIP},
		{"tcp", ipv4Packet(6, 0, l4(1, 1000, 40)), ErrNotPSP},
		{"udp other port", ipv4Packet(17, 0, l4(1, 999, 40)), ErrNotPSP},
		{"udp short", ipv4Packet(17, 0, []byte{1, 2}), ErrIP},
		{"udp len", ipv4Packet(17, 0, l4(1, 1000, 40)), ErrIP},
		{"v6 short", ipv6Packet(17, nil)[:39], ErrIP},
		{"v6 udp bad psp", ipv6Packet(17, append([]byte{0, 1, 3, 0xe8, 0, 12, 0, 0}, 1, 2, 3, 4)), ErrTruncated},
	} {
		if _, err := OpenIP(c.b, 0, s.sa.Open); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestIPNoAlloc(t *testing.T) {
	srv := newTestServer(t)
	k, _ := srv.NewSA(V0)
	s, _ := NewSealer(SealerConfig{Key: k.Bytes(), SPI: k.SPI})
	p := ipv4Packet(6, 0, l4(1, 2, 1400))
	buf := make([]byte, 64+len(p), 64+len(p)+ICVLen)
	n := testing.AllocsPerRun(50, func() {
		copy(buf[64:], p)
		out, err := s.SealTransport(buf[:64+len(p)], 64, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.OpenIP(out, 0); err != nil {
			t.Fatal(err)
		}
		copy(buf[64:], p)
		out, err = s.SealTunnel(buf[:64+len(p)], 64, 6)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.OpenIP(out, 0); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// TestIPBadOffsets: an ipOff outside the buffer is an error, not a panic.
func TestIPBadOffsets(t *testing.T) {
	s, _ := NewSealer(SealerConfig{Key: testKey(V0, 1), SPI: 1})
	p := ipv4Packet(17, 0, l4(1, 2, 8))
	buf := make([]byte, 64+len(p), 64+len(p)+ICVLen)
	copy(buf[64:], p)
	for _, off := range []int{-1, -64, len(buf) + 1} {
		if _, err := s.SealTunnel(buf, off, 0); !errors.Is(err, ErrConfig) {
			t.Errorf("SealTunnel ipOff %d: %v", off, err)
		}
		if _, err := s.SealTransport(buf, off, 0); !errors.Is(err, ErrConfig) {
			t.Errorf("SealTransport ipOff %d: %v", off, err)
		}
	}
}

// TestTunnelInnerFragment: the outer header of a tunnelled IPv4 fragment
// is a whole packet (MF and fragment offset clear, DF kept); the inner
// fragment comes back unchanged.
func TestTunnelInnerFragment(t *testing.T) {
	srv := newTestServer(t)
	k, _ := srv.NewSA(V0)
	s, _ := NewSealer(SealerConfig{Key: k.Bytes(), SPI: k.SPI})
	for _, frag := range []uint16{0x2000, 0x0010, 0x2010 | 0x4000} {
		p := ipv4Packet(17, 0, l4(1, 2, 64))
		binary.BigEndian.PutUint16(p[6:], frag)
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], ipv4Checksum(p[:20]))
		buf := make([]byte, 64+len(p), 64+len(p)+ICVLen)
		copy(buf[64:], p)
		out, err := s.SealTunnel(buf, 64, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint16(out[6:]); got != frag&0x4000 {
			t.Errorf("inner flags/offset %04x: outer %04x, want %04x", frag, got, frag&0x4000)
		}
		if ipv4Checksum(out[:20]) != 0 {
			t.Errorf("inner flags/offset %04x: bad outer checksum", frag)
		}
		d, err := srv.OpenIP(out, 0)
		if err != nil || d.Mode != Tunnel || !bytes.Equal(d.Packet, p) {
			t.Fatalf("inner flags/offset %04x: %v %v", frag, d.Mode, err)
		}
	}
}

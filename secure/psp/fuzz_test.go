package psp

import (
	"bytes"
	"testing"
)

// FuzzParseHeader: ParseHeader never panics, and whatever it accepts
// re-encodes to exactly the bytes it read.
func FuzzParseHeader(f *testing.F) {
	for _, h := range []Header{{}, {NextHeader: 17, CryptOffset: 1, SPI: 0x9a345678, IV: 1}, {Version: V3, HasVC: true, VC: 9, Sample: true}} {
		b, _ := h.AppendTo(nil)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 24))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			return
		}
		if n != h.Len() || n > len(b) {
			t.Fatalf("length %d, Len %d, input %d", n, h.Len(), len(b))
		}
		enc, err := h.AppendTo(nil)
		if err != nil {
			t.Fatalf("parsed header does not encode: %v", err)
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("round trip: %x -> %+v -> %x", b[:n], h, enc)
		}
		if _, _, err := ParsePacket(b); err == nil && len(b) < n+ICVLen {
			t.Fatal("ParsePacket accepted a packet without room for the ICV")
		}
	})
}

// FuzzOpen feeds arbitrary bytes to Server.Open and OpenIP: they must never
// panic, and anything accepted must be one of the genuine packets (a
// forgery would need the keys).
func FuzzOpen(f *testing.F) {
	var mk [2][MasterKeyLen]byte
	copy(mk[0][:], pattern(32, 1))
	copy(mk[1][:], pattern(32, 2))
	srv, err := NewServer(ServerConfig{MasterKeys: &mk})
	if err != nil {
		f.Fatal(err)
	}
	var genuine [][]byte
	for i, v := range allVersions {
		k, err := srv.DeriveSA(uint32(i+1)|uint32(i%2)<<31, v)
		if err != nil {
			f.Fatal(err)
		}
		s, _ := NewSealer(SealerConfig{Key: k.Bytes(), SPI: k.SPI, Version: v, HasVC: i%2 == 0})
		buf := make([]byte, s.HeaderLen()+33, s.HeaderLen()+33+ICVLen)
		copy(buf[s.HeaderLen():], pattern(33, 3))
		pkt, err := s.Seal(buf, 17, uint8(i))
		if err != nil {
			f.Fatal(err)
		}
		genuine = append(genuine, bytes.Clone(pkt))
		f.Add(pkt)
		p := ipv4Packet(17, 0, l4(1, 2, 40))
		b := make([]byte, 64+len(p), 64+len(p)+ICVLen)
		copy(b[64:], p)
		out, err := s.SealTunnel(b, 64, 0)
		if err != nil {
			f.Fatal(err)
		}
		// OpenIP authenticates the PSP packet (the UDP payload), not the
		// outer IP and UDP headers: compare that part.
		genuine = append(genuine, bytes.Clone(out[20+8:]))
		f.Add(out)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		if _, err := srv.Open(bytes.Clone(b)); err == nil && !isGenuine(genuine, in) {
			t.Fatalf("Open accepted a packet that was never sealed: %x", in)
		}
		if _, err := srv.OpenIP(b, 0); err == nil {
			ip, _ := parseIP(in)
			if !isGenuine(genuine, in[ip.hl+8:]) {
				t.Fatalf("OpenIP accepted a PSP packet that was never sealed: %x", in)
			}
		}
	})
}

func isGenuine(genuine [][]byte, b []byte) bool {
	for _, g := range genuine {
		if bytes.Equal(b, g) {
			return true
		}
	}
	return false
}

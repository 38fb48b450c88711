package psp

import (
	"encoding/binary"
	"slices"
)

// IP encapsulation (PSP Architecture Specification, "Transport mode" and
// "Tunnel mode"; the reference implementation's choices where the
// specification leaves room):
//
//   - Transport mode inserts UDP + PSP header between the IP header and its
//     payload and appends the ICV: the IP protocol (IPv6 next header)
//     becomes UDP and the PSP header's next header is the original one.
//   - Tunnel mode prepends an outer IP header, UDP and the PSP header to the
//     whole inner packet and appends the ICV: the outer header is a copy of
//     the inner one (IPv4: its first 20 bytes, IHL forced to 5, MF and
//     fragment offset cleared; IPv6: the fixed 40 bytes) with the protocol
//     set to UDP, and the PSP next header is 4 (IPv4) or 41 (IPv6).
//   - The outer UDP header: destination port 1000 (configurable), source
//     port = inner source port XOR inner destination port when the inner
//     protocol is TCP or UDP (a flow hash for ECMP), 1000 otherwise;
//     checksum 0 (allowed for IPv6 tunnels by RFC 6935 and what the
//     reference does; the ICV protects the payload).
//   - IPv4 total length and header checksum, IPv6 payload length and UDP
//     length are recomputed.
//
// Every function here works on an IP packet (no link-layer header) in a
// caller-owned buffer, in place, without allocating when the buffer has the
// headroom and the tailroom (16 bytes of capacity) the call needs.

const (
	protoIPv4 = 4
	protoTCP  = 6
	protoUDP  = 17
	protoIPv6 = 41

	ipv4MinLen = 20
	ipv6Len    = 40
	udpLen     = 8
	maxIPLen   = 0xffff
)

// Mode is a PSP encapsulation.
type Mode uint8

const (
	// Transport inserts UDP and PSP after the IP header.
	Transport Mode = 1
	// Tunnel wraps the whole inner IP packet.
	Tunnel Mode = 2
)

func (m Mode) String() string {
	switch m {
	case Transport:
		return "transport"
	case Tunnel:
		return "tunnel"
	}
	return "mode(?)"
}

// ipInfo describes a checked IP header.
type ipInfo struct {
	v6    bool
	hl    int   // header length (IPv6: the fixed 40 bytes)
	proto uint8 // IPv4 protocol or IPv6 next header
}

// parseIP checks that p is one whole IP packet: version 4 or 6, a header
// that fits, and a length field equal to len(p).
func parseIP(p []byte) (ipInfo, error) {
	if len(p) < 1 {
		return ipInfo{}, errIPShort
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) < ipv4MinLen {
			return ipInfo{}, errIPShort
		}
		hl := int(p[0]&0xf) * 4
		if hl < ipv4MinLen || hl > len(p) {
			return ipInfo{}, errIHL
		}
		if int(binary.BigEndian.Uint16(p[2:])) != len(p) {
			return ipInfo{}, errIPLen
		}
		return ipInfo{hl: hl, proto: p[9]}, nil
	case 6:
		if len(p) < ipv6Len {
			return ipInfo{}, errIPShort
		}
		if int(binary.BigEndian.Uint16(p[4:]))+ipv6Len != len(p) {
			return ipInfo{}, errIPLen
		}
		return ipInfo{v6: true, hl: ipv6Len, proto: p[6]}, nil
	}
	return ipInfo{}, errIPVersion
}

// setIPLen writes the length field of the IP header at p (IPv4 total
// length, IPv6 payload length) for a packet of total bytes, sets its
// protocol, and recomputes the IPv4 header checksum.
func setIPLen(p []byte, ip ipInfo, total int, proto uint8) {
	if ip.v6 {
		binary.BigEndian.PutUint16(p[4:], uint16(total-ipv6Len))
		p[6] = proto
		return
	}
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	p[9] = proto
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], ipv4Checksum(p[:ip.hl]))
}

// ipv4Checksum is the Internet checksum (RFC 1071) of an IPv4 header whose
// checksum field is zero.
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// flowPort is the outer UDP source port: the inner ports XORed for TCP and
// UDP, the PSP port otherwise.
func flowPort(proto uint8, l4 []byte, port uint16) uint16 {
	if (proto == protoTCP || proto == protoUDP) && len(l4) >= 4 {
		return binary.BigEndian.Uint16(l4) ^ binary.BigEndian.Uint16(l4[2:])
	}
	return port
}

func putUDP(b []byte, sport, dport uint16, length int) {
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(length))
	b[6], b[7] = 0, 0
}

// TransportHeadroom is the headroom SealTransport needs before the IP
// packet: UDP and the PSP header.
func (s *Sealer) TransportHeadroom() int { return udpLen + s.HeaderLen() }

// TunnelHeadroom is the headroom SealTunnel needs before an inner IPv4
// (v6 false) or IPv6 packet: outer IP header, UDP and the PSP header.
func (s *Sealer) TunnelHeadroom(v6 bool) int {
	if v6 {
		return ipv6Len + udpLen + s.HeaderLen()
	}
	return ipv4MinLen + udpLen + s.HeaderLen()
}

// SealTransport encapsulates and protects, in place and in transport mode,
// the IP packet buf[ipOff:]; buf[:ipOff] is headroom, at least
// TransportHeadroom() bytes. The IP header moves TransportHeadroom() bytes
// towards the front (a copy of at most 60 bytes), UDP and the PSP header
// fill the gap, and the payload is encrypted where it lies. cryptOffset
// words of the payload (counted from the end of the IV, so a VC counts)
// stay in clear; like the reference, it may not exceed the IP payload. It
// returns the PSP packet, a slice of buf that ends with the ICV.
func (s *Sealer) SealTransport(buf []byte, ipOff int, cryptOffset uint8) ([]byte, error) {
	if !s.sa.ok {
		return nil, errNotInit
	}
	room := s.TransportHeadroom()
	if ipOff < room || ipOff > len(buf) {
		return nil, errHeadroom
	}
	if cap(buf)-len(buf) < ICVLen {
		buf = slices.Grow(buf, ICVLen)
	}
	p := buf[ipOff:]
	ip, err := parseIP(p)
	if err != nil {
		return nil, err
	}
	if cryptOffset > MaxCryptOffset {
		return nil, errCryptOffRange
	}
	l4 := len(p) - ip.hl
	if int(cryptOffset)*wordLen > l4 {
		return nil, errInnerCryptOff
	}
	total := len(p) + room + ICVLen
	if total > maxIPLen {
		return nil, errTooLong
	}
	sport := flowPort(ip.proto, p[ip.hl:], s.port)
	start := ipOff - room
	out := buf[start:]
	copy(out, p[:ip.hl])
	setIPLen(out, ip, total, protoUDP)
	putUDP(out[ip.hl:], sport, s.port, total-ip.hl)
	pspPkt, err := s.Seal(out[ip.hl+udpLen:len(out)], ip.proto, cryptOffset)
	if err != nil {
		return nil, err
	}
	return out[:ip.hl+udpLen+len(pspPkt)], nil
}

// SealTunnel encapsulates and protects, in place and in tunnel mode, the
// inner IP packet buf[ipOff:]; buf[:ipOff] is headroom, at least
// TunnelHeadroom(inner is IPv6) bytes. The outer IP header, UDP and the
// PSP header are written into the headroom and the inner packet is
// encrypted where it lies; nothing moves. cryptOffset words of the inner
// packet (counted from the end of the IV) stay in clear. It returns the
// outer packet, a slice of buf that ends with the ICV.
func (s *Sealer) SealTunnel(buf []byte, ipOff int, cryptOffset uint8) ([]byte, error) {
	if !s.sa.ok {
		return nil, errNotInit
	}
	if ipOff < 0 || ipOff > len(buf) {
		return nil, errHeadroom
	}
	if cap(buf)-len(buf) < ICVLen {
		buf = slices.Grow(buf, ICVLen)
	}
	p := buf[ipOff:]
	ip, err := parseIP(p)
	if err != nil {
		return nil, err
	}
	room := s.TunnelHeadroom(ip.v6)
	if ipOff < room {
		return nil, errHeadroom
	}
	if cryptOffset > MaxCryptOffset {
		return nil, errCryptOffRange
	}
	if int(cryptOffset)*wordLen > len(p) {
		return nil, errInnerCryptOff
	}
	total := len(p) + room + ICVLen
	if total > maxIPLen {
		return nil, errTooLong
	}
	sport := flowPort(ip.proto, p[ip.hl:], s.port)
	start := ipOff - room
	out := buf[start:]
	outer := ipInfo{v6: ip.v6, hl: ipv4MinLen}
	next := uint8(protoIPv4)
	if ip.v6 {
		outer.hl, next = ipv6Len, protoIPv6
	}
	copy(out[:outer.hl], p[:outer.hl])
	if !ip.v6 {
		// The outer packet is whole even when the inner one is a
		// fragment: keep DF, clear MF and the fragment offset.
		out[0] = 0x45
		out[6] &= 0x40
		out[7] = 0
	}
	setIPLen(out, outer, total, protoUDP)
	putUDP(out[outer.hl:], sport, s.port, total-outer.hl)
	pspPkt, err := s.Seal(out[outer.hl+udpLen:len(out)], next, cryptOffset)
	if err != nil {
		return nil, err
	}
	return out[:outer.hl+udpLen+len(pspPkt)], nil
}

// Decapsulated is the result of opening an IP packet.
type Decapsulated struct {
	Mode Mode
	// Header is the PSP header (its VC decrypted).
	Header Header
	// Packet is the cleartext IP packet, a slice of the buffer that was
	// opened: in transport mode the original packet with its IP header
	// moved back over UDP and PSP and its lengths, protocol and IPv4
	// checksum restored; in tunnel mode the inner packet.
	Packet []byte
}

// OpenFunc authenticates and decrypts a PSP packet in place: SA.Open,
// Server.Open.
type OpenFunc func(pspPacket []byte) (Opened, error)

// OpenIP authenticates, decrypts and decapsulates, in place, the IP packet
// pkt carrying PSP over UDP to port (0 means DefaultPort). open is the key
// holder's Open (SA.Open for a known association, Server.Open to derive
// the key from the SPI). A PSP next header of 4 or 41 means tunnel mode,
// anything else transport mode. The IP and UDP lengths must agree with
// len(pkt); a packet that is not UDP to port fails with ErrNotPSP.
func OpenIP(pkt []byte, port uint16, open OpenFunc) (Decapsulated, error) {
	var d Decapsulated
	if port == 0 {
		port = DefaultPort
	}
	ip, err := parseIP(pkt)
	if err != nil {
		return d, err
	}
	if ip.proto != protoUDP {
		return d, errNotUDP
	}
	u := pkt[ip.hl:]
	if len(u) < udpLen {
		return d, errUDPShort
	}
	if binary.BigEndian.Uint16(u[2:]) != port {
		return d, errNotPort
	}
	if int(binary.BigEndian.Uint16(u[4:])) != len(u) {
		return d, errUDPLen
	}
	r, err := open(u[udpLen:])
	if err != nil {
		return d, err
	}
	d.Header = r.Header
	nh := r.Header.NextHeader
	if nh == protoIPv4 || nh == protoIPv6 {
		d.Mode, d.Packet = Tunnel, r.Payload
		return d, nil
	}
	d.Mode = Transport
	grow := udpLen + r.HeaderLen
	copy(pkt[grow:grow+ip.hl], pkt[:ip.hl])
	out := pkt[grow : len(pkt)-ICVLen]
	setIPLen(out, ip, len(out), nh)
	d.Packet = out
	return d, nil
}

// OpenIP is OpenIP(pkt, port, sa.Open).
func (sa *SA) OpenIP(pkt []byte, port uint16) (Decapsulated, error) {
	return OpenIP(pkt, port, sa.Open)
}

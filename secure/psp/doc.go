// Package psp implements the PSP Security Protocol (Google's PSP
// Architecture Specification; the scheme of the cloud use case in
// draft-xia-ipsecme-eesp-stateless-encryption §2.1, which the draft
// compares itself to), so that sealring can talk to PSP-offloading NICs and
// to peers that speak PSP.
//
// PSP is stateless on the receive side in the way sealring's own header
// is: a receiver holds two master keys, selected by SPI bit 31, and
// derives each security association's key from its master key and SPI
// (NIST SP 800-108 counter mode, AES-256-CMAC); the sender receives that
// key out of band. Server models the specification's receiver: SPI
// allocation that never reuses an SPI under a master key, rotation that
// keeps the previous master key for existing associations, and derive on
// receive.
//
// The package provides:
//
//   - Header, AppendTo and ParseHeader/ParsePacket: the PSP header
//     (versions 0–3: AES-GCM-128/256, AES-GMAC-128/256; crypt offset;
//     optional virtualization cookie), strict, allocation-free and fuzzed
//     like secure's own header.
//   - DeriveKey: the key derivation, on secure.CounterKDF.
//   - SA and Sealer: seal and open PSP packets in place without
//     allocating; Sealer.SealTransport, Sealer.SealTunnel and OpenIP do the
//     same for whole IP packets in transport and tunnel mode, with the IP
//     and UDP header rules of the reference implementation (UDP port 1000,
//     source port from the inner ports, checksum 0).
//   - Server: master keys, SPI allocation, rotation, Open with derive on
//     receive.
//
// Subpackage pspcap reads and writes the reference implementation's pcap
// files and configurations (bench/pspcap is its command line); package
// transport/pspnet runs the cloud use case over UDP and mutual TLS.
//
// The shortest correct use, receiver and sender:
//
//	srv, _ := psp.NewServer(psp.ServerConfig{})
//	k, _ := srv.NewSA(psp.V0)                       // hand k to the sender out of band
//	s, _ := psp.NewSealer(psp.SealerConfig{Key: k.Bytes(), SPI: k.SPI, Version: k.Version})
//	buf := make([]byte, s.HeaderLen()+len(msg), s.Overhead()+len(msg))
//	copy(buf[s.HeaderLen():], msg)
//	pkt, _ := s.Seal(buf, 17, 0)                     // next header, crypt offset
//	r, err := srv.Open(pkt)                          // derives the key from the SPI
//	// r.Payload is msg, decrypted in place
//
// What PSP does not do: it authenticates neither the outer IP nor the UDP
// header (a transport-mode receiver restores the inner protocol and
// lengths from authenticated data, but addresses are as received), and it
// has no replay protection (the specification leaves both to upper
// layers).
package psp

package pspcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/sealring/sealring/secure/psp"
)

const (
	ethLen     = 14
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	headroom   = 128 // ≥ Ethernet + largest tunnel headroom (14 + 40 + 8 + 24)
	ipProtoTCP = 6
	ipProtoUDP = 17
)

// Stats counts what a run did.
type Stats struct {
	// Packets is the number of records written.
	Packets int
	// Skipped is the number of records not processed, as the reference
	// skips them: not IPv4 or IPv6; on encryption an IPv6 packet in
	// transport mode whose next header is not TCP or UDP, or a crypt
	// offset longer than the payload; on decryption a packet that is not
	// UDP to port 1000.
	Skipped int
}

// Options adjusts a run.
type Options struct {
	// Port is the PSP UDP port; 0 means psp.DefaultPort (1000).
	Port uint16
	// Corrupt, on encryption, sets reserved bit 7 of every packet's crypt
	// offset byte after sealing, as the reference's -e flag does, so that
	// every packet must fail authentication.
	Corrupt bool
	// Crypto forces a crypto path by name ("" = the process default).
	Crypto string
}

// frame checks an Ethernet frame and returns its EtherType and IP packet,
// with any trailing Ethernet padding removed (the IP length fields say
// where the packet ends). ok is false for a frame this tool skips.
func frame(data []byte) (ip []byte, etype uint16, ok bool, err error) {
	if len(data) < ethLen {
		return nil, 0, false, fmt.Errorf("frame of %d bytes is shorter than an Ethernet header", len(data))
	}
	etype = binary.BigEndian.Uint16(data[12:])
	ip = data[ethLen:]
	switch etype {
	case etherIPv4:
		if len(ip) >= 4 {
			if n := int(binary.BigEndian.Uint16(ip[2:])); n >= 20 && n < len(ip) {
				ip = ip[:n]
			}
		}
	case etherIPv6:
		if len(ip) >= 40 {
			if n := int(binary.BigEndian.Uint16(ip[4:])) + 40; n < len(ip) {
				ip = ip[:n]
			}
		}
	default:
		return nil, etype, false, nil
	}
	return ip, etype, true, nil
}

// checkInput accepts Ethernet captures only, as the reference does. The
// output always has the reference's header (little-endian, microseconds,
// snapshot length 9014, Ethernet), whatever the input's.
func checkInput(h FileHeader) error {
	if h.LinkType != LinkTypeEthernet {
		return fmt.Errorf("%w: link type %d, only Ethernet (1) is supported", ErrFormat, h.LinkType)
	}
	return nil
}

// timestamp converts a record's timestamp to microseconds, as libpcap
// does when it reads a nanosecond file at the default precision.
func timestamp(h FileHeader, rec Record) (uint32, uint32) {
	if h.Nano {
		return rec.Sec, rec.Frac / 1000
	}
	return rec.Sec, rec.Frac
}

// Encrypt reads the cleartext capture in, encrypts every IP packet with
// cfg exactly as the reference's psp_encrypt does (one security
// association, IVs from 1, one per packet written) and writes the result
// to out with the reference's file header. A partial capture
// (captured < original length) or a packet the reference would refuse is
// an error naming the record.
func Encrypt(in io.Reader, out io.Writer, cfg EncryptConfig, opt Options) (Stats, error) {
	var st Stats
	key, err := deriveKey(&cfg)
	if err != nil {
		return st, err
	}
	s, err := psp.NewSealer(psp.SealerConfig{Key: key, SPI: cfg.SPI, Version: cfg.Version, HasVC: cfg.VC, Port: opt.Port, Crypto: opt.Crypto})
	clear(key)
	if err != nil {
		return st, err
	}
	defer s.Wipe()
	r, err := NewReader(in)
	if err != nil {
		return st, err
	}
	if err := checkInput(r.Header()); err != nil {
		return st, err
	}
	w, err := NewWriter(out, ReferenceHeader())
	if err != nil {
		return st, err
	}
	buf := make([]byte, headroom+MaxRecordLen+psp.ICVLen)
	for i := 1; ; i++ {
		rec, err := r.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if int(rec.OrigLen) != len(rec.Data) {
			return st, fmt.Errorf("pspcap: record %d: partial capture (%d of %d bytes) cannot be encrypted", i, len(rec.Data), rec.OrigLen)
		}
		ip, etype, ok, err := frame(rec.Data)
		if err != nil {
			return st, fmt.Errorf("%w: record %d: %v", ErrFormat, i, err)
		}
		if !ok || skipEncrypt(&cfg, etype, ip) {
			st.Skipped++
			continue
		}
		copy(buf[headroom:], ip)
		pkt := buf[: headroom+len(ip) : len(buf)]
		var res []byte
		if cfg.Mode == psp.Transport {
			res, err = s.SealTransport(pkt, headroom, cfg.TransportCryptOffset)
		} else {
			co := cfg.TunnelCryptOffsetV4
			if etype == etherIPv6 {
				co = cfg.TunnelCryptOffsetV6
			}
			res, err = s.SealTunnel(pkt, headroom, co)
		}
		if err != nil {
			return st, fmt.Errorf("pspcap: record %d: %w", i, err)
		}
		start := cap(buf) - cap(res)
		if opt.Corrupt {
			outerHL := ipHeaderLen(res)
			res[outerHL+8+2] |= 0x80
		}
		copy(buf[start-ethLen:start], rec.Data[:ethLen])
		sec, frac := timestamp(r.Header(), rec)
		if err := w.Write(Record{Sec: sec, Frac: frac, Data: buf[start-ethLen : start+len(res)]}); err != nil {
			return st, err
		}
		st.Packets++
	}
}

// skipEncrypt reports the packets the reference skips on encryption.
func skipEncrypt(cfg *EncryptConfig, etype uint16, ip []byte) bool {
	hl, proto := 40, uint8(0)
	if etype == etherIPv4 {
		if len(ip) < 20 {
			return false // malformed: let the sealer report it
		}
		hl, proto = int(ip[0]&0xf)*4, ip[9]
	} else {
		if len(ip) < 40 {
			return false
		}
		proto = ip[6]
		if cfg.Mode == psp.Transport && proto != ipProtoTCP && proto != ipProtoUDP {
			return true
		}
	}
	co := int(cfg.TransportCryptOffset)
	payload := len(ip) - hl
	if cfg.Mode == psp.Tunnel {
		payload = len(ip)
		co = int(cfg.TunnelCryptOffsetV4)
		if etype == etherIPv6 {
			co = int(cfg.TunnelCryptOffsetV6)
		}
	}
	return payload >= 0 && co*4 > payload
}

func ipHeaderLen(p []byte) int {
	if p[0]>>4 == 6 {
		return 40
	}
	return int(p[0]&0xf) * 4
}

func deriveKey(cfg *EncryptConfig) ([]byte, error) {
	key := make([]byte, cfg.Version.KeyLen())
	if err := psp.DeriveKey(key, &cfg.MasterKeys, cfg.SPI, cfg.Version); err != nil {
		return nil, err
	}
	return key, nil
}

// Decrypt reads the PSP capture in, authenticates and decrypts every PSP
// packet with the master keys of cfg (deriving each packet's key from its
// SPI and version, as a PSP receiver does) and writes the cleartext
// packets to out with the reference's file header. Packets that are not
// IP, or not UDP to the PSP port, are skipped. A packet that fails
// authentication, including one whose encrypted part is empty (which the
// reference wrongly accepts), is an error wrapping psp.ErrAuth.
func Decrypt(in io.Reader, out io.Writer, cfg DecryptConfig, opt Options) (Stats, error) {
	var st Stats
	srv, err := psp.NewServer(psp.ServerConfig{MasterKeys: &cfg.MasterKeys, Crypto: opt.Crypto})
	if err != nil {
		return st, err
	}
	r, err := NewReader(in)
	if err != nil {
		return st, err
	}
	if err := checkInput(r.Header()); err != nil {
		return st, err
	}
	w, err := NewWriter(out, ReferenceHeader())
	if err != nil {
		return st, err
	}
	buf := make([]byte, MaxRecordLen+ethLen)
	for i := 1; ; i++ {
		rec, err := r.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if int(rec.OrigLen) != len(rec.Data) {
			return st, fmt.Errorf("pspcap: record %d: partial capture (%d of %d bytes) cannot be decrypted", i, len(rec.Data), rec.OrigLen)
		}
		ip, _, ok, err := frame(rec.Data)
		if err != nil {
			return st, fmt.Errorf("%w: record %d: %v", ErrFormat, i, err)
		}
		if !ok {
			st.Skipped++
			continue
		}
		copy(buf[ethLen:], ip)
		d, err := srv.OpenIP(buf[ethLen:ethLen+len(ip)], opt.Port)
		if errors.Is(err, psp.ErrNotPSP) {
			st.Skipped++
			continue
		}
		if err != nil {
			return st, fmt.Errorf("pspcap: record %d: %w", i, err)
		}
		start := cap(buf) - cap(d.Packet)
		copy(buf[start-ethLen:start], rec.Data[:ethLen])
		sec, frac := timestamp(r.Header(), rec)
		if err := w.Write(Record{Sec: sec, Frac: frac, Data: buf[start-ethLen : start+len(d.Packet)]}); err != nil {
			return st, err
		}
		st.Packets++
	}
}

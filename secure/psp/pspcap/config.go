package pspcap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sealring/sealring/secure/psp"
)

// ErrConfig reports a malformed configuration file.
var ErrConfig = errors.New("pspcap: malformed configuration")

// EncryptConfig is the reference implementation's encryption configuration
// (psp_encrypt.cfg), whitespace-separated in this order:
//
//	master key 0      32 hex bytes, e.g. "34 44 8a ..."
//	master key 1      32 hex bytes
//	SPI               hex, e.g. 9A345678 (bit 31 selects the master key)
//	mode              transport | tunnel
//	algorithm         aes-gcm-128 | aes-gcm-256 (sealring also accepts
//	                  aes-gmac-128 | aes-gmac-256, versions 2 and 3)
//	crypt offsets     three decimals, 4-byte words: transport mode, IPv4
//	                  tunnel mode, IPv6 tunnel mode
//	VC                vc | no-vc (an all-zero 8-byte virtualization cookie)
type EncryptConfig struct {
	MasterKeys [2][psp.MasterKeyLen]byte
	SPI        uint32
	Mode       psp.Mode
	Version    psp.Version
	// TransportCryptOffset, TunnelCryptOffsetV4 and TunnelCryptOffsetV6
	// are in 4-byte words, at most 63.
	TransportCryptOffset uint8
	TunnelCryptOffsetV4  uint8
	TunnelCryptOffsetV6  uint8
	VC                   bool
}

// DecryptConfig is the reference's decryption configuration
// (psp_decrypt.cfg): the two master keys only; everything else comes from
// the packets.
type DecryptConfig struct {
	MasterKeys [2][psp.MasterKeyLen]byte
}

// ParseEncryptConfig parses an encryption configuration. Unlike the
// reference it rejects trailing tokens and a crypt offset of 64, which
// the reference accepts but cannot encode in the 6-bit field.
func ParseEncryptConfig(text string) (EncryptConfig, error) {
	var c EncryptConfig
	f := strings.Fields(text)
	if len(f) != 2*psp.MasterKeyLen+7 {
		return c, fmt.Errorf("%w: %d fields, want %d (two 32-byte keys, SPI, mode, algorithm, three crypt offsets, vc)", ErrConfig, len(f), 2*psp.MasterKeyLen+7)
	}
	if err := parseKeys(&c.MasterKeys, f); err != nil {
		return c, err
	}
	f = f[2*psp.MasterKeyLen:]
	spi, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(f[0]), "0x"), 16, 32)
	if err != nil {
		return c, fmt.Errorf("%w: SPI %q is not a 32-bit hex number", ErrConfig, f[0])
	}
	c.SPI = uint32(spi)
	switch f[1] {
	case "transport":
		c.Mode = psp.Transport
	case "tunnel":
		c.Mode = psp.Tunnel
	default:
		return c, fmt.Errorf("%w: mode %q, want transport or tunnel", ErrConfig, f[1])
	}
	switch f[2] {
	case "aes-gcm-128":
		c.Version = psp.V0
	case "aes-gcm-256":
		c.Version = psp.V1
	case "aes-gmac-128":
		c.Version = psp.V2
	case "aes-gmac-256":
		c.Version = psp.V3
	default:
		return c, fmt.Errorf("%w: algorithm %q, want aes-gcm-128, aes-gcm-256, aes-gmac-128 or aes-gmac-256", ErrConfig, f[2])
	}
	for i, dst := range []*uint8{&c.TransportCryptOffset, &c.TunnelCryptOffsetV4, &c.TunnelCryptOffsetV6} {
		v, err := strconv.ParseUint(f[3+i], 10, 8)
		if err != nil || v > psp.MaxCryptOffset {
			return c, fmt.Errorf("%w: crypt offset %q, want 0 to %d (4-byte words)", ErrConfig, f[3+i], psp.MaxCryptOffset)
		}
		*dst = uint8(v)
	}
	switch f[6] {
	case "vc":
		c.VC = true
	case "no-vc":
	default:
		return c, fmt.Errorf("%w: %q, want vc or no-vc", ErrConfig, f[6])
	}
	return c, nil
}

// ParseDecryptConfig parses a decryption configuration: two master keys.
func ParseDecryptConfig(text string) (DecryptConfig, error) {
	var c DecryptConfig
	f := strings.Fields(text)
	if len(f) != 2*psp.MasterKeyLen {
		return c, fmt.Errorf("%w: %d fields, want %d (two 32-byte master keys)", ErrConfig, len(f), 2*psp.MasterKeyLen)
	}
	return c, parseKeys(&c.MasterKeys, f)
}

// parseKeys reads 64 hex bytes (one or two digits each, as the
// reference's %hhx reads them, an optional 0x allowed).
func parseKeys(k *[2][psp.MasterKeyLen]byte, f []string) error {
	for i := range 2 * psp.MasterKeyLen {
		s := strings.TrimPrefix(strings.ToLower(f[i]), "0x")
		v, err := strconv.ParseUint(s, 16, 8)
		if err != nil || s == "" {
			return fmt.Errorf("%w: master key %d byte %d: %q is not a hex byte", ErrConfig, i/psp.MasterKeyLen, i%psp.MasterKeyLen, f[i])
		}
		k[i/psp.MasterKeyLen][i%psp.MasterKeyLen] = byte(v)
	}
	return nil
}

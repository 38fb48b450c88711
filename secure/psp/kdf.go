package psp

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/sealring/sealring/internal/aesgcm"
	"github.com/sealring/sealring/internal/cpu"
	"github.com/sealring/sealring/secure"
)

// MasterKeyLen is the length of a PSP master key (an AES-256-CMAC key).
const MasterKeyLen = 32

// Key derivation (PSP Architecture Specification, "Key Derivation"): NIST
// SP 800-108 in counter mode with AES-256-CMAC as the PRF, keyed by master
// key 0 when SPI bit 31 is clear and master key 1 when it is set. Each PRF
// input is exactly one block:
//
//	counter (32-bit BE: 1, then 2) ‖ label ‖ SPI (32-bit BE) ‖ L (32-bit BE, bits)
//
// label = "Pv0" 0x00 for 128-bit keys (V0, V2) and "Pv1" 0x00 for 256-bit
// keys (V1, V3). A 128-bit key is the first PRF block, a 256-bit key the
// first two. The labels of V0 and V1 are the specification's and are
// checked by its published examples; the specification ties the label to
// the key length, so V2 shares V0's derivation and V3 shares V1's.
func fixedInput(spi uint32, v Version) [12]byte {
	var in [12]byte
	in[0], in[1], in[3] = 'P', 'v', 0
	in[2] = '0'
	bits := uint32(128)
	if v.KeyLen() == 32 {
		in[2], bits = '1', 256
	}
	binary.BigEndian.PutUint32(in[4:], spi)
	binary.BigEndian.PutUint32(in[8:], bits)
	return in
}

// DeriveKey derives the key of the security association (spi, v) from the
// two master keys (MasterKeyLen bytes each) into out, which must be
// v.KeyLen() bytes long. SPI bit 31 selects the master key. It uses
// secure.CounterKDF and does not allocate.
func DeriveKey(out []byte, masterKeys *[2][MasterKeyLen]byte, spi uint32, v Version) error {
	if !v.Valid() {
		return errVersionField
	}
	if len(out) != v.KeyLen() {
		return fmt.Errorf("%w: output of %d bytes for %s, want %d", ErrKeySize, len(out), v, v.KeyLen())
	}
	in := fixedInput(spi, v)
	mk := &masterKeys[spi>>31]
	if err := secure.CounterKDF(mk[:], in[:], 4, out); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// prf is one master key prepared for derivation: the AES-256 key schedule
// and the CMAC subkey K1. Every PSP PRF input is exactly one complete
// block, whose CMAC is E_K(M ⊕ K1) (RFC 4493 §2.4 with a single complete
// block), so a derivation is one (128-bit key) or two (256-bit key) AES
// block encryptions run together, with no key setup. TestFastDerive checks
// it against DeriveKey.
type prf struct {
	blk aesgcm.Block
	k1  [16]byte
}

func (p *prf) init(path cpu.Path, key *[MasterKeyLen]byte) error {
	if err := p.blk.Init(path, key[:]); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var l [16]byte
	p.blk.Encrypt(l[:], l[:])
	msb := l[0] >> 7
	for i := range 15 {
		p.k1[i] = l[i]<<1 | l[i+1]>>7
	}
	p.k1[15] = l[15]<<1 ^ byte(subtle.ConstantTimeSelect(int(msb), 0x87, 0))
	clear(l[:])
	return nil
}

func (p *prf) wipe() {
	p.blk.Wipe()
	clear(p.k1[:])
}

// derive writes the key of (spi, v) into out (v.KeyLen() bytes).
func (p *prf) derive(out []byte, spi uint32, v Version) {
	in := fixedInput(spi, v)
	var blocks [32]byte
	n := v.KeyLen()
	for i := 0; i < n; i += 16 {
		binary.BigEndian.PutUint32(blocks[i:], uint32(i/16+1))
		copy(blocks[i+4:i+16], in[:])
		subtle.XORBytes(blocks[i:i+16], blocks[i:i+16], p.k1[:])
	}
	p.blk.EncryptBlocks(blocks[:n], blocks[:n])
	copy(out, blocks[:n])
	clear(blocks[:])
}

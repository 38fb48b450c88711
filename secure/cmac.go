package secure

import (
	"crypto/subtle"
	"fmt"

	"github.com/sealring/sealring/internal/aesgcm"
	"github.com/sealring/sealring/internal/cpu"
)

const blockSize = 16

// cmacKey is an AES-CMAC key (RFC 4493) with its subkeys, set up without
// allocating.
type cmacKey struct {
	b      aesgcm.Block
	k1, k2 [blockSize]byte
}

func (c *cmacKey) init(p cpu.Path, key []byte) error {
	if err := c.b.Init(p, key); err != nil {
		return fmt.Errorf("%w: CMAC key is %d bytes, want 16 or 32", ErrKeySize, len(key))
	}
	var l [blockSize]byte
	c.b.Encrypt(l[:], l[:])
	dbl(&c.k1, &l)
	dbl(&c.k2, &c.k1)
	clear(l[:])
	return nil
}

func (c *cmacKey) wipe() {
	c.b.Wipe()
	clear(c.k1[:])
	clear(c.k2[:])
}

// dbl multiplies by x in GF(2^128) with the CMAC polynomial (RFC 4493
// §2.3), in constant time.
func dbl(dst, src *[blockSize]byte) {
	msb := src[0] >> 7
	for i := 0; i < blockSize-1; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[blockSize-1] = src[blockSize-1]<<1 ^ byte(subtle.ConstantTimeSelect(int(msb), 0x87, 0))
}

// sum computes CMAC over the concatenation a ‖ b without copying them.
func (c *cmacKey) sum(a, b []byte) [blockSize]byte {
	var x, blk [blockSize]byte
	n := len(a) + len(b)
	// Process every complete block except the last (RFC 4493: the last
	// block, complete or not, is handled with a subkey).
	full := 0
	if n > 0 {
		full = (n - 1) / blockSize
	}
	pos := 0
	for i := 0; i < full; i++ {
		fill(&blk, a, b, pos, blockSize)
		subtle.XORBytes(x[:], x[:], blk[:])
		c.b.Encrypt(x[:], x[:])
		pos += blockSize
	}
	rem := n - pos
	blk = [blockSize]byte{}
	fill(&blk, a, b, pos, rem)
	if rem == blockSize {
		subtle.XORBytes(blk[:], blk[:], c.k1[:])
	} else {
		blk[rem] = 0x80
		subtle.XORBytes(blk[:], blk[:], c.k2[:])
	}
	subtle.XORBytes(x[:], x[:], blk[:])
	c.b.Encrypt(x[:], x[:])
	return x
}

// fill copies n bytes starting at offset pos of a ‖ b into blk.
func fill(blk *[blockSize]byte, a, b []byte, pos, n int) {
	for i := 0; i < n; i++ {
		p := pos + i
		if p < len(a) {
			blk[i] = a[p]
		} else {
			blk[i] = b[p-len(a)]
		}
	}
}

// CMAC returns the AES-CMAC (RFC 4493, NIST SP 800-38B) of msg under a 16-
// or 32-byte key.
func CMAC(key, msg []byte) ([16]byte, error) {
	if defaultPathErr != nil {
		return [16]byte{}, fmt.Errorf("%w: %w", ErrConfig, defaultPathErr)
	}
	var c cmacKey
	if err := c.init(defaultPath, key); err != nil {
		return [16]byte{}, err
	}
	defer c.wipe()
	return c.sum(msg, nil), nil
}

// CounterKDF is the NIST SP 800-108 key-derivation function in counter
// mode with AES-CMAC as the PRF: block i (from 1) is
// CMAC(key, [i]_counterBytes ‖ fixedInput), with the counter big-endian in
// counterBytes (1 to 4) bytes, and out is filled with the blocks in order
// (a partial last block is truncated). fixedInput carries label, context
// and L as the caller's profile defines them; CounterKDF does not add them.
func CounterKDF(key, fixedInput []byte, counterBytes int, out []byte) error {
	if defaultPathErr != nil {
		return fmt.Errorf("%w: %w", ErrConfig, defaultPathErr)
	}
	if counterBytes < 1 || counterBytes > 4 {
		return fmt.Errorf("%w: KDF counter of %d bytes, want 1 to 4", ErrConfig, counterBytes)
	}
	blocks := (len(out) + blockSize - 1) / blockSize
	if maxBlocks := uint64(1)<<(8*counterBytes) - 1; uint64(blocks) > maxBlocks {
		return fmt.Errorf("%w: %d output bytes need %d blocks, a %d-byte counter allows %d", ErrConfig, len(out), blocks, counterBytes, maxBlocks)
	}
	var c cmacKey
	if err := c.init(defaultPath, key); err != nil {
		return err
	}
	defer c.wipe()
	var ctr [4]byte
	for i := 1; i <= blocks; i++ {
		for j := 0; j < counterBytes; j++ {
			ctr[j] = byte(i >> (8 * (counterBytes - 1 - j)))
		}
		t := c.sum(ctr[:counterBytes], fixedInput)
		copy(out[(i-1)*blockSize:], t[:])
		clear(t[:])
	}
	return nil
}

package aesgcm

import (
	"encoding/binary"
	"math/bits"
)

// This file is the portable implementation (cpu.Generic). AES uses the
// classic 32-bit T-tables, and GHASH uses Shoup's 4-bit tables: both index
// memory with secret data and are therefore NOT constant-time, exactly
// like the standard library's generic fallback. The assembly paths are
// constant-time.

var sbox, te0, te1, te2, te3 = genTables()

// gfMul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

func genTables() (s [256]byte, t0, t1, t2, t3 [256]uint32) {
	for x := 0; x < 256; x++ {
		// Multiplicative inverse by exponentiation: x^254.
		inv := byte(0)
		if x != 0 {
			inv = 1
			b := byte(x)
			for e := 254; e != 0; e >>= 1 {
				if e&1 != 0 {
					inv = gfMul(inv, b)
				}
				b = gfMul(b, b)
			}
		}
		v := inv ^ bits.RotateLeft8(inv, 1) ^ bits.RotateLeft8(inv, 2) ^
			bits.RotateLeft8(inv, 3) ^ bits.RotateLeft8(inv, 4) ^ 0x63
		s[x] = v
		w := uint32(gfMul(v, 2))<<24 | uint32(v)<<16 | uint32(v)<<8 | uint32(gfMul(v, 3))
		t0[x] = w
		t1[x] = bits.RotateLeft32(w, -8)
		t2[x] = bits.RotateLeft32(w, -16)
		t3[x] = bits.RotateLeft32(w, -24)
	}
	return
}

func subWord(w uint32) uint32 {
	return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 |
		uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
}

// expandKeyGeneric computes the encryption key schedule (FIPS 197 §5.2)
// as big-endian words.
func expandKeyGeneric(rk *[60]uint32, key []byte) {
	nk := len(key) / 4
	nr := nk + 6
	for i := 0; i < nk; i++ {
		rk[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := nk; i < 4*(nr+1); i++ {
		t := rk[i-1]
		if i%nk == 0 {
			t = subWord(bits.RotateLeft32(t, 8)) ^ rcon<<24
			rcon <<= 1
			if rcon&0x100 != 0 {
				rcon ^= 0x11b
			}
		} else if nk > 6 && i%nk == 4 {
			t = subWord(t)
		}
		rk[i] = rk[i-nk] ^ t
	}
	for i := 4 * (nr + 1); i < len(rk); i++ {
		rk[i] = 0
	}
}

// encryptBlockGeneric encrypts one block with the T-table method.
func encryptBlockGeneric(rk *[60]uint32, nr int, dst, src []byte) {
	_ = src[15]
	s0 := binary.BigEndian.Uint32(src[0:]) ^ rk[0]
	s1 := binary.BigEndian.Uint32(src[4:]) ^ rk[1]
	s2 := binary.BigEndian.Uint32(src[8:]) ^ rk[2]
	s3 := binary.BigEndian.Uint32(src[12:]) ^ rk[3]
	k := 4
	for r := 1; r < nr; r++ {
		t0 := rk[k+0] ^ te0[s0>>24] ^ te1[s1>>16&0xff] ^ te2[s2>>8&0xff] ^ te3[s3&0xff]
		t1 := rk[k+1] ^ te0[s1>>24] ^ te1[s2>>16&0xff] ^ te2[s3>>8&0xff] ^ te3[s0&0xff]
		t2 := rk[k+2] ^ te0[s2>>24] ^ te1[s3>>16&0xff] ^ te2[s0>>8&0xff] ^ te3[s1&0xff]
		t3 := rk[k+3] ^ te0[s3>>24] ^ te1[s0>>16&0xff] ^ te2[s1>>8&0xff] ^ te3[s2&0xff]
		s0, s1, s2, s3 = t0, t1, t2, t3
		k += 4
	}
	u0 := uint32(sbox[s0>>24])<<24 | uint32(sbox[s1>>16&0xff])<<16 | uint32(sbox[s2>>8&0xff])<<8 | uint32(sbox[s3&0xff])
	u1 := uint32(sbox[s1>>24])<<24 | uint32(sbox[s2>>16&0xff])<<16 | uint32(sbox[s3>>8&0xff])<<8 | uint32(sbox[s0&0xff])
	u2 := uint32(sbox[s2>>24])<<24 | uint32(sbox[s3>>16&0xff])<<16 | uint32(sbox[s0>>8&0xff])<<8 | uint32(sbox[s1&0xff])
	u3 := uint32(sbox[s3>>24])<<24 | uint32(sbox[s0>>16&0xff])<<16 | uint32(sbox[s1>>8&0xff])<<8 | uint32(sbox[s2&0xff])
	_ = dst[15]
	binary.BigEndian.PutUint32(dst[0:], u0^rk[k+0])
	binary.BigEndian.PutUint32(dst[4:], u1^rk[k+1])
	binary.BigEndian.PutUint32(dst[8:], u2^rk[k+2])
	binary.BigEndian.PutUint32(dst[12:], u3^rk[k+3])
}

// GHASH field elements are held as two big-endian words: lo is bytes 0..7
// (coefficients of x^0..x^63, x^0 in the most significant bit) and hi is
// bytes 8..15.

// ghashRed[m] is what shifting the low four bits m of hi out of the top of
// the field (multiplying by x^4) folds back into lo.
var ghashRed = func() (t [16]uint64) {
	for m := uint64(0); m < 16; m++ {
		lo, hi := uint64(0), m
		for i := 0; i < 4; i++ {
			lo, hi = mulX(lo, hi)
		}
		t[m] = lo
	}
	return
}()

// mulX multiplies a field element by x.
func mulX(lo, hi uint64) (uint64, uint64) {
	carry := hi & 1
	hi = hi>>1 | lo<<63
	lo >>= 1
	lo ^= -carry & 0xe100000000000000
	return lo, hi
}

// initGHASHGeneric sets H = E_K(0^128) and fills the 4-bit table:
// entry v (a nibble whose most significant bit is the coefficient of x^0)
// holds v(x)·H, as (lo, hi) at htab[2v], htab[2v+1].
func initGHASHGeneric(htab *[32]uint64, rk *[60]uint32, nr int) {
	var h [16]byte
	encryptBlockGeneric(rk, nr, h[:], h[:])
	lo := binary.BigEndian.Uint64(h[:8])
	hi := binary.BigEndian.Uint64(h[8:])
	clear(h[:])
	// Components: bit 3 -> H, bit 2 -> H·x, bit 1 -> H·x^2, bit 0 -> H·x^3.
	var cl, ch [4]uint64
	for b := 3; b >= 0; b-- {
		cl[b], ch[b] = lo, hi
		lo, hi = mulX(lo, hi)
	}
	for v := 0; v < 16; v++ {
		var tl, th uint64
		for b := 0; b < 4; b++ {
			if v>>b&1 != 0 {
				tl ^= cl[b]
				th ^= ch[b]
			}
		}
		htab[2*v], htab[2*v+1] = tl, th
	}
}

// ghashMulGeneric sets (lo, hi) to (lo, hi)·H using the 4-bit table.
func ghashMulGeneric(htab *[32]uint64, lo, hi uint64) (uint64, uint64) {
	var zl, zh uint64
	for _, word := range [2]uint64{hi, lo} {
		for i := 0; i < 16; i++ {
			m := zh & 0xf
			zh = zh>>4 | zl<<60
			zl = zl>>4 ^ ghashRed[m]
			v := word & 0xf
			zl ^= htab[2*v]
			zh ^= htab[2*v+1]
			word >>= 4
		}
	}
	return zl, zh
}

// ghashUpdateGeneric absorbs data, zero-padded to a whole number of blocks.
func ghashUpdateGeneric(htab *[32]uint64, lo, hi uint64, data []byte) (uint64, uint64) {
	for len(data) >= 16 {
		lo ^= binary.BigEndian.Uint64(data[:8])
		hi ^= binary.BigEndian.Uint64(data[8:16])
		lo, hi = ghashMulGeneric(htab, lo, hi)
		data = data[16:]
	}
	if len(data) > 0 {
		var buf [16]byte
		copy(buf[:], data)
		lo ^= binary.BigEndian.Uint64(buf[:8])
		hi ^= binary.BigEndian.Uint64(buf[8:16])
		lo, hi = ghashMulGeneric(htab, lo, hi)
	}
	return lo, hi
}

// ctrXORGeneric XORs src with the keystream starting at counter block ctr
// (incremented as a 32-bit big-endian counter in its last 4 bytes).
func ctrXORGeneric(rk *[60]uint32, nr int, ctr *[16]byte, dst, src []byte) {
	var ks [16]byte
	for len(src) > 0 {
		encryptBlockGeneric(rk, nr, ks[:], ctr[:])
		c := binary.BigEndian.Uint32(ctr[12:])
		binary.BigEndian.PutUint32(ctr[12:], c+1)
		n := min(len(src), 16)
		for i := 0; i < n; i++ {
			dst[i] = src[i] ^ ks[i]
		}
		dst, src = dst[n:], src[n:]
	}
	clear(ks[:])
}

// tagGeneric finishes GHASH with the length block and masks it with E(J0).
func tagGeneric(a *AEAD, lo, hi uint64, j0 *[16]byte, aadLen, ctLen int, tag *[16]byte) {
	lo ^= uint64(aadLen) * 8
	hi ^= uint64(ctLen) * 8
	lo, hi = ghashMulGeneric(&a.htab, lo, hi)
	var mask [16]byte
	encryptBlockGeneric(&a.blk.rk, int(a.blk.nr), mask[:], j0[:])
	binary.BigEndian.PutUint64(tag[:8], lo^binary.BigEndian.Uint64(mask[:8]))
	binary.BigEndian.PutUint64(tag[8:], hi^binary.BigEndian.Uint64(mask[8:]))
}

// sealGeneric writes the ciphertext and tag to out (len(plaintext)+16).
func sealGeneric(a *AEAD, out, nonce, plaintext, aad []byte) {
	var j0, ctr [16]byte
	copy(j0[:], nonce)
	j0[15] = 1
	ctr = j0
	ctr[15] = 2
	n := len(plaintext)
	ctrXORGeneric(&a.blk.rk, int(a.blk.nr), &ctr, out[:n], plaintext)
	lo, hi := ghashUpdateGeneric(&a.htab, 0, 0, aad)
	lo, hi = ghashUpdateGeneric(&a.htab, lo, hi, out[:n])
	var tag [16]byte
	tagGeneric(a, lo, hi, &j0, len(aad), n, &tag)
	copy(out[n:], tag[:])
}

// openGeneric decrypts ciphertext (without tag) into out and computes the
// expected tag.
func openGeneric(a *AEAD, out, nonce, ciphertext, aad []byte, tag *[16]byte) {
	var j0, ctr [16]byte
	copy(j0[:], nonce)
	j0[15] = 1
	ctr = j0
	ctr[15] = 2
	lo, hi := ghashUpdateGeneric(&a.htab, 0, 0, aad)
	lo, hi = ghashUpdateGeneric(&a.htab, lo, hi, ciphertext)
	tagGeneric(a, lo, hi, &j0, len(aad), len(ciphertext), tag)
	ctrXORGeneric(&a.blk.rk, int(a.blk.nr), &ctr, out, ciphertext)
}

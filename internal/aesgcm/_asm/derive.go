package main

import "fmt"

// deriveGCMVAES: package secure's data-key derivation fused with the
// VAES512 Init, in one call (written to ../vaes_amd64.s).
//
// A derivation is strictly serial: three AES blocks under the master key
// (the KDF) give the data key, whose key schedule gives H = E_K(0), whose
// powers H^1..H^16 fill htab. The call therefore only saves latency:
//
//   - the KDF output stays in registers and feeds the key expansion
//     directly (no store/reload, no second call and no Go glue);
//   - the powers use 4 multiplication depths (the minimum for H^16):
//     H^2 in an XMM register; [H^4,H^3] = [H^2,H^2]·[H^2,H] in a YMM;
//     [H^8..H^5] = [H^4,H^3,H^2,H]·H^4 in a ZMM; then [H^12..H^9] =
//     [H^8..H^5]·H^4, which needs no broadcast of a level-3 result, and
//     [H^16..H^13] = [H^8..H^5]·H^8. Measured on derive + seal of 1400
//     bytes (paired, in-process), this beats doing every level on all
//     four ZMM lanes with lane blends by about 3 %: VPCLMULQDQ issues once
//     every two cycles whatever the width, and dependent ZMM chains are
//     slower than XMM/YMM ones on Zen 4, so narrow early levels and few
//     multiplications win. Tried and measured slower or equal:
//     shift-based reductions, Karatsuba in the ZMM levels, squaring to
//     get H^4/H^8 in every lane instead of VSHUFI64X2 broadcasts.
//   - the first folding multiplication of each reduction starts from the
//     low 0x00 partial product (the middle term does not touch its low
//     qword), taking the middle-term combine off the critical path.
//
// The results are bit-identical to EncryptBlocks followed by Init.

// vzsq sets t0 = a·a in each lane (a squared has no middle term); a is
// an X, Y or Z register and register 15 of that width holds the
// polynomial constant. t0 may not be a.
func vzsq(a, t0, t1, tT string) {
	o("VPCLMULQDQ $0x00, %s, %s, %s", a, a, t0)
	o("VPCLMULQDQ $0x11, %s, %s, %s", a, a, t1)
	o("VPCLMULQDQ $0x10, %s, %s, %s", polyReg(t0), t0, tT)
	o("VPSHUFD $0x4e, %s, %s", t0, t0)
	o("VPXORQ %s, %s, %s", tT, t0, t0)
	o("VPCLMULQDQ $0x10, %s, %s, %s", polyReg(t0), t0, tT)
	o("VPSHUFD $0x4e, %s, %s", t0, t0)
	o("VPTERNLOGD $0x96, %s, %s, %s", tT, t1, t0)
}

// vzmul sets t0 = a·b in each lane (schoolbook). t0..t4 are distinct
// temporaries, different from a and b. The product lo + mid·x^64 +
// hi·x^128 is reduced in three-part form: lo is folded into mid, then mid
// into hi, so the middle term is never split with byte shifts.
func vzmul(a, b, t0, t1, t2, t3, t4 string) {
	o("VPCLMULQDQ $0x00, %s, %s, %s", b, a, t1) // lo
	o("VPCLMULQDQ $0x11, %s, %s, %s", b, a, t0) // hi
	o("VPCLMULQDQ $0x01, %s, %s, %s", b, a, t2)
	o("VPCLMULQDQ $0x10, %s, %s, %s", b, a, t3)
	o("VPCLMULQDQ $0x10, %s, %s, %s", polyReg(t1), t1, t4)
	o("VPSHUFD $0x4e, %s, %s", t1, t1)
	o("VPTERNLOGD $0x96, %s, %s, %s", t1, t3, t2)
	o("VPXORQ %s, %s, %s", t4, t2, t2)
	o("VPCLMULQDQ $0x10, %s, %s, %s", polyReg(t2), t2, t4)
	o("VPSHUFD $0x4e, %s, %s", t2, t2)
	o("VPTERNLOGD $0x96, %s, %s, %s", t4, t2, t0)
}

// vprefixXOR sets v to the prefix XOR of its four words (see prefixXOR).
func vprefixXOR(v, t string) {
	o("VPSLLDQ $4, %s, %s", v, t)
	o("VPXOR %s, %s, %s", t, v, v)
	o("VPSLLDQ $8, %s, %s", v, t)
	o("VPXOR %s, %s, %s", t, v, v)
}

func genDeriveVAES() {
	buf.WriteString("\n")
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&buf, "DATA kdfctr<>+%d(SB)/8, $0x%016x\n", 16*(i-1), i)
		fmt.Fprintf(&buf, "DATA kdfctr<>+%d(SB)/8, $0x%016x\n", 16*(i-1)+8, 0)
	}
	buf.WriteString("GLOBL kdfctr<>(SB), RODATA|NOPTR, $48\n")
	// rcon for the AES-256 round keys 2, 4, ..., 14, in every word.
	for k := 0; k < 7; k++ {
		r := uint64(1) << k
		fmt.Fprintf(&buf, "DATA krcon<>+%d(SB)/8, $0x%016x\n", 16*k, r<<32|r)
		fmt.Fprintf(&buf, "DATA krcon<>+%d(SB)/8, $0x%016x\n", 16*k+8, r<<32|r)
	}
	buf.WriteString("GLOBL krcon<>(SB), RODATA|NOPTR, $112\n")
	buf.WriteString("DATA bswapq<>+0(SB)/8, $0x0001020304050607\nDATA bswapq<>+8(SB)/8, $0x08090a0b0c0d0e0f\nGLOBL bswapq<>(SB), RODATA|NOPTR, $16\n")
	buf.WriteString("\n// func deriveGCMVAES(nr int, mrk *[60]uint32, hi, lo uint64, rk *[60]uint32, htab *[32]uint64, mask *[12]byte)\n")
	buf.WriteString("TEXT ·deriveGCMVAES(SB), NOSPLIT, $0-56\n")
	o("MOVQ nr+0(FP), R13")
	o("MOVQ mrk+8(FP), AX")
	o("MOVQ rk+32(FP), BX")
	o("MOVQ htab+40(FP), DI")
	o("MOVQ mask+48(FP), DX")

	kdfBlocks("hi+16(FP)", "lo+24(FP)")
	keySchedule(nil)
	powers()
	o("VZEROUPPER")
	o("RET")
}

// kdfBlocks encrypts the three KDF blocks under the key schedule at (AX)
// (R13 rounds) into X0, X1 (the data key) and X2 (its first 12 bytes are
// the IV mask, stored at (DX)). hi and lo are the argument operands.
// Clobbers X3-X5.
func kdfBlocks(hi, lo string) {
	comment("KDF blocks i = 1, 2, 3: big-endian (hi ^ i<<56, lo), XORed with round key 0")
	// hi and lo straight from the argument frame (each load is forwarded
	// from the caller's store), then byte-reversed per qword.
	o("VMOVQ %s, X4", hi)
	o("VPINSRQ $1, %s, X4, X4", lo)
	o("VPSHUFB bswapq<>(SB), X4, X4")
	for i := 0; i < 3; i++ {
		o("VMOVDQU kdfctr<>+%d(SB), X%d", 16*i, i)
		o("VPTERNLOGD $0x96, (AX), X4, X%d", i)
	}
	blocks := []string{"X0", "X1", "X2"}
	last := newLabel("kdflast")
	round := func(r int) {
		for _, b := range blocks {
			o("VAESENC %d(AX), %s, %s", 16*r, b, b)
		}
	}
	for r := 1; r <= 9; r++ {
		round(r)
	}
	o("VMOVDQU 160(AX), X5")
	o("CMPQ R13, $12")
	o("JB %s", last)
	for r := 10; r <= 13; r++ {
		round(r)
	}
	o("VMOVDQU 224(AX), X5")
	label(last)
	for _, b := range blocks {
		o("VAESENCLAST X5, %s, %s", b, b)
	}
	comment("IV mask: the first 12 bytes of the third block")
	o("VMOVQ X2, (DX)")
	o("VPEXTRD $2, X2, 8(DX)")
}

// keySchedule expands the AES-256 key X0 || X1 into (BX), with H = E_K(0)
// in X6 as the round keys appear. After round key i is in register k
// (X0 or X1) and stored, each(i, k) runs, if each is not nil. Clobbers
// X0-X6.
func keySchedule(each func(i int, k string)) {
	hook := func(i int, k string) {
		if each != nil {
			each(i, k)
		}
	}
	comment("AES-256 key schedule of X0 || X1, with H = E_K(0) in X6 as the round keys appear")
	o("VMOVDQU X0, (BX)")
	o("VMOVDQU X1, 16(BX)")
	hook(0, "X0")
	hook(1, "X1")
	o("VAESENC X1, X0, X6")
	o("VMOVDQU keyrot<>(SB), X5")
	for i := 2; i <= 14; i += 2 {
		rcon := fmt.Sprintf("krcon<>+%d(SB)", 8*(i-2))
		if i == 2 {
			// The KDF output X0 is as new as X1: XOR its prefix after
			// AESENCLAST, which has rcon as its round key.
			o("VPSHUFB X5, X1, X2")
			o("VAESENCLAST %s, X2, X2", rcon)
			vprefixXOR("X0", "X3")
			o("VPXOR X2, X0, X0")
		} else {
			// AESENCLAST's round-key XOR adds the prefix-XORed key of
			// two steps back and rcon, which are ready early, so the
			// chain per round key is one shuffle and one AESENCLAST.
			o("VPSLLDQ $4, X0, X3")
			o("VPXOR X3, X0, X0")
			o("VPSLLDQ $8, X0, X3")
			o("VPTERNLOGD $0x96, %s, X3, X0", rcon)
			o("VPSHUFB X5, X1, X2")
			o("VAESENCLAST X0, X2, X0")
		}
		o("VMOVDQU X0, %d(BX)", 16*i)
		hook(i, "X0")
		if i < 14 {
			o("VAESENC X0, X6, X6")
		} else {
			o("VAESENCLAST X0, X6, X6")
			break
		}
		vprefixXOR("X1", "X3")
		o("VPSHUFD $0xff, X0, X2")
		o("VAESENCLAST X1, X2, X1")
		o("VMOVDQU X1, %d(BX)", 16*(i+1))
		hook(i+1, "X1")
		o("VAESENC X1, X6, X6")
	}
}

// hx sets X6 = H·x (byte-reversed) from E_K(0) in X6, with Z15 = poly.
// H's top bit is bit 7 of E_K(0)'s byte 0, so the carry mask is taken
// from E_K(0) directly, in parallel with the byte swap.
func hx() {
	o("VMOVDQU64 vpoly<>(SB), Z15")
	o("VPSHUFB bswap<>(SB), X6, X2")
	o("VPXOR X1, X1, X1")
	o("VPSHUFB X1, X6, X1") // byte 0 of E_K(0) in every byte
	o("VPSRAD $31, X1, X1")
	o("VPAND X15, X1, X1")
	o("VPSRLD $31, X2, X3")
	o("VPSLLDQ $4, X3, X3")
	o("VPSLLD $1, X2, X6")
	o("VPTERNLOGD $0x96, X3, X1, X6")
}

// polyReg is the polynomial register of the width of r.
func polyReg(r string) string { return r[:1] + "15" }

// powers computes H^1..H^16 from E_K(0) in X6 into htab at (DI) (see the
// file comment). Uses Z0-Z15.
func powers() {
	hx()
	vzsq("X6", "X7", "X8", "X9")                      // H^2
	o("VINSERTI128 $1, X7, Y7, Y12")                  // [H^2, H^2]
	o("VINSERTI128 $1, X6, Y7, Y13")                  // [H^2, H]
	vzmul("Y12", "Y13", "Y0", "Y1", "Y2", "Y3", "Y4") // [H^4, H^3]
	o("VINSERTI64X4 $1, Y13, Z0, Z11")                // [H^4, H^3, H^2, H]
	o("VSHUFI64X2 $0, Z0, Z0, Z8")                    // H^4 in every lane
	o("VMOVDQU64 Z11, 192(DI)")
	vzmul("Z11", "Z8", "Z0", "Z1", "Z2", "Z3", "Z4") // [H^8..H^5]
	o("VSHUFI64X2 $0, Z0, Z0, Z5")                   // H^8 in every lane
	o("VMOVDQU64 Z0, 128(DI)")
	vzmul("Z0", "Z8", "Z9", "Z10", "Z12", "Z13", "Z14") // [H^12..H^9]
	vzmul("Z0", "Z5", "Z1", "Z2", "Z3", "Z4", "Z6")     // [H^16..H^13]
	o("VMOVDQU64 Z9, 64(DI)")
	o("VMOVDQU64 Z1, 0(DI)")
}

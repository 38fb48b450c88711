// Command gen writes ../kernels_amd64.s, the AVX2 and AVX-512 reduction
// kernels of package collectives. Run it with `go generate` in the package
// or `go run .` from this directory (it has its own go.mod so that the main
// module does not depend on it); `go run . -o -` prints to stdout.
//
// Every kernel has the Go signature func(d, s *byte, n int) and computes
// d[i] = d[i] op s[i] for i < n elements. AVX-512 kernels handle every n
// (masked tail, no access outside the n elements); AVX2 kernels require n to
// be a multiple of their block (kernels_amd64.go reduces the rest in Go). The
// semantics follow the generic kernels bit for bit; see kernels_amd64.go.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

var out []string

func emit(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

// ins emits instructions, one per line, indented by a tab.
func ins(is []string) {
	for _, s := range is {
		emit("\t%s", s)
	}
}

// ---------------------------------------------------------------- numeric ops

// An opFunc gets (x, y, t, c): x = dst vector, y = src vector (may be
// clobbered), t = temporaries, c = constants; it returns the instructions
// and the result register.
type opFunc func(x, y string, t []string, c map[string]string) ([]string, string)

func simple(in string) opFunc {
	return func(x, y string, t []string, c map[string]string) ([]string, string) {
		return []string{fmt.Sprintf("%s %s, %s, %s", in, y, x, x)}, x
	}
}

// fmin: Go lowers min(x, y) on amd64 to
//
//	t1 = MINS(x, y); t2 = MINS(t1, x); r = t1 | t2
//
// (Intel MIN: src1 < src2 ? src1 : src2, else src2). Repeat it per lane.
func fmin(ps, por string) opFunc {
	return func(x, y string, t []string, c map[string]string) ([]string, string) {
		return []string{
			fmt.Sprintf("VMIN%s %s, %s, %s", ps, y, x, t[0]),
			fmt.Sprintf("VMIN%s %s, %s, %s", ps, x, t[0], y),
			fmt.Sprintf("%s %s, %s, %s", por, y, t[0], x),
		}, x
	}
}

// fmax512: max(x, y) is lowered to -min(-x, -y), which per lane is
//
//	t1 = MAX(x, y); t2 = MAX(t1, x); r = -((-t1) | (-t2)):
//
// magnitude bits t1|t2, sign bit t1&t2. One VPTERNLOG (0xD4 with C = sign
// mask).
func fmax512(ps, tern string) opFunc {
	return func(x, y string, t []string, c map[string]string) ([]string, string) {
		return []string{
			fmt.Sprintf("VMAX%s %s, %s, %s", ps, y, x, t[0]),
			fmt.Sprintf("VMAX%s %s, %s, %s", ps, x, t[0], y),
			fmt.Sprintf("%s $0xD4, %s, %s, %s", tern, c["S"], y, t[0]),
		}, t[0]
	}
}

func fmax256(ps, xor, orr string) opFunc {
	return func(x, y string, t []string, c map[string]string) ([]string, string) {
		S := c["S"]
		return []string{
			fmt.Sprintf("VMAX%s %s, %s, %s", ps, y, x, t[0]),
			fmt.Sprintf("VMAX%s %s, %s, %s", ps, x, t[0], y),
			fmt.Sprintf("%s %s, %s, %s", xor, S, t[0], t[0]),
			fmt.Sprintf("%s %s, %s, %s", xor, S, y, y),
			fmt.Sprintf("%s %s, %s, %s", orr, y, t[0], t[0]),
			fmt.Sprintf("%s %s, %s, %s", xor, S, t[0], x),
		}, x
	}
}

// mul64AVX2: (xh*2^32 + xl)(yh*2^32 + yl) mod 2^64 = xl*yl + ((xh*yl + xl*yh) << 32).
func mul64AVX2(x, y string, t []string, c map[string]string) ([]string, string) {
	T, U := t[0], t[1]
	return []string{
		fmt.Sprintf("VPSRLQ $32, %s, %s", y, T), fmt.Sprintf("VPMULUDQ %s, %s, %s", x, T, T),
		fmt.Sprintf("VPSRLQ $32, %s, %s", x, U), fmt.Sprintf("VPMULUDQ %s, %s, %s", y, U, U),
		fmt.Sprintf("VPADDQ %s, %s, %s", U, T, T), fmt.Sprintf("VPSLLQ $32, %s, %s", T, T),
		fmt.Sprintf("VPMULUDQ %s, %s, %s", y, x, x), fmt.Sprintf("VPADDQ %s, %s, %s", T, x, x),
	}, x
}

func min64AVX2(x, y string, t []string, c map[string]string) ([]string, string) {
	return []string{fmt.Sprintf("VPCMPGTQ %s, %s, %s", y, x, t[0]), fmt.Sprintf("VPBLENDVB %s, %s, %s, %s", t[0], y, x, x)}, x
}

func max64AVX2(x, y string, t []string, c map[string]string) ([]string, string) {
	return []string{fmt.Sprintf("VPCMPGTQ %s, %s, %s", y, x, t[0]), fmt.Sprintf("VPBLENDVB %s, %s, %s, %s", t[0], x, y, x)}, x
}

// signConst loads the sign mask into AX; suffix is the broadcast width.
type signConst struct{ load, suffix string }

var (
	sign32 = &signConst{"MOVL $0x80000000, AX", "D"}
	sign64 = &signConst{"MOVQ $0x8000000000000000, AX", "Q"}
)

type numOp struct {
	name         string
	avx512, avx2 opFunc
	temps        int
	sign         *signConst
}

type numType struct {
	name string
	lg   int    // log2 of the element size
	msz  string // masked-move suffix
	ops  []numOp
}

var numeric = []numType{
	{"F32", 2, "32", []numOp{
		{"Sum", simple("VADDPS"), simple("VADDPS"), 0, nil},
		{"Prod", simple("VMULPS"), simple("VMULPS"), 0, nil},
		{"Min", fmin("PS", "VORPS"), fmin("PS", "VORPS"), 1, nil},
		{"Max", fmax512("PS", "VPTERNLOGD"), fmax256("PS", "VXORPS", "VORPS"), 1, sign32},
	}},
	{"F64", 3, "64", []numOp{
		{"Sum", simple("VADDPD"), simple("VADDPD"), 0, nil},
		{"Prod", simple("VMULPD"), simple("VMULPD"), 0, nil},
		{"Min", fmin("PD", "VORPD"), fmin("PD", "VORPD"), 1, nil},
		{"Max", fmax512("PD", "VPTERNLOGQ"), fmax256("PD", "VXORPD", "VORPD"), 1, sign64},
	}},
	{"I32", 2, "32", []numOp{
		{"Sum", simple("VPADDD"), simple("VPADDD"), 0, nil},
		{"Prod", simple("VPMULLD"), simple("VPMULLD"), 0, nil},
		{"Min", simple("VPMINSD"), simple("VPMINSD"), 0, nil},
		{"Max", simple("VPMAXSD"), simple("VPMAXSD"), 0, nil},
	}},
	{"I64", 3, "64", []numOp{
		{"Sum", simple("VPADDQ"), simple("VPADDQ"), 0, nil},
		{"Prod", simple("VPMULLQ"), mul64AVX2, 2, nil},
		{"Min", simple("VPMINSQ"), min64AVX2, 1, nil},
		{"Max", simple("VPMAXSQ"), max64AVX2, 1, nil},
	}},
	{"U8", 0, "8", []numOp{
		{"Sum", simple("VPADDB"), simple("VPADDB"), 0, nil},
		{"Min", simple("VPMINUB"), simple("VPMINUB"), 0, nil},
		{"Max", simple("VPMAXUB"), simple("VPMAXUB"), 0, nil},
	}},
}

func header(name string) {
	emit("// func %s(d, s *byte, n int)", name)
	emit("TEXT ·%s(SB), NOSPLIT, $0-24", name)
	emit("\tMOVQ d+0(FP), DI")
	emit("\tMOVQ s+8(FP), SI")
	emit("\tMOVQ n+16(FP), CX")
}

func genNumeric(path string, ty numType, op numOp) {
	is512 := path == "AVX512"
	fn := op.avx2
	if is512 {
		fn = op.avx512
	}
	R, VB := "Y", 32
	if is512 {
		R, VB = "Z", 64
	}
	const U = 4
	header(fmt.Sprintf("k%s%s%s", path, ty.name, op.name))
	if ty.lg != 0 {
		emit("\tSHLQ $%d, CX", ty.lg)
	}
	c := map[string]string{}
	if op.sign != nil {
		emit("\t%s", op.sign.load)
		if is512 {
			emit("\tVPBROADCAST%s AX, Z31", op.sign.suffix)
			c["S"] = "Z31"
		} else {
			emit("\tVMOVQ AX, X15")
			emit("\tVPBROADCAST%s X15, Y15", op.sign.suffix)
			c["S"] = "Y15"
		}
	}
	mov := "VMOVDQU"
	if is512 {
		mov = "VMOVDQU64"
	}

	body := func(u int) {
		for i := range u {
			emit("\t%s %d(DI), %s%d", mov, i*VB, R, i)
			emit("\t%s %d(SI), %s%d", mov, i*VB, R, 4+i)
		}
		var res []string
		for i := range u {
			var t []string
			for k := range op.temps {
				t = append(t, fmt.Sprintf("%s%d", R, 8+i*2+k))
			}
			is, r := fn(fmt.Sprintf("%s%d", R, i), fmt.Sprintf("%s%d", R, 4+i), t, c)
			ins(is)
			res = append(res, r)
		}
		for i := range u {
			emit("\t%s %s, %d(DI)", mov, res[i], i*VB)
		}
	}

	emit("loop4:")
	emit("\tCMPQ CX, $%d", U*VB)
	emit("\tJB loop1")
	body(U)
	emit("\tADDQ $%d, DI", U*VB)
	emit("\tADDQ $%d, SI", U*VB)
	emit("\tSUBQ $%d, CX", U*VB)
	emit("\tJMP loop4")
	emit("loop1:")
	emit("\tCMPQ CX, $%d", VB)
	emit("\tJB tail")
	body(1)
	emit("\tADDQ $%d, DI", VB)
	emit("\tADDQ $%d, SI", VB)
	emit("\tSUBQ $%d, CX", VB)
	emit("\tJMP loop1")
	emit("tail:")
	if is512 {
		emit("\tTESTQ CX, CX")
		emit("\tJZ done")
		if ty.lg != 0 {
			emit("\tSHRQ $%d, CX", ty.lg)
		}
		emit("\tMOVQ $1, AX")
		emit("\tSHLQ CX, AX")
		emit("\tDECQ AX")
		emit("\tKMOVQ AX, K1")
		emit("\tVMOVDQU%s.Z (DI), K1, Z0", ty.msz)
		emit("\tVMOVDQU%s.Z (SI), K1, Z4", ty.msz)
		is, r := fn("Z0", "Z4", []string{"Z8", "Z9"}, c)
		ins(is)
		emit("\tVMOVDQU%s %s, K1, (DI)", ty.msz, r)
	}
	emit("done:")
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("")
}

// ---------------------------------------------------------------- 16-bit floats

// The 16-bit kernels widen to float32, reduce there and round back once per
// element. Their loops have the same shape as the numeric ones: four vectors
// per step (loop4), then one (loop1), then the tail (AVX-512: one masked
// step; AVX2: one 128-bit step for bfloat16, nothing for float16). CX counts
// bytes inside the loops.
//
// bfloat16 needs no shuffle: a bfloat16 is the top half of its float32, so a
// vector of 2k bfloat16 gives its even elements as float32 with VPSLLD $16
// and its odd elements with VPAND 0xffff0000. Both halves are reduced in
// their dwords (sums and products are then rounded; a min or max is an
// input or a quiet NaN made from one, already a bfloat16), and the two
// vectors are merged back (even: VPSRLD $16, odd: the top halves) into one
// vector of bfloat16 in the original order. float16 uses VCVTPH2PS / VCVTPS2PH $0 (round to
// nearest even, MXCSR ignored); the narrowed vector goes to a register and
// then to memory with a plain store (masked only in the AVX-512 tail).

// halfOp reduces x (dst) and y (src) widened to float32; t are temporaries
// (AVX-512: one, AVX2: three). It returns the instructions and the result
// register; x and y are free afterwards. A NaN result of Sum and Prod, and
// of every AVX-512 op, is quiet; AVX2 min/max return a NaN input as it is
// unless quiet is set.
func halfOp(is512 bool, op, x, y string, t []string, quiet bool) ([]string, string) {
	switch op {
	case "Sum":
		return []string{fmt.Sprintf("VADDPS %s, %s, %s", y, x, x)}, x // first source = dst: its NaN wins
	case "Prod":
		return []string{fmt.Sprintf("VMULPS %s, %s, %s", y, x, x)}, x
	}
	// The generic min: r = a; if y < x: b; if x == y: a|b; if y NaN: b; if x
	// NaN: a (max: >, a&b), NaNs made quiet by the narrowing.
	t0 := t[0]
	if is512 {
		// VRANGEPS $4 (min) / $5 (max), sign from the comparison, orders -0
		// below +0 and so gives a|b (a&b) for equal values, but returns the
		// other operand when one is a quiet NaN. Lanes with a NaN take
		// x + y instead, which is x quieted if x is a NaN, else y quieted;
		// quieting does not change the narrowed result.
		imm := 4
		if op != "Min" {
			imm = 5
		}
		return []string{
			fmt.Sprintf("VRANGEPS $%d, %s, %s, %s", imm, y, x, t0),
			fmt.Sprintf("VCMPPS $3, %s, %s, K2", y, x),
			fmt.Sprintf("VADDPS %s, %s, K2, %s", y, x, t0),
		}, t0
	}
	// MIN(x, y) gives x < y ? x : y, and y for any NaN or equal values; then
	// patch equal values and a NaN x (quiet: every NaN lane, with x + y as
	// on AVX-512).
	mm, bit := "VMINPS", "VORPS"
	if op != "Min" {
		mm, bit = "VMAXPS", "VANDPS"
	}
	t1, t2 := t[1], t[2]
	is := []string{
		fmt.Sprintf("%s %s, %s, %s", mm, y, x, t0),
		fmt.Sprintf("VCMPPS $0, %s, %s, %s", y, x, t1),
		fmt.Sprintf("%s %s, %s, %s", bit, y, x, t2),
		fmt.Sprintf("VBLENDVPS %s, %s, %s, %s", t1, t2, t0, t0),
	}
	if quiet {
		return append(is,
			fmt.Sprintf("VCMPPS $3, %s, %s, %s", y, x, t1),
			fmt.Sprintf("VADDPS %s, %s, %s", y, x, t2),
			fmt.Sprintf("VBLENDVPS %s, %s, %s, %s", t1, t2, t0, t0),
		), t0
	}
	return append(is,
		fmt.Sprintf("VCMPPS $3, %s, %s, %s", x, x, t1),
		fmt.Sprintf("VBLENDVPS %s, %s, %s, %s", t1, x, t0, t0),
	), t0
}

// bf16Consts loads the bfloat16 constants into the last three vector
// registers.
func bf16Consts(is512 bool) map[string]string {
	cs := []struct{ k, v string }{
		{"RND", "$0x7fff"}, {"ONE", "$1"}, {"HI", "$0xffff0000"},
	}
	c := map[string]string{}
	for i, kv := range cs {
		emit("\tMOVL %s, AX", kv.v)
		if is512 {
			reg := fmt.Sprintf("Z%d", 29+i)
			emit("\tVPBROADCASTD AX, %s", reg)
			c[kv.k] = reg
		} else {
			emit("\tVMOVD AX, X%d", 13+i)
			emit("\tVPBROADCASTD X%d, Y%d", 13+i, 13+i)
			c[kv.k] = fmt.Sprintf("Y%d", 13+i)
		}
	}
	return c
}

// roundBF16 rounds the float32 lanes of r to bfloat16 in the top half of
// each dword of t as f32ToBF16 does for a number: u + 0x7fff + ((u>>16)&1);
// the low halves are garbage. f32ToBF16 turns a NaN into (u>>16) | 0x40
// instead, but every NaN that reaches here is quiet and has 16 zero low
// bits (a widened input, quieted, or the default NaN), so the sum leaves
// its top half alone and the result is the same. r is unchanged.
func roundBF16(is512 bool, r, t string, c map[string]string) {
	and := "VPAND"
	if is512 {
		and = "VPANDD"
	}
	emit("\tVPSRLD $16, %s, %s", r, t)
	emit("\t%s %s, %s, %s", and, c["ONE"], t, t)
	emit("\tVPADDD %s, %s, %s", c["RND"], t, t)
	emit("\tVPADDD %s, %s, %s", r, t, t)
}

// halfStep is one vector step: load (or, for the masked tail, take) dst and
// src, reduce, store.
type halfStep struct {
	is512 bool
	dt    string
	op    string
	c     map[string]string
}

// bf16 processes one vector of bfloat16 at off(DI)/off(SI) in register
// width R (Z, Y or X) with the registers of bank b. If mask is set, the
// loads and the store are masked by K1 (AVX-512 tail).
func (h halfStep) bf16(R string, b []int, off int, mask bool) {
	reg := func(i int) string { return fmt.Sprintf("%s%d", R, b[i]) }
	D, XE, S, YE, TE, TO, T1, T2 := reg(0), reg(1), reg(2), reg(3), reg(4), reg(5), "", ""
	if !h.is512 {
		T1, T2 = reg(6), reg(7)
	}
	// AVX2 constants are Y registers; X forms for a 128-bit step.
	c := h.c
	if R == "X" {
		c = map[string]string{}
		for k, v := range h.c {
			c[k] = "X" + v[1:]
		}
	}
	mov, and := "VMOVDQU", "VPAND"
	if h.is512 {
		mov, and = "VMOVDQU64", "VPANDD"
	}
	if mask {
		emit("\tVMOVDQU16.Z (DI), K1, %s", D)
		emit("\tVMOVDQU16.Z (SI), K1, %s", S)
	} else {
		emit("\t%s %d(DI), %s", mov, off, D)
		emit("\t%s %d(SI), %s", mov, off, S)
	}
	emit("\tVPSLLD $16, %s, %s", D, XE)
	emit("\t%s %s, %s, %s", and, c["HI"], D, D)
	emit("\tVPSLLD $16, %s, %s", S, YE)
	emit("\t%s %s, %s, %s", and, c["HI"], S, S)
	is, re := halfOp(h.is512, h.op, XE, YE, []string{TE, T1, T2}, true)
	ins(is)
	is, ro := halfOp(h.is512, h.op, D, S, []string{TO, T1, T2}, true)
	ins(is)
	if h.op == "Sum" || h.op == "Prod" {
		roundBF16(h.is512, re, YE, c)
		roundBF16(h.is512, ro, S, c)
		re, ro = YE, S
	}
	// (min and max return an input or a quiet NaN made from one: already
	// bfloat16, no rounding.) Even results to the low halves, odd results
	// stay in the top halves.
	emit("\tVPSRLD $16, %s, %s", re, re)
	if h.is512 {
		emit("\tVPTERNLOGD $0xD8, %s, %s, %s", c["HI"], ro, re) // HI ? ro : re
	} else {
		emit("\tVPBLENDW $0xaa, %s, %s, %s", ro, re, re)
	}
	if mask {
		emit("\tVMOVDQU16 %s, K1, (DI)", re)
	} else {
		emit("\t%s %s, %d(DI)", mov, re, off)
	}
}

// f16 processes one vector of float16 (16 elements for AVX-512, 8 for
// AVX2) at off(DI)/off(SI) with the registers of bank b; with mask, the
// 16 elements are loaded and stored masked by K1.
func (h halfStep) f16(b []int, off int, mask bool) {
	R, H := "Y", "X"
	if h.is512 {
		R, H = "Z", "Y"
	}
	reg := func(i int) string { return fmt.Sprintf("%s%d", R, b[i]) }
	x, y, t := reg(0), reg(1), []string{reg(2)}
	if !h.is512 {
		t = append(t, reg(3), reg(4))
	}
	out := fmt.Sprintf("%s%d", H, b[1])
	if mask {
		emit("\tVMOVDQU16.Z (DI), K1, Y%d", b[0])
		emit("\tVMOVDQU16.Z (SI), K1, Y%d", b[1])
		emit("\tVCVTPH2PS Y%d, %s", b[0], x)
		emit("\tVCVTPH2PS Y%d, %s", b[1], y)
	} else {
		emit("\tVCVTPH2PS %d(DI), %s", off, x)
		emit("\tVCVTPH2PS %d(SI), %s", off, y)
	}
	is, r := halfOp(h.is512, h.op, x, y, t, false) // VCVTPS2PH quiets NaNs
	ins(is)
	emit("\tVCVTPS2PH $0, %s, %s", r, out)
	if mask {
		emit("\tVMOVDQU16 %s, K1, (DI)", out)
	} else {
		emit("\tVMOVDQU %s, %d(DI)", out, off)
	}
}

// banks splits registers 0..n-1 into groups of size k.
func banks(n, k int) [][]int {
	var bs [][]int
	for i := 0; i+k <= n; i += k {
		var b []int
		for j := range k {
			b = append(b, i+j)
		}
		bs = append(bs, b)
	}
	return bs
}

func genHalf(path, dt, op string) {
	is512 := path == "AVX512"
	header(fmt.Sprintf("k%s%s%s", path, dt, op))
	emit("\tSHLQ $1, CX")
	h := halfStep{is512: is512, dt: dt, op: op, c: map[string]string{}}
	var bk [][]int
	var VB int // bytes per vector
	R := "Y"
	switch {
	case dt == "BF16" && is512:
		h.c = bf16Consts(true)
		bk, VB, R = banks(28, 6), 64, "Z"
	case dt == "BF16":
		h.c = bf16Consts(false)
		bk, VB = banks(12, 8), 32
	case is512:
		bk, VB = banks(32, 3), 32
	default:
		bk, VB = banks(16, 5), 16
	}
	step := func(i, off int, mask bool) {
		b := bk[i%len(bk)]
		if dt == "BF16" {
			h.bf16(R, b, off, mask)
		} else {
			h.f16(b, off, mask)
		}
	}
	const U = 4
	emit("loop4:")
	emit("\tCMPQ CX, $%d", U*VB)
	emit("\tJB loop1")
	for i := range U {
		step(i, i*VB, false)
	}
	emit("\tADDQ $%d, DI", U*VB)
	emit("\tADDQ $%d, SI", U*VB)
	emit("\tSUBQ $%d, CX", U*VB)
	emit("\tJMP loop4")
	emit("loop1:")
	emit("\tCMPQ CX, $%d", VB)
	emit("\tJB tail")
	step(0, 0, false)
	emit("\tADDQ $%d, DI", VB)
	emit("\tADDQ $%d, SI", VB)
	emit("\tSUBQ $%d, CX", VB)
	emit("\tJMP loop1")
	emit("tail:")
	switch {
	case is512:
		// < VB bytes left: one masked step (KMOVD: at most 32 elements).
		emit("\tTESTQ CX, CX")
		emit("\tJZ done")
		emit("\tSHRQ $1, CX")
		emit("\tMOVL $1, AX")
		emit("\tSHLL CX, AX")
		emit("\tDECL AX")
		emit("\tKMOVD AX, K1")
		step(0, 0, true)
	case dt == "BF16":
		// n is a multiple of 8: 0 or 16 bytes are left; take 16 with X registers.
		emit("\tCMPQ CX, $16")
		emit("\tJB done")
		h.bf16("X", bk[0], 0, false)
	}
	emit("done:")
	emit("\tVZEROUPPER")
	emit("\tRET")
	emit("")
}

func main() {
	outFile := flag.String("o", "../kernels_amd64.s", "output file (- for stdout)")
	flag.Parse()

	emit("// Code generated by _asm/gen.go; DO NOT EDIT.")
	emit("")
	emit("//go:build amd64 && !purego")
	emit("")
	emit("#include \"textflag.h\"")
	emit("")
	for _, path := range []string{"AVX512", "AVX2"} {
		for _, ty := range numeric {
			for _, op := range ty.ops {
				genNumeric(path, ty, op)
			}
		}
		for _, dt := range []string{"BF16", "F16"} {
			for _, op := range []string{"Sum", "Prod", "Min", "Max"} {
				genHalf(path, dt, op)
			}
		}
	}

	text := strings.Join(out, "\n") + "\n"
	if *outFile == "-" {
		os.Stdout.WriteString(text)
		return
	}
	if err := os.WriteFile(*outFile, []byte(text), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

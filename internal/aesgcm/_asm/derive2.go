package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// deriveGCMVAES2: two independent derivations (deriveGCMVAES with an
// AES-256 KDF key) in one call, their instruction streams interleaved
// line by line (written to ../vaes_amd64.s).
//
// One derivation is a chain of dependent steps (KDF rounds, key-schedule
// steps, GHASH multiplication depths) that leaves the AES and carry-less
// multiply units idle most of the time, and it is too long for the
// out-of-order window to start the next one early on its own. Two
// derivations side by side fill those gaps. The second stream is the
// first with every vector register n renamed n+16 (EVEX encodings where
// the first uses VEX-only instructions) and its own pointers in R8-R11.
func genDerive2VAES() {
	buf.WriteString("\n// func deriveGCMVAES2(mrk *[60]uint32, hi, lo uint64, rk *[60]uint32, htab *[32]uint64, mask *[12]byte, mrk2 *[60]uint32, hi2, lo2 uint64, rk2 *[60]uint32, htab2 *[32]uint64, mask2 *[12]byte)\n")
	buf.WriteString("TEXT ·deriveGCMVAES2(SB), NOSPLIT, $0-96\n")
	o("MOVQ mrk+0(FP), AX")
	o("MOVQ rk+24(FP), BX")
	o("MOVQ htab+32(FP), DI")
	o("MOVQ mask+40(FP), DX")
	o("MOVQ mrk2+48(FP), R8")
	o("MOVQ rk2+72(FP), R9")
	o("MOVQ htab2+80(FP), R10")
	o("MOVQ mask2+88(FP), R11")
	// Generate one stream into a scratch buffer.
	saved := buf
	buf = bytes.Buffer{}
	kdfBlocks14("hi+8(FP)", "lo+16(FP)")
	keySchedule(nil)
	powers()
	a := buf.String()
	buf = saved
	b := strings.ReplaceAll(strings.ReplaceAll(a, "hi+8(FP)", "hi2+56(FP)"), "lo+16(FP)", "lo2+64(FP)")
	b = renameStream(b)
	al, bl := instrLines(a), instrLines(b)
	if len(al) != len(bl) {
		panic("derive2: streams differ in length")
	}
	for i := range al {
		buf.WriteString(al[i])
		buf.WriteString(bl[i])
	}
	o("VZEROUPPER")
	o("RET")
}

// kdfBlocks14 is kdfBlocks for an AES-256 KDF key, without the branch,
// and without VPINSRQ and VPEXTRD: their EVEX forms (which the renamed
// stream needs) require AVX512DQ, which the VAES512 path does not check
// for; VMOVQ, VPUNPCKLQDQ, VPSHUFD and VMOVD need only AVX512F.
func kdfBlocks14(hi, lo string) {
	o("VMOVQ %s, X4", hi)
	o("VMOVQ %s, X5", lo)
	o("VPUNPCKLQDQ X5, X4, X4")
	o("VPSHUFB bswapq<>(SB), X4, X4")
	for i := 0; i < 3; i++ {
		o("VMOVDQU kdfctr<>+%d(SB), X%d", 16*i, i)
		o("VPTERNLOGD $0x96, (AX), X4, X%d", i)
	}
	for r := 1; r <= 13; r++ {
		for i := 0; i < 3; i++ {
			o("VAESENC %d(AX), X%d, X%d", 16*r, i, i)
		}
	}
	o("VMOVDQU 224(AX), X5")
	for i := 0; i < 3; i++ {
		o("VAESENCLAST X5, X%d, X%d", i, i)
	}
	o("VMOVQ X2, (DX)")
	o("VPSHUFD $2, X2, X3")
	o("VMOVD X3, 8(DX)")
}

var (
	vecReg  = regexp.MustCompile(`\b([XYZ])([0-9]+)\b`)
	gprMem  = regexp.MustCompile(`\((AX|BX|DI|DX)\)`)
	gprName = map[string]string{"AX": "R8", "BX": "R9", "DI": "R10", "DX": "R11"}
	// VEX-only instructions and their EVEX equivalents.
	evex = map[string]string{"VPXOR": "VPXORD", "VPAND": "VPANDD", "VMOVDQU": "VMOVDQU64", "VINSERTI128": "VINSERTI32X4"}
)

func renameStream(s string) string {
	var out strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && !strings.HasPrefix(f[0], "//") {
			if e, ok := evex[f[0]]; ok {
				line = strings.Replace(line, f[0], e, 1)
			}
		}
		line = vecReg.ReplaceAllStringFunc(line, func(m string) string {
			var k byte
			var n int
			fmt.Sscanf(m, "%c%d", &k, &n)
			return fmt.Sprintf("%c%d", k, n+16)
		})
		line = gprMem.ReplaceAllStringFunc(line, func(m string) string {
			return "(" + gprName[m[1:len(m)-1]] + ")"
		})
		out.WriteString(line)
	}
	return out.String()
}

// instrLines splits a stream into instruction lines (comments dropped).
func instrLines(s string) []string {
	var ls []string
	for _, line := range strings.SplitAfter(s, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "//") {
			continue
		}
		if strings.HasSuffix(t, ":") {
			panic("derive2: labels cannot be interleaved: " + t)
		}
		ls = append(ls, line)
	}
	return ls
}

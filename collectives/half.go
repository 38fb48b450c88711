package collectives

import "math"

// Conversions between float32 and the 16-bit float formats. Narrowing
// rounds to nearest, ties to even; values beyond the format's range become
// ±Inf; subnormals are produced and read exactly; a NaN stays a NaN with its
// sign and top payload bits, made quiet (as the F16C and AVX512-BF16
// instructions do).

// BFloat16FromFloat32 rounds f to the nearest bfloat16 (ties to even).
func BFloat16FromFloat32(f float32) BFloat16 { return BFloat16(f32ToBF16(f)) }

// Float32 returns b exactly as a float32.
func (b BFloat16) Float32() float32 { return bf16ToF32(uint16(b)) }

// Float16FromFloat32 rounds f to the nearest float16 (ties to even).
func Float16FromFloat32(f float32) Float16 { return Float16(f32ToF16(f)) }

// Float32 returns h exactly as a float32.
func (h Float16) Float32() float32 { return f16ToF32(uint16(h)) }

func bf16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

func f32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep sign and top payload, quiet
		return uint16(u>>16) | 0x0040
	}
	// Round to nearest even on bit 16; a carry into the exponent is the
	// correct result (up to and including overflow to Inf).
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// f16Decode maps every float16 to its float32 value (256 KiB), so that
// widening is one load; built at init from f16ToF32Slow.
var f16Decode = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Slow(uint16(i))
	}
	return &t
}()

func f16ToF32(h uint16) float32 { return f16Decode[h] }

// f32ToF16 takes the fast path for results in the normal range (the
// kernels repeat it inline) and calls the general version for the rest.
func f32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	if a := u & 0x7fffffff; a-113<<23 < (143-113)<<23 { // result normal, or Inf by rounding
		a -= (127 - 15) << 23
		a += 0xfff + (a>>13)&1
		return uint16(u>>16)&0x8000 | uint16(a>>13)
	}
	return f32ToF16Slow(f)
}

func f16ToF32Slow(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff)
	if em >= 0x7c00 { // Inf or NaN
		m := (em & 0x3ff) << 13
		if m != 0 {
			m |= 0x400000 // quiet NaN
		}
		return math.Float32frombits(sign | 0x7f800000 | m)
	}
	// Place exponent and mantissa in float32 position and rescale by
	// 2^(127-15): exact for normals and for subnormals (which are read as
	// float32 subnormals and become normal).
	f := math.Float32frombits(em<<13) * 0x1p112
	return math.Float32frombits(math.Float32bits(f) | sign)
}

func f32ToF16Slow(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	u &= 0x7fffffff
	switch {
	case u >= 143<<23: // ≥ 65536, Inf or NaN
		if u > 0x7f800000 {
			return sign | 0x7e00 | uint16(u>>13)&0x3ff
		}
		return sign | 0x7c00
	case u < 113<<23: // below 2^-14: subnormal or zero in float16
		// Adding 0.5 aligns the value to the float16 subnormal ulp (2^-24)
		// and lets the FPU round to nearest even.
		v := math.Float32frombits(u) + 0.5
		return sign | uint16(math.Float32bits(v)-0x3f000000)
	default:
		// Rebias the exponent, round to nearest even on bit 13; a carry
		// into the exponent is correct (65520 and up become Inf).
		u -= (127 - 15) << 23
		u += 0xfff + (u>>13)&1
		return sign | uint16(u>>13)
	}
}

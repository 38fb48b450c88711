// The kernels below follow one template (8-way unrolled numeric, 4-way
// unrolled 16-bit float); keep new ones uniform with it.

package collectives

import "math"

// Portable reduction kernels. Go does not auto-vectorise, so these are
// unrolled by 8 (numeric) or 4 (16-bit floats) over array-pointer views,
// which removes the bounds checks from the unrolled body; the assembly seam
// is in kernels.go.

// number is the element types reduced natively.
type number interface {
	~float32 | ~float64 | ~int32 | ~int64 | ~uint8
}

func sumKernel[T number](d, s []T) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 8; i += 8 {
		a := (*[8]T)(d[i:])
		b := (*[8]T)(s[i:])
		a[0] += b[0]
		a[1] += b[1]
		a[2] += b[2]
		a[3] += b[3]
		a[4] += b[4]
		a[5] += b[5]
		a[6] += b[6]
		a[7] += b[7]
	}
	for ; i < len(d); i++ {
		d[i] += s[i]
	}
}

func prodKernel[T number](d, s []T) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 8; i += 8 {
		a := (*[8]T)(d[i:])
		b := (*[8]T)(s[i:])
		a[0] *= b[0]
		a[1] *= b[1]
		a[2] *= b[2]
		a[3] *= b[3]
		a[4] *= b[4]
		a[5] *= b[5]
		a[6] *= b[6]
		a[7] *= b[7]
	}
	for ; i < len(d); i++ {
		d[i] *= s[i]
	}
}

func minKernel[T number](d, s []T) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 8; i += 8 {
		a := (*[8]T)(d[i:])
		b := (*[8]T)(s[i:])
		a[0] = min(a[0], b[0])
		a[1] = min(a[1], b[1])
		a[2] = min(a[2], b[2])
		a[3] = min(a[3], b[3])
		a[4] = min(a[4], b[4])
		a[5] = min(a[5], b[5])
		a[6] = min(a[6], b[6])
		a[7] = min(a[7], b[7])
	}
	for ; i < len(d); i++ {
		d[i] = min(d[i], s[i])
	}
}

func maxKernel[T number](d, s []T) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 8; i += 8 {
		a := (*[8]T)(d[i:])
		b := (*[8]T)(s[i:])
		a[0] = max(a[0], b[0])
		a[1] = max(a[1], b[1])
		a[2] = max(a[2], b[2])
		a[3] = max(a[3], b[3])
		a[4] = max(a[4], b[4])
		a[5] = max(a[5], b[5])
		a[6] = max(a[6], b[6])
		a[7] = max(a[7], b[7])
	}
	for ; i < len(d); i++ {
		d[i] = max(d[i], s[i])
	}
}

func sumBF16(d, s []uint16) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 4; i += 4 {
		a := (*[4]uint16)(d[i:])
		b := (*[4]uint16)(s[i:])
		a[0] = f32ToBF16(bf16ToF32(a[0]) + bf16ToF32(b[0]))
		a[1] = f32ToBF16(bf16ToF32(a[1]) + bf16ToF32(b[1]))
		a[2] = f32ToBF16(bf16ToF32(a[2]) + bf16ToF32(b[2]))
		a[3] = f32ToBF16(bf16ToF32(a[3]) + bf16ToF32(b[3]))
	}
	for ; i < len(d); i++ {
		d[i] = f32ToBF16(bf16ToF32(d[i]) + bf16ToF32(s[i]))
	}
}

func prodBF16(d, s []uint16) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 4; i += 4 {
		a := (*[4]uint16)(d[i:])
		b := (*[4]uint16)(s[i:])
		a[0] = f32ToBF16(bf16ToF32(a[0]) * bf16ToF32(b[0]))
		a[1] = f32ToBF16(bf16ToF32(a[1]) * bf16ToF32(b[1]))
		a[2] = f32ToBF16(bf16ToF32(a[2]) * bf16ToF32(b[2]))
		a[3] = f32ToBF16(bf16ToF32(a[3]) * bf16ToF32(b[3]))
	}
	for ; i < len(d); i++ {
		d[i] = f32ToBF16(bf16ToF32(d[i]) * bf16ToF32(s[i]))
	}
}

func sumF16(d, s []uint16) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 4; i += 4 {
		a := (*[4]uint16)(d[i:])
		b := (*[4]uint16)(s[i:])
		{
			z := f16Decode[a[0]] + f16Decode[b[0]]
			if u, v := narrowF16Fast(z); v {
				a[0] = u
			} else {
				a[0] = f32ToF16Slow(z)
			}
		}
		{
			z := f16Decode[a[1]] + f16Decode[b[1]]
			if u, v := narrowF16Fast(z); v {
				a[1] = u
			} else {
				a[1] = f32ToF16Slow(z)
			}
		}
		{
			z := f16Decode[a[2]] + f16Decode[b[2]]
			if u, v := narrowF16Fast(z); v {
				a[2] = u
			} else {
				a[2] = f32ToF16Slow(z)
			}
		}
		{
			z := f16Decode[a[3]] + f16Decode[b[3]]
			if u, v := narrowF16Fast(z); v {
				a[3] = u
			} else {
				a[3] = f32ToF16Slow(z)
			}
		}
	}
	for ; i < len(d); i++ {
		z := f16Decode[d[i]] + f16Decode[s[i]]
		if u, v := narrowF16Fast(z); v {
			d[i] = u
		} else {
			d[i] = f32ToF16Slow(z)
		}
	}
}

func prodF16(d, s []uint16) {
	s = s[:len(d)]
	i := 0
	for ; len(d)-i >= 4; i += 4 {
		a := (*[4]uint16)(d[i:])
		b := (*[4]uint16)(s[i:])
		{
			z := f16Decode[a[0]] * f16Decode[b[0]]
			if u, v := narrowF16Fast(z); v {
				a[0] = u
			} else {
				a[0] = f32ToF16Slow(z)
			}
		}
		{
			z := f16Decode[a[1]] * f16Decode[b[1]]
			if u, v := narrowF16Fast(z); v {
				a[1] = u
			} else {
				a[1] = f32ToF16Slow(z)
			}
		}
		{
			z := f16Decode[a[2]] * f16Decode[b[2]]
			if u, v := narrowF16Fast(z); v {
				a[2] = u
			} else {
				a[2] = f32ToF16Slow(z)
			}
		}
		{
			z := f16Decode[a[3]] * f16Decode[b[3]]
			if u, v := narrowF16Fast(z); v {
				a[3] = u
			} else {
				a[3] = f32ToF16Slow(z)
			}
		}
	}
	for ; i < len(d); i++ {
		z := f16Decode[d[i]] * f16Decode[s[i]]
		if u, v := narrowF16Fast(z); v {
			d[i] = u
		} else {
			d[i] = f32ToF16Slow(z)
		}
	}
}

// narrowF16Fast rounds z to float16 when the result is normal (or Inf by
// rounding), reporting false otherwise (subnormal, zero, NaN, huge).
func narrowF16Fast(z float32) (uint16, bool) {
	u := math.Float32bits(z)
	a := u & 0x7fffffff
	a -= (127 - 15) << 23
	a += 0xfff + (a>>13)&1
	return uint16(u>>16)&0x8000 | uint16(a>>13), (u&0x7fffffff)-113<<23 < (143-113)<<23
}

// Min and max of 16-bit floats select one operand's bits (the result is
// exact, so no rounding is needed): compare as float32, prefer -0 for min
// and +0 for max as Go's min/max do, and return a NaN operand made quiet.
// Written as conditional assignments so that the compiler emits CMOVs, not
// branches that random data would mispredict.

func minBF16(d, s []uint16) {
	s = s[:len(d)]
	for i := range d {
		a, b := d[i], s[i]
		x, y := bf16ToF32(a), bf16ToF32(b)
		r := a
		if y < x {
			r = b
		}
		if x == y {
			r = a | b
		}
		if y != y {
			r = b | 0x0040
		}
		if x != x {
			r = a | 0x0040
		}
		d[i] = r
	}
}

func maxBF16(d, s []uint16) {
	s = s[:len(d)]
	for i := range d {
		a, b := d[i], s[i]
		x, y := bf16ToF32(a), bf16ToF32(b)
		r := a
		if y > x {
			r = b
		}
		if x == y {
			r = a & b
		}
		if y != y {
			r = b | 0x0040
		}
		if x != x {
			r = a | 0x0040
		}
		d[i] = r
	}
}

func minF16(d, s []uint16) {
	s = s[:len(d)]
	for i := range d {
		a, b := d[i], s[i]
		x, y := f16Decode[a], f16Decode[b]
		r := a
		if y < x {
			r = b
		}
		if x == y {
			r = a | b
		}
		if y != y {
			r = b | 0x0200
		}
		if x != x {
			r = a | 0x0200
		}
		d[i] = r
	}
}

func maxF16(d, s []uint16) {
	s = s[:len(d)]
	for i := range d {
		a, b := d[i], s[i]
		x, y := f16Decode[a], f16Decode[b]
		r := a
		if y > x {
			r = b
		}
		if x == y {
			r = a & b
		}
		if y != y {
			r = b | 0x0200
		}
		if x != x {
			r = a | 0x0200
		}
		d[i] = r
	}
}

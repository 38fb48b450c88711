package collectives

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refF16Value decodes a float16 with math.Ldexp (independent of f16ToF32).
func refF16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10&0x1f), float64(h&0x3ff)
	switch e {
	case 0:
		return sign * math.Ldexp(m, -24)
	case 0x1f:
		if m == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+m/1024, e-15)
}

// refNearest rounds |v| (finite) to the nearest of the ascending positive
// codes 0..maxCode of a format, ties to even, where value(maxCode+1) is the
// overflow threshold's infinity code value.
func refNearest(v float64, value func(uint16) float64, inf uint16) uint16 {
	lo, hi := 0, int(inf) // value(inf) treated as the next step after max
	for lo < hi {         // largest code with value ≤ v
		mid := (lo + hi + 1) / 2
		if value(uint16(mid)) <= v {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	c := uint16(lo)
	if c == inf {
		return inf
	}
	dl, du := v-value(c), value(c+1)-v
	switch {
	case dl < du:
		return c
	case du < dl:
		return c + 1
	case c&1 == 0:
		return c
	}
	return c + 1
}

func refF32ToF16(f float32) uint16 {
	v := float64(f)
	sign := uint16(0)
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	if math.IsInf(v, 0) {
		return sign | 0x7c00
	}
	val := func(c uint16) float64 {
		if c == 0x7c00 {
			return 65536 // the next step after 65504: ties at 65520 go to Inf
		}
		return refF16Value(c)
	}
	return sign | refNearest(v, val, 0x7c00)
}

func refF32ToBF16(f float32) uint16 {
	v := float64(f)
	sign := uint16(0)
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	if math.IsInf(v, 0) {
		return sign | 0x7f80
	}
	val := func(c uint16) float64 {
		if c == 0x7f80 {
			return math.Ldexp(1, 128)
		}
		return float64(math.Float32frombits(uint32(c) << 16))
	}
	return sign | refNearest(v, val, 0x7f80)
}

func isNaN16(h uint16) bool   { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
func isNaNBF16(b uint16) bool { return b&0x7f80 == 0x7f80 && b&0x7f != 0 }

func TestFloat16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := f16ToF32(h)
		back := f32ToF16(f)
		if isNaN16(h) {
			if !math.IsNaN(float64(f)) || back != h|0x200 {
				t.Fatalf("NaN %#04x -> %v -> %#04x, want NaN and %#04x", h, f, back, h|0x200)
			}
			continue
		}
		if ref := refF16Value(h); float64(f) != ref || math.Signbit(float64(f)) != math.Signbit(ref) {
			t.Fatalf("f16ToF32(%#04x) = %v, want %v", h, f, ref)
		}
		if back != h {
			t.Fatalf("round trip %#04x -> %v -> %#04x", h, f, back)
		}
	}
}

func TestBFloat16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		b := uint16(i)
		f := bf16ToF32(b)
		back := f32ToBF16(f)
		if isNaNBF16(b) {
			if !math.IsNaN(float64(f)) || back != b|0x40 {
				t.Fatalf("NaN %#04x -> %#04x", b, back)
			}
			continue
		}
		if math.Float32bits(f) != uint32(b)<<16 || back != b {
			t.Fatalf("round trip %#04x -> %v -> %#04x", b, f, back)
		}
	}
}

// TestNarrowingRounding checks float32 → 16-bit rounding against the
// reference at every midpoint between neighbouring 16-bit values, one ulp
// either side of it, and random float32 bit patterns.
func TestNarrowingRounding(t *testing.T) {
	check := func(f float32) {
		if math.IsNaN(float64(f)) {
			return
		}
		if got, want := f32ToF16(f), refF32ToF16(f); got != want {
			t.Fatalf("f32ToF16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
		if got, want := f32ToBF16(f), refF32ToBF16(f); got != want {
			t.Fatalf("f32ToBF16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	near := func(f float32) {
		check(f)
		check(math.Nextafter32(f, float32(math.Inf(1))))
		check(math.Nextafter32(f, float32(math.Inf(-1))))
		check(-f)
	}
	for h := uint16(0); h < 0x7c00; h++ {
		lo, hi := refF16Value(h), refF16Value(h+1)
		if h+1 == 0x7c00 {
			hi = 65536
		}
		near(float32(lo))
		near(float32((lo + hi) / 2)) // exact in float32
	}
	for b := uint32(0); b < 0x7f80; b++ {
		lo := math.Float32frombits(b << 16)
		near(lo)
		near(math.Float32frombits(b<<16 | 0x8000)) // midpoint
	}
	rng := rand.New(rand.NewPCG(3, 4))
	iters := 1 << 20
	if raceEnabled {
		iters = 1 << 16
	}
	for range iters {
		check(math.Float32frombits(rng.Uint32()))
	}
}

func TestHalfKnownValues(t *testing.T) {
	f16 := []struct {
		f float32
		h uint16
	}{
		{0, 0}, {float32(math.Copysign(0, -1)), 0x8000}, {1, 0x3c00}, {-2, 0xc000}, {0.5, 0x3800},
		{65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7c00}, {1e6, 0x7c00}, {float32(math.Inf(-1)), 0xfc00},
		{0x1p-14, 0x0400}, {0x1p-24, 0x0001}, {0x1p-25, 0x0000}, {0x1.8p-25, 0x0001}, {0x1.8p-24, 0x0002},
		{0.1, 0x2e66}, {1.0 / 3, 0x3555}, {3.140625, 0x4248}, {2049, 0x6800}, {2051, 0x6802},
	}
	for _, c := range f16 {
		if got := Float16FromFloat32(c.f); uint16(got) != c.h {
			t.Errorf("Float16FromFloat32(%g) = %#04x, want %#04x", c.f, uint16(got), c.h)
		}
	}
	bf := []struct {
		f float32
		b uint16
	}{
		{0, 0}, {1, 0x3f80}, {-2, 0xc000}, {3.14159265, 0x4049}, {0.1, 0x3dcd},
		{math.MaxFloat32, 0x7f80}, {float32(math.Inf(1)), 0x7f80}, {0x1p-133, 0x0001}, // smallest subnormal
		{math.Float32frombits(0x3f808000), 0x3f80}, {math.Float32frombits(0x3f818000), 0x3f82}, // ties to even
	}
	for _, c := range bf {
		if got := BFloat16FromFloat32(c.f); uint16(got) != c.b {
			t.Errorf("BFloat16FromFloat32(%g) = %#04x, want %#04x", c.f, uint16(got), c.b)
		}
	}
	if !math.IsNaN(float64(Float16(0x7e00).Float32())) || !math.IsNaN(float64(BFloat16(0x7fc0).Float32())) {
		t.Error("NaN not decoded as NaN")
	}
	nan := float32(math.NaN())
	if !isNaN16(uint16(Float16FromFloat32(nan))) || !isNaNBF16(uint16(BFloat16FromFloat32(nan))) {
		t.Error("NaN not encoded as NaN")
	}
	// A NaN whose payload sits only in the low bits stays a NaN.
	low := math.Float32frombits(0x7f800001)
	if !isNaN16(f32ToF16(low)) || !isNaNBF16(f32ToBF16(low)) {
		t.Error("low-payload NaN narrowed to Inf")
	}
}

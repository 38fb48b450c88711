package collectives

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func scalarNum[T number](a, b T, op Op) T {
	switch op {
	case Sum:
		return a + b
	case Prod:
		return a * b
	case Min:
		return min(a, b)
	}
	return max(a, b)
}

func scalarHalf(a, b uint16, op Op, to func(uint16) float32, from func(float32) uint16) uint16 {
	x, y := to(a), to(b)
	var z float32
	switch op {
	case Sum:
		z = x + y
	case Prod:
		z = x * y
	case Min:
		z = min(x, y)
	default:
		z = max(x, y)
	}
	return from(z)
}

// scalarRef is the one-element-at-a-time reference for kernel (dt, op).
func scalarRef(dt DataType, op Op, d, s []byte) {
	switch dt {
	case Float32:
		scalarLoop(asType[float32](d), asType[float32](s), op)
	case Float64:
		scalarLoop(asType[float64](d), asType[float64](s), op)
	case Int32:
		scalarLoop(asType[int32](d), asType[int32](s), op)
	case Int64:
		scalarLoop(asType[int64](d), asType[int64](s), op)
	case Uint8:
		scalarLoop(d, s, op)
	case BF16, F16:
		to, from := bf16ToF32, f32ToBF16
		if dt == F16 {
			to, from = f16ToF32, f32ToF16
		}
		dd, ss := asType[uint16](d), asType[uint16](s)
		if dt == BF16 {
			halfLoopBF16(dd, ss, op)
			return
		}
		for i := range dd {
			dd[i] = scalarHalf(dd[i], ss[i], op, to, from)
		}
	}
}

// scalarLoop is the plain loop a kernel is measured against: op chosen
// once, one element per iteration.
func scalarLoop[T number](d, s []T, op Op) {
	s = s[:len(d)]
	switch op {
	case Sum:
		for i := range d {
			d[i] += s[i]
		}
	case Prod:
		for i := range d {
			d[i] *= s[i]
		}
	case Min:
		for i := range d {
			d[i] = min(d[i], s[i])
		}
	case Max:
		for i := range d {
			d[i] = max(d[i], s[i])
		}
	}
}

func halfLoopBF16(d, s []uint16, op Op) {
	s = s[:len(d)]
	for i := range d {
		switch op {
		case Sum:
			d[i] = f32ToBF16(bf16ToF32(d[i]) + bf16ToF32(s[i]))
		case Prod:
			d[i] = f32ToBF16(bf16ToF32(d[i]) * bf16ToF32(s[i]))
		case Min:
			d[i] = f32ToBF16(min(bf16ToF32(d[i]), bf16ToF32(s[i])))
		case Max:
			d[i] = f32ToBF16(max(bf16ToF32(d[i]), bf16ToF32(s[i])))
		}
	}
}

// randomElems fills b with random elements of dt, including (for floats)
// zeros of both signs, infinities, NaNs, subnormals and extremes.
func randomElems(rng *rand.Rand, dt DataType, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if !isFloat(dt) || rng.IntN(2) == 0 {
		return
	}
	switch dt {
	case Float32:
		sp := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-45, math.MaxFloat32, 1, -1}
		v := asType[float32](b)
		for i := range v {
			if rng.IntN(3) == 0 {
				v[i] = sp[rng.IntN(len(sp))]
			}
		}
	case Float64:
		sp := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), 5e-324, math.MaxFloat64, 1, -1}
		v := asType[float64](b)
		for i := range v {
			if rng.IntN(3) == 0 {
				v[i] = sp[rng.IntN(len(sp))]
			}
		}
	case BF16, F16:
		sp := []uint16{0, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x7bff, 0x3c00, 0x7f80, 0xff80, 0x7fc0, 0x7f7f, 0x3f80}
		v := asType[uint16](b)
		for i := range v {
			if rng.IntN(3) == 0 {
				v[i] = sp[rng.IntN(len(sp))]
			}
		}
	}
}

// equalElems compares element-wise; two NaNs are equal.
func equalElems(dt DataType, a, b []byte) int {
	es := dt.Size()
	for i := 0; i < len(a); i += es {
		x, y := a[i:i+es], b[i:i+es]
		if string(x) == string(y) {
			continue
		}
		switch dt {
		case Float32:
			if math.IsNaN(float64(asType[float32](x)[0])) && math.IsNaN(float64(asType[float32](y)[0])) {
				continue
			}
		case Float64:
			if math.IsNaN(asType[float64](x)[0]) && math.IsNaN(asType[float64](y)[0]) {
				continue
			}
		case BF16:
			if isNaNBF16(asType[uint16](x)[0]) && isNaNBF16(asType[uint16](y)[0]) {
				continue
			}
		case F16:
			if isNaN16(asType[uint16](x)[0]) && isNaN16(asType[uint16](y)[0]) {
				continue
			}
		}
		return i / es
	}
	return -1
}

// TestKernels checks every kernel of the table in use (and the generic
// one) against the scalar reference for lengths around the unrolling, at
// offsets, without touching memory outside dst.
func TestKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, dt := range DataTypes() {
		for _, op := range Ops() {
			for _, table := range []*kernelTable{&kernels, &genericTable} {
				k := table[dt][op]
				es := dt.Size()
				for n := 0; n <= 70; n++ {
					for _, skip := range []int{0, 1, 3} {
						buf := make([]byte, (n+skip+4)*es)
						src := make([]byte, (n+skip+4)*es)
						randomElems(rng, dt, buf)
						randomElems(rng, dt, src)
						want := append([]byte(nil), buf...)
						d := buf[skip*es : (skip+n)*es]
						s := src[skip*es:]
						k(d, s)
						scalarRef(dt, op, want[skip*es:(skip+n)*es], s)
						if i := equalElems(dt, buf, want); i >= 0 {
							t.Fatalf("%v/%v n=%d skip=%d: element %d differs (outside dst: %v)", dt, op, n, skip, i-skip, i < skip || i >= skip+n)
						}
					}
				}
			}
		}
	}
}

// TestHalfKernelRoundsOnce: a bf16 sum is the float32 sum rounded once.
func TestHalfKernelRoundsOnce(t *testing.T) {
	d := []BFloat16{BFloat16FromFloat32(1)}
	s := []BFloat16{BFloat16(0x3b80)} // 2^-8: half an ulp of 1 in bf16
	kernels[BF16][Sum](asBytes(d), asBytes(s))
	if d[0] != 0x3f80 { // tie → even (1.0)
		t.Fatalf("1 + 2^-8 = %#04x, want 0x3f80", uint16(d[0]))
	}
	h := []Float16{Float16FromFloat32(2048)}
	kernels[F16][Sum](asBytes(h), asBytes([]Float16{Float16FromFloat32(3)}))
	if h[0].Float32() != 2052 { // 2051 is a tie between 2050 and 2052 → 2052 (even)
		t.Fatalf("2048+3 = %v", h[0].Float32())
	}
}

// Kernel benchmarks, BenchmarkKernel/<type>/<op>/<path>: path is each
// implementation this machine supports (generic, avx2, avx512) and
// "scalar", the one-element-per-iteration Go loop. GB/s counts the bytes of
// dst (elements reduced × element size), as a bandwidth of the reduced
// vector. SEALRING_KERNELS does not affect the paths measured here.
func BenchmarkKernel(b *testing.B) {
	const elems = 64 << 10 // fits in L2 with its source: measures compute, not DRAM
	for _, dt := range DataTypes() {
		for _, op := range Ops() {
			d := make([]byte, elems*dt.Size())
			s := make([]byte, elems*dt.Size())
			rng := rand.New(rand.NewPCG(1, 1))
			randomElems(rng, dt, s)
			reset := func() {
				clear(d)
				if isFloat(dt) && op == Prod {
					fillOnes(dt, d)
					fillOnes(dt, s)
				}
			}
			paths := allKernelPaths()
			paths = append(paths, kernelPath{name: "scalar"})
			for _, p := range paths {
				k := p.table[dt][op]
				if p.name == "scalar" {
					k = func(d, s []byte) { scalarRef(dt, op, d, s) }
				}
				b.Run(fmt.Sprintf("%v/%v/%s", dt, op, p.name), func(b *testing.B) {
					reset()
					b.SetBytes(int64(len(d)))
					for b.Loop() {
						k(d, s)
					}
				})
			}
		}
	}
}

func fillOnes(dt DataType, b []byte) {
	switch dt {
	case Float32:
		for i := range asType[float32](b) {
			asType[float32](b)[i] = 1
		}
	case Float64:
		for i := range asType[float64](b) {
			asType[float64](b)[i] = 1
		}
	case BF16:
		for i := range asType[uint16](b) {
			asType[uint16](b)[i] = 0x3f80
		}
	case F16:
		for i := range asType[uint16](b) {
			asType[uint16](b)[i] = 0x3c00
		}
	}
}

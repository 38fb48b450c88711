package collectives

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// Differential tests: every kernel of every implementation this machine
// supports (generic, avx2, avx512) against the generic kernel, bit for bit.

// allKernelPaths is the generic table followed by the architecture paths.
func allKernelPaths() []kernelPath {
	return append([]kernelPath{{"generic", genericTable}}, archPaths...)
}

// isNaNElem reports whether element i of b (type dt) is a NaN.
func isNaNElem(dt DataType, b []byte, i int) bool {
	switch dt {
	case Float32:
		return math.IsNaN(float64(asType[float32](b)[i]))
	case Float64:
		return math.IsNaN(asType[float64](b)[i])
	case BF16:
		return isNaNBF16(asType[uint16](b)[i])
	case F16:
		return isNaN16(asType[uint16](b)[i])
	}
	return false
}

// firstMismatch compares got with want bit for bit, except that a float sum
// or product of two NaNs may carry either payload (the generic Go code
// itself is inconsistent there) — it must still be a NaN. d0 and s0 are the
// inputs. It returns the first differing element or -1.
func firstMismatch(dt DataType, op Op, got, want, d0, s0 []byte) int {
	es := dt.Size()
	for i := 0; i+es <= len(got); i += es {
		if string(got[i:i+es]) == string(want[i:i+es]) {
			continue
		}
		e := i / es
		if isFloat(dt) && (op == Sum || op == Prod) && isNaNElem(dt, d0, e) && isNaNElem(dt, s0, e) &&
			isNaNElem(dt, got, e) && isNaNElem(dt, want, e) {
			continue
		}
		return e
	}
	return -1
}

// specialBits are the interesting encodings per type; random data mixes
// them in.
func specialBits(dt DataType) []uint64 {
	switch dt {
	case Float32:
		return []uint64{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff812345,
			0x7fffffff, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x80800000, 0x7f7fffff, 0xff7fffff,
			0x3f800000, 0xbf800000, 0x3f800001, 0x7fa00000, 0x00400000}
	case Float64:
		return []uint64{0, 1 << 63, 0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, 0xfff8000000000000,
			0x7ff0000000000001, 0xfff0000012345678, 0x7fffffffffffffff, 1, 1<<63 | 1, 0x000fffffffffffff,
			0x0010000000000000, 0x7fefffffffffffff, 0xffefffffffffffff, 0x3ff0000000000000, 0xbff0000000000000}
	case Int32:
		return []uint64{0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 2, 0xfffffffe}
	case Int64:
		return []uint64{0, 1, math.MaxUint64, math.MaxInt64, 1 << 63, 2, 1 << 32, 0xffffffff}
	case Uint8:
		return []uint64{0, 1, 0x7f, 0x80, 0xff}
	case BF16:
		return []uint64{0, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xffc0, 0x7f81, 0xff81, 0x7fff, 0x0001, 0x8001, 0x007f,
			0x0080, 0x7f7f, 0xff7f, 0x3f80, 0xbf80, 0x3f81, 0x3b80, 0x4000, 0x7fa0}
	case F16:
		return []uint64{0, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7c01, 0xfc01, 0x7fff, 0x0001, 0x8001, 0x03ff,
			0x0400, 0x7bff, 0xfbff, 0x3c00, 0xbc00, 0x3c01, 0x1400, 0x7d00, 0x0200}
	}
	return nil
}

// fillSpecial fills b with random elements of dt, a third of them special.
func fillSpecial(rng *rand.Rand, dt DataType, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	sp := specialBits(dt)
	es := dt.Size()
	for i := 0; i+es <= len(b); i += es {
		if rng.IntN(3) != 0 {
			continue
		}
		v := sp[rng.IntN(len(sp))]
		if dt == Float32 || dt == Int32 || dt == BF16 || dt == F16 {
			// also nearby values: same exponent, random low bits
			if rng.IntN(4) == 0 {
				v ^= uint64(rng.IntN(4))
			}
		}
		for k := 0; k < es; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}

// checkKernel runs path's kernel and the generic one on copies of d and s
// (s must be at least as long as d) and reports a mismatch, also checking
// that src is unchanged.
func checkKernel(t *testing.T, p kernelPath, dt DataType, op Op, d, s []byte, what string) bool {
	t.Helper()
	d0 := append([]byte(nil), d...)
	s0 := append([]byte(nil), s...)
	want := append([]byte(nil), d...)
	genericTable[dt][op](want, s0)
	got := append([]byte(nil), d...)
	p.table[dt][op](got, s)
	if e := firstMismatch(dt, op, got, want, d0, s0); e >= 0 {
		es := dt.Size()
		t.Errorf("%v/%v/%s %s: element %d: dst %x src %x: got %x want %x", dt, op, p.name, what, e,
			d0[e*es:e*es+es], s0[e*es:e*es+es], got[e*es:e*es+es], want[e*es:e*es+es])
		return false
	}
	if string(s) != string(s0) {
		t.Errorf("%v/%v/%s %s: src modified", dt, op, p.name, what)
		return false
	}
	return true
}

func TestKernelPathsDifferential(t *testing.T) {
	t.Logf("paths: %v", pathNames())
	rng := rand.New(rand.NewPCG(11, 12))
	var lengths []int
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	// every tail length mod 64 on larger arrays, and a few long ones
	for r := 0; r < 64; r++ {
		lengths = append(lengths, 1024*(1+r%4)+r)
	}
	if !raceEnabled {
		lengths = append(lengths, 1<<15, 1<<15+1, 1<<15+31, 1<<15+63)
	}
	for _, p := range archPaths {
		for _, dt := range DataTypes() {
			es := dt.Size()
			for _, op := range Ops() {
				for _, n := range lengths {
					// dst sits inside a larger buffer at an element offset so that
					// writes past its end would be seen.
					skip := rng.IntN(4)
					buf := make([]byte, (n+skip+70)*es)
					src := make([]byte, (n+skip+70)*es)
					fillSpecial(rng, dt, buf)
					fillSpecial(rng, dt, src)
					orig := append([]byte(nil), buf...)
					d := buf[skip*es : (skip+n)*es]
					s := src[skip*es : (skip+n)*es]
					if !checkKernel(t, p, dt, op, d, s, fmt.Sprintf("n=%d", n)) {
						break
					}
					p.table[dt][op](d, s)
					if string(buf[:skip*es]) != string(orig[:skip*es]) || string(buf[(skip+n)*es:]) != string(orig[(skip+n)*es:]) {
						t.Errorf("%v/%v/%s n=%d: wrote outside dst", dt, op, p.name, n)
						break
					}
				}
			}
		}
	}
}

// TestKernelPathsHalfExhaustive pairs every 16-bit value with every special
// value (and a random partner) on both sides, for bfloat16 and float16.
func TestKernelPathsHalfExhaustive(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, p := range archPaths {
		for _, dt := range []DataType{BF16, F16} {
			sp := specialBits(dt)
			all := make([]uint16, 0, 1<<16)
			for v := 0; v < 1<<16; v++ {
				all = append(all, uint16(v))
			}
			var a, b []uint16
			for _, x := range sp {
				for _, v := range all {
					a = append(a, v, uint16(x))
					b = append(b, uint16(x), v)
				}
			}
			for _, v := range all {
				a = append(a, v)
				b = append(b, uint16(rng.Uint32()))
			}
			for _, op := range Ops() {
				checkKernel(t, p, dt, op, asBytes16(a), asBytes16(b), "exhaustive")
			}
		}
	}
}

// TestKernelPathsMinMaxZerosNaNs: every pair of special values, all ops,
// all types, in both orders.
func TestKernelPathsSpecialPairs(t *testing.T) {
	for _, p := range archPaths {
		for _, dt := range DataTypes() {
			sp := specialBits(dt)
			es := dt.Size()
			var d, s []byte
			for _, x := range sp {
				for _, y := range sp {
					for k := 0; k < es; k++ {
						d = append(d, byte(x>>(8*k)))
						s = append(s, byte(y>>(8*k)))
					}
				}
			}
			for _, op := range Ops() {
				checkKernel(t, p, dt, op, d, s, "special pairs")
			}
		}
	}
}

func asBytes16(v []uint16) []byte {
	if len(v) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 2*len(v))
}

func pathNames() []string {
	var n []string
	for _, p := range allKernelPaths() {
		n = append(n, p.name)
	}
	return n
}

// TestKernelTableInstalled: the table in use is the best supported path
// (or the generic one), entry for entry.
func TestKernelTableInstalled(t *testing.T) {
	if len(archPaths) == 0 {
		t.Skip("no architecture-specific kernels in this build")
	}
	d := make([]byte, 64)
	s := make([]byte, 64)
	for i := range s {
		s[i] = byte(i)
	}
	for _, dt := range DataTypes() {
		for _, op := range Ops() {
			if kernels[dt][op] == nil {
				t.Fatalf("%v/%v: nil kernel", dt, op)
			}
			kernels[dt][op](d, s) // must not panic
		}
	}
}

package collectives

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

const testTimeout = 20 * time.Second

func soak() bool { return os.Getenv("SEALRING_SOAK") == "1" }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// world makes n communicators over a fresh fakeNet.
func world(t testing.TB, n int, opts Options, setup func(*fakeNet)) ([]*Communicator, *fakeNet) {
	t.Helper()
	f := newFakeNet(n)
	if setup != nil {
		setup(f)
	}
	cs := make([]*Communicator, n)
	for r := range n {
		c, err := New(f.conn(r), r, n, opts)
		if err != nil {
			t.Fatal(err)
		}
		cs[r] = c
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return cs, f
}

// run calls fn on every rank concurrently and returns the errors.
func run(cs []*Communicator, fn func(r int, c *Communicator) error) []error {
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for r, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = fn(r, c)
		}()
	}
	wg.Wait()
	return errs
}

func mustRun(t testing.TB, cs []*Communicator, fn func(r int, c *Communicator) error) {
	t.Helper()
	for r, err := range run(cs, fn) {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// Element helpers (test only; slow is fine).

func fromF64[T Elem](v float64) T {
	var z T
	switch p := any(&z).(type) {
	case *float32:
		*p = float32(v)
	case *float64:
		*p = v
	case *int32:
		*p = int32(int64(v))
	case *int64:
		*p = int64(v)
	case *uint8:
		*p = uint8(int64(v))
	case *BFloat16:
		*p = BFloat16FromFloat32(float32(v))
	case *Float16:
		*p = Float16FromFloat32(float32(v))
	}
	return z
}

func toF64[T Elem](v T) float64 {
	switch x := any(v).(type) {
	case float32:
		return float64(x)
	case float64:
		return x
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint8:
		return float64(x)
	case BFloat16:
		return float64(x.Float32())
	case Float16:
		return float64(x.Float32())
	}
	panic("unreachable")
}

func isFloat(dt DataType) bool { return dt == Float32 || dt == Float64 || dt == BF16 || dt == F16 }

// unitRoundoff of the type's arithmetic (floats only).
func unitRoundoff(dt DataType) float64 {
	switch dt {
	case Float32:
		return 0x1p-24
	case Float64:
		return 0x1p-53
	case BF16:
		return 0x1p-8
	case F16:
		return 0x1p-11
	}
	return 0
}

// genInput returns rank's deterministic input of count elements for op.
func genInput[T Elem](seed uint64, rank, count int, op Op) []T {
	rng := rand.New(rand.NewPCG(seed, uint64(rank)*7919+1))
	dt := TypeOf[T]()
	out := make([]T, count)
	for i := range out {
		var v float64
		switch {
		case isFloat(dt) && op == Prod:
			v = 0.5 + 1.5*rng.Float64() // keep products in range
		case isFloat(dt):
			v = 2*rng.Float64() - 1
			if dt == Float32 || dt == Float64 {
				v *= 1000
			}
		case dt == Uint8:
			v = float64(rng.IntN(256))
		case dt == Int32:
			v = float64(int32(rng.Uint32()))
		case dt == Int64 && op == Prod:
			v = float64(rng.IntN(1<<20) - 1<<19)
		default:
			v = float64(rng.Int64N(1<<52) - 1<<51)
		}
		out[i] = fromF64[T](v)
		if dt == Int64 && op != Prod {
			out[i] = any(int64(rng.Uint64())).(T)
		}
	}
	return out
}

// refReduce reduces inputs exactly in T for integer types and min/max, and
// in float64 for float sum/prod (returned in ref64 with an error bound).
func refReduce[T Elem](inputs [][]T, op Op) (exact []T, ref64 []float64, bound []float64) {
	dt := TypeOf[T]()
	count := len(inputs[0])
	n := len(inputs)
	exact = make([]T, count)
	copy(exact, inputs[0])
	floatOrder := isFloat(dt) && (op == Sum || op == Prod)
	if floatOrder {
		ref64 = make([]float64, count)
		bound = make([]float64, count)
	}
	u := unitRoundoff(dt)
	for i := range count {
		if floatOrder {
			acc, mag := toF64(inputs[0][i]), math.Abs(toF64(inputs[0][i]))
			for r := 1; r < n; r++ {
				v := toF64(inputs[r][i])
				if op == Sum {
					acc += v
					mag += math.Abs(v)
				} else {
					acc *= v
					mag = math.Abs(acc)
				}
			}
			ref64[i] = acc
			bound[i] = 2*float64(n+1)*u*mag + 1e-300
			continue
		}
		kern := genericTable[dt][op]
		for r := 1; r < n; r++ {
			kern(asBytes(exact[i:i+1]), asBytes(inputs[r][i:i+1]))
		}
	}
	return exact, ref64, bound
}

// checkReduced compares got with the reference.
func checkReduced[T Elem](got, exact []T, ref64, bound []float64) error {
	if len(got) != len(exact) {
		return fmt.Errorf("len %d, want %d", len(got), len(exact))
	}
	for i := range got {
		if ref64 != nil {
			if d := math.Abs(toF64(got[i]) - ref64[i]); !(d <= bound[i]) {
				return fmt.Errorf("element %d: got %v, want %v ± %g", i, toF64(got[i]), ref64[i], bound[i])
			}
			continue
		}
		if !sameBits(got[i], exact[i]) {
			return fmt.Errorf("element %d: got %v, want %v", i, got[i], exact[i])
		}
	}
	return nil
}

func sameBits[T Elem](a, b T) bool {
	ab, bb := asBytes([]T{a}), asBytes([]T{b})
	return string(ab) == string(bb)
}

func identical[T Elem](a, b []T) bool { return string(asBytes(a)) == string(asBytes(b)) }

// tinyTuning makes the pipelines cut even small buffers into many
// segments, and the size-based choices pick the large-message algorithms.
func tinyTuning() Tuning {
	return Tuning{SegmentBytes: 200, PipelineDepth: 2, BcastTreeMaxBytes: 1, AllGatherRDMaxBytes: 1,
		ReduceScatterHalvingMaxBytes: 1, AllToAllWindow: 2, RDMaxBytes: 1, RDMaxBytesFewRanks: 1, RabenseifnerMaxBytes: 1, RabenseifnerMaxBytesFolded: 1}
}

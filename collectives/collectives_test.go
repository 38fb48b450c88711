package collectives

import (
	"fmt"
	"testing"
)

// Every collective other than AllReduce, against serial references, for
// 1..9 ranks, counts 0, 1 and a prime, default and tiny tunings (the latter
// forces the large-message algorithms and many pipeline segments), and
// every fake-network mode.

var testCounts = []int{0, 1, 1009}

func forWorlds(t *testing.T, fn func(t *testing.T, cs []*Communicator)) {
	for n := 1; n <= 9; n++ {
		for mi, mode := range fakeModes {
			for ti, tuning := range []Tuning{{}, tinyTuning()} {
				if !soak() && (n+mi+ti)%3 != 0 && n > 3 {
					continue
				}
				t.Run(fmt.Sprintf("n=%d/%s/tuning=%d", n, mode.name, ti), func(t *testing.T) {
					t.Parallel()
					cs, _ := world(t, n, Options{Tuning: tuning}, mode.setup)
					fn(t, cs)
				})
			}
		}
	}
}

func TestBroadcast(t *testing.T) {
	forWorlds(t, func(t *testing.T, cs []*Communicator) {
		n := len(cs)
		for _, count := range testCounts {
			for _, root := range []int{0, n - 1, n / 2} {
				want := genInput[float64](uint64(count), root, count, Sum)
				bufs := make([][]float64, n)
				mustRun(t, cs, func(r int, c *Communicator) error {
					bufs[r] = make([]float64, count)
					if r == root {
						copy(bufs[r], want)
					}
					return Broadcast(testCtx(t), c, bufs[r], root)
				})
				for r := range n {
					if !identical(bufs[r], want) {
						t.Fatalf("count=%d root=%d: rank %d wrong", count, root, r)
					}
				}
			}
		}
	})
}

func TestReduce(t *testing.T) {
	forWorlds(t, func(t *testing.T, cs []*Communicator) {
		n := len(cs)
		for _, count := range testCounts {
			for _, root := range []int{0, n - 1, n / 2} {
				for _, op := range Ops() {
					testReduceType[int32](t, cs, count, root, op)
					testReduceType[float32](t, cs, count, root, op)
					testReduceType[BFloat16](t, cs, count, root, op)
				}
			}
		}
	})
}

func testReduceType[T Elem](t *testing.T, cs []*Communicator, count, root int, op Op) {
	n := len(cs)
	inputs := make([][]T, n)
	for r := range n {
		inputs[r] = genInput[T](uint64(count+root), r, count, op)
	}
	exact, ref64, bound := refReduce(inputs, op)
	var got []T
	mustRun(t, cs, func(r int, c *Communicator) error {
		if r != root {
			return Reduce(testCtx(t), c, inputs[r], nil, op, root)
		}
		got = append([]T(nil), inputs[r]...)
		if count%2 == 0 {
			return Reduce(testCtx(t), c, nil, got, op, root) // in place
		}
		return Reduce(testCtx(t), c, inputs[r], got, op, root)
	})
	if err := checkReduced(got, exact, ref64, bound); err != nil {
		t.Fatalf("%v/%v count=%d root=%d: %v", TypeOf[T](), op, count, root, err)
	}
}

func TestAllGather(t *testing.T) {
	forWorlds(t, func(t *testing.T, cs []*Communicator) {
		n := len(cs)
		for _, count := range testCounts {
			want := make([]uint8, 0, n*count)
			inputs := make([][]uint8, n)
			for r := range n {
				inputs[r] = genInput[uint8](uint64(count), r, count, Sum)
				want = append(want, inputs[r]...)
			}
			outs := make([][]uint8, n)
			mustRun(t, cs, func(r int, c *Communicator) error {
				outs[r] = make([]uint8, n*count)
				if r%2 == 1 {
					copy(outs[r][r*count:], inputs[r])
					return AllGather(testCtx(t), c, nil, outs[r])
				}
				return AllGather(testCtx(t), c, inputs[r], outs[r])
			})
			for r := range n {
				if !identical(outs[r], want) {
					t.Fatalf("count=%d: rank %d wrong", count, r)
				}
			}
			// A wider type, so that segments and blocks hold several bytes.
			in64 := make([][]int64, n)
			var want64 []int64
			for r := range n {
				in64[r] = genInput[int64](uint64(count)+1, r, count, Sum)
				want64 = append(want64, in64[r]...)
			}
			out64 := make([][]int64, n)
			mustRun(t, cs, func(r int, c *Communicator) error {
				out64[r] = make([]int64, n*count)
				return AllGather(testCtx(t), c, in64[r], out64[r])
			})
			for r := range n {
				if !identical(out64[r], want64) {
					t.Fatalf("int64 count=%d: rank %d wrong", count, r)
				}
			}
		}
	})
}

func TestReduceScatter(t *testing.T) {
	forWorlds(t, func(t *testing.T, cs []*Communicator) {
		for _, count := range testCounts {
			for _, op := range Ops() {
				testReduceScatterType[int64](t, cs, count, op)
				testReduceScatterType[float32](t, cs, count, op)
				testReduceScatterType[Float16](t, cs, count, op)
			}
		}
	})
}

func testReduceScatterType[T Elem](t *testing.T, cs []*Communicator, count int, op Op) {
	n := len(cs)
	inputs := make([][]T, n)
	for r := range n {
		inputs[r] = genInput[T](uint64(count)+7, r, n*count, op)
	}
	exact, ref64, bound := refReduce(inputs, op)
	outs := make([][]T, n)
	mustRun(t, cs, func(r int, c *Communicator) error {
		outs[r] = make([]T, count)
		in := append([]T(nil), inputs[r]...)
		err := ReduceScatter(testCtx(t), c, in, outs[r], op)
		if err == nil && !identical(in, inputs[r]) {
			return fmt.Errorf("send buffer modified")
		}
		return err
	})
	for r := range n {
		var e []T
		var rf, bd []float64
		e = exact[r*count : (r+1)*count]
		if ref64 != nil {
			rf, bd = ref64[r*count:(r+1)*count], bound[r*count:(r+1)*count]
		}
		if err := checkReduced(outs[r], e, rf, bd); err != nil {
			t.Fatalf("%v/%v count=%d rank %d: %v", TypeOf[T](), op, count, r, err)
		}
	}
}

func TestBarrier(t *testing.T) {
	forWorlds(t, func(t *testing.T, cs []*Communicator) {
		for range 3 {
			mustRun(t, cs, func(r int, c *Communicator) error { return Barrier(testCtx(t), c) })
		}
	})
}

func TestAllToAll(t *testing.T) {
	forWorlds(t, func(t *testing.T, cs []*Communicator) {
		n := len(cs)
		for _, count := range testCounts {
			inputs := make([][]float32, n)
			for r := range n {
				inputs[r] = genInput[float32](uint64(count), r, n*count, Sum)
			}
			outs := make([][]float32, n)
			mustRun(t, cs, func(r int, c *Communicator) error {
				if r%2 == 1 {
					outs[r] = append([]float32(nil), inputs[r]...)
					return AllToAll(testCtx(t), c, nil, outs[r])
				}
				outs[r] = make([]float32, n*count)
				return AllToAll(testCtx(t), c, inputs[r], outs[r])
			})
			for r := range n {
				for s := range n {
					if !identical(outs[r][s*count:(s+1)*count], inputs[s][r*count:(r+1)*count]) {
						t.Fatalf("count=%d: rank %d block %d wrong", count, r, s)
					}
				}
			}
		}
	})
}

func TestGatherScatter(t *testing.T) {
	forWorlds(t, func(t *testing.T, cs []*Communicator) {
		n := len(cs)
		for _, count := range testCounts {
			for _, root := range []int{0, n - 1} {
				inputs := make([][]int32, n)
				var want []int32
				for r := range n {
					inputs[r] = genInput[int32](uint64(count), r, count, Sum)
					want = append(want, inputs[r]...)
				}
				var got []int32
				mustRun(t, cs, func(r int, c *Communicator) error {
					if r == root {
						got = make([]int32, n*count)
						return Gather(testCtx(t), c, inputs[r], got, root)
					}
					return Gather(testCtx(t), c, inputs[r], nil, root)
				})
				if !identical(got, want) {
					t.Fatalf("Gather count=%d root=%d wrong", count, root)
				}
				outs := make([][]int32, n)
				mustRun(t, cs, func(r int, c *Communicator) error {
					outs[r] = make([]int32, count)
					if r == root {
						return Scatter(testCtx(t), c, want, outs[r], root)
					}
					return Scatter(testCtx(t), c, nil, outs[r], root)
				})
				for r := range n {
					if !identical(outs[r], inputs[r]) {
						t.Fatalf("Scatter count=%d root=%d: rank %d wrong", count, root, r)
					}
				}
			}
		}
	})
}

func TestBusBandwidth(t *testing.T) {
	const gb = 1e9
	cases := []struct {
		k    Kind
		n    int
		want float64
	}{
		{KindAllReduce, 4, 1.5 * gb}, {KindAllReduce, 1, 0}, {KindReduceScatter, 4, 0.75 * gb},
		{KindAllGather, 8, 0.875 * gb}, {KindBroadcast, 8, gb}, {KindReduce, 3, gb}, {KindAllToAll, 2, 0.5 * gb},
	}
	for _, c := range cases {
		if got := BusBandwidth(c.k, 2e9, 2, c.n); got != c.want {
			t.Errorf("BusBandwidth(%v, n=%d) = %g, want %g", c.k, c.n, got, c.want)
		}
	}
}

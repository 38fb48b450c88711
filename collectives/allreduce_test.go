package collectives

import (
	"fmt"
	"testing"
)

var allAlgos = []Algorithm{Ring, RecursiveDoubling, Rabenseifner, Auto}

// testAllReduceType runs AllReduce for every op on n ranks and checks the
// result against the serial reference, and that all ranks agree bitwise.
func testAllReduceType[T Elem](t *testing.T, cs []*Communicator, algo Algorithm, count int, inPlace bool) {
	t.Helper()
	n := len(cs)
	for _, op := range Ops() {
		inputs := make([][]T, n)
		for r := range n {
			inputs[r] = genInput[T](uint64(count)*31+uint64(op), r, count, op)
		}
		exact, ref64, bound := refReduce(inputs, op)
		outs := make([][]T, n)
		mustRun(t, cs, func(r int, c *Communicator) error {
			in := append([]T(nil), inputs[r]...)
			if inPlace {
				outs[r] = in
				if r%2 == 0 {
					return AllReduceWith(testCtx(t), c, nil, in, op, algo)
				}
				return AllReduceWith(testCtx(t), c, in, in, op, algo)
			}
			outs[r] = make([]T, count)
			poison(asBytes(outs[r])) // every element must be written
			err := AllReduceWith(testCtx(t), c, in, outs[r], op, algo)
			if err == nil && !identical(in, inputs[r]) {
				return fmt.Errorf("send buffer modified")
			}
			return err
		})
		for r := range n {
			if err := checkReduced(outs[r], exact, ref64, bound); err != nil {
				t.Fatalf("%v/%v n=%d count=%d rank %d: %v", TypeOf[T](), op, n, count, r, err)
			}
			if !identical(outs[r], outs[0]) {
				t.Fatalf("%v/%v n=%d count=%d: rank %d differs from rank 0", TypeOf[T](), op, n, count, r)
			}
		}
	}
}

func testAllReduceAllTypes(t *testing.T, cs []*Communicator, algo Algorithm, count int, inPlace bool) {
	testAllReduceType[float32](t, cs, algo, count, inPlace)
	testAllReduceType[float64](t, cs, algo, count, inPlace)
	testAllReduceType[int32](t, cs, algo, count, inPlace)
	testAllReduceType[int64](t, cs, algo, count, inPlace)
	testAllReduceType[uint8](t, cs, algo, count, inPlace)
	testAllReduceType[BFloat16](t, cs, algo, count, inPlace)
	testAllReduceType[Float16](t, cs, algo, count, inPlace)
}

// fakeModes vary the fake network: eager small messages, all-rendezvous
// (sends complete only when matched: catches reliance on buffering) and
// random completion delays (completions out of order).
var fakeModes = []struct {
	name  string
	setup func(*fakeNet)
}{
	{"eager", nil},
	{"rendezvous", func(f *fakeNet) { f.eagerLimit = -1 }},
	{"delay", func(f *fakeNet) { f.eagerLimit = 64; f.maxDelay = 200e3 }},
}

func TestAllReduce(t *testing.T) {
	for _, algo := range allAlgos {
		for n := 1; n <= 9; n++ {
			for mi, mode := range fakeModes {
				if (n+mi)%3 != 0 && n > 4 && !soak() {
					continue // every n sees one mode (small n all of them)
				}
				t.Run(fmt.Sprintf("%v/n=%d/%s", algo, n, mode.name), func(t *testing.T) {
					t.Parallel()
					opts := Options{}
					if mi > 0 && algo == Ring {
						opts.Tuning = tinyTuning() // many pipeline segments
						if mi == 2 {
							opts.Tuning.PipelineDepth = 1
						}
					}
					cs, _ := world(t, n, opts, mode.setup)
					for _, count := range []int{0, 1, 1009} {
						inPlace := (count+n+int(algo))%2 == 0
						testAllReduceAllTypes(t, cs, algo, count, inPlace)
						// Both forms whenever there is data: out of
						// place, the algorithms read send and receive
						// straight into recv (a separate code path).
						if soak() || count > 0 {
							testAllReduceAllTypes(t, cs, algo, count, !inPlace)
						}
					}
				})
			}
		}
	}
}

func TestAllReduceLarge(t *testing.T) {
	count := 1 << 18
	if raceEnabled {
		count = 1 << 14
	}
	ns := []int{2, 3, 4, 5, 7, 8}
	if soak() {
		ns = []int{1, 2, 3, 4, 5, 6, 7, 8, 9}
	}
	for _, algo := range allAlgos {
		for _, n := range ns {
			t.Run(fmt.Sprintf("%v/n=%d", algo, n), func(t *testing.T) {
				t.Parallel()
				opts := Options{}
				if raceEnabled {
					opts.Tuning.SegmentBytes = 8 << 10 // keep several segments per chunk
				}
				cs, _ := world(t, n, opts, func(f *fakeNet) { f.eagerLimit = 64 << 10 })
				testAllReduceType[float32](t, cs, algo, count+n, true)
				testAllReduceType[float32](t, cs, algo, count+n, false)
				if soak() {
					testAllReduceAllTypes(t, cs, algo, count/2+1, n%2 == 1)
				} else {
					testAllReduceType[BFloat16](t, cs, algo, count/4+3, n%2 == 1)
				}
			})
		}
	}
}

func TestChooseAllReduce(t *testing.T) {
	d := DefaultTuning()
	cases := []struct {
		bytes, n int
		want     Algorithm
	}{
		{8, 4, RecursiveDoubling},
		{d.RDMaxBytes, 7, RecursiveDoubling},
		{d.RDMaxBytes + 1, 2, RecursiveDoubling},
		{d.RDMaxBytesFewRanks, 3, RecursiveDoubling},
		{d.RDMaxBytesFewRanks + 1, 2, Ring},
		{d.RDMaxBytesFewRanks + 1, 3, Ring},
		{d.RDMaxBytes + 1, 4, Rabenseifner},
		{d.RDMaxBytes + 1, 8, Rabenseifner},
		{d.RabenseifnerMaxBytes, 8, Rabenseifner},
		{d.RabenseifnerMaxBytes + 1, 8, Ring},
		{d.RabenseifnerMaxBytesFolded, 6, Rabenseifner},
		{d.RabenseifnerMaxBytesFolded + 1, 6, Ring},
		{1 << 30, 1, RecursiveDoubling},
	}
	for _, c := range cases {
		if got := ChooseAllReduce(c.bytes, c.n, Tuning{}); got != c.want {
			t.Errorf("ChooseAllReduce(%d, %d) = %v, want %v", c.bytes, c.n, got, c.want)
		}
	}
}

func TestAlgoEnv(t *testing.T) {
	f := newFakeNet(1)
	for _, v := range []string{"ring", "rd", "rabenseifner", "auto", "RING"} {
		t.Setenv(AlgoEnvVar, v)
		c, err := New(f.conn(0), 0, 1, Options{Algorithm: Ring})
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		want, _ := ParseAlgorithm(v)
		if c.opts.Algorithm != want {
			t.Errorf("%s: algorithm %v", v, c.opts.Algorithm)
		}
	}
	t.Setenv(AlgoEnvVar, "bogus")
	if _, err := New(f.conn(0), 0, 1, Options{}); err == nil {
		t.Fatal("unknown SEALRING_ALGO accepted")
	}
}

// poison fills b with a pattern that no reduction of the test inputs
// produces, so that an element an algorithm never writes is caught.
func poison(b []byte) {
	for i := range b {
		b[i] = 0xA5
	}
}

package collectives

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// checkAllFailed checks that every rank failed with ErrBroken, that the
// communicators report broken, and that no receive is left posted.
func checkAllFailed(t *testing.T, cs []*Communicator, f *fakeNet, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err == nil {
			t.Errorf("rank %d: no error", r)
			continue
		}
		if !errors.Is(err, ErrBroken) {
			t.Errorf("rank %d: error does not wrap ErrBroken: %v", r, err)
		}
		if cs[r].Err() == nil || !errors.Is(cs[r].Err(), ErrBroken) {
			t.Errorf("rank %d: Err() = %v", r, cs[r].Err())
		}
		// Later calls fail fast.
		start := time.Now()
		if err := Barrier(context.Background(), cs[r]); !errors.Is(err, ErrBroken) {
			t.Errorf("rank %d: later call: %v", r, err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("rank %d: later call was slow", r)
		}
	}
	if f != nil {
		if _, recvs := f.pending(); recvs != 0 {
			t.Errorf("%d receives still posted after the failure", recvs)
		}
	}
}

// TestRankDiesMidCollective: a rank dies after a number of operations in
// the middle of an AllReduce; every other rank must fail promptly (the
// abort messages spread the failure) with the communicator broken.
func TestRankDiesMidCollective(t *testing.T) {
	for _, algo := range []Algorithm{Ring, RecursiveDoubling, Rabenseifner} {
		for _, n := range []int{2, 4, 5} {
			for _, after := range []int64{0, 3, 17} {
				t.Run(fmt.Sprintf("%v/n=%d/after=%d", algo, n, after), func(t *testing.T) {
					t.Parallel()
					tu := tinyTuning()
					opts := Options{Timeout: 10 * time.Second, Tuning: tu}
					cs, f := world(t, n, opts, func(f *fakeNet) { f.eagerLimit = -1 })
					victim := n / 2
					f.dieAfter(victim, after)
					start := time.Now()
					errs := run(cs, func(r int, c *Communicator) error {
						buf := make([]float32, 4096)
						for range 40 { // the failure may come in a later call
							if err := AllReduceWith(context.Background(), c, nil, buf, Sum, algo); err != nil {
								return err
							}
						}
						return nil
					})
					if d := time.Since(start); d > 5*time.Second {
						t.Errorf("survivors took %v to fail", d)
					}
					checkAllFailed(t, cs, f, errs)
					for r, err := range errs {
						// A neighbour of a failing rank may also see a later
						// segment in place of one its sender withdrew: a size
						// mismatch (never silent: it then lacks a message).
						if r != victim && !errors.Is(err, errFakeDead) && !errors.Is(err, ErrAborted) && !errors.Is(err, ErrSizeMismatch) {
							t.Errorf("rank %d: unexpected cause: %v", r, err)
						}
					}
				})
			}
		}
	}
}

// TestKillDuringCollective kills a rank from outside while every rank is
// blocked in a collective that cannot finish (rank 0 never joins).
func TestKillDuringCollective(t *testing.T) {
	for _, noAbort := range []bool{false, true} {
		t.Run(fmt.Sprintf("noAbort=%v", noAbort), func(t *testing.T) {
			const n = 4
			timeout := 10 * time.Second
			if noAbort {
				timeout = 500 * time.Millisecond // survivors not next to the dead rank fail by timeout
			}
			cs, f := world(t, n, Options{Timeout: timeout, NoAbortPropagation: noAbort}, nil)
			time.AfterFunc(50*time.Millisecond, func() { f.kill(0) })
			start := time.Now()
			errs := run(cs, func(r int, c *Communicator) error {
				if r == 0 {
					time.Sleep(100 * time.Millisecond)
					return Barrier(context.Background(), c) // dead: fails at once
				}
				buf := make([]int64, 100)
				return AllReduceWith(context.Background(), c, nil, buf, Sum, Ring)
			})
			if d := time.Since(start); d > timeout+3*time.Second {
				t.Errorf("took %v", d)
			}
			checkAllFailed(t, cs, f, errs)
			if noAbort {
				timedOut := 0
				for _, err := range errs {
					if errors.Is(err, ErrTimeout) && errors.Is(err, context.DeadlineExceeded) {
						timedOut++
					}
				}
				if timedOut == 0 {
					t.Error("no rank reported the timeout")
				}
			}
		})
	}
}

func TestContextCancel(t *testing.T) {
	const n = 3
	cs, f := world(t, n, Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	errs := run(cs, func(r int, c *Communicator) error {
		if r == 0 {
			<-ctx.Done()
			return Barrier(ctx, c) // never joins the AllReduce
		}
		buf := make([]float64, 1000)
		return AllReduce(ctx, c, nil, buf, Sum)
	})
	for r := 1; r < n; r++ {
		if !errors.Is(errs[r], context.Canceled) {
			t.Errorf("rank %d: %v, want context.Canceled", r, errs[r])
		}
	}
	checkAllFailed(t, cs, f, errs)

	// A deadline on the ctx bounds the call too.
	cs, f = world(t, 2, Options{}, nil)
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	start := time.Now()
	err := Barrier(dctx, cs[1]) // rank 0 never comes
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("deadline: %v after %v", err, time.Since(start))
	}
	if _, recvs := f.pending(); recvs != 0 {
		t.Fatalf("%d receives left posted", recvs)
	}
}

func TestTimeoutOption(t *testing.T) {
	cs, _ := world(t, 2, Options{Timeout: 100 * time.Millisecond, NoAbortPropagation: true}, nil)
	start := time.Now()
	err := AllReduce(context.Background(), cs[0], nil, []float32{1}, Sum)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestSizeMismatch: ranks disagree on the count; every rank must return an
// error (no corruption, no hang past the abort).
func TestSizeMismatch(t *testing.T) {
	for _, algo := range []Algorithm{Ring, RecursiveDoubling, Rabenseifner} {
		for _, n := range []int{2, 3, 4} {
			t.Run(fmt.Sprintf("%v/n=%d", algo, n), func(t *testing.T) {
				cs, f := world(t, n, Options{Timeout: 10 * time.Second}, func(f *fakeNet) { f.eagerLimit = 64 })
				start := time.Now()
				errs := run(cs, func(r int, c *Communicator) error {
					count := 1000
					if r == n-1 {
						count = 1003
					}
					buf := make([]int32, count+8)
					for i := range buf {
						buf[i] = 7
					}
					err := AllReduceWith(context.Background(), c, nil, buf[:count], Sum, algo)
					for _, v := range buf[count:] {
						if v != 7 {
							return fmt.Errorf("wrote past the buffer")
						}
					}
					return err
				})
				if time.Since(start) > 5*time.Second {
					t.Errorf("took %v", time.Since(start))
				}
				mismatch := false
				for _, err := range errs {
					mismatch = mismatch || errors.Is(err, ErrSizeMismatch)
				}
				if !mismatch {
					t.Errorf("no rank reported ErrSizeMismatch: %v", errs)
				}
				checkAllFailed(t, cs, f, errs)
			})
		}
	}
}

func TestBusy(t *testing.T) {
	cs, _ := world(t, 2, Options{Timeout: 5 * time.Second}, nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = Barrier(context.Background(), cs[0]) // blocks until rank 1 joins
	}()
	for !cs[0].busy.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := Barrier(context.Background(), cs[0]); !errors.Is(err, ErrBusy) {
		t.Fatalf("concurrent call: %v", err)
	}
	if err := Barrier(context.Background(), cs[1]); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if cs[0].Err() != nil {
		t.Fatalf("ErrBusy broke the communicator: %v", cs[0].Err())
	}
}

func TestInvalidArguments(t *testing.T) {
	f := newFakeNet(2)
	if _, err := New(nil, 0, 1, Options{}); !errors.Is(err, ErrInvalid) {
		t.Error(err)
	}
	if _, err := New(f.conn(0), 2, 2, Options{}); !errors.Is(err, ErrInvalid) {
		t.Error(err)
	}
	cs, _ := world(t, 1, Options{}, nil)
	c := cs[0]
	buf := make([]float32, 8)
	if err := AllReduce(context.Background(), c, buf[:4], buf[2:6], Sum); !errors.Is(err, ErrInvalid) {
		t.Errorf("partial overlap: %v", err)
	}
	cs, _ = world(t, 1, Options{}, nil)
	if err := AllReduce(context.Background(), cs[0], buf[:4], buf[4:7], Sum); !errors.Is(err, ErrInvalid) {
		t.Errorf("length mismatch: %v", err)
	}
	cs, _ = world(t, 1, Options{}, nil)
	if err := Broadcast(context.Background(), cs[0], buf, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad root: %v", err)
	}
	cs, _ = world(t, 1, Options{}, nil)
	if err := AllReduce(context.Background(), cs[0], nil, buf, Op(9)); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad op: %v", err)
	}
	if err := Barrier(context.Background(), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil comm: %v", err)
	}
	cs, _ = world(t, 1, Options{}, nil)
	cs[0].Close()
	if err := Barrier(context.Background(), cs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v", err)
	}
}

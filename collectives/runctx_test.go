package collectives

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// runOf returns the context a communicator keeps for its next collective.
func runOf(c *Communicator) *runCtx {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run
}

// allReduceAll runs one float32 AllReduce (sum of rank+1) on every rank
// under ctx and checks the result.
func allReduceAll(t *testing.T, cs []*Communicator, ctx context.Context) {
	t.Helper()
	n := len(cs)
	for r, err := range run(cs, func(r int, c *Communicator) error {
		buf := []float32{float32(r + 1)}
		if err := AllReduce(ctx, c, nil, buf, Sum); err != nil {
			return err
		}
		if want := float32(n * (n + 1) / 2); buf[0] != want {
			return errors.New("wrong sum")
		}
		return nil
	}) {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// TestRunContextReuse: collectives called with the same context reuse one
// derived context; another parent context replaces it (the old one is
// released); Close between collectives releases it.
func TestRunContextReuse(t *testing.T) {
	cs, _ := world(t, 3, Options{}, nil)
	ctx := testCtx(t)
	allReduceAll(t, cs, ctx)
	first := runOf(cs[0])
	if first == nil || first.ctx.Err() != nil {
		t.Fatal("no live context kept after a successful collective")
	}
	for range 5 {
		allReduceAll(t, cs, ctx)
		if runOf(cs[0]) != first {
			t.Fatal("a collective with the same parent did not reuse the context")
		}
	}
	other, cancel := context.WithCancel(context.Background())
	defer cancel()
	allReduceAll(t, cs, other)
	if runOf(cs[0]) == first {
		t.Fatal("a collective with another parent reused the context")
	}
	if first.ctx.Err() == nil {
		t.Fatal("the replaced context was not released")
	}
	// The parent ending between collectives: the next one derives afresh
	// (and fails at once, its ctx being done).
	cancel()
	if err := Barrier(other, cs[0]); !errors.Is(err, context.Canceled) {
		t.Fatalf("Barrier with an ended context: %v", err)
	}
	cs2, _ := world(t, 2, Options{}, nil)
	allReduceAll(t, cs2, ctx)
	kept := runOf(cs2[0])
	cs2[0].Close()
	if kept.ctx.Err() == nil || runOf(cs2[0]) != nil {
		t.Fatal("Close did not release the kept context")
	}
}

// TestTimeoutAcrossReuse: Options.Timeout bounds each collective, not the
// life of the reused context: collectives running back to back for three
// timeouts all succeed, and a stuck one still times out promptly.
func TestTimeoutAcrossReuse(t *testing.T) {
	const timeout = 150 * time.Millisecond
	cs, _ := world(t, 2, Options{Timeout: timeout, NoAbortPropagation: true}, nil)
	ctx := context.Background() // no deadline: Options.Timeout applies
	start := time.Now()
	for i := 0; time.Since(start) < 3*timeout; i++ {
		allReduceAll(t, cs, ctx)
		if i > 0 && runOf(cs[0]) == nil {
			t.Fatal("no context kept")
		}
	}
	start = time.Now()
	err := AllReduceWith(ctx, cs[0], nil, []float32{1}, Sum, RecursiveDoubling) // rank 1 never joins
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrBroken) {
		t.Fatalf("stuck collective: %v", err)
	}
	if d := time.Since(start); d < timeout/2 || d > 5*time.Second {
		t.Fatalf("stuck collective failed after %v, timeout %v", d, timeout)
	}
	if !strings.Contains(err.Error(), "AllReduce(rd)") {
		t.Errorf("error does not name the algorithm: %v", err)
	}
}

// mapCtx is a context type that is not comparable: == on two of them in
// interfaces panics.
type mapCtx struct {
	context.Context
	m map[string]int
}

// TestNonComparableContext: the reuse check must not panic on context
// types that cannot be compared.
func TestNonComparableContext(t *testing.T) {
	cs, _ := world(t, 2, Options{}, nil)
	for i := range 3 {
		ctx := mapCtx{testCtx(t), map[string]int{"i": i}}
		allReduceAll(t, cs, ctx)
	}
}

// TestAbortReleasesKeptContext: a peer's abort that arrives between
// collectives breaks the communicator and releases the context it kept.
func TestAbortReleasesKeptContext(t *testing.T) {
	cs, _ := world(t, 2, Options{}, nil)
	ctx := testCtx(t)
	allReduceAll(t, cs, ctx)
	kept := runOf(cs[0])
	if kept == nil {
		t.Fatal("no context kept")
	}
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if err := Barrier(dead, cs[1]); !errors.Is(err, context.Canceled) { // fails, and tells rank 0
		t.Fatalf("rank 1: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cs[0].Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("rank 0 never saw the abort")
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(cs[0].Err(), ErrAborted) {
		t.Fatalf("rank 0: Err = %v", cs[0].Err())
	}
	if runOf(cs[0]) != nil || kept.ctx.Err() == nil {
		t.Fatal("the abort did not release the kept context")
	}
}

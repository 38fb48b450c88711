package collectives

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// eagerConn wraps a Conn as an EagerSender and counts the sends that went
// through each method (both end in the wrapped Isend).
type eagerConn struct {
	Conn
	eager, plain *atomic.Int64
}

func (c eagerConn) Isend(ctx context.Context, peer int, tag uint64, buf []byte) Pending {
	c.plain.Add(1)
	return c.Conn.Isend(ctx, peer, tag, buf)
}

func (c eagerConn) IsendEager(ctx context.Context, peer int, tag uint64, buf []byte) Pending {
	c.eager.Add(1)
	return c.Conn.Isend(ctx, peer, tag, buf)
}

// TestExchangeEager: the sends of an exchange (recursive doubling,
// Rabenseifner's halving and doubling steps, the fold) use IsendEager up
// to Tuning.ExchangeEagerBytes, and only those; the ring's pipelined
// segments never do. Results stay exact either way.
func TestExchangeEager(t *testing.T) {
	const count = 5000 // 20 000 bytes of float32
	for _, tc := range []struct {
		name      string
		n         int
		algo      Algorithm
		limit     int  // Tuning.ExchangeEagerBytes
		wantEager bool // every send eager (else none)
		mixed     bool // some sends eager, some not
	}{
		{"rd/default", 4, RecursiveDoubling, 0, true, false},
		{"rd/folded", 5, RecursiveDoubling, 0, true, false},
		{"rabenseifner", 4, Rabenseifner, 0, true, false},
		{"rabenseifner/folded", 6, Rabenseifner, 0, true, false},
		{"rd/limit-below", 4, RecursiveDoubling, 4*count - 1, false, false},
		{"rd/off", 4, RecursiveDoubling, -1, false, false},
		{"ring", 4, Ring, 0, false, false},
		// Halving steps of 10 000 and 5 000 bytes: only the second
		// (and its doubling twin) is within the limit.
		{"rabenseifner/limit-between", 4, Rabenseifner, 4 * count / 4, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var eager, plain atomic.Int64
			f := newFakeNet(tc.n)
			cs := make([]*Communicator, tc.n)
			for r := range tc.n {
				c, err := New(eagerConn{f.conn(r), &eager, &plain}, r, tc.n,
					Options{Tuning: Tuning{ExchangeEagerBytes: tc.limit}, NoAbortPropagation: true})
				if err != nil {
					t.Fatal(err)
				}
				cs[r] = c
				defer c.Close()
			}
			inputs := make([][]float32, tc.n)
			for r := range inputs {
				inputs[r] = genInput[float32](7, r, count, Sum)
			}
			exact, ref64, bound := refReduce(inputs, Sum)
			ctx := testCtx(t)
			mustRun(t, cs, func(r int, c *Communicator) error {
				recv := make([]float32, count)
				if err := AllReduceWith(ctx, c, inputs[r], recv, Sum, tc.algo); err != nil {
					return err
				}
				if err := checkReduced(recv, exact, ref64, bound); err != nil {
					return fmt.Errorf("rank %d: %w", r, err)
				}
				return nil
			})
			e, p := eager.Load(), plain.Load()
			t.Logf("eager sends %d, plain sends %d", e, p)
			switch {
			case tc.mixed:
				if e == 0 || p == 0 || e != p {
					t.Fatalf("eager sends %d, plain sends %d; want as many of each", e, p)
				}
			case tc.wantEager && (e == 0 || p != 0) || !tc.wantEager && (e != 0 || p == 0):
				t.Fatalf("eager sends %d, plain sends %d; want all eager: %v", e, p, tc.wantEager)
			}
		})
	}
}

// The transport adapter is what makes exchanges eager in practice.
var _ EagerSender = (*endpointConn)(nil)

package transport

import (
	"context"
	"sync"
	"testing"

	"github.com/sealring/sealring/transport/wire"
)

// gateWire records the endpoint's busy-polling hints.
type gateWire struct {
	wire.Wire
	mu    sync.Mutex
	calls []bool
}

func (g *gateWire) AllowBusyPoll(on bool) {
	g.mu.Lock()
	g.calls = append(g.calls, on)
	g.mu.Unlock()
}

func (g *gateWire) last() (n int, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.calls) == 0 {
		return 0, true
	}
	return len(g.calls), g.calls[len(g.calls)-1]
}

// TestBusyPollGate: the endpoint turns a wire's busy polling off while a
// receive larger than pollMaxRecv is pending (bulk data is coming) and
// back on when none is; small receives leave it on.
func TestBusyPollGate(t *testing.T) {
	var g *gateWire
	c := newCluster(t, "mem", 2, nil, func(rank int, w wire.Wire) wire.Wire {
		if rank == 1 {
			g = &gateWire{Wire: w}
			return g
		}
		return w
	})
	s, r := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	small := r.RecvAsync(ctx, 0, 1, ^uint64(0), make([]byte, pollMaxRecv))
	if n, _ := g.last(); n != 0 {
		t.Fatalf("a small receive changed the polling (%d calls)", n)
	}
	big1 := r.RecvAsync(ctx, 0, 2, ^uint64(0), make([]byte, 1<<20))
	big2 := r.RecvAsync(ctx, 0, 3, ^uint64(0), make([]byte, pollMaxRecv+1))
	if n, on := g.last(); n != 1 || on {
		t.Fatalf("with bulk receives pending: %d calls, polling %v; want 1 call turning it off", n, on)
	}
	for i, q := range []*Request{small, big1} {
		if err := s.Send(ctx, 1, uint64(i+1), make([]byte, 100<<10)); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Wait(ctx); err != nil && i == 1 {
			t.Fatal(err)
		}
	}
	if n, on := g.last(); n != 1 || on {
		t.Fatalf("one bulk receive still pending: %d calls, polling %v", n, on)
	}
	big2.Cancel(context.Canceled)
	if n, on := g.last(); n != 2 || !on {
		t.Fatalf("no bulk receive pending: %d calls, polling %v; want it back on", n, on)
	}
}

package collectives

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/wire"
)

// endpointGroup returns the job's secure group (every rank builds its own
// view from the same keys).
func endpointGroup(t testing.TB, seed byte) *secure.Group {
	t.Helper()
	cfg := secure.GroupConfig{ID: make([]byte, 16), Epoch: 1}
	for i := range cfg.ID {
		cfg.ID[i] = seed + byte(i)
	}
	for l := range 3 {
		cur, next := secure.RootKey{Gen: 0}, secure.RootKey{Gen: 1}
		for i := range cur.Key {
			cur.Key[i] = seed ^ byte(l*53+i*7)
			next.Key[i] = ^cur.Key[i]
		}
		cfg.Keys[l] = secure.LevelKeys{Current: cur, Next: next}
	}
	g, err := secure.NewGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// endpointWorld makes n encrypted endpoints on an in-memory wire and a
// communicator over each. Endpoint ranks are 100+i, so the rank map is
// exercised.
func endpointWorld(t testing.TB, n int, opts Options, peerTimeout time.Duration) ([]*Communicator, []*transport.Endpoint) {
	t.Helper()
	return endpointWorldWith(t, n, opts, func(cfg *transport.Config) { cfg.PeerTimeout = peerTimeout })
}

// endpointWorldWith is endpointWorld with each endpoint's Config adjusted
// by adjust before the endpoint is made.
func endpointWorldWith(t testing.TB, n int, opts Options, adjust func(*transport.Config)) ([]*Communicator, []*transport.Endpoint) {
	t.Helper()
	nw := wire.NewMemNetwork()
	nw.QueueLen = 4096
	eps := make([]*transport.Endpoint, n)
	ranks := make([]uint32, n)
	for i := range n {
		w, err := nw.Listen(netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		ranks[i] = uint32(100 + i)
		cfg := transport.Config{Rank: ranks[i], Incarnation: 1, Wire: w,
			Group: endpointGroup(t, 9), MinRTO: time.Millisecond}
		adjust(&cfg)
		ep, err := transport.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		eps[i] = ep
	}
	for _, a := range eps {
		for _, b := range eps {
			if a != b {
				if err := a.AddPeer(b.Rank(), b.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cs := make([]*Communicator, n)
	for i := range n {
		c, err := New(FromEndpoint(eps[i], ranks), i, n, opts)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	t.Cleanup(func() {
		for i := range n {
			cs[i].Close()
			eps[i].Close()
		}
	})
	return cs, eps
}

// TestOverTransport runs collectives over real encrypted transport
// endpoints on the in-memory wire.
func TestOverTransport(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			cs, _ := endpointWorld(t, n, Options{Timeout: 30 * time.Second}, 0)
			// 400 KB: ring segments take the rendezvous, exchanges
			// (RD, Rabenseifner) the eager path by ExchangeEagerBytes;
			// 1.2 MB: RD's exchanges take the rendezvous.
			counts := []int{1, 1009, 100 << 10, 300 << 10}
			if raceEnabled {
				counts = counts[:2]
			}
			for _, algo := range []Algorithm{Ring, RecursiveDoubling, Rabenseifner} {
				for _, count := range counts {
					testAllReduceType[float32](t, cs, algo, count, true)
				}
			}
			testAllReduceType[BFloat16](t, cs, Auto, 1009, false)
			mustRun(t, cs, func(r int, c *Communicator) error {
				ctx := testCtx(t)
				buf := make([]int64, 3000)
				if r == 0 {
					for i := range buf {
						buf[i] = int64(i * 3)
					}
				}
				if err := Broadcast(ctx, c, buf, 0); err != nil {
					return err
				}
				if buf[2999] != 2999*3 {
					return fmt.Errorf("broadcast: %d", buf[2999])
				}
				all := make([]float64, 2*n)
				if err := AllGather(ctx, c, []float64{float64(r), -float64(r)}, all); err != nil {
					return err
				}
				if all[2*(n-1)] != float64(n-1) {
					return fmt.Errorf("allgather: %v", all)
				}
				rs := make([]int32, 5)
				in := make([]int32, 5*n)
				for i := range in {
					in[i] = int32(i)
				}
				if err := ReduceScatter(ctx, c, in, rs, Sum); err != nil {
					return err
				}
				if rs[0] != int32(5*r*n) {
					return fmt.Errorf("reducescatter: %v", rs)
				}
				if err := Barrier(ctx, c); err != nil {
					return err
				}
				a2a := make([]uint8, n)
				for i := range a2a {
					a2a[i] = uint8(10*r + i)
				}
				if err := AllToAll(ctx, c, nil, a2a); err != nil {
					return err
				}
				for i := range a2a {
					if a2a[i] != uint8(10*i+r) {
						return fmt.Errorf("alltoall: %v", a2a)
					}
				}
				sub, err := c.Split(ctx, r%2, 0)
				if err != nil {
					return err
				}
				defer sub.Close()
				x := []float32{1}
				if err := AllReduce(ctx, sub, nil, x, Sum); err != nil {
					return err
				}
				if int(x[0]) != sub.Size() {
					return fmt.Errorf("sub allreduce: %v", x)
				}
				return nil
			})
		})
	}
}

// TestOverTransportFailure closes one endpoint while the others are in a
// collective: they must all fail (the neighbours through the transport's
// peer timeout, the rest through abort messages) and report broken.
func TestOverTransportFailure(t *testing.T) {
	const n = 4
	cs, eps := endpointWorld(t, n, Options{Timeout: 20 * time.Second}, 500*time.Millisecond)
	time.AfterFunc(100*time.Millisecond, func() { eps[2].Close() })
	start := time.Now()
	errs := run(cs, func(r int, c *Communicator) error {
		buf := make([]float32, 1<<12)
		if r == 2 {
			time.Sleep(200 * time.Millisecond) // closed by now
		}
		for {
			if err := AllReduceWith(context.Background(), c, nil, buf, Sum, Ring); err != nil {
				return err
			}
		}
	})
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v", d)
	}
	for r, err := range errs {
		if !errors.Is(err, ErrBroken) || cs[r].Err() == nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
	if !errors.Is(errs[2], transport.ErrClosed) {
		t.Errorf("closed rank: %v", errs[2])
	}
	t.Logf("failed in %v: %v", time.Since(start), errs)
}

// TestOverTransportSizeMismatch: the transport's truncation (or short
// message) becomes ErrSizeMismatch, without writing past the buffer.
func TestOverTransportSizeMismatch(t *testing.T) {
	cs, _ := endpointWorld(t, 2, Options{Timeout: 10 * time.Second}, 0)
	errs := run(cs, func(r int, c *Communicator) error {
		buf := make([]float32, 100+r*7)
		return AllReduceWith(context.Background(), c, nil, buf, Sum, RecursiveDoubling)
	})
	if !errors.Is(errs[0], ErrSizeMismatch) && !errors.Is(errs[1], ErrSizeMismatch) {
		t.Fatalf("errors: %v", errs)
	}
	for r, err := range errs {
		if !errors.Is(err, ErrBroken) {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

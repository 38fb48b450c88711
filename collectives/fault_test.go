package collectives

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/wire"
)

// faultyWorld is endpointWorld with every rank's wire behind the fault
// injector: loss, duplication, reordering and corruption on every send.
func faultyWorld(t *testing.T, n int, seed int64) ([]*Communicator, []*faultwire.Wire) {
	t.Helper()
	nw := wire.NewMemNetwork()
	nw.QueueLen = 4096
	eps := make([]*transport.Endpoint, n)
	fws := make([]*faultwire.Wire, n)
	ranks := make([]uint32, n)
	for i := range n {
		w, err := nw.Listen(netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		fws[i] = faultwire.New(w, faultwire.Config{Seed: seed + int64(i), Loss: 0.05, Duplicate: 0.05, Reorder: 0.05, Corrupt: 0.01})
		ranks[i] = uint32(i)
		ep, err := transport.New(transport.Config{Rank: ranks[i], Incarnation: 1, Wire: fws[i],
			Group: endpointGroup(t, 9), MinRTO: time.Millisecond, PeerTimeout: 20 * time.Second})
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
		c, err := New(FromEndpoint(eps[i], ranks), i, n, Options{Timeout: time.Minute})
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
	return cs, fws
}

// TestCollectivesUnderFaults: every AllReduce algorithm and the other
// collectives give exact results over encrypted endpoints whose wires lose,
// duplicate, reorder and corrupt datagrams.
func TestCollectivesUnderFaults(t *testing.T) {
	for _, n := range []int{3, 4} {
		cs, fws := faultyWorld(t, n, int64(n*100))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		count := 20011 // a prime, several packets per rank's share
		if raceEnabled {
			count = 3001
		}
		err := runAll(n, func(r int) error {
			c := cs[r]
			for _, algo := range []Algorithm{Ring, RecursiveDoubling, Rabenseifner} {
				buf := make([]int32, count)
				for i := range buf {
					buf[i] = int32(r*1000 + i%977)
				}
				if err := AllReduceWith(ctx, c, buf, buf, Sum, algo); err != nil {
					return fmt.Errorf("%v: %w", algo, err)
				}
				for i, v := range buf {
					want := int32(n*(n-1)/2*1000 + n*(i%977))
					if v != want {
						return fmt.Errorf("%v: element %d = %d, want %d", algo, i, v, want)
					}
				}
			}
			b := make([]float32, count)
			if r == 1 {
				for i := range b {
					b[i] = float32(i % 4093)
				}
			}
			if err := Broadcast(ctx, c, b, 1); err != nil {
				return fmt.Errorf("broadcast: %w", err)
			}
			for i, v := range b {
				if v != float32(i%4093) {
					return fmt.Errorf("broadcast: element %d = %v", i, v)
				}
			}
			ag := make([]int64, 257*n)
			mine := make([]int64, 257)
			for i := range mine {
				mine[i] = int64(r<<20 | i)
			}
			if err := AllGather(ctx, c, mine, ag); err != nil {
				return fmt.Errorf("allgather: %w", err)
			}
			for i, v := range ag {
				if v != int64((i/257)<<20|i%257) {
					return fmt.Errorf("allgather: element %d = %x", i, v)
				}
			}
			return Barrier(ctx, c)
		})
		if err != nil {
			t.Fatalf("%d ranks: %v", n, err)
		}
		var st faultwire.Stats
		for _, f := range fws {
			s := f.Stats()
			st.Dropped += s.Dropped
			st.Duplicated += s.Duplicated
			st.Corrupted += s.Corrupted
			st.Reordered += s.Reordered
		}
		if st.Dropped == 0 || st.Duplicated == 0 || st.Corrupted == 0 || st.Reordered == 0 {
			t.Fatalf("%d ranks: faults were not exercised: %+v", n, st)
		}
		t.Logf("%d ranks: dropped %d, duplicated %d, reordered %d, corrupted %d", n, st.Dropped, st.Duplicated, st.Reordered, st.Corrupted)
	}
}

// runAll runs f for every rank concurrently and returns the first error.
func runAll(n int, f func(r int) error) error {
	errs := make(chan error, n)
	for r := range n {
		go func() { errs <- f(r) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

package collectives

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/wire"
)

// TestSplitOwnTaskGroupKey runs the whole path a launcher takes to give a
// sub-communicator its own task-group root key, end to end:
//
//   - the operator creates the job's keys (trust region, user group, task
//     group) with a KeyController; four ranks Join the job through the
//     store and run a Communicator over encrypted endpoints;
//   - Split(color = rank/2) calls Options.NewConn on each member; rank 0 of
//     each sub-communicator asks the operator for a sub-group that keeps
//     the job's trust-region and user-group keys but gets a fresh
//     task-group key, published under the sub-communicator's own prefix of
//     the store; every member Joins that sub-group on a new endpoint;
//   - the sub-communicators' allreduces are exact, and a packet sealed
//     with one sub-group's keys is refused (counted as an authentication
//     failure, never delivered) by a member of the other sub-group and by
//     the parent job's endpoints.
func TestSplitOwnTaskGroupKey(t *testing.T) {
	const n = 4
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store := rendezvous.NewMemStore(rendezvous.MemStoreConfig{})
	defer store.Close()
	region, err := secure.GenerateLevelKeys()
	if err != nil {
		t.Fatal(err)
	}
	user, err := secure.GenerateLevelKeys()
	if err != nil {
		t.Fatal(err)
	}
	// Every group here has the job's group ID, so what keeps the
	// sub-groups apart below is the task key alone.
	groupID := []byte("sealring-test-job")[:16]
	jobKC, err := rendezvous.NewKeyController(ctx, rendezvous.WithPrefix(store, "job/"),
		rendezvous.KeyControllerConfig{Size: n, GroupID: groupID, Region: &region, User: &user, Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer jobKC.Close()

	// The operator's side of a sub-group: a KeyController over the
	// sub-communicator's prefix with the job's region and user keys and a
	// fresh task key. In a real job this runs where the job's keys live
	// (the launcher); here rank 0 of the sub-communicator asks for it.
	var opMu sync.Mutex
	var subKCs []*rendezvous.KeyController
	newSubGroup := func(ctx context.Context, prefix string, size int) error {
		kc, err := rendezvous.NewKeyController(ctx, rendezvous.WithPrefix(store, prefix),
			rendezvous.KeyControllerConfig{Size: size, GroupID: groupID, Region: &region, User: &user, Settle: -1})
		if err != nil {
			return err
		}
		opMu.Lock()
		subKCs = append(subKCs, kc)
		opMu.Unlock()
		return nil
	}
	defer func() {
		for _, kc := range subKCs {
			kc.Close()
		}
	}()

	nw := wire.NewMemNetwork()
	nw.QueueLen = 4096
	var resMu sync.Mutex
	var closers []func() error
	keep := func(f func() error) {
		resMu.Lock()
		closers = append(closers, f)
		resMu.Unlock()
	}
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	// endpointFor joins the world published under prefix as rank/size on a
	// fresh endpoint and returns both.
	endpointFor := func(ctx context.Context, prefix string, rank, size int) (*transport.Endpoint, *rendezvous.World, error) {
		w, err := nw.Listen(netip.AddrPort{})
		if err != nil {
			return nil, nil, err
		}
		world, err := rendezvous.Join(ctx, rendezvous.JoinConfig{Store: rendezvous.WithPrefix(store, prefix),
			Rank: rank, Size: size, Addr: w.LocalAddr(), Timeout: 30 * time.Second})
		if err != nil {
			w.Close()
			return nil, nil, err
		}
		keep(world.Close)
		ep, err := transport.New(transport.Config{Rank: uint32(rank), Incarnation: world.Incarnation,
			Wire: w, Group: world.Group, MinRTO: time.Millisecond})
		if err != nil {
			w.Close()
			return nil, nil, err
		}
		keep(ep.Close)
		for _, p := range world.Peers {
			if p.Rank != rank {
				if err := ep.AddPeer(uint32(p.Rank), p.Addr); err != nil {
					return nil, nil, err
				}
			}
		}
		return ep, world, nil
	}

	subs := make([]*transport.Endpoint, n) // by job rank
	opts := Options{Timeout: 30 * time.Second, NewConn: func(ctx context.Context, info SplitInfo) (Conn, error) {
		prefix := fmt.Sprintf("job/comm/%08x/", info.ID)
		if info.Rank == 0 {
			if err := newSubGroup(ctx, prefix, info.Size); err != nil {
				return nil, err
			}
		}
		ep, _, err := endpointFor(ctx, prefix, info.Rank, info.Size)
		if err != nil {
			return nil, err
		}
		subs[info.ParentRanks[info.Rank]] = ep
		return FromEndpoint(ep, nil), nil
	}}

	parents := make([]*transport.Endpoint, n)
	cs := make([]*Communicator, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep, _, err := endpointFor(ctx, "job/", r, n)
			if err != nil {
				errs[r] = err
				return
			}
			parents[r] = ep
			cs[r], errs[r] = New(FromEndpoint(ep, nil), r, n, opts)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		defer c.Close()
	}

	mustRun(t, cs, func(r int, c *Communicator) error {
		s, err := c.Split(ctx, r/2, r)
		if err != nil {
			return err
		}
		defer s.Close()
		buf := make([]float32, 100<<10) // the rendezvous path too
		for i := range buf {
			buf[i] = float32(r + i%7)
		}
		if err := AllReduce(ctx, s, nil, buf, Sum); err != nil {
			return err
		}
		lo := r / 2 * 2
		for i, v := range buf {
			if want := float32(lo + lo + 1 + 2*(i%7)); v != want {
				return fmt.Errorf("rank %d: element %d = %v, want %v", r, i, v, want)
			}
		}
		// The parent still works beside its sub-communicators.
		one := []int64{1}
		if err := AllReduce(ctx, c, nil, one, Sum); err != nil {
			return err
		}
		if one[0] != n {
			return fmt.Errorf("parent sum %d", one[0])
		}
		return nil
	})

	// Cross-group traffic is refused: job rank 2's sub-communicator
	// endpoint (sub-group 1) sends, as if to a peer, to job rank 1's
	// sub-communicator endpoint (sub-group 0) and to job rank 1's job
	// endpoint. (With one task key for all groups this part fails.)
	for _, target := range []*transport.Endpoint{subs[1], parents[1]} {
		before := target.Stats()
		if err := subs[2].AddPeer(99, target.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := subs[2].Send(sctx, 99, 7, []byte("not for you"))
		scancel()
		if err == nil {
			t.Fatal("a send to another group's endpoint completed")
		}
		if err := subs[2].RemovePeer(99); err != nil {
			t.Fatal(err)
		}
		after := target.Stats()
		if after.AuthFailures == before.AuthFailures {
			t.Fatalf("the other group's packets were not counted as authentication failures (%+v)", after)
		}
		rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err = target.Recv(rctx, transport.AnySource, 7, ^uint64(0), make([]byte, 64))
		rcancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a cross-group message was delivered (err %v)", err)
		}
	}
}

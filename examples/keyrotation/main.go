// Command keyrotation runs allreduce in a loop on 4 ranks while an operator
// rotates every root-key level and bumps the epoch, and shows that traffic
// never stops: it prints the epochs and key generations each rank saw and
// the number of errors (zero).
//
//	go run ./examples/keyrotation
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealring/sealring/collectives"
	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/wire"
)

func main() {
	rounds := flag.Int("rounds", 2, "rotations of each level (each followed by an epoch bump)")
	flag.Parse()
	res, err := run(context.Background(), 4, *rounds)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("allreduces: %d, errors: %d\n", res.allreduces, res.errors)
	fmt.Printf("epochs seen: %v\n", res.epochs)
	fmt.Printf("key generations seen (region,user,task): %v\n", res.generations)
}

type result struct {
	allreduces, errors int64
	epochs             []uint16
	generations        []string
}

func run(ctx context.Context, n, rounds int) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// The operator side: a store and the job's key controller. In a real
	// job these are the launcher's (rendezvous/launch) or rank 0's.
	store := rendezvous.NewMemStore(rendezvous.MemStoreConfig{})
	defer store.Close()
	kc, err := rendezvous.NewKeyController(ctx, store, rendezvous.KeyControllerConfig{Size: n})
	if err != nil {
		return result{}, err
	}
	defer kc.Close()

	var res result
	var mu sync.Mutex
	epochs := map[uint16]bool{}
	gens := map[string]bool{}
	var allreduces, errs atomic.Int64
	stop := make(chan struct{})
	net := wire.NewMemNetwork()
	var wg sync.WaitGroup
	ready := make(chan struct{}, n)
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rank(ctx, net, store, r, n, ready, stop, func(g *secure.Group, err error) {
				if err != nil {
					errs.Add(1)
					log.Printf("rank %d: %v", r, err)
					return
				}
				allreduces.Add(1)
				k := g.KeyIndex()
				mu.Lock()
				epochs[g.Epoch()] = true
				gens[fmt.Sprintf("%d,%d,%d", k.Gen(secure.Region), k.Gen(secure.User), k.Gen(secure.Task))] = true
				mu.Unlock()
			}); err != nil {
				errs.Add(1)
				log.Printf("rank %d: %v", r, err)
			}
		}()
	}
	for range n {
		<-ready
	}
	// The operator: rotate each level, bump the epoch, while traffic runs.
	var opErr error
	for range rounds {
		for _, l := range []secure.Level{secure.Region, secure.User, secure.Task} {
			if opErr = kc.RotateRootKey(ctx, l); opErr != nil {
				break
			}
		}
		if opErr != nil {
			break
		}
		if _, opErr = kc.BumpEpoch(ctx); opErr != nil {
			break
		}
	}
	time.Sleep(50 * time.Millisecond) // some traffic after the last event
	close(stop)
	wg.Wait()
	res.allreduces, res.errors = allreduces.Load(), errs.Load()
	for e := range epochs {
		res.epochs = append(res.epochs, e)
	}
	sort.Slice(res.epochs, func(i, j int) bool { return res.epochs[i] < res.epochs[j] })
	for g := range gens {
		res.generations = append(res.generations, g)
	}
	sort.Strings(res.generations)
	return res, opErr
}

// rank joins, then allreduces until stop, reporting each result.
func rank(ctx context.Context, net *wire.MemNetwork, store rendezvous.Store, r, n int, ready chan<- struct{}, stop <-chan struct{}, report func(*secure.Group, error)) error {
	w, err := net.Listen(netip.AddrPort{})
	if err != nil {
		return err
	}
	world, err := rendezvous.Join(ctx, rendezvous.JoinConfig{Store: store, Rank: r, Size: n, Addr: w.LocalAddr()})
	if err != nil {
		w.Close()
		return err
	}
	defer world.Close()
	ep, err := transport.New(transport.Config{Rank: uint32(r), Incarnation: world.Incarnation, Wire: w, Group: world.Group})
	if err != nil {
		return err
	}
	defer ep.Close()
	ranks := make([]uint32, n)
	for _, p := range world.Peers {
		ranks[p.Rank] = uint32(p.Rank)
		if p.Rank != r {
			ep.AddPeer(uint32(p.Rank), p.Addr)
		}
	}
	comm, err := collectives.New(collectives.FromEndpoint(ep, ranks), r, n, collectives.Options{})
	if err != nil {
		return err
	}
	defer comm.Close()
	ready <- struct{}{}
	buf := make([]float32, 4096)
	for {
		// Every rank must run the same number of allreduces: agree on
		// stopping with a flag reduced along with the data.
		stopping := float32(0)
		select {
		case <-stop:
			stopping = 1
		default:
		}
		for i := range buf {
			buf[i] = float32(r + i%7)
		}
		buf[0] = stopping
		err := collectives.AllReduce(ctx, comm, buf, buf, collectives.Sum)
		if err == nil && buf[1] != float32(n*(n-1)/2+n) {
			err = fmt.Errorf("wrong sum %v", buf[1])
		}
		report(world.Group, err)
		if err != nil {
			return err
		}
		if buf[0] > 0 {
			return nil
		}
	}
}

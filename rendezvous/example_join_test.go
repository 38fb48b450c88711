package rendezvous_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure"
)

// Forming a world of two ranks in one process through a MemStore (in a
// job: a *rendezvous.Client per rank, or rendezvous.JoinFromEnv), then
// rotating the task-group root key while both members follow.
func ExampleJoin() {
	ctx := context.Background()
	store := rendezvous.NewMemStore(rendezvous.MemStoreConfig{})
	defer store.Close()

	// The launcher (or rank 0) creates and publishes the job's keys.
	kc, err := rendezvous.NewKeyController(ctx, store, rendezvous.KeyControllerConfig{Size: 2})
	if err != nil {
		panic(err)
	}
	defer kc.Close()

	worlds := make([]*rendezvous.World, 2)
	var wg sync.WaitGroup
	for r := range worlds {
		wg.Go(func() {
			addr := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 7000+r))
			w, err := rendezvous.Join(ctx, rendezvous.JoinConfig{Store: store, Rank: r, Size: 2, Addr: addr})
			if err != nil {
				panic(err)
			}
			worlds[r] = w
		})
	}
	wg.Wait()
	for _, w := range worlds {
		defer w.Close()
	}
	fmt.Println("rank 1 sees rank 0 at", worlds[1].Peers[0].Addr, "incarnation", worlds[1].Peers[0].Incarnation)

	// Returns once both members have installed the rotation.
	if err := kc.RotateRootKey(ctx, secure.Task); err != nil {
		panic(err)
	}
	fmt.Println("task generation:", worlds[0].Group.KeyIndex().Gen(secure.Task), worlds[1].Group.KeyIndex().Gen(secure.Task))
	// Output:
	// rank 1 sees rank 0 at 127.0.0.1:7000 incarnation 1
	// task generation: 1 1
}

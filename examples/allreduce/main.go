// Command allreduce is the smallest complete sealring program: every rank
// contributes a vector and receives the element-wise sum, over encrypted
// UDP on localhost.
//
//	go run ./examples/allreduce           # starts 4 ranks itself
//	mpirun -np 4 -x SEALRING_STORE=... -x SEALRING_JOB_SECRET_FILE=... ./allreduce
package main

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"time"

	"github.com/sealring/sealring/collectives"
	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/rendezvous/launch"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/wire"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rendezvous.DetectLauncher(os.Getenv); err != nil {
		// Not started by a launcher: be one, with 4 ranks of this program.
		exe, _ := os.Executable()
		if err := launch.Run(ctx, launch.Config{N: 4, Command: []string{exe}}); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := rank(ctx); err != nil {
		log.Fatal(err)
	}
}

func rank(ctx context.Context) error {
	// 1. A socket, then the job: rank, peers, incarnation and root keys.
	w, err := wire.ListenUDP("udp", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
	if err != nil {
		return err
	}
	world, err := rendezvous.JoinFromEnv(ctx, w.LocalAddr())
	if err != nil {
		return err
	}
	defer world.Close()

	// 2. An encrypted endpoint that knows every peer.
	ep, err := transport.New(transport.Config{
		Rank: uint32(world.Rank), Incarnation: world.Incarnation, Wire: w, Group: world.Group,
	})
	if err != nil {
		return err
	}
	defer ep.Close() // on error paths; Shutdown below on success
	ranks := make([]uint32, world.Size)
	for _, p := range world.Peers {
		ranks[p.Rank] = uint32(p.Rank)
		if p.Rank != world.Rank {
			ep.AddPeer(uint32(p.Rank), p.Addr)
		}
	}

	// 3. A communicator, and the allreduce.
	comm, err := collectives.New(collectives.FromEndpoint(ep, ranks), world.Rank, world.Size, collectives.Options{})
	if err != nil {
		return err
	}
	defer comm.Close()
	data := []float32{float32(world.Rank), 1, 2}
	if err := collectives.AllReduce(ctx, comm, data, data, collectives.Sum); err != nil {
		return err
	}
	fmt.Printf("rank %d of %d: sum = %v\n", world.Rank, world.Size, data)

	// 4. A graceful end: wait until this rank's last messages are
	// acknowledged, then close (the deferred Close is for error paths).
	comm.Close()
	return ep.Shutdown(ctx)
}

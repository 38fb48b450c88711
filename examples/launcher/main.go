// Command launcher is a minimal job launcher built on rendezvous/launch:
// it hosts the job's mutually authenticated store and key controller,
// starts N ranks as child processes, prefixes their output with their rank,
// and stops the job with a clear report if any rank fails.
//
//	go run ./examples/launcher -np 4 -- ./my-rank-program args...
//	go run ./examples/launcher -np 3            # runs a built-in demo rank
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/rendezvous/launch"
)

func main() {
	np := flag.Int("np", 2, "number of ranks")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if os.Getenv(rendezvous.EnvCredentialsFile) != "" {
		// We are one of the ranks (the built-in demo).
		if err := demoRank(ctx); err != nil {
			log.Fatal(err)
		}
		return
	}
	cmd := flag.Args()
	if len(cmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			log.Fatal(err)
		}
		cmd = []string{exe}
	}
	if err := launch.Run(ctx, launch.Config{N: *np, Command: cmd}); err != nil {
		log.Fatal(err) // names the failed rank, its exit status and last stderr lines
	}
}

// demoRank joins the job and prints what it learned.
func demoRank(ctx context.Context) error {
	// A real rank passes its transport endpoint's address here.
	world, err := rendezvous.JoinFromEnv(ctx, netip.MustParseAddrPort("127.0.0.1:9"))
	if err != nil {
		return err
	}
	defer world.Close()
	fmt.Printf("joined as rank %d of %d (incarnation %d, job %s, %d peers, key epoch %d)\n",
		world.Rank, world.Size, world.Incarnation, world.JobID, len(world.Peers), world.Group.Epoch())
	return nil
}

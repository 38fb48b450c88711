package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/sealring/sealring/rendezvous/launch"
)

// launchLocal starts o.np copies of this program as the ranks of a job,
// through rendezvous/launch: it hosts the job's TLS store and key
// controller, and the ranks join with JoinFromEnv.
func launchLocal(ctx context.Context, o options, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := []string{exe}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-np" || a == "--np":
			i++ // drop its value
			continue
		case strings.HasPrefix(a, "-np=") || strings.HasPrefix(a, "--np="):
			continue
		}
		child = append(child, a)
	}
	// The ranks resolve nothing themselves: -busypoll auto was decided
	// here, where np is known (a later flag wins).
	child = append(child, "-busypoll="+o.busyPoll.String(), "-busypoll-bulk="+strconv.FormatBool(o.pollBulk),
		"-busypoll-yield="+strconv.FormatBool(o.pollYield))
	if laddr, err := netip.ParseAddrPort(o.addr); err == nil && o.wire == "udp" {
		// So is -maxpayload 0 on loopback, which depends on np too.
		child = append(child, "-maxpayload="+strconv.Itoa(loopbackPayload(o.maxPay, o.np, laddr)))
	}
	stdout := &rankZeroWriter{w: os.Stdout}
	err = launch.Run(ctx, launch.Config{
		N:       o.np,
		Command: child,
		Stdout:  stdout,
		Stderr:  os.Stderr,
		Env:     rankEnv(o.np),
	})
	stdout.flush()
	return err
}

// rankZeroWriter passes rank 0's standard output through without the
// launcher's "[rank 0] " prefix, so the table reads like all_reduce_perf's;
// other ranks' output keeps its prefix.
type rankZeroWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (z *rankZeroWriter) Write(p []byte) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.buf = append(z.buf, p...)
	for {
		i := bytes.IndexByte(z.buf, '\n')
		if i < 0 {
			break
		}
		line := z.buf[:i+1]
		line = bytes.TrimPrefix(line, []byte("[rank 0] "))
		if _, err := z.w.Write(line); err != nil {
			return len(p), err
		}
		z.buf = z.buf[i+1:]
	}
	return len(p), nil
}

func (z *rankZeroWriter) flush() {
	z.mu.Lock()
	defer z.mu.Unlock()
	if len(z.buf) > 0 {
		fmt.Fprintln(z.w, string(bytes.TrimPrefix(z.buf, []byte("[rank 0] "))))
		z.buf = nil
	}
}

// rankEnv gives each local rank its share of the cores as GOMAXPROCS
// (unless the caller set GOMAXPROCS), the way MPI binds one rank per core:
// with np ranks on n cores, n/np Ps each (at least 1). Measured on the
// 2-core machines (bench/p2p/RESULTS.md): 2 ranks with GOMAXPROCS=1 run
// 8-byte allreduce in about 0.6x the time, and with more busbw, than with
// GOMAXPROCS=2, where each idle rank's extra Ps wake and spin on the
// cores the other rank needs.
func rankEnv(np int) []string {
	if os.Getenv("GOMAXPROCS") != "" {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(max(1, runtime.NumCPU()/max(np, 1)))}
}

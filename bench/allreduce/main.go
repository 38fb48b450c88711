// Command allreduce is sealring's main benchmark: an encrypted multi-rank
// allreduce on one machine, printed in the columns of nccl-tests'
// all_reduce_perf so it sits beside the peers in shared/peers.
//
//	go run ./bench/allreduce -np 4                 # launch 4 local ranks over UDP
//	go run ./bench/allreduce -np 2 -b 1M -e 64M    # a size range
//	go run ./bench/allreduce -np 4 -wire mem       # 4 ranks in one process
//	go run ./bench/allreduce -np 4 -crypto off     # the same without encryption
//
// Without -np it is one rank of a job started by another launcher (mpirun,
// srun, torchrun, rendezvous/launch), e.g.
//
//	mpirun -np 4 -x SEALRING_STORE=127.0.0.1:29400 -x SEALRING_JOB_SECRET_FILE=/path/secret ./allreduce
//
// where the secret file comes from `allreduce -new-secret /path/secret`.
// Rank 0 prints the table. Every result is checked; a wrong value makes the
// run fail.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sealring/sealring/collectives"
	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/transport/wire"
)

type options struct {
	np        int
	minBytes  int64
	maxBytes  int64
	factor    int64
	iters     int
	warmup    int
	wire      string
	crypto    bool
	algo      string
	dtype     string
	op        string
	check     bool
	jsonOut   bool
	timeout   time.Duration
	addr      string
	cacheSize int
	quiet     bool
	maxPay    int
	localComp bool
	cpuProf   string
	tracePath string
	stats     bool
	segment   int64
	busyPoll  time.Duration
	pollBulk  bool
	pollYield bool
	depth     int
	window    int
	eager     int
	xchgEager int
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "allreduce:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("allreduce", flag.ContinueOnError)
	var o options
	var minS, maxS, crypto, newSecret string
	fs.IntVar(&o.np, "np", 0, "launch this many local ranks (0: be one rank of an externally launched job)")
	fs.StringVar(&minS, "b", "8", "smallest message size in bytes (K, M, G suffixes)")
	fs.StringVar(&maxS, "e", "64M", "largest message size in bytes")
	fs.Int64Var(&o.factor, "f", 2, "size multiplication factor")
	fs.IntVar(&o.iters, "n", 0, "timed iterations per size (0: 200 up to 64 KiB, 20 up to 4 MiB, 5 above, as the peers do)")
	fs.IntVar(&o.warmup, "w", 2, "warm-up iterations per size")
	fs.StringVar(&o.wire, "wire", "udp", "datagram wire: udp, quic (QUIC datagrams with the job's mutual TLS) or mem (all ranks in this process)")
	fs.StringVar(&crypto, "crypto", "on", "per-message encryption: on or off (off: trusted networks only)")
	fs.StringVar(&o.algo, "algo", "", "allreduce algorithm: auto, ring, rd, rabenseifner (default: SEALRING_ALGO or auto)")
	fs.StringVar(&o.dtype, "dtype", "float32", "element type: float32, float64, int32, int64, uint8, bfloat16, float16")
	fs.StringVar(&o.op, "op", "sum", "reduction: sum, prod, min, max")
	fs.BoolVar(&o.check, "check", true, "check every result (a wrong value fails the run)")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object per size instead of the table")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "this rank's UDP address (host:port)")
	fs.IntVar(&o.cacheSize, "cache", 0, "receive key-cache capacity (0: transport default; -1: derive every packet)")
	fs.StringVar(&newSecret, "new-secret", "", "write a new job secret to this file (mode 0600) and exit")
	fs.BoolVar(&o.quiet, "q", false, "no progress line on stderr")
	fs.BoolVar(&o.stats, "stats", false, "print each rank's transport counters (packets, retransmits, RTT, ...) on stderr at the end")
	fs.StringVar(&o.tracePath, "trace", "", "write each rank's execution trace (runtime/trace) to this file with the rank appended (.0, .1, ...)")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "write each rank's CPU profile to this file with the rank appended (.0, .1, ...)")
	fs.BoolVar(&o.localComp, "local-completion", true, "transport Config.LocalCompletion: eager sends complete once copied for retransmission (MPI's buffered eager send), not on the peer's ACK")
	var segS string
	fs.StringVar(&segS, "segment", "0", "collectives Tuning.SegmentBytes: the ring's pipeline segment (0: the default)")
	fs.IntVar(&o.depth, "depth", 0, "collectives Tuning.PipelineDepth: ring segment receives kept posted (0: the default)")
	var busyS string
	fs.StringVar(&busyS, "busypoll", "auto", "UDP wire BusyPoll: poll an idle socket this long before sleeping, e.g. 50us; 0: off; auto: "+defaultBusyPoll.String()+" when every local rank has a core of its own, "+sharedBusyPoll.String()+" (latency-bound phases only) when ranks outnumber cores, off when the local rank count is unknown")
	var bulkS string
	fs.StringVar(&bulkS, "busypoll-bulk", "auto", "UDP wire BusyPollBulk: keep polling while bulk receives are pending: true, false, or auto (true; the poller yields when ranks outnumber cores)")
	var yieldS string
	fs.StringVar(&yieldS, "busypoll-yield", "auto", "UDP wire BusyPollYield: the poller also yields the CPU to other processes: true, false, or auto (true when ranks outnumber cores or the local rank count is unknown)")
	fs.IntVar(&o.window, "window", 0, "transport Config.Window: unacknowledged packets per peer (0: the default)")
	fs.IntVar(&o.eager, "eager", 0, "transport Config.EagerLimit in bytes: larger messages use the RTS/CTS rendezvous (0: the default, 128 KiB)")
	fs.IntVar(&o.xchgEager, "exchange-eager", 0, "collectives Tuning.ExchangeEagerBytes: exchange sends (RD, Rabenseifner steps) up to this skip the rendezvous (0: the default, 1 MiB; -1: never)")
	fs.IntVar(&o.maxPay, "maxpayload", 0, "UDP datagram payload in bytes (0: on a loopback -addr 8192, or "+strconv.Itoa(sharedLoopbackPayload)+" when ranks outnumber cores; else the wire default 1452; every rank must agree)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if newSecret != "" {
		_, err := rendezvous.NewJobSecret(newSecret)
		return err
	}
	var err error
	if o.minBytes, err = parseSize(minS); err != nil {
		return fmt.Errorf("-b: %w", err)
	}
	if o.maxBytes, err = parseSize(maxS); err != nil {
		return fmt.Errorf("-e: %w", err)
	}
	if o.segment, err = parseSize(segS); err != nil || o.segment > 1<<30 {
		return fmt.Errorf("-segment: want a size up to 1G (%v)", err)
	}
	if o.busyPoll, err = parseBusyPoll(busyS, o.np); err != nil {
		return fmt.Errorf("-busypoll: %w", err)
	}
	if bulkS == "auto" {
		o.pollBulk = true
	} else if o.pollBulk, err = strconv.ParseBool(bulkS); err != nil {
		return fmt.Errorf("-busypoll-bulk: %w", err)
	}
	if yieldS == "auto" {
		o.pollYield = !ownCores(o.np)
	} else if o.pollYield, err = strconv.ParseBool(yieldS); err != nil {
		return fmt.Errorf("-busypoll-yield: %w", err)
	}
	if o.depth < 0 || o.window < 0 || o.eager < 0 {
		return fmt.Errorf("-depth, -window and -eager must not be negative")
	}
	if o.maxPay < 0 || o.maxPay > wire.MaxUDPPayload {
		return fmt.Errorf("-maxpayload outside [0, %d]", wire.MaxUDPPayload)
	}
	if o.minBytes > o.maxBytes || o.factor < 2 {
		return fmt.Errorf("want -b <= -e and -f >= 2")
	}
	switch crypto {
	case "on":
		o.crypto = true
	case "off":
	default:
		return fmt.Errorf("-crypto must be on or off, not %q", crypto)
	}
	if _, err := elemSize(o.dtype); err != nil {
		return err
	}
	if _, err := parseOp(o.op); err != nil {
		return err
	}
	if o.algo != "" {
		if _, err := collectives.ParseAlgorithm(o.algo); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	switch {
	case o.wire == "mem":
		if o.np < 1 {
			return fmt.Errorf("-wire mem needs -np (all ranks run in this process)")
		}
		return runInProcess(ctx, o)
	case o.wire != "udp" && o.wire != "quic":
		return fmt.Errorf("-wire must be udp, quic or mem, not %q", o.wire)
	case o.np > 0:
		return launchLocal(ctx, o, args)
	default:
		return runRankFromEnv(ctx, o)
	}
}

// parseSize parses 8, 64K, 1M, 2G (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func parseOp(s string) (collectives.Op, error) {
	for _, op := range collectives.Ops() {
		if op.String() == s {
			return op, nil
		}
	}
	return 0, fmt.Errorf("-op must be sum, prod, min or max, not %q", s)
}

func elemSize(dtype string) (int, error) {
	for _, t := range collectives.DataTypes() {
		if t.String() == dtype {
			return t.Size(), nil
		}
	}
	return 0, fmt.Errorf("unknown -dtype %q", dtype)
}

// defaultBusyPoll is -busypoll auto's window when every local rank has a
// core: 8-byte allreduce on 2 ranks measured 15-19 us with it against 42-61
// us without (docs/performance.md §7). sharedBusyPoll is its window when
// ranks outnumber cores, where the poller also yields the CPU between
// tries (BusyPollYield) so that it does not hold the core a peer needs:
// 4 ranks on 2 cores measured 2-3x lower latency up to 512 B, and polling
// through bulk phases too (BusyPollBulk) another 0.89-0.94 of the time
// from 16 KiB to 4 MiB (docs/performance.md §7, "Session 15").
const (
	defaultBusyPoll = 50 * time.Microsecond
	sharedBusyPoll  = 100 * time.Microsecond
)

// sharedLoopbackPayload is -maxpayload 0's datagram payload on loopback
// when ranks outnumber cores (wire.LoopbackMaxPayload otherwise). There
// every datagram's system call, headers, seal and acknowledgement compete
// for the cores with the other ranks' work, and 60 KiB datagrams measured
// 0.74-0.97 of the time from 64 KiB to 64 MiB on 4 ranks and 2 cores; with a
// core per rank the smaller datagrams overlap sealing, sending and opening
// better (60000-byte datagrams measured 0.87-1.48 of the time on 2 ranks
// from 64 KiB to 4 MiB; docs/performance.md §7, "Session 15").
const sharedLoopbackPayload = 61440

// localRanks is the number of ranks on this host: np under the built-in
// launcher, the external launcher's local size otherwise, 0 if unknown.
func localRanks(np int) int {
	if np != 0 {
		return np
	}
	return localRanksFromEnv()
}

// sharedCores reports whether ranks outnumber cores on this host (false if
// the rank count is unknown).
func sharedCores(np int) bool { return localRanks(np) > runtime.NumCPU() }

// ownCores reports whether every rank on this host has a core of its own
// (false if the rank count is unknown).
func ownCores(np int) bool {
	local := localRanks(np)
	return local > 0 && local <= runtime.NumCPU()
}

// parseBusyPoll resolves -busypoll "auto" from this host's rank count (np
// under the built-in launcher; the external launcher's local size
// otherwise): see defaultBusyPoll.
func parseBusyPoll(s string, np int) (time.Duration, error) {
	if s != "auto" {
		d, err := time.ParseDuration(s)
		if s == "0" {
			d, err = 0, nil
		}
		if err == nil && d < 0 {
			err = errors.New("negative duration")
		}
		if err != nil {
			return 0, err
		}
		return d, nil
	}
	local := localRanks(np)
	switch {
	case local <= 0:
		return 0, nil
	case local <= runtime.NumCPU():
		return defaultBusyPoll, nil
	}
	return sharedBusyPoll, nil
}

// localRanksFromEnv returns the number of ranks on this host as an external
// launcher states it (Open MPI, Slurm, torchrun), or 0 if none does.
func localRanksFromEnv() int {
	for _, name := range []string{"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE", "LOCAL_WORLD_SIZE"} {
		if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

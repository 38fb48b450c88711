package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"time"

	"github.com/sealring/sealring/collectives"
	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/quicwire"
	"github.com/sealring/sealring/transport/wire"
)

// rankRT is one rank's running job: its endpoint and communicator.
type rankRT struct {
	world *rendezvous.World
	ep    *transport.Endpoint
	comm  *collectives.Communicator
}

func (r *rankRT) close() {
	if r.comm != nil {
		r.comm.Close()
	}
	if r.ep != nil {
		r.ep.Close()
	}
	if r.world != nil {
		r.world.Close()
	}
}

// shutdownTimeout bounds a rank's graceful shutdown: on loopback its
// last messages are acknowledged within milliseconds.
const shutdownTimeout = 5 * time.Second

// shutdown ends a rank that finished its work: its endpoint waits until
// its last messages are acknowledged (with -local-completion, a rank's
// last sends complete before they arrive, and a plain Close would drop
// them, failing the peer that still waits for them). Not being able to
// confirm that is reported on stderr but does not fail this rank, whose
// results are complete: a peer that missed a message fails itself.
func (r *rankRT) shutdown(ctx context.Context, rank int) {
	if r.comm != nil {
		r.comm.Close()
	}
	if r.ep != nil {
		ctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
		defer cancel()
		if err := r.ep.Shutdown(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "allreduce: rank %d: %v\n", rank, err)
		}
	}
}

// startRank builds the endpoint and communicator of a joined rank.
func startRank(o options, world *rendezvous.World, w wire.Wire) (*rankRT, error) {
	rt := &rankRT{world: world}
	ep, err := transport.New(transport.Config{
		Rank:            uint32(world.Rank),
		Incarnation:     world.Incarnation,
		Wire:            w,
		Group:           world.Group,
		Insecure:        !o.crypto,
		CacheCapacity:   o.cacheSize,
		LocalCompletion: o.localComp,
		Window:          o.window,
		EagerLimit:      o.eager,
	})
	if err != nil {
		w.Close()
		return rt, fmt.Errorf("transport: %w", err)
	}
	rt.ep = ep
	ranks := make([]uint32, world.Size)
	for _, p := range world.Peers {
		ranks[p.Rank] = uint32(p.Rank)
		if p.Rank != world.Rank {
			if err := ep.AddPeer(uint32(p.Rank), p.Addr); err != nil {
				return rt, fmt.Errorf("adding peer %d: %w", p.Rank, err)
			}
		}
	}
	var copts collectives.Options
	copts.Tuning.SegmentBytes = int(o.segment)
	copts.Tuning.PipelineDepth = o.depth
	copts.Tuning.ExchangeEagerBytes = o.xchgEager
	if o.algo != "" {
		a, err := collectives.ParseAlgorithm(o.algo)
		if err != nil {
			return rt, err
		}
		copts.Algorithm = a
	}
	comm, err := collectives.New(collectives.FromEndpoint(ep, ranks), world.Rank, world.Size, copts)
	if err != nil {
		return rt, fmt.Errorf("communicator: %w", err)
	}
	rt.comm = comm
	return rt, nil
}

// runRankFromEnv is one rank of a job launched by someone else.
func runRankFromEnv(ctx context.Context, o options) error {
	laddr, err := netip.ParseAddrPort(o.addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	var w wire.Wire
	if o.wire == "quic" {
		// QUIC's TLS uses this rank's job credentials (the same files or
		// secret JoinFromEnv uses); its datagram size is QUIC's own.
		w, err = quicwire.ListenFromEnv(laddr, quicwire.Config{})
	} else {
		w, err = wire.ListenUDP("udp", laddr, wire.UDPConfig{MaxPayload: loopbackPayload(o.maxPay, o.np, laddr), BusyPoll: o.busyPoll, BusyPollBulk: o.pollBulk, BusyPollYield: o.pollYield})
	}
	if err != nil {
		return err
	}
	world, err := rendezvous.JoinFromEnv(ctx, w.LocalAddr())
	if err != nil {
		w.Close()
		return fmt.Errorf("joining the job: %w", err)
	}
	rt, err := startRank(o, world, w)
	defer rt.close()
	if err != nil {
		return err
	}
	if o.cpuProf != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", o.cpuProf, world.Rank))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.tracePath != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", o.tracePath, world.Rank))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	if o.stats {
		defer func() {
			s := rt.ep.Stats()
			fmt.Fprintf(os.Stderr, "# rank %d transport: packets sent %d received %d, retransmits %d (timeouts %d, %d spurious; %d put off while input waited), duplicates %d, placed %d, auth failures %d, refused %d, SRTT %v\n",
				world.Rank, s.PacketsSent, s.PacketsReceived, s.Retransmits, s.RTOs, s.SpuriousRTOs, s.DeferredRTOs, s.Duplicates, s.Placed, s.AuthFailures, s.Refused, s.SRTT)
		}()
	}
	out, progress := io.Discard, io.Discard
	if world.Rank == 0 {
		out = os.Stdout
		if !o.quiet {
			progress = os.Stderr
		}
	}
	if err := benchmark(ctx, o, rt, out, progress); err != nil {
		return err
	}
	rt.shutdown(ctx, world.Rank)
	return nil
}

// loopbackPayload resolves -maxpayload 0 for a rank listening on laddr.
func loopbackPayload(maxPay, np int, laddr netip.AddrPort) int {
	if maxPay != 0 || !laddr.Addr().Unmap().IsLoopback() {
		return maxPay
	}
	if sharedCores(np) {
		return sharedLoopbackPayload
	}
	return wire.LoopbackMaxPayload
}

// runInProcess runs o.np ranks as goroutines over the in-memory wire.
func runInProcess(ctx context.Context, o options) error {
	store := rendezvous.NewMemStore(rendezvous.MemStoreConfig{})
	defer store.Close()
	kc, err := rendezvous.NewKeyController(ctx, store, rendezvous.KeyControllerConfig{Size: o.np})
	if err != nil {
		return err
	}
	defer kc.Close()
	net := wire.NewMemNetwork()
	net.MaxPayload = o.maxPay
	errs := make([]error, o.np)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for r := range o.np {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = func() error {
				w, err := net.Listen(netip.AddrPort{})
				if err != nil {
					return err
				}
				world, err := rendezvous.Join(ctx, rendezvous.JoinConfig{Store: store, Rank: r, Size: o.np, Addr: w.LocalAddr()})
				if err != nil {
					w.Close()
					return err
				}
				rt, err := startRank(o, world, w)
				defer rt.close()
				if err != nil {
					return err
				}
				out, progress := io.Discard, io.Discard
				if r == 0 {
					out = os.Stdout
					if !o.quiet {
						progress = os.Stderr
					}
				}
				if err := benchmark(ctx, o, rt, out, progress); err != nil {
					return err
				}
				rt.shutdown(ctx, r)
				return nil
			}()
			if errs[r] != nil {
				cancel() // the others would wait for this rank
			}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("rank %d: %w", r, err)
		}
	}
	return errors.Join(errs...)
}

// row is one size's result, as printed.
type row struct {
	Bytes   int64   `json:"size"`
	Count   int     `json:"count"`
	Type    string  `json:"type"`
	Op      string  `json:"redop"`
	TimeUS  float64 `json:"time_us"`
	AlgBW   float64 `json:"algbw_gbps"`
	BusBW   float64 `json:"busbw_gbps"`
	Wrong   int64   `json:"wrong"`
	Ranks   int     `json:"ranks"`
	Iters   int     `json:"iters"`
	Wire    string  `json:"wire"`
	Crypto  string  `json:"crypto"`
	Checked bool    `json:"checked"`
	// CPUUS is the CPU time (user + system, all threads) the job's
	// processes spent per iteration, summed over the ranks; CPUUS /
	// (TimeUS · ranks) is how busy the ranks' processes were (1: no idle
	// time, with a core per rank). Absent where it cannot be measured.
	CPUUS float64 `json:"cpu_us,omitempty"`
}

// benchmark runs every size on this rank; out (rank 0's stdout) gets the
// table, progress (rank 0's stderr) a line per size.
func benchmark(ctx context.Context, o options, rt *rankRT, out, progress io.Writer) error {
	switch o.dtype {
	case "float32":
		return benchType[float32](ctx, o, rt, out, progress)
	case "float64":
		return benchType[float64](ctx, o, rt, out, progress)
	case "int32":
		return benchType[int32](ctx, o, rt, out, progress)
	case "int64":
		return benchType[int64](ctx, o, rt, out, progress)
	case "uint8":
		return benchType[uint8](ctx, o, rt, out, progress)
	case "bfloat16":
		return benchType[collectives.BFloat16](ctx, o, rt, out, progress)
	case "float16":
		return benchType[collectives.Float16](ctx, o, rt, out, progress)
	}
	return fmt.Errorf("unknown -dtype %q", o.dtype)
}

func itersFor(o options, bytes int64) int {
	if o.iters > 0 {
		return o.iters
	}
	switch {
	case bytes <= 64<<10:
		return 200
	case bytes <= 4<<20:
		return 20
	}
	return 5
}

func benchType[T collectives.Elem](ctx context.Context, o options, rt *rankRT, out, progress io.Writer) error {
	c := rt.comm
	n, rank := c.Size(), c.Rank()
	op, _ := parseOp(o.op)
	esize := collectives.TypeOf[T]().Size()
	cryptoName := "off"
	if o.crypto {
		cryptoName = secure.CryptoPath()
	}
	maxCount := int(o.maxBytes) / esize
	send := make([]T, maxCount)
	recv := make([]T, maxCount)
	var want []T
	if o.check {
		want = make([]T, maxCount)
	}
	if !o.jsonOut {
		fmt.Fprintf(out, "# sealring allreduce: %d ranks, wire %s, crypto %s, algo %s, dtype %s, op %s, busypoll %v (through bulk phases: %v, yielding the CPU: %v)\n",
			n, o.wire, cryptoName, algoName(o.algo), o.dtype, o.op, o.busyPoll, o.pollBulk, o.pollYield)
		fmt.Fprintf(out, "#\n# %10s %12s %9s %6s %12s %8s %8s %7s\n", "size", "count", "type", "redop", "time", "algbw", "busbw", "#wrong")
		fmt.Fprintf(out, "# %10s %12s %9s %6s %12s %8s %8s %7s\n", "(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)", "")
	}
	enc := json.NewEncoder(out)
	var busSum float64
	rows := 0
	var totalWrong int64
	for size := o.minBytes; size <= o.maxBytes; size *= o.factor {
		count := int(size) / esize
		if size > 0 && count == 0 {
			continue
		}
		bytes := int64(count * esize)
		var w []T
		if o.check {
			w = want[:count]
		}
		fill(send[:count], w, rank, n, op)
		iters := itersFor(o, bytes)
		fmt.Fprintf(progress, "allreduce: %d B x %d iterations ...\n", bytes, iters)
		for range o.warmup {
			if err := collectives.AllReduce(ctx, c, send[:count], recv[:count], op); err != nil {
				return fmt.Errorf("%d B warm-up: %w", bytes, err)
			}
		}
		if err := collectives.Barrier(ctx, c); err != nil {
			return err
		}
		cpu0, cpuOK := processCPU()
		t0 := time.Now()
		for range iters {
			if err := collectives.AllReduce(ctx, c, send[:count], recv[:count], op); err != nil {
				return fmt.Errorf("%d B: %w", bytes, err)
			}
		}
		el := []float64{time.Since(t0).Seconds() / float64(iters)}
		cpu1, _ := processCPU()
		if err := collectives.AllReduce(ctx, c, el, el, collectives.Max); err != nil {
			return err
		}
		// CPU time per iteration, summed over the ranks' processes (with
		// the mem wire every rank shares one process: rank 0 counts it).
		// [0] the sum, [1] how many ranks could measure.
		cpu := []float64{0, 0}
		if cpuOK && (o.wire != "mem" || rank == 0) {
			cpu[0], cpu[1] = (cpu1-cpu0).Seconds()/float64(iters), 1
		} else if o.wire == "mem" && rank != 0 {
			cpu[1] = 1 // counted by rank 0
		}
		if err := collectives.AllReduce(ctx, c, cpu, cpu, collectives.Sum); err != nil {
			return err
		}
		wrong := []int64{0}
		if o.check {
			for i := range count {
				if recv[i] != want[i] {
					wrong[0]++
				}
			}
		}
		if err := collectives.AllReduce(ctx, c, wrong, wrong, collectives.Sum); err != nil {
			return err
		}
		totalWrong += wrong[0]
		r := row{Bytes: bytes, Count: count, Type: o.dtype, Op: o.op, TimeUS: el[0] * 1e6, Wrong: wrong[0],
			Ranks: n, Iters: iters, Wire: o.wire, Crypto: cryptoName, Checked: o.check}
		if int(cpu[1]) == n {
			r.CPUUS = cpu[0] * 1e6
		}
		r.AlgBW = collectives.AlgBandwidth(bytes, el[0]) / 1e9 // GB/s, GB = 1e9 B as nccl-tests
		r.BusBW = collectives.BusBandwidth(collectives.KindAllReduce, bytes, el[0], n) / 1e9
		busSum += r.BusBW
		rows++
		if o.jsonOut {
			enc.Encode(r)
		} else {
			fmt.Fprintf(out, "  %10d %12d %9s %6s %12.1f %8.3f %8.3f %7d\n", r.Bytes, r.Count, r.Type, r.Op, r.TimeUS, r.AlgBW, r.BusBW, r.Wrong)
		}
	}
	if !o.jsonOut && rows > 0 {
		fmt.Fprintf(out, "# Out of bounds values : %d %s\n", totalWrong, map[bool]string{true: "OK", false: "FAILED"}[totalWrong == 0])
		fmt.Fprintf(out, "# Avg bus bandwidth    : %.3f\n", busSum/float64(rows))
	}
	if totalWrong > 0 {
		return fmt.Errorf("%d wrong values", totalWrong)
	}
	return nil
}

func algoName(a string) string {
	if a == "" {
		if env := os.Getenv("SEALRING_ALGO"); env != "" {
			return env
		}
		return "auto"
	}
	return a
}

// fill sets this rank's input and the expected result. Values are small
// integers so that every type represents inputs and results exactly
// (uint8 products wrap, identically in the reference).
func fill[T collectives.Elem](send, want []T, rank, n int, op collectives.Op) {
	val := func(r, i int) int64 {
		switch op {
		case collectives.Sum:
			return int64((i*7 + r*3) % 16)
		case collectives.Prod:
			return int64(1 + (i+r)%2)
		default:
			return int64((i*13 + r*5) % 97)
		}
	}
	for i := range send {
		send[i] = fromInt[T](val(rank, i))
		if want == nil {
			continue
		}
		e := val(0, i)
		for r := 1; r < n; r++ {
			v := val(r, i)
			switch op {
			case collectives.Sum:
				e += v
			case collectives.Prod:
				e *= v
			case collectives.Min:
				e = min(e, v)
			case collectives.Max:
				e = max(e, v)
			}
		}
		if want != nil {
			want[i] = fromInt[T](e)
		}
	}
}

func fromInt[T collectives.Elem](v int64) T {
	var z T
	switch any(z).(type) {
	case collectives.BFloat16:
		return any(collectives.BFloat16FromFloat32(float32(v))).(T)
	case collectives.Float16:
		return any(collectives.Float16FromFloat32(float32(v))).(T)
	case float32:
		return any(float32(v)).(T)
	case float64:
		return any(float64(v)).(T)
	case int32:
		return any(int32(v)).(T)
	case int64:
		return any(v).(T)
	case uint8:
		return any(uint8(v)).(T)
	}
	panic("unreachable")
}

// Command p2p measures sealring's point-to-point performance on loopback
// against plain Go TCP, all in one run, so that the ratios are comparable:
//
//	go run ./bench/p2p                      # 8 B .. 64 MiB, UDP wire
//	go run ./bench/p2p -b 1M -e 1M -r 9     # one size, more repetitions
//	go run ./bench/p2p -wire mem            # sealring over the in-memory wire
//	go run ./bench/p2p -maxpayload 1452     # real-network datagrams (default 8192)
//	go run ./bench/p2p -json                # one JSON object per result
//
// Rows:
//
//   - sealed: two sealring Endpoints in this process, each on its own real
//     UDP socket on 127.0.0.1 (-wire udp, the default) with AES-GCM sealing;
//   - insecure: the same with Config.Insecure (crypto off);
//   - tcp: the reference, a plain net.TCPConn pair over 127.0.0.1 in this
//     process, with the same framing (an 8-byte length, then the message;
//     TCP_NODELAY on, one writev per message).
//
// Both endpoints of every pair live in this process (two goroutines, two
// sockets, the kernel's loopback between them); on the 2-core machines the
// sender and the receiver share the cores with the endpoints' internal
// goroutines, exactly as two ranks on one node would.
//
// Bandwidth is one-way streaming: the sender keeps -window sends in flight
// (SendAsync; for TCP one writer goroutine), the receiver keeps receives
// posted; the time runs from the first send to the last completed receive.
// Each size is measured -r times (after -w warm-up messages) and the median
// is printed. Latency is an 8-byte ping-pong (blocking Send then Recv on
// one side, Recv then Send on the other): the median of -pp round trips,
// and half of it. Ratios are row / tcp: above 1 is better for bandwidth,
// below 1 is better for latency.
//
// Sizes run from -e down by factors of -f to -b, plus -b itself: with the
// defaults 8, 16, 64, 256, 1 Ki, ..., 1 Mi, 4 Mi, 16 Mi, 64 Mi.
//
// sealring's datagrams are 8192 bytes by default here (loopback's MTU is
// 64 KiB); -maxpayload 1452 gives the size used on real networks. The
// sealring rows run as bench/allreduce does by default: eager sends
// complete locally (Config.LocalCompletion: once copied for
// retransmission, the contract of TCP's Write, which returns once the
// kernel holds the bytes; -local-completion=false makes Send wait for the
// peer's ACK, the transport's default), and the UDP wire busy-polls an
// idle socket for 50 µs when the host has a core per endpoint (-busypoll;
// TCP's reader sleeps in the netpoller). Both peers always run in this process
// (there is no -proc mode): bench/allreduce -np 2 is the two-process
// measurement.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/quicwire"
	"github.com/sealring/sealring/transport/wire"
)

type options struct {
	minBytes, maxBytes, factor int64
	iters                      int // messages per bandwidth repetition (0: auto)
	warmup                     int // warm-up messages per size and row (-1: auto)
	reps                       int
	window                     int
	pingIters                  int
	wire                       string
	maxPayload                 int
	busyPoll                   time.Duration
	jsonOut                    bool
	rows                       []string
	timeout                    time.Duration
	cpuProfile                 string
	localComp                  bool
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "p2p:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("p2p", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var minS, maxS, rows string
	fs.StringVar(&minS, "b", "8", "smallest message size in bytes (K, M, G suffixes)")
	fs.StringVar(&maxS, "e", "64M", "largest message size in bytes")
	fs.Int64Var(&o.factor, "f", 4, "size step factor (sizes are -e, -e/f, ... down to -b, plus -b)")
	fs.IntVar(&o.iters, "n", 0, "messages per bandwidth repetition (0: 64 MiB worth, between 4 and 4000)")
	fs.IntVar(&o.warmup, "w", -1, "warm-up messages per size and row (-1: 2 windows, at most -n)")
	fs.IntVar(&o.reps, "r", 5, "bandwidth repetitions per size (the median is printed)")
	fs.IntVar(&o.window, "window", 16, "sends in flight (and receives posted) while streaming")
	fs.IntVar(&o.pingIters, "pp", 2000, "ping-pong round trips (0: skip the latency table)")
	fs.StringVar(&o.wire, "wire", "udp", "sealring's datagram wire: udp (real sockets on 127.0.0.1), quic (QUIC datagrams on 127.0.0.1) or mem")
	fs.IntVar(&o.maxPayload, "maxpayload", wire.LoopbackMaxPayload, "sealring wire MaxPayload in bytes (0: the wire default for real networks, 1452; loopback allows up to 65507)")
	fs.DurationVar(&o.busyPoll, "busypoll", defaultBusyPoll(), "sealring UDP wire BusyPoll: poll an idle socket this long before sleeping (0: off; the default is bench/allreduce's when every rank has a core)")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object per result instead of the tables")
	fs.StringVar(&rows, "rows", "sealed,insecure,tcp", "rows to measure (tcp is needed for the ratios)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fs.BoolVar(&o.localComp, "local-completion", true, "sealring Config.LocalCompletion: eager sends complete once copied for retransmission (TCP Write's contract, bench/allreduce's default); false: on the peer's ACK")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measurements to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.minBytes, err = parseSize(minS); err != nil {
		return o, fmt.Errorf("-b: %w", err)
	}
	if o.maxBytes, err = parseSize(maxS); err != nil {
		return o, fmt.Errorf("-e: %w", err)
	}
	switch {
	case o.minBytes < 1 || o.maxBytes < o.minBytes:
		return o, fmt.Errorf("need 1 <= -b <= -e")
	case o.maxBytes > 1<<30:
		return o, fmt.Errorf("-e above 1 GiB")
	case o.factor < 2:
		return o, fmt.Errorf("-f must be at least 2")
	case o.reps < 1 || o.window < 1 || o.iters < 0 || o.pingIters < 0:
		return o, fmt.Errorf("-r and -window must be positive, -n and -pp not negative")
	case o.wire != "udp" && o.wire != "mem" && o.wire != "quic":
		return o, fmt.Errorf("-wire %q: want udp, quic or mem", o.wire)
	case o.maxPayload < 0 || o.maxPayload > wire.MaxUDPPayload:
		return o, fmt.Errorf("-maxpayload outside [0, %d]", wire.MaxUDPPayload)
	}
	for _, r := range strings.Split(rows, ",") {
		switch r = strings.TrimSpace(r); r {
		case "sealed", "insecure", "tcp":
			if !slices.Contains(o.rows, r) {
				o.rows = append(o.rows, r)
			}
		case "":
		default:
			return o, fmt.Errorf("-rows: unknown row %q", r)
		}
	}
	if len(o.rows) == 0 {
		return o, fmt.Errorf("-rows: nothing to measure")
	}
	return o, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if v < 0 || v > (1<<40)/mult {
		return 0, fmt.Errorf("size %s out of range", s)
	}
	return v * mult, nil
}

// sizes returns -e, -e/f, ... down to -b, plus -b, ascending.
func (o options) sizes() []int {
	var s []int
	for v := o.maxBytes; v >= o.minBytes; v /= o.factor {
		s = append(s, int(v))
		if v/o.factor == v {
			break
		}
	}
	if s[len(s)-1] != int(o.minBytes) {
		s = append(s, int(o.minBytes))
	}
	slices.Reverse(s)
	return s
}

// count is how many messages one bandwidth repetition streams.
func (o options) count(size int) int {
	if o.iters > 0 {
		return o.iters
	}
	return min(max((64<<20)/size, 4), 4000)
}

func (o options) warm(size int) int {
	if o.warmup >= 0 {
		return o.warmup
	}
	return min(2*o.window, o.count(size))
}

// BW is one bandwidth result.
type BW struct {
	Kind      string  `json:"kind"` // "bandwidth"
	Row       string  `json:"row"`
	Size      int     `json:"size"`
	Messages  int     `json:"messages"`
	Reps      int     `json:"reps"`
	GBps      float64 `json:"gbps"`                // median, 1e9 bytes per second
	RatioTCP  float64 `json:"ratio_tcp,omitempty"` // GBps / tcp's GBps
	SpreadMin float64 `json:"gbps_min"`
	SpreadMax float64 `json:"gbps_max"`
	RetxPct   float64 `json:"retx_pct"` // sealring: retransmitted share of the sender's datagrams
}

// Lat is one ping-pong result.
type Lat struct {
	Kind     string  `json:"kind"` // "latency"
	Row      string  `json:"row"`
	Size     int     `json:"size"`
	Iters    int     `json:"iters"`
	HalfRTT  float64 `json:"half_rtt_us"` // median round trip / 2
	RTT      float64 `json:"rtt_us"`      // median round trip
	P90RTT   float64 `json:"p90_rtt_us"`
	RatioTCP float64 `json:"ratio_tcp,omitempty"` // RTT / tcp's RTT
}

// Results is everything one run measured.
type Results struct {
	BW  []BW
	Lat []Lat
	// Raw is the quic-go baseline, measured with -wire quic.
	Raw *RawQUIC
}

// pair is two connected endpoints of one row: a sends, b receives.
type pair interface {
	// stream sends count messages of len(msg) from a to b with up to
	// window in flight and returns when b has received all of them.
	stream(ctx context.Context, msg []byte, count, window int) error
	// pingPong runs n 8-byte round trips a→b→a and returns each one's time.
	pingPong(ctx context.Context, n int, rtts []time.Duration) error
	// sent returns the datagrams (or writes) and retransmissions a has
	// sent so far; 0, 0 for TCP.
	sent() (pkts, retx uint64)
	close()
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := measure(ctx, o, stderr)
	if err != nil {
		return err
	}
	if o.wire == "quic" {
		raw, err := measureRawQUIC(ctx, 20000)
		if err != nil {
			return err
		}
		res.Raw = &raw
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		for _, b := range res.BW {
			if err := enc.Encode(b); err != nil {
				return err
			}
		}
		for _, l := range res.Lat {
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		if res.Raw != nil {
			return enc.Encode(res.Raw)
		}
		return nil
	}
	printTables(stdout, o, res)
	if res.Raw != nil {
		printRawQUIC(stdout, *res.Raw, res)
	}
	return nil
}

func (o options) describe() string {
	mp := o.maxPayload
	if mp == 0 {
		mp = wire.DefaultMaxPayload
	}
	w := "udp (two endpoints in one process, two sockets on 127.0.0.1)"
	switch o.wire {
	case "mem":
		w = "mem (two endpoints in one process, in-memory wire)"
	case "quic":
		w, mp = "quic (two endpoints in one process, QUIC datagrams on 127.0.0.1, job-CA mutual TLS)", quicwire.DefaultPacketSize-42
	}
	return fmt.Sprintf("wire %s, MaxPayload %d, crypto %s, window %d, local completion %v, busy poll %v; tcp: net.TCPConn on 127.0.0.1, TCP_NODELAY",
		w, mp, secure.CryptoPath(), o.window, o.localComp, o.busyPoll)
}

// defaultBusyPoll is -busypoll's default: 50 µs, bench/allreduce's window
// when every rank has a core, if the host has a core for each endpoint's
// receive goroutine; else off.
func defaultBusyPoll() time.Duration {
	if runtime.NumCPU() >= 2 {
		return 50 * time.Microsecond
	}
	return 0
}

func measure(ctx context.Context, o options, progress io.Writer) (Results, error) {
	var res Results
	pairs := make(map[string]pair)
	defer func() {
		for _, p := range pairs {
			p.close()
		}
	}()
	for _, r := range o.rows {
		p, err := newPair(o, r)
		if err != nil {
			return res, fmt.Errorf("%s: %w", r, err)
		}
		pairs[r] = p
	}
	// Latency first, while nothing else has run yet on the connections.
	if o.pingIters > 0 {
		rtts := make([]time.Duration, o.pingIters)
		var tcpRTT float64
		for _, r := range o.rows {
			fmt.Fprintf(progress, "[p2p] %s: %d-byte ping-pong x %d\n", r, 8, o.pingIters)
			if err := pairs[r].pingPong(ctx, min(o.pingIters, 200), rtts); err != nil { // warm-up
				return res, fmt.Errorf("%s ping-pong: %w", r, err)
			}
			if err := pairs[r].pingPong(ctx, o.pingIters, rtts); err != nil {
				return res, fmt.Errorf("%s ping-pong: %w", r, err)
			}
			slices.Sort(rtts)
			med := us(rtts[len(rtts)/2])
			l := Lat{Kind: "latency", Row: r, Size: 8, Iters: o.pingIters, RTT: med, HalfRTT: med / 2,
				P90RTT: us(rtts[len(rtts)*9/10])}
			if r == "tcp" {
				tcpRTT = med
			}
			res.Lat = append(res.Lat, l)
		}
		if tcpRTT > 0 {
			for i := range res.Lat {
				res.Lat[i].RatioTCP = res.Lat[i].RTT / tcpRTT
			}
		}
	}
	for _, size := range o.sizes() {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i*7 + 1)
		}
		count := o.count(size)
		var tcp float64
		first := len(res.BW)
		for _, r := range o.rows {
			fmt.Fprintf(progress, "[p2p] %s: %d B x %d messages x %d\n", r, size, count, o.reps)
			p := pairs[r]
			if w := o.warm(size); w > 0 {
				if err := p.stream(ctx, msg, w, o.window); err != nil {
					return res, fmt.Errorf("%s %d B: %w", r, size, err)
				}
			}
			gbps := make([]float64, o.reps)
			pkts0, retx0 := p.sent()
			for i := range gbps {
				t0 := time.Now()
				if err := p.stream(ctx, msg, count, o.window); err != nil {
					return res, fmt.Errorf("%s %d B: %w", r, size, err)
				}
				gbps[i] = float64(size) * float64(count) / time.Since(t0).Seconds() / 1e9
			}
			slices.Sort(gbps)
			b := BW{Kind: "bandwidth", Row: r, Size: size, Messages: count, Reps: o.reps,
				GBps: gbps[len(gbps)/2], SpreadMin: gbps[0], SpreadMax: gbps[len(gbps)-1]}
			if pkts, retx := p.sent(); pkts > pkts0 {
				b.RetxPct = float64(retx-retx0) / float64(pkts-pkts0) * 100
			}
			if r == "tcp" {
				tcp = b.GBps
			}
			res.BW = append(res.BW, b)
		}
		if tcp > 0 {
			for i := first; i < len(res.BW); i++ {
				res.BW[i].RatioTCP = res.BW[i].GBps / tcp
			}
		}
	}
	return res, nil
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func printTables(w io.Writer, o options, res Results) {
	fmt.Fprintf(w, "# sealring p2p: %s\n", o.describe())
	if len(res.Lat) > 0 {
		fmt.Fprintf(w, "#\n# 8-byte ping-pong, median of %d round trips (x tcp: rtt / tcp's rtt, lower is better)\n", o.pingIters)
		fmt.Fprintf(w, "# %10s %12s %10s %10s %8s\n", "row", "half-rtt-us", "rtt-us", "p90-rtt-us", "x-tcp")
		for _, l := range res.Lat {
			fmt.Fprintf(w, "  %10s %12.2f %10.2f %10.2f %8s\n", l.Row, l.HalfRTT, l.RTT, l.P90RTT, ratio(l.RatioTCP))
		}
	}
	if len(res.BW) > 0 {
		fmt.Fprintf(w, "#\n# one-way bandwidth in GB/s, median of %d repetitions (x tcp: GB/s / tcp's GB/s, higher is better)\n", o.reps)
		fmt.Fprintf(w, "# %10s %10s %10s %10s %8s\n", "size", "row", "GB/s", "messages", "x-tcp")
		for _, b := range res.BW {
			fmt.Fprintf(w, "  %10d %10s %10.4f %10d %8s\n", b.Size, b.Row, b.GBps, b.Messages, ratio(b.RatioTCP))
		}
	}
}

func ratio(r float64) string {
	if r == 0 {
		return "-"
	}
	return strconv.FormatFloat(r, 'f', 2, 64)
}

func newPair(o options, row string) (pair, error) {
	if row == "tcp" {
		return newTCPPair()
	}
	return newSealPair(o, row == "insecure")
}

// ---- sealring ----

type sealPair struct {
	a, b *transport.Endpoint
	rbuf [][]byte // receive buffers, reused
}

const (
	tagStream = 1
	tagPing   = 2
)

func newGroup() (*secure.Group, error) {
	cfg := secure.GroupConfig{ID: make([]byte, 16)}
	if _, err := rand.Read(cfg.ID); err != nil {
		return nil, err
	}
	for l := range cfg.Keys {
		for _, k := range []*secure.RootKey{&cfg.Keys[l].Current, &cfg.Keys[l].Next} {
			if _, err := rand.Read(k.Key[:]); err != nil {
				return nil, err
			}
		}
		cfg.Keys[l].Next.Gen = 1
	}
	return secure.NewGroup(cfg)
}

func newSealPair(o options, insecure bool) (*sealPair, error) {
	var g *secure.Group
	if !insecure {
		var err error
		if g, err = newGroup(); err != nil {
			return nil, err
		}
	}
	var mem *wire.MemNetwork
	if o.wire == "mem" {
		mem = wire.NewMemNetwork()
		mem.QueueLen = 4096
		mem.MaxPayload = o.maxPayload
	}
	var ca *rendezvous.JobCA
	if o.wire == "quic" {
		var err error
		if ca, err = rendezvous.NewJobCA(); err != nil {
			return nil, err
		}
	}
	rank := 0
	listen := func() (wire.Wire, error) {
		if mem != nil {
			return mem.Listen(netip.AddrPort{})
		}
		if ca != nil {
			creds, err := ca.Issue("rank", rank)
			rank++
			if err != nil {
				return nil, err
			}
			return quicwire.Listen(netip.MustParseAddrPort("127.0.0.1:0"), quicwire.Config{Credentials: creds})
		}
		return wire.ListenUDP("udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{MaxPayload: o.maxPayload, BusyPoll: o.busyPoll})
	}
	p := &sealPair{}
	for i, ep := range []**transport.Endpoint{&p.a, &p.b} {
		w, err := listen()
		if err != nil {
			p.close()
			return nil, err
		}
		*ep, err = transport.New(transport.Config{Rank: uint32(i), Incarnation: 1, Wire: w, Group: g, Insecure: insecure,
			LocalCompletion: o.localComp})
		if err != nil {
			w.Close()
			p.close()
			return nil, err
		}
	}
	for _, x := range []*transport.Endpoint{p.a, p.b} {
		for _, y := range []*transport.Endpoint{p.a, p.b} {
			if x != y {
				if err := x.AddPeer(y.Rank(), y.LocalAddr()); err != nil {
					p.close()
					return nil, err
				}
			}
		}
	}
	return p, nil
}

func (p *sealPair) sent() (uint64, uint64) {
	s := p.a.Stats()
	return s.PacketsSent, s.Retransmits
}

func (p *sealPair) close() {
	if p.a != nil {
		p.a.Close()
	}
	if p.b != nil {
		p.b.Close()
	}
}

// recvBufs returns up to window receive buffers of size bytes, at most
// 512 MiB in all (receives posted beyond that share buffers round-robin,
// one at a time per buffer).
func (p *sealPair) recvBufs(size, window int) [][]byte {
	n := max(1, min(window, (512<<20)/max(size, 1)))
	if len(p.rbuf) != n || (n > 0 && len(p.rbuf[0]) != size) {
		p.rbuf = make([][]byte, n)
		for i := range p.rbuf {
			p.rbuf[i] = make([]byte, size)
		}
	}
	return p.rbuf
}

func (p *sealPair) stream(ctx context.Context, msg []byte, count, window int) error {
	bufs := p.recvBufs(len(msg), window)
	errc := make(chan error, 1)
	go func() {
		reqs := make([]*transport.Request, len(bufs))
		var err error
		for i := 0; i < count && err == nil; i++ {
			k := i % len(bufs)
			if q := reqs[k]; q != nil {
				err = waitRecv(ctx, q, len(msg))
			}
			reqs[k] = p.b.RecvAsync(ctx, 0, tagStream, ^uint64(0), bufs[k])
		}
		for _, q := range reqs {
			if q != nil && err == nil {
				err = waitRecv(ctx, q, len(msg))
			}
		}
		errc <- err
	}()
	reqs := make([]*transport.Request, window)
	var err error
	for i := 0; i < count && err == nil; i++ {
		k := i % window
		if q := reqs[k]; q != nil {
			_, err = q.Wait(ctx)
		}
		reqs[k] = p.a.SendAsync(ctx, 1, tagStream, msg)
	}
	for _, q := range reqs {
		if q != nil && err == nil {
			_, err = q.Wait(ctx)
		}
	}
	if rerr := <-errc; err == nil {
		err = rerr
	}
	return err
}

func waitRecv(ctx context.Context, q *transport.Request, want int) error {
	st, err := q.Wait(ctx)
	if err == nil && st.Len != want {
		err = fmt.Errorf("received %d bytes, want %d", st.Len, want)
	}
	return err
}

func (p *sealPair) pingPong(ctx context.Context, n int, rtts []time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 8)
		for range n {
			if _, err := p.b.Recv(ctx, 0, tagPing, ^uint64(0), buf); err != nil {
				errc <- err
				return
			}
			if err := p.b.Send(ctx, 0, tagPing, buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	msg, buf := make([]byte, 8), make([]byte, 8)
	var err error
	for i := 0; i < n && err == nil; i++ {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		t0 := time.Now()
		if err = p.a.Send(ctx, 1, tagPing, msg); err != nil {
			break
		}
		var st transport.Status
		st, err = p.a.Recv(ctx, 1, tagPing, ^uint64(0), buf)
		rtts[i%len(rtts)] = time.Since(t0)
		if err == nil && (st.Len != 8 || binary.LittleEndian.Uint64(buf) != uint64(i)) {
			err = errors.New("ping-pong: wrong answer")
		}
	}
	if rerr := <-errc; err == nil {
		err = rerr
	}
	return err
}

// ---- TCP reference ----

type tcpPair struct {
	a, b   *net.TCPConn
	ar, br *bufio.Reader
	rbuf   []byte
}

func newTCPPair() (*tcpPair, error) {
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	type acc struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan acc, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- acc{c, err}
	}()
	a, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return nil, err
	}
	r := <-ch
	if r.err != nil {
		a.Close()
		return nil, r.err
	}
	for _, c := range []*net.TCPConn{a, r.c} {
		c.SetNoDelay(true)
	}
	return &tcpPair{a: a, b: r.c, ar: bufio.NewReaderSize(a, 64<<10), br: bufio.NewReaderSize(r.c, 64<<10)}, nil
}

func (p *tcpPair) sent() (uint64, uint64) { return 0, 0 }

func (p *tcpPair) close() {
	p.a.Close()
	p.b.Close()
}

// readMsg reads one length-prefixed message into buf.
func readMsg(r *bufio.Reader, hdr, buf []byte) (int, error) {
	if _, err := io.ReadFull(r, hdr[:8]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint64(hdr)
	if n > uint64(len(buf)) {
		return 0, fmt.Errorf("tcp: message of %d bytes, buffer %d", n, len(buf))
	}
	return io.ReadFull(r, buf[:n])
}

func (p *tcpPair) stream(ctx context.Context, msg []byte, count, window int) error {
	if len(p.rbuf) != len(msg) {
		p.rbuf = make([]byte, len(msg))
	}
	errc := make(chan error, 1)
	go func() {
		var hdr [8]byte
		for range count {
			n, err := readMsg(p.br, hdr[:], p.rbuf)
			if err == nil && n != len(msg) {
				err = fmt.Errorf("tcp: received %d bytes, want %d", n, len(msg))
			}
			if err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(msg)))
	var err error
	for range count {
		bufs := net.Buffers{hdr[:], msg}
		if _, err = bufs.WriteTo(p.a); err != nil {
			break
		}
	}
	if rerr := <-errc; err == nil {
		err = rerr
	}
	return err
}

func (p *tcpPair) pingPong(ctx context.Context, n int, rtts []time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		var hdr [8]byte
		buf := make([]byte, 8)
		out := make([]byte, 16)
		binary.BigEndian.PutUint64(out, 8)
		for range n {
			if _, err := readMsg(p.br, hdr[:], buf); err != nil {
				errc <- err
				return
			}
			copy(out[8:], buf)
			if _, err := p.b.Write(out); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	var hdr [8]byte
	buf := make([]byte, 8)
	out := make([]byte, 16)
	binary.BigEndian.PutUint64(out, 8)
	var err error
	for i := 0; i < n && err == nil; i++ {
		binary.LittleEndian.PutUint64(out[8:], uint64(i))
		t0 := time.Now()
		if _, err = p.a.Write(out); err != nil {
			break
		}
		var k int
		k, err = readMsg(p.ar, hdr[:], buf)
		rtts[i%len(rtts)] = time.Since(t0)
		if err == nil && (k != 8 || binary.LittleEndian.Uint64(buf) != uint64(i)) {
			err = errors.New("tcp ping-pong: wrong answer")
		}
	}
	if rerr := <-errc; err == nil {
		err = rerr
	}
	return err
}

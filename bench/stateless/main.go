// Command stateless measures the draft's central claim: a stateless
// receiver's security state does not grow with the number of peers, while
// a session-based (IPsec/TLS-style) receiver's grows linearly.
//
// N distinct senders (rank × incarnation, over two epochs) send sealed
// packets to one receiver; senders are drawn uniformly or by a Zipf law.
// For each N, sender distribution and packet size, it reports packets/s
// opened, ns/packet, key-cache hit rate and the receiver's security-state
// memory (heap in use after GC, around building and warming the
// receiver), for:
//
//   - sealring, cache capacity 0 (derive every packet), 1024 and 65536
//     with the library's default of 1024 entries kept expanded (the rest
//     hold the bare data key and IV mask), and 65536 all expanded
//     ("/allexp"); packets are opened in batches of -batch (32, as a
//     receiver reading with recvmmsg does: Opener.OpenBatch, which derives
//     the keys of uncached packets two at a time), or one by one with
//     Opener.Open at -batch 1;
//
//   - stateful: one pre-established crypto/cipher AES-256-GCM per sender in
//     a map, as a session-based receiver holds;
//
//   - stdlib-stateless: a per-packet key (SP 800-108 CMAC KDF) with
//     crypto/cipher NewCipher+NewGCM on every packet, the naive stateless
//     receiver.
//
//     go run ./bench/stateless
//     go run ./bench/stateless -n 1000,1000000 -size 1400 -dist zipf -json
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sealring/sealring/secure"
)

type config struct {
	ns      []int
	sizes   []int
	dists   []string
	packets int
	zipfS   float64
	jsonOut bool
	seed    uint64
	batch   int
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stateless:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("stateless", flag.ContinueOnError)
	var ns, sizes, dists string
	var c config
	fs.StringVar(&ns, "n", "1,10,100,1000,10000,100000,1000000", "numbers of distinct senders")
	fs.StringVar(&sizes, "size", "64,1400", "packet payload sizes in bytes")
	fs.StringVar(&dists, "dist", "uniform,zipf", "sender popularity: uniform, zipf")
	fs.IntVar(&c.packets, "packets", 20000, "packets opened per measurement")
	fs.Float64Var(&c.zipfS, "zipf-s", 1.1, "Zipf exponent (> 1)")
	fs.BoolVar(&c.jsonOut, "json", false, "one JSON object per row instead of the table")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed for the sender trace")
	fs.IntVar(&c.batch, "batch", 32, "sealring opens packets in batches of this many (Opener.OpenBatch); 1 = Opener.Open per packet")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if c.ns, err = ints(ns); err != nil {
		return fmt.Errorf("-n: %w", err)
	}
	if c.sizes, err = ints(sizes); err != nil {
		return fmt.Errorf("-size: %w", err)
	}
	for _, d := range strings.Split(dists, ",") {
		if d != "uniform" && d != "zipf" {
			return fmt.Errorf("-dist: unknown %q", d)
		}
		c.dists = append(c.dists, d)
	}
	if c.packets < 1 || c.zipfS <= 1 || c.batch < 1 {
		return errors.New("-packets and -batch must be >= 1 and -zipf-s > 1")
	}
	return bench(c, out)
}

func ints(s string) ([]int, error) {
	var r []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad value %q", f)
		}
		r = append(r, v)
	}
	return r, nil
}

// row is one measurement.
type row struct {
	N         int     `json:"senders"`
	Dist      string  `json:"dist"`
	Size      int     `json:"size"`
	Receiver  string  `json:"receiver"`
	PktPerSec float64 `json:"packets_per_sec"`
	NsPerPkt  float64 `json:"ns_per_packet"`
	HitRate   float64 `json:"cache_hit_rate"` // -1: not applicable
	StateMiB  float64 `json:"state_mib"`
	Batch     int     `json:"batch,omitempty"` // sealring rows: packets per OpenBatch
}

func bench(c config, out io.Writer) error {
	group, err := newGroup()
	if err != nil {
		return err
	}
	if !c.jsonOut {
		fmt.Fprintf(out, "# sealring stateless receiver: %d packets per row, crypto %s, Zipf s=%.2f, sealring batches of %d\n", c.packets, secure.CryptoPath(), c.zipfS, c.batch)
		fmt.Fprintf(out, "# %9s %8s %5s %-27s %12s %9s %7s %11s\n", "senders", "dist", "size", "receiver", "packets/s", "ns/pkt", "hit%", "state(MiB)")
	}
	enc := json.NewEncoder(out)
	emit := func(r row) {
		if c.jsonOut {
			enc.Encode(r)
			return
		}
		hit := "-"
		if r.HitRate >= 0 {
			hit = fmt.Sprintf("%.1f", 100*r.HitRate)
		}
		fmt.Fprintf(out, "  %9d %8s %5d %-27s %12.0f %9.1f %7s %11.2f\n", r.N, r.Dist, r.Size, r.Receiver, r.PktPerSec, r.NsPerPkt, hit, r.StateMiB)
	}
	rng := mrand.New(mrand.NewPCG(c.seed, 0x5ea1))
	for _, n := range c.ns {
		// The stateful receiver holds a session for every one of the N
		// peers, whether or not they send in this measurement.
		keys := newSessionKeys(n, rng)
		for _, dist := range c.dists {
			// A warm-up trace fills caches as a running receiver's would
			// be; a fresh sample from the same distribution is timed.
			warmTrace := senderTrace(n, c.packets, dist, c.zipfS, rng)
			trace := senderTrace(n, c.packets, dist, c.zipfS, rng)
			for _, size := range c.sizes {
				warm, err := sealTrace(group, warmTrace, size)
				if err != nil {
					return err
				}
				pk, err := sealTrace(group, trace, size)
				if err != nil {
					return err
				}
				// The library default keeps 1 024 of the cached keys
				// expanded; the last row keeps all 65 536 expanded.
				for _, cc := range []struct{ capacity, expanded int }{{0, 0}, {1024, 0}, {65536, 0}, {65536, 65536}} {
					r, err := measureSealring(group, warm, pk, cc.capacity, cc.expanded, c.batch)
					if err != nil {
						return err
					}
					r.N, r.Dist, r.Size = n, dist, size
					emit(r)
				}
				r, err := measureStateful(keys, warmTrace, trace, size)
				if err != nil {
					return err
				}
				r.N, r.Dist, r.Size = n, dist, size
				emit(r)
				r, err = measureStdlibStateless(trace, size)
				if err != nil {
					return err
				}
				r.N, r.Dist, r.Size = n, dist, size
				emit(r)
			}
		}
		keys = nil
		runtime.GC()
	}
	return nil
}

func newGroup() (*secure.Group, error) {
	var cfg secure.GroupConfig
	cfg.ID = make([]byte, 16)
	rand.Read(cfg.ID)
	for l := range cfg.Keys {
		k, err := secure.GenerateLevelKeys()
		if err != nil {
			return nil, err
		}
		cfg.Keys[l] = k
	}
	return secure.NewGroup(cfg)
}

// senderTrace draws the sender index of each packet.
func senderTrace(n, packets int, dist string, s float64, rng *mrand.Rand) []uint32 {
	t := make([]uint32, packets)
	if dist == "zipf" && n > 1 {
		// Inverse-CDF sampling over ranks 1..n with P(k) ∝ k^-s, on a
		// table for small n and by rejection (math/rand's Zipf) otherwise.
		z := newZipf(rng, s, n)
		for i := range t {
			t[i] = z()
		}
		return t
	}
	for i := range t {
		t[i] = uint32(rng.IntN(n))
	}
	return t
}

func newZipf(rng *mrand.Rand, s float64, n int) func() uint32 {
	// Rejection-inversion (Hörmann & Derflinger), as math/rand's Zipf does.
	hx := func(x float64) float64 { return exp((1-s)*ln(1+x)) / (1 - s) }
	hinv := func(x float64) float64 { return exp(ln((1-s)*x)/(1-s)) - 1 }
	imax := float64(n - 1)
	hx0 := hx(0.5) - exp(-s*ln(1))
	hImax := hx(imax + 0.5)
	sv := 1 - hinv(hx(1.5)-exp(-s*ln(2)))
	return func() uint32 {
		for {
			r := rng.Float64()
			ur := hImax + r*(hx0-hImax)
			x := hinv(ur)
			k := float64(int64(x + 0.5))
			if k-x <= sv {
				return uint32(k)
			}
			if ur >= hx(k+0.5)-exp(-ln(k+1)*s) {
				return uint32(k)
			}
		}
	}
}

// senderID maps a sender index to rank × incarnation.
func senderID(i uint32) uint64 { return secure.SenderID(i/4, 1+i%4) }

// sealedTrace holds the trace's packets back to back.
type sealedTrace struct {
	buf  []byte
	offs []int
}

// sealTrace seals one packet per trace entry with the sender's own Sealer,
// the first half in the group's current epoch and the rest in the next, so
// receivers see several epochs per sender.
func sealTrace(g *secure.Group, trace []uint32, size int) (*sealedTrace, error) {
	byEpoch := [2]map[uint32][]int{{}, {}}
	for i, s := range trace {
		e := 0
		if i >= len(trace)/2 {
			e = 1
		}
		byEpoch[e][s] = append(byEpoch[e][s], i)
	}
	probe, err := secure.NewSealer(g, secure.SealerConfig{ID: 0})
	if err != nil {
		return nil, err
	}
	pktLen := probe.Overhead() + size
	st := &sealedTrace{buf: make([]byte, pktLen*len(trace)), offs: make([]int, len(trace)+1)}
	for i := range trace {
		st.offs[i] = i * pktLen
	}
	st.offs[len(trace)] = len(st.buf)
	payload := make([]byte, size)
	for e := range 2 {
		for s, idx := range byEpoch[e] {
			sl, err := secure.NewSealer(g, secure.SealerConfig{ID: senderID(s)})
			if err != nil {
				return nil, err
			}
			if e == 1 {
				if err := sl.BumpEpoch(); err != nil {
					return nil, err
				}
			}
			for _, i := range idx {
				p := st.buf[st.offs[i] : st.offs[i]+probe.HeaderLen()+size : st.offs[i+1]]
				copy(p[probe.HeaderLen():], payload)
				if _, err := sl.Seal(p, 0, 0); err != nil {
					return nil, err
				}
			}
		}
	}
	return st, nil
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mib(before, after uint64) float64 {
	if after < before {
		return 0
	}
	return float64(after-before) / (1 << 20)
}

// measureSealring opens the trace with a fresh Opener: one warm pass
// (fills the cache as a running receiver's would be), then a timed pass,
// in batches of batch packets (Open per packet when batch is 1).
func measureSealring(g *secure.Group, warm, st *sealedTrace, capacity, expanded, batch int) (row, error) {
	work := make([][]byte, batch)
	for i := range work {
		work[i] = make([]byte, st.offs[1]-st.offs[0])
	}
	msgs := make([]secure.Message, batch)
	before := heapInUse()
	o, err := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{g}, CacheCapacity: capacity, ExpandedCapacity: expanded, EpochWindow: 2})
	if err != nil {
		return row{}, err
	}
	pass := func(st *sealedTrace) error {
		n := len(st.offs) - 1
		if batch == 1 {
			for i := 0; i < n; i++ {
				copy(work[0], st.buf[st.offs[i]:st.offs[i+1]])
				if _, err := o.Open(work[0], 0); err != nil {
					return fmt.Errorf("sealring open: %w", err)
				}
			}
			return nil
		}
		for i := 0; i < n; i += batch {
			k := min(batch, n-i)
			for j := range k {
				copy(work[j], st.buf[st.offs[i+j]:st.offs[i+j+1]])
				msgs[j] = secure.Message{Packet: work[j]}
			}
			o.OpenBatch(msgs[:k])
			for j := range k {
				if err := msgs[j].Err; err != nil {
					return fmt.Errorf("sealring open: %w", err)
				}
			}
		}
		return nil
	}
	if err := pass(warm); err != nil {
		return row{}, err
	}
	state := mib(before, heapInUse())
	s0 := o.CacheStats()
	t0 := time.Now()
	if err := pass(st); err != nil {
		return row{}, err
	}
	el := time.Since(t0)
	s1 := o.CacheStats()
	n := float64(len(st.offs) - 1)
	name := fmt.Sprintf("sealring/cache=%d", capacity)
	if expanded >= capacity && capacity > secure.DefaultExpandedCapacity {
		name += "/allexp"
	}
	r := row{Receiver: name, StateMiB: state, Batch: batch,
		PktPerSec: n / el.Seconds(), NsPerPkt: float64(el.Nanoseconds()) / n, HitRate: -1}
	if capacity > 0 {
		r.HitRate = float64(s1.Hits-s0.Hits) / n
	} else {
		r.HitRate = 0
	}
	runtime.KeepAlive(o)
	return r, nil
}

// A session, as a stateful receiver holds per peer: key and AEAD.
type sessionKeys struct {
	raw [][32]byte
}

func newSessionKeys(n int, rng *mrand.Rand) *sessionKeys {
	k := &sessionKeys{raw: make([][32]byte, n)}
	for i := range k.raw {
		for j := 0; j < 32; j += 8 {
			binary.LittleEndian.PutUint64(k.raw[i][j:], rng.Uint64())
		}
	}
	return k
}

const hdrLen = 24 // sealring's default header: the baselines carry the same bytes as AAD

// baselinePackets seals the trace for a baseline: header (ID and counter
// in sealring's layout) ‖ AES-256-GCM(payload), with key(i) per packet.
func baselinePackets(trace []uint32, size int, aead func(s uint32) (cipher.AEAD, error)) ([]byte, int, error) {
	pl := hdrLen + size + 16
	buf := make([]byte, pl*len(trace))
	payload := make([]byte, size)
	var nonce [12]byte
	for i, s := range trace {
		p := buf[i*pl : i*pl+hdrLen]
		binary.BigEndian.PutUint64(p[4:], senderID(s))
		binary.BigEndian.PutUint64(p[16:], uint64(i+1))
		a, err := aead(s)
		if err != nil {
			return nil, 0, err
		}
		binary.BigEndian.PutUint64(nonce[4:], uint64(i+1))
		a.Seal(buf[i*pl+hdrLen:i*pl+hdrLen], nonce[:], payload, p)
	}
	return buf, pl, nil
}

func stdAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// measureStateful: every peer has a pre-established AEAD in a map keyed by
// its sender ID; a packet costs a header read, a map lookup and an open.
func measureStateful(keys *sessionKeys, warmTrace, trace []uint32, size int) (row, error) {
	session := func(s uint32) (cipher.AEAD, error) { return stdAEAD(keys.raw[s][:]) }
	warm, _, err := baselinePackets(warmTrace, size, session)
	if err != nil {
		return row{}, err
	}
	pkts, pl, err := baselinePackets(trace, size, session)
	if err != nil {
		return row{}, err
	}
	before := heapInUse()
	sessions := make(map[uint64]cipher.AEAD, len(keys.raw))
	for i := range keys.raw {
		a, err := stdAEAD(keys.raw[i][:])
		if err != nil {
			return row{}, err
		}
		sessions[senderID(uint32(i))] = a
	}
	state := mib(before, heapInUse())
	work := make([]byte, pl)
	var nonce [12]byte
	pass := func(pkts []byte) error {
		for i := range len(pkts) / pl {
			copy(work, pkts[i*pl:(i+1)*pl])
			a := sessions[binary.BigEndian.Uint64(work[4:])]
			copy(nonce[4:], work[16:24])
			if _, err := a.Open(work[hdrLen:hdrLen], nonce[:], work[hdrLen:], work[:hdrLen]); err != nil {
				return fmt.Errorf("stateful open: %w", err)
			}
		}
		return nil
	}
	if err := pass(warm); err != nil {
		return row{}, err
	}
	t0 := time.Now()
	if err := pass(pkts); err != nil {
		return row{}, err
	}
	el := time.Since(t0)
	n := float64(len(trace))
	runtime.KeepAlive(sessions)
	return row{Receiver: "stateful/map", StateMiB: state, PktPerSec: n / el.Seconds(),
		NsPerPkt: float64(el.Nanoseconds()) / n, HitRate: -1}, nil
}

// measureStdlibStateless derives a per-sender key from one master key on
// every packet (SP 800-108 with AES-CMAC, as sealring does) and builds a
// crypto/cipher AES-GCM for it.
func measureStdlibStateless(trace []uint32, size int) (row, error) {
	master := make([]byte, 32)
	rand.Read(master)
	derive := func(id uint64, key []byte) error {
		var fixed [13]byte
		fixed[0], fixed[1] = 'N', 1
		binary.BigEndian.PutUint64(fixed[3:], id)
		binary.BigEndian.PutUint16(fixed[11:], 256)
		return secure.CounterKDF(master, fixed[:], 1, key)
	}
	key := make([]byte, 32)
	pkts, pl, err := baselinePackets(trace, size, func(s uint32) (cipher.AEAD, error) {
		if err := derive(senderID(s), key); err != nil {
			return nil, err
		}
		return stdAEAD(key)
	})
	if err != nil {
		return row{}, err
	}
	before := heapInUse()
	work := make([]byte, pl)
	var nonce [12]byte
	pass := func() error {
		for i := range trace {
			copy(work, pkts[i*pl:(i+1)*pl])
			if err := derive(binary.BigEndian.Uint64(work[4:]), key); err != nil {
				return err
			}
			a, err := stdAEAD(key)
			if err != nil {
				return err
			}
			copy(nonce[4:], work[16:24])
			if _, err := a.Open(work[hdrLen:hdrLen], nonce[:], work[hdrLen:], work[:hdrLen]); err != nil {
				return fmt.Errorf("stdlib stateless open: %w", err)
			}
		}
		return nil
	}
	if err := pass(); err != nil {
		return row{}, err
	}
	t0 := time.Now()
	if err := pass(); err != nil {
		return row{}, err
	}
	el := time.Since(t0)
	n := float64(len(trace))
	return row{Receiver: "stdlib/per-packet", StateMiB: mib(before, heapInUse()), PktPerSec: n / el.Seconds(),
		NsPerPkt: float64(el.Nanoseconds()) / n, HitRate: -1}, nil
}

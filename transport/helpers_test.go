package transport

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport/wire"
)

// testTimeout bounds every wait in the tests.
const testTimeout = 30 * time.Second

func soak() bool { return os.Getenv("SEALRING_SOAK") == "1" }

func testKey(tag byte, gen uint8) secure.RootKey {
	k := secure.RootKey{Gen: gen & 3}
	for i := range k.Key {
		k.Key[i] = tag ^ byte(i*7+int(gen)*31)
	}
	return k
}

// testGroup returns a member's view of the test group: seed separates
// groups, epoch sets the group's epoch.
func testGroup(t testing.TB, seed byte, epoch uint16) *secure.Group {
	t.Helper()
	cfg := secure.GroupConfig{ID: make([]byte, 16), Epoch: epoch}
	for i := range cfg.ID {
		cfg.ID[i] = seed + byte(i)
	}
	for l := range 3 {
		tag := seed*16 + byte(l)
		cfg.Keys[l] = secure.LevelKeys{Current: testKey(tag, 0), Next: testKey(tag, 1)}
	}
	g, err := secure.NewGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// netKind builds wires for tests.
type netKind struct {
	name string
	mem  *wire.MemNetwork
	quic *quicNet // see quic_test.go
}

func newNet(t testing.TB, kind string) *netKind {
	n := &netKind{name: kind}
	if kind == "mem" {
		n.mem = wire.NewMemNetwork()
		n.mem.QueueLen = 4096
	}
	if kind == "quic" {
		n.quic = newQuicNet(t)
	}
	return n
}

func (n *netKind) listen(t testing.TB) wire.Wire {
	t.Helper()
	if n.mem != nil {
		w, err := n.mem.Listen(netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	if n.quic != nil {
		return n.quic.listen(t)
	}
	w, err := wire.ListenUDP("udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{MaxPayload: testMaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

type cluster struct {
	eps []*Endpoint
	net *netKind
}

func (c *cluster) memNet() *wire.MemNetwork { return c.net.mem }

// newCluster makes n endpoints (ranks 0..n-1) that know each other.
// mod adjusts each Config; wrap wraps each wire.
func newCluster(t testing.TB, kind string, n int, mod func(*Config), wrap func(rank int, w wire.Wire) wire.Wire) *cluster {
	t.Helper()
	nw := newNet(t, kind)
	c := &cluster{net: nw}
	for i := range n {
		w := nw.listen(t)
		if wrap != nil {
			w = wrap(i, w)
		}
		cfg := Config{Rank: uint32(i), Incarnation: 1, Wire: w, Group: testGroup(t, 1, 10),
			MinRTO: time.Millisecond}
		if mod != nil {
			mod(&cfg)
		}
		ep, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.eps = append(c.eps, ep)
	}
	for _, a := range c.eps {
		for _, b := range c.eps {
			if err := a.AddPeer(b.rank, b.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(c.close)
	return c
}

func (c *cluster) close() {
	for _, ep := range c.eps {
		ep.Close()
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// pattern fills a message identifiable by (src, tag, seq).
func pattern(n int, src uint32, tag uint64, seq int) []byte {
	b := make([]byte, n)
	fillPattern(b, src, tag, seq)
	return b
}

func fillPattern(b []byte, src uint32, tag uint64, seq int) {
	x := uint32(src)*2654435761 ^ uint32(tag)*40503 ^ uint32(seq)*97
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
}

func checkPattern(t testing.TB, got []byte, src uint32, tag uint64, seq int) {
	t.Helper()
	want := pattern(len(got), src, tag, seq)
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("message from %d tag %d #%d (%d bytes) differs at byte %d", src, tag, seq, len(got), i)
	}
}

// checkNoLeak waits for the goroutine count to fall back to base.
func checkNoLeak(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d > %d\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func faultWrap(cfg faultwire.Config) func(int, wire.Wire) wire.Wire {
	return func(rank int, w wire.Wire) wire.Wire {
		c := cfg
		c.Seed = cfg.Seed + int64(rank)*1000003
		return faultwire.New(w, c)
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	default:
		return fmt.Sprint(n)
	}
}

func kinds() []string { return []string{"mem", "udp", "quic"} }

// testMaxPayload is the UDP wire's MaxPayload in tests (0: the default,
// 1452); SEALRING_TEST_MAXPAYLOAD overrides it for benchmarks.
var testMaxPayload = func() int {
	n, _ := strconv.Atoi(os.Getenv("SEALRING_TEST_MAXPAYLOAD"))
	return n
}()

// waitFor polls cond under ep's lock until it holds.
func waitFor(t *testing.T, ep *Endpoint, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		ep.mu.Lock()
		ok := cond()
		ep.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

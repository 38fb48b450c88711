package quicwire_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/transport/quicwire"
	"github.com/sealring/sealring/transport/wire"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func newCA(t testing.TB) *rendezvous.JobCA {
	t.Helper()
	ca, err := rendezvous.NewJobCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *rendezvous.JobCA, rank int) *rendezvous.Credentials {
	t.Helper()
	c, err := ca.Issue("rank", rank)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func listen(t testing.TB, addr netip.AddrPort, cfg quicwire.Config) *quicwire.Wire {
	t.Helper()
	if os.Getenv("QUICWIRE_DEBUG") != "" && cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := quicwire.Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func TestConformance(t *testing.T) {
	ca := newCA(t)
	a, b := issue(t, ca, 0), issue(t, ca, 1)
	wiretest.Run(t, func(t *testing.T) (wire.Wire, wire.Wire) {
		return listen(t, loopback, quicwire.Config{Credentials: a}),
			listen(t, loopback, quicwire.Config{Credentials: b})
	})
}

// TestConformanceSmall runs the suite with a smaller packet size, batch
// size and queues.
func TestConformanceSmall(t *testing.T) {
	ca := newCA(t)
	a, b := issue(t, ca, 0), issue(t, ca, 1)
	cfg := func(c *rendezvous.Credentials) quicwire.Config {
		return quicwire.Config{Credentials: c, PacketSize: 1200, BatchSize: 7, MaxPayload: 1000}
	}
	wiretest.Run(t, func(t *testing.T) (wire.Wire, wire.Wire) {
		return listen(t, loopback, cfg(a)), listen(t, loopback, cfg(b))
	})
}

func TestConfig(t *testing.T) {
	ca := newCA(t)
	c := issue(t, ca, 0)
	for _, cfg := range []quicwire.Config{
		{},
		{Credentials: c, PacketSize: 1000},
		{Credentials: c, PacketSize: 9000},
		{Credentials: c, MaxPayload: 1411},
		{Credentials: c, SendQueue: -1},
	} {
		if w, err := quicwire.Listen(loopback, cfg); !errors.Is(err, quicwire.ErrConfig) {
			if w != nil {
				w.Close()
			}
			t.Errorf("Listen(%+v): %v, want ErrConfig", cfg, err)
		}
	}
	w := listen(t, loopback, quicwire.Config{Credentials: c})
	if w.MaxPayload() != 1410 || w.BatchSize() != wire.DefaultBatchSize {
		t.Fatalf("MaxPayload %d BatchSize %d", w.MaxPayload(), w.BatchSize())
	}
}

// send writes one datagram to dst, failing the test on error.
func send(t testing.TB, w wire.Wire, dst netip.AddrPort, p []byte) {
	t.Helper()
	if n, err := w.WriteBatch([]wire.Message{{Buf: p, Addr: dst}}); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
}

// waitFor keeps sending marker-numbered datagrams from src to dst until
// one arrives at r (a connection is being set up meanwhile).
func waitFor(t testing.TB, src wire.Wire, dst netip.AddrPort, r *wiretest.Reader, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for seq := uint32(0); ; seq++ {
		send(t, src, dst, wiretest.Payload(seq, 64))
		time.Sleep(20 * time.Millisecond)
		if r.Pending() > 0 {
			r.Wait(t, r.Pending())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing from %v arrived at %v within %v", src.LocalAddr(), dst, timeout)
		}
	}
}

// settledStats returns w's stats once it holds want live connections, or
// after 5 s: the losing connection of a simultaneous dial closes
// asynchronously, later than a fixed sleep allows on a loaded machine.
func settledStats(w *quicwire.Wire, want int) quicwire.Stats {
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := w.Stats()
		if s.Conns == want || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOtherJobRefused(t *testing.T) {
	job1, job2 := newCA(t), newCA(t)
	a := listen(t, loopback, quicwire.Config{Credentials: issue(t, job1, 0), HandshakeTimeout: time.Second})
	x := listen(t, loopback, quicwire.Config{Credentials: issue(t, job2, 0), HandshakeTimeout: time.Second})
	ra := wiretest.StartReader(t, a, 16)
	rx := wiretest.StartReader(t, x, 16)

	// Both directions: the dialer refuses the listener's certificate. At
	// least 5 rounds, more (up to 5 s) until both ends have counted a
	// refusal: handshakes take longer on a loaded machine.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 5 || (time.Now().Before(deadline) &&
		(a.Stats().AuthRefusals == 0 || x.Stats().AuthRefusals == 0 || a.Stats().SendDrops == 0)); i++ {
		send(t, x, a.LocalAddr(), wiretest.Payload(uint32(i), 100))
		send(t, a, x.LocalAddr(), wiretest.Payload(uint32(i), 100))
		time.Sleep(60 * time.Millisecond)
	}
	if ra.Pending() != 0 || rx.Pending() != 0 {
		t.Fatalf("datagrams crossed jobs: %d at a, %d at x", ra.Pending(), rx.Pending())
	}
	sa, sx := a.Stats(), x.Stats()
	t.Logf("a: %+v", sa)
	t.Logf("x: %+v", sx)
	if sa.AuthRefusals == 0 || sx.AuthRefusals == 0 || sa.Conns != 0 || sx.Conns != 0 || sa.SendDrops == 0 {
		t.Fatalf("refusals not counted or connections up: a %+v, x %+v", sa, sx)
	}

	// A rogue client that skips checking the server: the server refuses
	// its certificate.
	rogue := issue(t, job2, 7)
	tc := rogue.ClientTLSConfig()
	tc.InsecureSkipVerify = true
	tc.VerifyConnection = nil
	tc.NextProtos = []string{quicwire.ALPN}
	before := a.Stats().AuthRefusals
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, a.LocalAddr().String(), tc, &quic.Config{EnableDatagrams: true})
	t.Logf("rogue dial: %v", err)
	if err == nil {
		// TLS 1.3: the client may finish before the server checks it.
		c.SendDatagram([]byte("let me in"))
		select {
		case <-c.Context().Done():
		case <-ctx.Done():
			t.Fatal("rogue connection not closed by the server")
		}
		t.Logf("rogue connection closed: %v", context.Cause(c.Context()))
		c.CloseWithError(0, "")
	}
	deadline = time.Now().Add(3 * time.Second)
	for a.Stats().AuthRefusals == before {
		if time.Now().After(deadline) {
			t.Fatalf("server did not count the refusal: %+v", a.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if ra.Pending() != 0 {
		t.Fatal("rogue datagram delivered")
	}

	// The wires still work within their job.
	b := listen(t, loopback, quicwire.Config{Credentials: issue(t, job1, 1)})
	rb := wiretest.StartReader(t, b, 16)
	waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
}

// TestReconnect closes a peer's wire and opens a new one on the same
// address: traffic resumes in both directions.
func TestReconnect(t *testing.T) {
	ca := newCA(t)
	ca0, ca1 := issue(t, ca, 0), issue(t, ca, 1)
	a := listen(t, loopback, quicwire.Config{Credentials: ca0})
	ra := wiretest.StartReader(t, a, 16)
	for round := range 3 {
		b := listen(t, loopback, quicwire.Config{Credentials: ca1})
		rb := wiretest.StartReader(t, b, 16)
		waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
		waitFor(t, b, a.LocalAddr(), ra, 5*time.Second)
		addr := b.LocalAddr()
		rb.Stop()

		// The same address again; alternate who speaks first.
		b2 := listen(t, addr, quicwire.Config{Credentials: issue(t, ca, 1)})
		rb2 := wiretest.StartReader(t, b2, 16)
		start := time.Now()
		if round%2 == 0 {
			waitFor(t, a, addr, rb2, 5*time.Second)
			waitFor(t, b2, a.LocalAddr(), ra, 5*time.Second)
		} else {
			waitFor(t, b2, a.LocalAddr(), ra, 5*time.Second)
			waitFor(t, a, addr, rb2, 5*time.Second)
		}
		t.Logf("round %d: reconnected in %v; a: %+v", round, time.Since(start), a.Stats())
		rb2.Stop()
	}
}

// TestSimultaneousDial makes two wires dial each other at once, many
// times: they settle on one connection and exchange datagrams.
func TestSimultaneousDial(t *testing.T) {
	ca := newCA(t)
	for i := range 10 {
		a := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, 0)})
		b := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, 1)})
		ra := wiretest.StartReader(t, a, 64)
		rb := wiretest.StartReader(t, b, 64)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a.WriteBatch(wiretest.Msgs(b.LocalAddr(), 1, 10)) }()
		go func() { defer wg.Done(); b.WriteBatch(wiretest.Msgs(a.LocalAddr(), 2, 10)) }()
		wg.Wait()
		// The first datagrams may be lost with a losing connection; keep
		// talking until both sides hear each other.
		waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
		waitFor(t, b, a.LocalAddr(), ra, 5*time.Second)
		sa, sb := settledStats(a, 1), settledStats(b, 1)
		if sa.Conns != 1 || sb.Conns != 1 {
			t.Fatalf("round %d: conns a=%d b=%d; a %+v b %+v", i, sa.Conns, sb.Conns, sa, sb)
		}
		// And the one connection carries everything after.
		for k := range 50 {
			send(t, a, b.LocalAddr(), wiretest.Payload(uint32(100+k), 500))
			send(t, b, a.LocalAddr(), wiretest.Payload(uint32(100+k), 500))
		}
		rb.Wait(t, 50)
		ra.Wait(t, 50)
		if i == 0 || sa.Duplicates+sb.Duplicates > 0 {
			t.Logf("round %d: a dials %d dup %d, b dials %d dup %d", i, sa.Dials, sa.Duplicates, sb.Dials, sb.Duplicates)
		}
		if s := a.Stats(); s.Conns != 1 {
			t.Fatalf("round %d: a %+v", i, s)
		}
		ra.Stop()
		rb.Stop()
	}
}

// TestManyPeers: five wires start talking all-to-all at once (so many
// pairs dial each other simultaneously), settle on one connection per
// pair, then exchange rounds of datagrams without loss.
func TestManyPeers(t *testing.T) {
	ca := newCA(t)
	const n = 5
	var ws []*quicwire.Wire
	var rs []*wiretest.Reader
	for i := range n {
		w := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, i)})
		ws = append(ws, w)
		rs = append(rs, wiretest.StartReader(t, w, 128))
	}
	// Payload: round, source, destination, then the wiretest pattern.
	mk := func(round, i, j, k, size int) wire.Message {
		b := wiretest.Payload(uint32(k), size)
		b[0], b[1], b[2] = byte(round), byte(i), byte(j)
		return wire.Message{Buf: b, Addr: ws[j].LocalAddr()}
	}
	sizes := []int{100, 1410, 7, 1000}
	for round := 1; round <= 4; round++ {
		var wg sync.WaitGroup
		for i := range ws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var msgs []wire.Message
				for j := range ws {
					if i != j {
						for k, size := range sizes {
							msgs = append(msgs, mk(round, i, j, k, size))
						}
					}
				}
				ws[i].WriteBatch(msgs)
			}()
		}
		wg.Wait()
		// Round 1 is the first contact: its datagrams may be dropped while
		// connections are set up; resend it until every pair got through.
		for j, r := range rs {
			want := map[[2]int]bool{}
			for i := range ws {
				if i != j {
					for k := range sizes {
						want[[2]int{i, k}] = true
					}
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(want) > 0 {
				if time.Now().After(deadline) {
					for x, w := range ws {
						t.Logf("wire %d: %v %+v", x, w.LocalAddr(), w.Stats())
					}
					t.Fatalf("round %d: wire %d still misses %v", round, j, want)
				}
				if r.Pending() == 0 {
					time.Sleep(20 * time.Millisecond)
					if round == 1 && r.Pending() == 0 {
						for key := range want {
							ws[key[0]].WriteBatch([]wire.Message{mk(round, key[0], j, key[1], sizes[key[1]])})
						}
					}
					continue
				}
				for _, d := range r.Wait(t, r.Pending()) {
					if int(d.Buf[0]) != round {
						continue // late, from an earlier round
					}
					i, k := int(d.Buf[1]), int(d.Buf[3])
					if int(d.Buf[2]) != j || d.Addr != ws[i].LocalAddr() || len(d.Buf) != sizes[k] {
						t.Fatalf("round %d: wire %d got a datagram for %d from %v (wire %d), %d bytes", round, j, d.Buf[2], d.Addr, i, len(d.Buf))
					}
					if round > 1 && !want[[2]int{i, k}] {
						t.Fatalf("round %d: wire %d got a duplicate from %d", round, j, i)
					}
					delete(want, [2]int{i, k})
				}
			}
		}
	}
	for _, w := range ws {
		if s := settledStats(w, n-1); s.Conns != n-1 {
			t.Errorf("%v: %+v", w.LocalAddr(), s)
		}
	}
}

// TestWriteNeverBlocksOnDeadPeer: writes to an address where nobody
// answers return at once, and do not hold up writes to a live peer.
func TestWriteNeverBlocksOnDeadPeer(t *testing.T) {
	ca := newCA(t)
	a := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, 0), HandshakeTimeout: 500 * time.Millisecond})
	b := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, 1)})
	rb := wiretest.StartReader(t, b, 128)
	// A bound UDP socket that never answers.
	dead, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	deadAddr := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
	start := time.Now()
	for i := range 2000 {
		msgs := []wire.Message{
			{Buf: wiretest.Payload(uint32(i), 1000), Addr: deadAddr},
			{Buf: wiretest.Payload(uint32(i), 1000), Addr: b.LocalAddr()},
		}
		if n, err := a.WriteBatch(msgs); n != 2 || err != nil {
			t.Fatal(n, err)
		}
	}
	el := time.Since(start)
	t.Logf("2000 batches in %v; a: %+v", el, a.Stats())
	if el > 3*time.Second {
		t.Fatalf("writes took %v", el)
	}
	if a.Stats().SendDrops == 0 {
		t.Fatal("nothing dropped for the dead peer")
	}
}

// TestCloseUnblocksWrite: a writer blocked on a full queue (the peer
// does not read, so QUIC's flow of datagrams is throttled only by
// congestion control) returns ErrClosed when the wire closes, and
// goroutines are released.
func TestCloseUnblocksWrite(t *testing.T) {
	before := runtime.NumGoroutine()
	ca := newCA(t)
	a, err := quicwire.Listen(loopback, quicwire.Config{Credentials: issue(t, ca, 0), SendQueue: 4, WriteTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b, err := quicwire.Listen(loopback, quicwire.Config{Credentials: issue(t, ca, 1), ReceiveQueue: 1})
	if err != nil {
		t.Fatal(err)
	}
	rb := wiretest.StartReader(t, b, 1)
	waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			msgs := wiretest.Msgs(b.LocalAddr(), 0, wiretest.Repeat(1400, 64)...)
			for {
				if _, err := a.WriteBatch(msgs); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	a.Close()
	for range 4 {
		select {
		case err := <-errc:
			if !errors.Is(err, wire.ErrClosed) {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WriteBatch not unblocked by Close")
		}
	}
	rb.Stop()
	wiretest.CheckGoroutines(t, before)
}

// TestLocalCertTieBreakSameCreds: two wires sharing one credential still
// settle on one connection (the addresses break the tie).
func TestSharedCredentials(t *testing.T) {
	ca := newCA(t)
	c := issue(t, ca, 0)
	for range 3 {
		a := listen(t, loopback, quicwire.Config{Credentials: c})
		b := listen(t, loopback, quicwire.Config{Credentials: c})
		ra, rb := wiretest.StartReader(t, a, 16), wiretest.StartReader(t, b, 16)
		go a.WriteBatch([]wire.Message{{Buf: []byte("x"), Addr: b.LocalAddr()}})
		b.WriteBatch([]wire.Message{{Buf: []byte("y"), Addr: a.LocalAddr()}})
		waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
		waitFor(t, b, a.LocalAddr(), ra, 5*time.Second)
		if sa, sb := settledStats(a, 1), settledStats(b, 1); sa.Conns != 1 || sb.Conns != 1 {
			t.Fatalf("a %+v b %+v", sa, sb)
		}
		ra.Stop()
		rb.Stop()
	}
}

// TestReadAllocs reports the allocations per datagram of a steady stream
// (quic-go copies each datagram on send and on receipt).
func TestReadAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	ca := newCA(t)
	a := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, 0)})
	b := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, 1)})
	rb := wiretest.StartReader(t, b, 128)
	waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
	msgs := wiretest.Msgs(b.LocalAddr(), 0, wiretest.Repeat(1000, 32)...)
	var m0, m1 runtime.MemStats
	const rounds = 50
	runtime.ReadMemStats(&m0)
	got := 0
	for range rounds {
		a.WriteBatch(msgs)
		// wait for them, tolerating quic-go's receive-queue drops
		deadline := time.Now().Add(time.Second)
		for rb.Pending() < 32 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		got += rb.Pending()
		rb.Wait(t, rb.Pending())
	}
	runtime.ReadMemStats(&m1)
	// The reader copies each datagram too (bytes.Clone), one allocation.
	t.Logf("%.1f allocations per datagram end to end (both wires, quic-go, and the test reader's copy); %d of %d arrived",
		float64(m1.Mallocs-m0.Mallocs)/float64(rounds*32), got, rounds*32)
}

// TestFraming: a peer of the job sending QUIC datagrams directly, with
// valid and broken framing: the valid datagrams are delivered, in order
// within each QUIC datagram, and the broken ones counted.
func TestFraming(t *testing.T) {
	ca := newCA(t)
	a := listen(t, loopback, quicwire.Config{Credentials: issue(t, ca, 0)})
	ra := wiretest.StartReader(t, a, 2) // small batches: split QUIC datagrams
	tc := issue(t, ca, 1).ClientTLSConfig()
	tc.NextProtos = []string{quicwire.ALPN}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, a.LocalAddr().String(), tc, &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	for _, d := range [][]byte{
		{0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 1, '!', 0, 2, 'o', 'k'}, // three, one empty
		{0xff},                   // too short
		{0, 16, 'x'},             // truncated
		{0, 3, 'a', 'b', 'c', 9}, // one, then garbage
	} {
		if err := c.SendDatagram(d); err != nil {
			t.Fatal(err)
		}
	}
	got := ra.Wait(t, 5)
	var s []string
	for _, d := range got {
		s = append(s, string(d.Buf))
	}
	if want := []string{"hello", "", "!", "ok", "abc"}; !slices.Equal(s, want) {
		t.Fatalf("got %q, want %q", s, want)
	}
	deadline := time.Now().Add(time.Second)
	for a.Stats().Malformed != 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := a.Stats(); st.Malformed != 3 || st.Received != 5 {
		t.Fatalf("%+v", st)
	}
}

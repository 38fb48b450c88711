package transport

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/transport/quicwire"
	"github.com/sealring/sealring/transport/wire"
)

// quicNet makes QUIC wires (transport/quicwire) of one job: each listens
// on a loopback port with its own credentials from the job's CA.
type quicNet struct {
	ca *rendezvous.JobCA
	mu sync.Mutex
	n  int
}

func newQuicNet(t testing.TB) *quicNet {
	t.Helper()
	ca, err := rendezvous.NewJobCA()
	if err != nil {
		t.Fatal(err)
	}
	return &quicNet{ca: ca}
}

func (q *quicNet) listen(t testing.TB) wire.Wire {
	t.Helper()
	q.mu.Lock()
	rank := q.n
	q.n++
	q.mu.Unlock()
	creds, err := q.ca.Issue("rank", rank)
	if err != nil {
		t.Fatal(err)
	}
	w, err := quicwire.Listen(netip.MustParseAddrPort("127.0.0.1:0"), quicwire.Config{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestQUICRestartSameAddress: a rank restarts on the same address (a new
// QUIC wire, new credentials, a higher incarnation); the QUIC connection
// is replaced and traffic resumes both ways.
func TestQUICRestartSameAddress(t *testing.T) {
	c := newCluster(t, "quic", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	if err := a.Send(ctx, 1, 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	addr := b.LocalAddr()
	b.Close()
	creds, err := c.net.quic.ca.Issue("rank", 1)
	if err != nil {
		t.Fatal(err)
	}
	w, err := quicwire.Listen(addr, quicwire.Config{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := New(Config{Rank: 1, Incarnation: 2, Wire: w, Group: testGroup(t, 1, 10), MinRTO: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.AddPeer(0, a.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		go b2.Send(ctx, 0, 3, pattern(50000, 1, 3, i))
		buf := make([]byte, 50000)
		if _, err := a.Recv(ctx, 1, 3, ^uint64(0), buf); err != nil {
			t.Fatal(err)
		}
		checkPattern(t, buf, 1, 3, i)
		go a.Send(ctx, 1, 4, pattern(300000, 0, 4, i))
		buf = make([]byte, 300000)
		if _, err := b2.Recv(ctx, 0, 4, ^uint64(0), buf); err != nil {
			t.Fatal(err)
		}
		checkPattern(t, buf, 0, 4, i)
	}
	if a.Stats().PeerRestarts != 1 {
		t.Fatalf("%+v", a.Stats())
	}
}

// TestQUICOtherJob: an endpoint whose QUIC wire holds another job's
// credentials is never reached (the handshake is refused), so a send to
// it fails with ErrPeerUnreachable after the peer timeout, and the
// refusals are counted on both wires.
func TestQUICOtherJob(t *testing.T) {
	const timeout = 300 * time.Millisecond
	c := newCluster(t, "quic", 1, func(cfg *Config) { cfg.PeerTimeout = timeout }, nil)
	a := c.eps[0]
	other := newQuicNet(t)
	xw := other.listen(t).(*quicwire.Wire)
	x, err := New(Config{Rank: 1, Incarnation: 1, Wire: xw, Group: testGroup(t, 1, 10), PeerTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if err := a.AddPeer(1, x.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if err := x.AddPeer(0, a.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	start := time.Now()
	if err := a.Send(ctx, 1, 1, []byte("secret")); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("Send to another job's endpoint: %v, want ErrPeerUnreachable", err)
	}
	if err := x.Send(ctx, 0, 1, []byte("secret")); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("Send from another job's endpoint: %v, want ErrPeerUnreachable", err)
	}
	t.Logf("both failed after %v", time.Since(start))
	aw := c.eps[0].w.(*quicwire.Wire)
	sa, sx := aw.Stats(), xw.Stats()
	t.Logf("a: %+v", sa)
	t.Logf("x: %+v", sx)
	if sa.AuthRefusals == 0 || sx.AuthRefusals == 0 || sa.Conns != 0 || sx.Conns != 0 || sx.Received != 0 {
		t.Fatal("refusals not counted, or a connection between jobs")
	}
}

package transport

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport/wire"
)

// TestFaults runs all-to-all traffic over a network that loses 10 %,
// duplicates 5 %, reorders 5 % and corrupts 1 % of datagrams: every message
// must arrive exactly once, intact and in order.
func TestFaults(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			fc := faultwire.Config{Seed: 7, Loss: 0.10, Duplicate: 0.05, Reorder: 0.05, Corrupt: 0.01, ReorderDepth: 3}
			perTag := 12
			if soak() {
				perTag = 100
			}
			c := testAllToAll(t, kind, faultWrap(fc), 3, 4, perTag)
			// Large messages too: rendezvous, and eager by SendOptions
			// (many fragments, one message).
			ctx := ctxT(t)
			a, b := c.eps[0], c.eps[1]
			for i, n := range []int{1 << 20, 3 << 20, 1 << 20, 3 << 20} {
				msg := pattern(n, 0, 100, i)
				r := a.SendAsyncWith(ctx, 1, 100, msg, SendOptions{Eager: i >= 2})
				buf := make([]byte, n)
				if _, err := b.Recv(ctx, 0, 100, ^uint64(0), buf); err != nil {
					t.Fatal(err)
				}
				checkPattern(t, buf, 0, 100, i)
				if _, err := r.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// Exactly once: nothing more is pending anywhere.
			for _, ep := range c.eps {
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				st, err := ep.Recv(short, AnySource, 0, 0, make([]byte, 1<<20))
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("rank %d: extra message %+v (%v)", ep.rank, st, err)
				}
			}
			var s Stats
			for _, ep := range c.eps {
				st := ep.Stats()
				s.AuthFailures += st.AuthFailures
				s.Retransmits += st.Retransmits
				s.Duplicates += st.Duplicates
			}
			t.Logf("auth failures %d, retransmits %d, duplicates %d", s.AuthFailures, s.Retransmits, s.Duplicates)
			if s.AuthFailures == 0 || s.Retransmits == 0 || s.Duplicates == 0 {
				t.Fatalf("faults not seen: %+v", s)
			}
		})
	}
}

// recorder keeps a copy of every datagram written.
type recorder struct {
	wire.Wire
	mu   sync.Mutex
	sent []wire.Message
}

func (r *recorder) WriteBatch(msgs []wire.Message) (int, error) {
	r.mu.Lock()
	for _, m := range msgs {
		r.sent = append(r.sent, wire.Message{Buf: append([]byte(nil), m.Buf...), Addr: m.Addr})
	}
	r.mu.Unlock()
	return r.Wire.WriteBatch(msgs)
}

func TestForgedAndReplayed(t *testing.T) {
	var rec *recorder
	c := newCluster(t, "mem", 3, nil, func(rank int, w wire.Wire) wire.Wire {
		if rank == 0 {
			rec = &recorder{Wire: w}
			return rec
		}
		return w
	})
	a, b, third := c.eps[0], c.eps[1], c.eps[2]
	ctx := ctxT(t)
	// Genuine traffic, recorded.
	for i, n := range []int{10, 3000, 100000} {
		go a.Send(ctx, 1, 1, pattern(n, 0, 1, i))
		buf := make([]byte, n)
		if _, err := b.Recv(ctx, 0, 1, ^uint64(0), buf); err != nil {
			t.Fatal(err)
		}
		checkPattern(t, buf, 0, 1, i)
	}
	time.Sleep(20 * time.Millisecond)
	before := b.Stats()

	// An attacker on the network.
	atk, err := c.memNet().Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer atk.Close()
	send := func(to netip.AddrPort, pkts ...[]byte) {
		for _, p := range pkts {
			if _, err := atk.WriteBatch([]wire.Message{{Buf: p, Addr: to}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 1. Sealed with another group's keys, claiming rank 0.
	// 2. Sealed with the right keys but an epoch outside the window.
	forge := func(g *secure.Group) []byte {
		s, err := secure.NewSealer(g, secure.SealerConfig{ID: secure.SenderID(0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		h := header{Type: typeEager, DstRank: 1, DstInc: 1, PSN: 1000, MsgID: 99, Tag: 1, Total: 5}
		pkt := h.AppendTo(make([]byte, s.HeaderLen(), 200))
		pkt = append(pkt, "evil!"...)
		out, err := s.Seal(pkt, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	send(b.LocalAddr(), forge(testGroup(t, 2, 10)), forge(testGroup(t, 1, 3)), []byte("garbage"), nil)
	// 3. Replays of every genuine datagram, to the right rank and to
	// another one.
	rec.mu.Lock()
	replay := append([]wire.Message(nil), rec.sent...)
	rec.mu.Unlock()
	var toB, toThird [][]byte
	for _, m := range replay {
		if m.Addr == b.LocalAddr() {
			toB = append(toB, m.Buf)
			toThird = append(toThird, m.Buf)
		}
	}
	send(b.LocalAddr(), toB...)
	send(third.LocalAddr(), toThird...)
	time.Sleep(50 * time.Millisecond)

	after := b.Stats()
	if got := after.AuthFailures - before.AuthFailures; got != 4 {
		t.Errorf("auth failures: %d, want 4", got)
	}
	if after.Duplicates-before.Duplicates == 0 {
		t.Errorf("replays not counted as duplicates: %+v", after)
	}
	if third.Stats().Malformed == 0 {
		t.Errorf("replays to another rank not rejected: %+v", third.Stats())
	}
	// No message was delivered twice.
	for _, ep := range []*Endpoint{b, third} {
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		st, err := ep.Recv(short, AnySource, 0, 0, make([]byte, 1<<20))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("rank %d: replay delivered %+v (%v)", ep.rank, st, err)
		}
	}
	// And the endpoints still work.
	go a.Send(ctx, 1, 2, []byte("still fine"))
	buf := make([]byte, 20)
	if st, err := b.Recv(ctx, 0, 2, ^uint64(0), buf); err != nil || string(buf[:st.Len]) != "still fine" {
		t.Fatal(err, st)
	}
}

func TestPeerDeath(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			const timeout = 500 * time.Millisecond
			c := newCluster(t, kind, 2, func(cfg *Config) { cfg.PeerTimeout = timeout }, nil)
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			big := make([]byte, 64<<20)
			sr := a.SendAsync(ctx, 1, 1, big)
			rr := a.RecvAsync(ctx, 1, 2, ^uint64(0), make([]byte, 10))
			bufB := make([]byte, len(big))
			br := b.RecvAsync(ctx, 0, 1, ^uint64(0), bufB)
			time.Sleep(20 * time.Millisecond) // mid-transfer
			b.Close()
			start := time.Now()
			if _, err := br.Wait(ctx); !errors.Is(err, ErrClosed) {
				t.Fatal(err)
			}
			for _, r := range []*Request{sr, rr} {
				if _, err := r.Wait(ctx); !errors.Is(err, ErrPeerUnreachable) {
					t.Fatalf("got %v, want ErrPeerUnreachable", err)
				}
			}
			if el := time.Since(start); el > timeout+300*time.Millisecond {
				t.Fatalf("took %v, timeout %v", el, timeout)
			}
			// Fail fast afterwards.
			t0 := time.Now()
			if err := a.Send(ctx, 1, 3, []byte("x")); !errors.Is(err, ErrPeerUnreachable) {
				t.Fatal(err)
			}
			if time.Since(t0) > 10*time.Millisecond {
				t.Fatal("did not fail fast")
			}
		})
	}
}

func TestPeerRestart(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			c := newCluster(t, kind, 2, nil, nil)
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			if err := a.Send(ctx, 1, 1, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			pending := a.SendAsync(ctx, 1, 9, make([]byte, 1<<20)) // never received by this life of b
			time.Sleep(10 * time.Millisecond)
			b.Close()
			w := c.net.listen(t)
			b2, err := New(Config{Rank: 1, Incarnation: 2, Wire: w, Group: testGroup(t, 1, 10), MinRTO: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer b2.Close()
			if err := a.AddPeer(1, b2.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if err := b2.AddPeer(0, a.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if _, err := pending.Wait(ctx); !errors.Is(err, ErrPeerUnreachable) {
				t.Fatalf("pending send to the old incarnation: %v", err)
			}
			for i := range 5 {
				go b2.Send(ctx, 0, 3, pattern(50000, 1, 3, i))
				buf := make([]byte, 50000)
				if _, err := a.Recv(ctx, 1, 3, ^uint64(0), buf); err != nil {
					t.Fatal(err)
				}
				checkPattern(t, buf, 1, 3, i)
				go a.Send(ctx, 1, 4, pattern(200000, 0, 4, i))
				buf = make([]byte, 200000)
				if _, err := b2.Recv(ctx, 0, 4, ^uint64(0), buf); err != nil {
					t.Fatal(err)
				}
				checkPattern(t, buf, 0, 4, i)
			}
			if a.Stats().PeerRestarts != 1 {
				t.Fatalf("%+v", a.Stats())
			}
		})
	}
}

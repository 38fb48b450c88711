package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/transport/wire"
)

// oneWayCut cuts one direction of a link, switched by the test: the
// datagrams one endpoint writes to the other are lost, the other way
// works.
type oneWayCut struct {
	// allow is -1 while the link works; at n >= 0, the next n datagrams
	// pass and every later one is lost.
	allow atomic.Int64
}

func (c *oneWayCut) cutAfter(n int64) { c.allow.Store(n) }
func (c *oneWayCut) heal()            { c.allow.Store(-1) }

// oneWayPair makes ranks 0 (the sender or initiator, S) and 1 (the
// receiver or target, R) with a short PeerTimeout; cut[i] cuts what rank
// i writes to the other.
func oneWayPair(t *testing.T, kind string, timeout time.Duration, mods ...func(*Config)) (s, r *Endpoint, cut [2]*oneWayCut) {
	t.Helper()
	c := newCluster(t, kind, 2, func(cfg *Config) {
		cfg.PeerTimeout = timeout
		cfg.EagerLimit = 4096
		cfg.Window = 16
		cfg.MaxRTO = 20 * time.Millisecond
		for _, mod := range mods {
			mod(cfg)
		}
	}, func(rank int, w wire.Wire) wire.Wire {
		oc := new(oneWayCut)
		oc.heal()
		cut[rank] = oc
		self := w.LocalAddr()
		// Decide calls are serialized.
		return faultwire.New(w, faultwire.Config{Decide: func(_ uint64, m wire.Message) faultwire.Action {
			n := oc.allow.Load()
			switch {
			case m.Addr == self || n < 0:
				return faultwire.Pass
			case n > 0:
				oc.allow.Store(n - 1)
				return faultwire.Pass
			}
			return faultwire.Drop
		}})
	})
	s, r = c.eps[0], c.eps[1]
	// Warm up both directions: incarnations known, RTT sampled.
	ctx := ctxT(t)
	buf := make([]byte, 16)
	for _, p := range [][2]*Endpoint{{s, r}, {r, s}} {
		rq := p[1].RecvAsync(ctx, p[0].rank, 77, ^uint64(0), buf)
		if err := p[0].Send(ctx, p[1].rank, 77, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := rq.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // let the warm-up's ACKs settle
	return s, r, cut
}

// waitUnexpected waits until ep holds an unexpected message.
func waitUnexpected(t *testing.T, ep *Endpoint) {
	t.Helper()
	waitFor(t, ep, "the RTS at the receiver", func() bool { return ep.unexp.head != nil })
}

// TestOneWayCutRendezvous: one direction of the link between the sender
// and the receiver of a matched rendezvous message fails, so one side
// times the other out while still hearing it. Every side with an
// operation pending must fail within a bounded time (about two
// PeerTimeouts here), never wait forever.
//
//   - S→R cut (heal): the CTS went out, the DATA is lost; the receiver
//     times the sender out and fails its Recv; the cut heals and the DATA
//     reaches a receiver that has forgotten the transfer (unknown RecvID):
//     the sender must not wait for a FIN that never comes.
//   - S→R cut (permanent): the same, the cut never heals: the receiver's
//     PINGs still reach the sender, which must not take them as an answer.
//   - R→S cut (permanent): the CTS is lost; the sender times the receiver
//     out and fails its Send; its PINGs still reach the receiver, whose
//     Recv must fail too.
func TestOneWayCutRendezvous(t *testing.T) {
	const timeout = 150 * time.Millisecond
	cases := []struct {
		name string
		from int // the rank whose datagrams are lost
		heal bool
	}{
		{"S-R/heal", 0, true},
		{"S-R/permanent", 0, false},
		{"R-S/permanent", 1, false},
	}
	for _, kind := range []string{"mem", "udp"} {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				s, r, cut := oneWayPair(t, kind, timeout)
				ctx := ctxT(t)
				msg := pattern(64<<10, 0, 1, 0)
				sreq := s.SendAsync(context.Background(), 1, 1, msg)
				waitUnexpected(t, r) // the RTS is at the receiver
				cut[tc.from].cutAfter(0)
				rbuf := make([]byte, len(msg))
				start := time.Now()
				rreq := r.RecvAsync(context.Background(), 0, 1, ^uint64(0), rbuf)
				// Each side's bound: two of its PeerTimeouts after the
				// cut (the other side's timeout, then its own), with a
				// generous margin for slow machines.
				bound, cancel := context.WithTimeout(ctx, 2*timeout+500*time.Millisecond)
				defer cancel()
				first, second, names := rreq, sreq, [2]string{"receiver", "sender"}
				if tc.from == 1 {
					first, second, names = sreq, rreq, [2]string{"sender", "receiver"}
				}
				if _, err := first.Wait(bound); !errors.Is(err, ErrPeerUnreachable) {
					t.Fatalf("%s: %v after %v, want ErrPeerUnreachable", names[0], err, time.Since(start))
				}
				t.Logf("%s failed after %v", names[0], time.Since(start))
				if tc.heal {
					cut[tc.from].heal()
				}
				_, err := second.Wait(bound)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s still waiting %v after the cut (the %s failed the transfer): hang",
						names[1], time.Since(start), names[0])
				}
				if !errors.Is(err, ErrPeerUnreachable) {
					t.Fatalf("%s: %v, want ErrPeerUnreachable", names[1], err)
				}
				t.Logf("%s failed after %v: %v", names[1], time.Since(start), err)
				cut[tc.from].heal()
				checkRecovers(t, s, r, msg)
			})
		}
	}
}

// checkRecovers checks that s and r agree again after the cut: a new
// rendezvous transfer goes through.
func checkRecovers(t *testing.T, s, r *Endpoint, msg []byte) {
	t.Helper()
	ctx := ctxT(t)
	rbuf := make([]byte, len(msg))
	deadline := time.Now().Add(2 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the endpoints do not recover after the cut")
		}
		rq := r.RecvAsync(ctx, 0, 99, ^uint64(0), rbuf)
		if rq.Err() != nil { // the receiver has not heard the sender yet
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err := s.Send(ctx, 1, 99, msg); err != nil {
			rq.Cancel(nil)
			if !errors.Is(err, ErrPeerUnreachable) {
				t.Fatalf("after the cut: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if _, err := rq.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rbuf, msg) {
			t.Fatal("message corrupted after the cut")
		}
		break
	}
}

// TestOneWayCutRMA: as TestOneWayCutRendezvous for one-sided accesses. The
// target times the initiator out mid-transfer (a large Put's DATA, or the
// initiator's ACKs of a Get's DATA, are lost one way) and drops the
// transfer; the initiator must fail within a bounded time too.
func TestOneWayCutRMA(t *testing.T) {
	const timeout = 150 * time.Millisecond
	for _, verb := range []string{"Put", "Get"} {
		for _, heal := range []bool{true, false} {
			name := verb + "/heal"
			if !heal {
				name = verb + "/permanent"
			}
			t.Run(name, func(t *testing.T) {
				s, r, cut := oneWayPair(t, "mem", timeout)
				ctx := ctxT(t)
				region := make([]byte, 1<<20)
				reg, err := r.Register(region, AccessRemoteRead|AccessRemoteWrite)
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, len(region))
				// The PUT or GET request reaches the target, nothing after it.
				cut[0].cutAfter(1)
				start := time.Now()
				var req *Request
				if verb == "Put" {
					req = s.PutAsync(context.Background(), 1, reg.Key(), 0, buf)
				} else {
					req = s.GetAsync(context.Background(), 1, reg.Key(), 0, buf)
				}
				if heal {
					// Once the target has timed the initiator out.
					waitFor(t, r, "the target timing the initiator out", func() bool { return r.st.peerTimeouts.Load() > 0 })
					cut[0].heal()
				}
				bound, cancel := context.WithTimeout(ctx, 2*timeout+500*time.Millisecond)
				defer cancel()
				_, err = req.Wait(bound)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("initiator still waiting %v after the cut: hang", time.Since(start))
				}
				if !errors.Is(err, ErrPeerUnreachable) {
					t.Fatalf("initiator: %v, want ErrPeerUnreachable", err)
				}
				t.Logf("initiator failed after %v: %v", time.Since(start), err)
				// Both sides fail at about the same time (neither counts the
				// other's retransmissions as a sign of life).
				deadline := time.Now().Add(2*timeout + 500*time.Millisecond)
				for r.Stats().PeerTimeouts == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("the target did not time the initiator out: %+v", r.Stats())
					}
					time.Sleep(time.Millisecond)
				}
				cut[0].heal()
				checkRecovers(t, s, r, pattern(64<<10, 0, 1, 0))
			})
		}
	}
}

// TestOneWayCutEager: the sender's datagrams stop reaching the receiver
// after the first fragment of an eager message, which matched a posted
// receive. That receive sends nothing itself, yet it must fail within the
// PeerTimeout (it used to wait for the timer's next one-second round, as
// nothing armed the timer for the newly watched peer); the sender, which
// hears only the receiver's PINGs, fails too; after the link heals the two
// exchange messages again.
func TestOneWayCutEager(t *testing.T) {
	const timeout = 150 * time.Millisecond
	s, r, cut := oneWayPair(t, "udp", timeout)
	msg := pattern(4096, 0, 2, 0) // EagerLimit in oneWayPair
	if f := s.EagerFragment(); f >= len(msg) {
		t.Fatalf("eager fragment %d: the message must take several", f)
	}
	ctx := ctxT(t)
	rbuf := make([]byte, len(msg))
	rreq := r.RecvAsync(context.Background(), 0, 2, ^uint64(0), rbuf)
	cut[0].cutAfter(1) // the first fragment gets through
	start := time.Now()
	sreq := s.SendAsync(context.Background(), 1, 2, msg)
	bound, cancel := context.WithTimeout(ctx, timeout+350*time.Millisecond)
	defer cancel()
	if _, err := rreq.Wait(bound); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("receiver: %v after %v, want ErrPeerUnreachable within about the PeerTimeout", err, time.Since(start))
	}
	t.Logf("receiver failed after %v", time.Since(start))
	bound2, cancel2 := context.WithTimeout(ctx, 2*timeout+500*time.Millisecond)
	defer cancel2()
	if _, err := sreq.Wait(bound2); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("sender: %v after %v, want ErrPeerUnreachable", err, time.Since(start))
	}
	cut[0].heal()
	checkRecovers(t, s, r, pattern(2048, 0, 3, 0))
}

// TestOneWayCutEagerResumes: the receiver times the sender out while an
// eager message is half received, then the link heals before the sender
// (with a longer PeerTimeout) gives up. The sender's retransmissions
// complete the message and its Send succeeds, so the message must not be
// lost: the failed receive gives the partial message back to the
// unexpected pool and a later receive gets it whole. The failed receive
// is posted before the message or after its first fragment (it takes over
// the unexpected buffer), with a buffer that holds the message or a short
// one (a truncating receive, whose bytes beyond its buffer must be kept).
func TestOneWayCutEagerResumes(t *testing.T) {
	for _, kind := range []string{"mem", "udp"} {
		for _, late := range []bool{false, true} {
			for _, rlen := range []int{4096, 1000} {
				name := fmt.Sprintf("%s/late=%v/buf=%d", kind, late, rlen)
				t.Run(name, func(t *testing.T) { testOneWayCutEagerResumes(t, kind, late, rlen) })
			}
		}
	}
}

func testOneWayCutEagerResumes(t *testing.T, kind string, late bool, rlen int) {
	const timeout = 150 * time.Millisecond
	s, r, cut := oneWayPair(t, kind, timeout, func(cfg *Config) {
		if cfg.Rank == 0 {
			cfg.PeerTimeout = 20 * timeout // the sender outlasts the cut
		}
	})
	msg := pattern(4096, 0, 2, 0)
	ctx := ctxT(t)
	rbuf := make([]byte, rlen)
	var rreq *Request
	if !late {
		rreq = r.RecvAsync(context.Background(), 0, 2, ^uint64(0), rbuf)
	}
	cut[0].cutAfter(1) // the first fragment gets through
	sreq := s.SendAsync(context.Background(), 1, 2, msg)
	if late {
		waitUnexpected(t, r)
		rreq = r.RecvAsync(context.Background(), 0, 2, ^uint64(0), rbuf)
	}
	if _, err := rreq.Wait(ctx); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("receiver: %v, want ErrPeerUnreachable", err)
	}
	cut[0].heal()
	if _, err := sreq.Wait(ctx); err != nil {
		t.Fatalf("sender: %v, want success after the link healed", err)
	}
	got := make([]byte, len(msg)+1)
	st, err := r.Recv(ctx, 0, 2, ^uint64(0), got)
	if err != nil {
		t.Fatalf("receiving the message again: %v", err)
	}
	if st.Len != len(msg) || !bytes.Equal(got[:st.Len], msg) {
		t.Fatalf("received %d bytes, want the %d sent, intact", st.Len, len(msg))
	}
	checkRecovers(t, s, r, pattern(2048, 0, 3, 0))
}

// TestTruncatedEager: a receive shorter than an eager message gets its
// prefix and ErrTruncated, whether posted before the message or after its
// first fragments arrived.
func TestTruncatedEager(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("late=%v", late), func(t *testing.T) {
			s, r, cut := oneWayPair(t, "mem", time.Second)
			msg := pattern(4096, 0, 4, 0)
			ctx := ctxT(t)
			rbuf := make([]byte, 1000)
			var rreq *Request
			if !late {
				rreq = r.RecvAsync(ctx, 0, 4, ^uint64(0), rbuf)
			} else {
				cut[0].cutAfter(1)
			}
			sreq := s.SendAsync(ctx, 1, 4, msg)
			if late {
				waitUnexpected(t, r)
				rreq = r.RecvAsync(ctx, 0, 4, ^uint64(0), rbuf)
				cut[0].heal()
			}
			st, err := rreq.Wait(ctx)
			if !errors.Is(err, ErrTruncated) || st.Len != len(msg) {
				t.Fatalf("Recv = %+v, %v; want length %d and ErrTruncated", st, err, len(msg))
			}
			if !bytes.Equal(rbuf, msg[:len(rbuf)]) {
				t.Fatal("the truncated receive's buffer does not hold the message's prefix")
			}
			if _, err := sreq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			// The shadow copy was charged to the unexpected pool and is
			// released with the message.
			if used := unexpCharged(r); used != 0 {
				t.Fatalf("unexpected pool still charged %d bytes", used)
			}
		})
	}
}

package transport

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/sealring/sealring/transport/wire"
)

// TestReturnedMessageMatchesPosted: a message given back to the unexpected
// pool by a cancelled receive (part of an eager message, or a matched
// rendezvous RTS) goes to a matching receive that is already posted, as
// it would have had the first receive not existed; it used to stay in the
// pool while that receive waited.
func TestReturnedMessageMatchesPosted(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{{"eager", 3000}, {"rendezvous", 300 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			s, r, cut := oneWayPair(t, "mem", 5*time.Second)
			ctx := ctxT(t)
			msg := pattern(tc.size, 0, 6, 0)
			r1 := r.RecvAsync(ctx, 0, 6, ^uint64(0), make([]byte, tc.size))
			buf2 := make([]byte, tc.size)
			r2 := r.RecvAsync(ctx, AnySource, 6, ^uint64(0), buf2)
			// The first packet (the first eager fragment, or the RTS) gets
			// through and r1 matches it; nothing after it arrives before the
			// cancel (else r1 could complete first and r2 rightly wait).
			cut[0].cutAfter(1)
			sq := s.SendAsync(ctx, 1, 6, msg)
			// Wait until r1 is matched (eager: its fragment arrived; rendezvous:
			// its CTS went out).
			waitFor(t, r, "the first receive matched", func() bool { return r1.recv.state != rPosted })
			r1.Cancel(nil)
			cut[0].heal()
			st, err := r2.Wait(ctx)
			if err != nil || st.Len != tc.size || !bytes.Equal(buf2, msg) {
				t.Fatalf("the posted receive: %+v, %v (data intact: %v)", st, err, bytes.Equal(buf2, msg))
			}
			if _, err := sq.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTimedOutEagerFailsPostedMatches: a receive fails by a peer timeout
// part way through an eager message; a wildcard receive already posted
// that matches the message fails too (it would otherwise wait on the
// silent peer, or be overtaken), and once the peer answers again the
// message, completed by its retransmissions, goes to a later receive.
func TestTimedOutEagerFailsPostedMatches(t *testing.T) {
	const timeout = 150 * time.Millisecond
	s, r, cut := oneWayPair(t, "mem", timeout, func(cfg *Config) {
		if cfg.Rank == 0 {
			cfg.PeerTimeout = 20 * timeout // the sender outlasts the cut
		}
	})
	ctx := ctxT(t)
	msg := pattern(3000, 0, 8, 0)
	r1 := r.RecvAsync(ctx, 0, 8, ^uint64(0), make([]byte, len(msg)))
	r2 := r.RecvAsync(ctx, AnySource, 8, ^uint64(0), make([]byte, len(msg)))
	cut[0].cutAfter(1)
	sq := s.SendAsync(ctx, 1, 8, msg)
	if _, err := r1.Wait(ctx); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("r1: %v", err)
	}
	if _, err := r2.Wait(ctx); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("r2 (wildcard, matching the failed peer's message): %v, want ErrPeerUnreachable", err)
	}
	cut[0].heal()
	if _, err := sq.Wait(ctx); err != nil {
		t.Fatalf("sender: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := r.Recv(ctx, 0, 8, ^uint64(0), buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("later receive: %v", err)
	}
}

// TestReplayDoesNotReviveDownPeer: once a peer is down (timed out), only
// evidence from after that moment brings it back. With KeepaliveInterval
// at PeerTimeout/2, the last PINGs before the timeout are still within
// the echo window; replaying the dead peer's genuine answers to them must
// not make operations toward it wait again instead of failing fast.
func TestReplayDoesNotReviveDownPeer(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var rec *recordingWire
	c := newCluster(t, "mem", 2, func(cfg *Config) {
		cfg.PeerTimeout = timeout
		cfg.KeepaliveInterval = timeout / 2
	}, func(rank int, w wire.Wire) wire.Wire {
		if rank == 1 {
			rec = &recordingWire{Wire: w}
			return rec
		}
		return w
	})
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	rq := a.RecvAsync(ctx, 1, 7, ^uint64(0), make([]byte, 10)) // a waits on b, pings it
	time.Sleep(350 * time.Millisecond)
	rec.mu.Lock()
	replay := append([][]byte(nil), rec.sent...)
	rec.mu.Unlock()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rq.Wait(ctx); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("recv: %v", err)
	}
	attacker, err := c.memNet().Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	for _, d := range replay {
		attacker.WriteBatch([]wire.Message{{Buf: bytes.Clone(d), Addr: a.LocalAddr()}})
	}
	time.Sleep(20 * time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, timeout/2)
	defer cancel()
	start := time.Now()
	if err := a.Send(sctx, 1, 1, []byte("x")); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("Send to the dead peer after the replay: %v after %v, want ErrPeerUnreachable at once (the peer is down)", err, time.Since(start))
	}
}

package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// unexpCharged is what ep's unexpected pool is charged with.
func unexpCharged(ep *Endpoint) int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.unexpUsed
}

// unexpectedHead waits until ep holds an unexpected message and returns
// whether it is a rendezvous one and how many of its bytes arrived.
func unexpectedHead(t *testing.T, ep *Endpoint, whole uint64) (rdv bool, got uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ep.mu.Lock()
		u := ep.unexp.head
		if u != nil && (u.rdv || u.complete) {
			rdv, got = u.rdv, u.got
			ep.mu.Unlock()
			return rdv, got
		}
		ep.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no whole unexpected message of %d bytes arrived", whole)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSendEagerOption: SendAsyncWith(Eager) sends a message beyond
// EagerLimit without the rendezvous: sent before its receive is posted it
// is buffered whole in the unexpected pool (where a plain SendAsync leaves
// only the RTS); posted first, the receive gets it intact, and a short
// receive gets ErrTruncated with the message's length. Every wire.
func TestSendEagerOption(t *testing.T) {
	for _, kind := range kinds() {
		for _, size := range []int{DefaultEagerLimit + 1, 1 << 20, 3<<20 + 5} {
			t.Run(fmt.Sprintf("%s/%s", kind, sizeName(size)), func(t *testing.T) {
				c := newCluster(t, kind, 2, nil, nil)
				a, b := c.eps[0], c.eps[1]
				ctx := ctxT(t)
				for i, eager := range []bool{false, true} {
					// Unposted: the receiver buffers what arrives.
					msg := pattern(size, 0, 1, i)
					s := a.SendAsyncWith(ctx, 1, 1, msg, SendOptions{Eager: eager})
					rdv, got := unexpectedHead(t, b, uint64(size))
					if rdv == eager || !eager && got != 0 || eager && got != uint64(size) {
						t.Fatalf("Eager %v: unexpected message rendezvous %v with %d of %d bytes buffered", eager, rdv, got, size)
					}
					buf := make([]byte, size)
					st, err := b.Recv(ctx, 0, 1, ^uint64(0), buf)
					if err != nil || st.Len != size {
						t.Fatalf("Eager %v: Recv %+v, %v", eager, st, err)
					}
					checkPattern(t, buf, 0, 1, i)
					if _, err := s.Wait(ctx); err != nil {
						t.Fatal(err)
					}
				}
				// Posted first, whole and short.
				for i, short := range []int{0, 1000} {
					buf := make([]byte, size-short)
					r := b.RecvAsync(ctx, 0, 2, ^uint64(0), buf)
					msg := pattern(size, 0, 2, i)
					s := a.SendAsyncWith(ctx, 1, 2, msg, SendOptions{Eager: true})
					st, err := r.Wait(ctx)
					if short == 0 && err != nil || short > 0 && !errors.Is(err, ErrTruncated) || st.Len != size {
						t.Fatalf("posted receive %d bytes short: %+v, %v", short, st, err)
					}
					if !bytes.Equal(buf, msg[:len(buf)]) {
						t.Fatalf("posted receive %d bytes short: data differs", short)
					}
					if _, err := s.Wait(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if left := unexpCharged(b); left != 0 {
					t.Fatalf("%d bytes left charged to the unexpected pool", left)
				}
			})
		}
	}
}

// TestCancelPartialLargeEager: a large eager send (SendOptions.Eager)
// cancelled part way is withdrawn, not finished from a copy: the send
// fails with the context's error, the receiver drops the part it holds
// (its pool ends empty), no receive ever gets the message, and the next
// message on the same tag arrives intact.
func TestCancelPartialLargeEager(t *testing.T) {
	s, r, cut := oneWayPair(t, "mem", 5*time.Second) // EagerLimit 4096, Window 16
	ctx := ctxT(t)
	const size = 3 << 20
	cut[0].cutAfter(4) // a few fragments get through, then nothing
	sctx, cancel := context.WithCancel(ctx)
	msg := pattern(size, 0, 9, 0)
	sq := s.SendAsyncWith(sctx, 1, 9, msg, SendOptions{Eager: true})
	waitFor(t, r, "part of the eager message at the receiver", func() bool {
		u := r.unexp.head
		return u != nil && !u.rdv && u.got > 0 && u.got < size
	})
	cancel()
	if _, err := sq.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled send: %v, want context.Canceled", err)
	}
	s.mu.Lock()
	cloned := len(sq.send.buf) != size || &sq.send.buf[0] != &msg[0]
	s.mu.Unlock()
	if cloned {
		t.Fatal("the cancelled send was detached to finish in the background")
	}
	cut[0].heal()
	waitFor(t, r, "the withdrawn message's pool bytes released", func() bool { return r.unexpUsed == 0 })
	// The next message on the tag is the one a receive gets.
	next := pattern(5000, 0, 9, 1)
	go s.Send(ctx, 1, 9, next)
	buf := make([]byte, size)
	st, err := r.Recv(ctx, 0, 9, ^uint64(0), buf)
	if err != nil || st.Len != len(next) {
		t.Fatalf("Recv after the withdrawn message: %+v, %v", st, err)
	}
	checkPattern(t, buf[:st.Len], 0, 9, 1)
}

package transport

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func localCompletion(c *Config) { c.LocalCompletion = true }

// TestShutdownDelivers: a send completed locally (LocalCompletion) whose
// packets were all lost is still delivered when the sender shuts down
// gracefully: Shutdown waits for the retransmission's ACK, then closes.
func TestShutdownDelivers(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			base := runtime.NumGoroutine()
			s, r, cut := oneWayPair(t, kind, 5*time.Second, localCompletion)
			ctx := ctxT(t)
			msg := pattern(3000, 0, 5, 1) // eager: under oneWayPair's 4096
			cut[0].cutAfter(0)
			if err := s.Send(ctx, 1, 5, msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Shutdown(ctx) }()
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned %v before its message was acknowledged", err)
			case <-time.After(100 * time.Millisecond):
			}
			cut[0].heal()
			buf := make([]byte, 4096)
			st, err := r.Recv(ctx, 0, 5, ^uint64(0), buf)
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			if st.Len != len(msg) {
				t.Fatalf("Recv: %d bytes, want %d", st.Len, len(msg))
			}
			checkPattern(t, buf[:st.Len], 0, 5, 1)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Shutdown still waiting 5 s after the message arrived")
			}
			if err := s.Send(ctx, 1, 5, msg); !errors.Is(err, ErrClosed) {
				t.Fatalf("Send after Shutdown: %v, want ErrClosed", err)
			}
			r.Close()
			checkNoLeak(t, base)
		})
	}
}

// TestShutdownNotWaitingForRecv: a pending receive does not hold Shutdown
// up; Close fails it with ErrClosed.
func TestShutdownNotWaitingForRecv(t *testing.T) {
	s, _, _ := oneWayPair(t, "mem", 5*time.Second, localCompletion)
	ctx := ctxT(t)
	rq := s.RecvAsync(ctx, 1, 9, ^uint64(0), make([]byte, 8))
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := rq.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("pending Recv: %v, want ErrClosed", err)
	}
}

// TestShutdownDeadline: with the peer cut off, Shutdown gives up when its
// context ends, closes the endpoint anyway and says why.
func TestShutdownDeadline(t *testing.T) {
	s, _, cut := oneWayPair(t, "mem", 5*time.Second, localCompletion)
	ctx := ctxT(t)
	cut[0].cutAfter(0)
	if err := s.Send(ctx, 1, 5, pattern(100, 0, 5, 1)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Shutdown(sctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Shutdown took %v with a 100 ms deadline", el)
	}
	if err := s.Send(ctx, 1, 5, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Shutdown: %v, want ErrClosed", err)
	}
}

// TestShutdownPeerTimeout: without a deadline, a peer that stops
// answering fails after PeerTimeout, and Shutdown reports that its
// messages may be lost.
func TestShutdownPeerTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s, _, cut := oneWayPair(t, "mem", timeout, localCompletion)
	ctx := ctxT(t)
	cut[0].cutAfter(0)
	if err := s.Send(ctx, 1, 5, pattern(100, 0, 5, 1)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	start := time.Now()
	err := s.Shutdown(ctx) // no deadline of its own (ctx is the test's)
	if !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("Shutdown: %v, want ErrPeerUnreachable", err)
	}
	if el := time.Since(start); el < timeout/2 || el > 10*timeout {
		t.Fatalf("Shutdown took %v, PeerTimeout %v", el, timeout)
	}
}

// TestShutdownClosedMeanwhile: a Close from elsewhere ends a waiting
// Shutdown.
func TestShutdownClosedMeanwhile(t *testing.T) {
	s, _, cut := oneWayPair(t, "mem", 5*time.Second, localCompletion)
	ctx := ctxT(t)
	cut[0].cutAfter(0)
	if err := s.Send(ctx, 1, 5, pattern(100, 0, 5, 1)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	waitFor(t, s, "Shutdown waiting", func() bool { return s.settled != nil })
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Shutdown interrupted by Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Shutdown still waiting after Close")
	}
	if err := s.Shutdown(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Shutdown after Close: %v, want ErrClosed", err)
	}
}

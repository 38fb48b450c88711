package rendezvous

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testCAOnce sync.Once
	testCAVal  *JobCA
)

// testCA returns a job CA shared by the tests of this binary.
func testCA(t testing.TB) *JobCA {
	t.Helper()
	testCAOnce.Do(func() {
		ca, err := NewJobCA()
		if err != nil {
			panic(err)
		}
		testCAVal = ca
	})
	return testCAVal
}

func issue(t testing.TB, ca *JobCA, role string, rank int) *Credentials {
	t.Helper()
	c, err := ca.Issue(role, rank)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitLog waits until the server log contains s.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("server log never said %q; log:\n%s", s, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testServer struct {
	srv  *Server
	addr string
	log  *syncBuffer
	done chan error
}

// startServer runs a Server on a loopback port; cfg.Credentials defaults to
// a server certificate of testCA. The server is closed at cleanup.
func startServer(t *testing.T, cfg ServerConfig) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startServerOn(t, ln, cfg)
}

func startServerOn(t *testing.T, ln net.Listener, cfg ServerConfig) *testServer {
	t.Helper()
	if cfg.Credentials == nil {
		cfg.Credentials = issue(t, testCA(t), "server", 0)
	}
	ts := &testServer{addr: ln.Addr().String(), log: &syncBuffer{}, done: make(chan error, 1)}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	go func() { ts.done <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ts
}

func dialTest(t *testing.T, addr string, creds *Credentials) *Client {
	t.Helper()
	if creds == nil {
		creds = issue(t, testCA(t), "rank", 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, ClientConfig{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkNoLeaks fails if goroutines running this package's code (other
// than tests) are still alive after a grace period.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked := leakedGoroutines()
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "sealring/rendezvous.") {
			continue
		}
		if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "leakedGoroutines") {
			continue
		}
		// Goroutines started by test code itself.
		if strings.Contains(g, "_test.go") && !strings.Contains(g, "rendezvous.(*") {
			continue
		}
		out = append(out, g)
	}
	return out
}

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

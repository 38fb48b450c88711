package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure"
)

// The test binary doubles as the rank program: with envChild set, TestMain
// runs childMain instead of the tests.
const (
	envChild = "SEALRING_LAUNCH_TEST_CHILD"
	envMode  = "SEALRING_LAUNCH_TEST_MODE"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(childMain(os.Getenv(envMode)))
	}
	os.Exit(m.Run())
}

func childMain(mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := rendezvous.DetectLauncher(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch mode {
	case "hang", "stubborn":
		if mode == "stubborn" {
			signal.Ignore(syscall.SIGTERM)
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return 0
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(41000+info.Rank))
	w, err := rendezvous.JoinFromEnv(ctx, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		return 2
	}
	defer w.Close()
	credFile := os.Getenv(rendezvous.EnvCredentialsFile)
	fi, err1 := os.Stat(credFile)
	di, err2 := os.Stat(filepath.Dir(credFile))
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "stat:", err1, err2)
		return 2
	}
	fmt.Printf("joined rank=%d size=%d local=%d inc=%d group=%x creds=%s mode=%04o dir=%04o\n",
		w.Rank, w.Size, info.LocalRank, w.Incarnation, w.Group.ID(), credFile, fi.Mode().Perm(), di.Mode().Perm())
	switch mode {
	case "exchange":
		// Seal a greeting for the next rank with the distributed keys and
		// pass it through the store; open the previous rank's.
		sealer, err := secure.NewSealer(w.Group, secure.SealerConfig{ID: w.SenderID()})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		msg := fmt.Sprintf("greetings from rank %d", w.Rank)
		pkt := append(make([]byte, sealer.HeaderLen()), msg...)
		if pkt, err = sealer.Seal(pkt, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		s := w.Store()
		if err := s.Set(ctx, fmt.Sprintf("app/pkt/%d", w.Rank), pkt); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		from := (w.Rank + w.Size - 1) % w.Size
		key := fmt.Sprintf("app/pkt/%d", from)
		if err := s.Wait(ctx, []string{key}, 20*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		v, err := s.Get(ctx, key)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		opener, _ := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{w.Group}})
		o, err := opener.Open(v, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			return 2
		}
		if o.Header.ID != w.Peers[from].SenderID() {
			fmt.Fprintln(os.Stderr, "wrong sender")
			return 2
		}
		fmt.Printf("opened from rank %d: %s\n", from, o.Payload)
		fmt.Fprintf(os.Stderr, "a line on stderr\nand a partial one")
		return 0
	case "fail":
		if w.Rank == 1 {
			fmt.Fprintln(os.Stderr, "about to fail")
			fmt.Fprintln(os.Stderr, "rank 1 failing on purpose")
			return 3
		}
		time.Sleep(time.Minute) // killed by the launcher
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown mode", mode)
	return 2
}

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

func (b *syncBuffer) waitFor(t *testing.T, re *regexp.Regexp, count int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(re.FindAllString(b.String(), -1)) < count {
		if time.Now().After(deadline) {
			t.Fatalf("output never had %d lines matching %v:\n%s", count, re, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func config(t *testing.T, n int, mode string) (Config, *syncBuffer, *syncBuffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	return Config{
		N:           n,
		Command:     []string{exe, "-test.run=^$"},
		Env:         []string{envChild + "=1", envMode + "=" + mode},
		Stdout:      &stdout,
		Stderr:      &stderr,
		GracePeriod: 2 * time.Second,
		Keys:        rendezvous.KeyControllerConfig{Settle: -1, AckTimeout: 20 * time.Second},
	}, &stdout, &stderr
}

// checkGone fails unless every rank process is gone (reaped).
func checkGone(t *testing.T, pids []int) {
	t.Helper()
	for r, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("rank %d (pid %d) still exists: %v", r, pid, err)
		}
	}
}

// checkNoLeaks fails if goroutines of the launcher or the rendezvous
// package are still running.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "sealring/rendezvous") && !strings.Contains(g, "testing.tRunner") &&
				!strings.Contains(g, "checkNoLeaks") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutine(s) leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunExchange(t *testing.T) {
	const n = 3
	cfg, stdout, stderr := config(t, n, "exchange")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The launcher can drive the keys while the ranks run.
	if j.Keys() == nil || j.Store() == nil || j.StoreAddr() == "" {
		t.Fatal("job accessors")
	}
	if err := j.Wait(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	checkGone(t, j.Pids())
	out := stdout.String()
	joined := regexp.MustCompile(`(?m)^\[rank (\d)\] joined rank=(\d) size=3 local=(\d) inc=1 group=([0-9a-f]{32}) creds=(\S+) mode=0600 dir=0700$`)
	m := joined.FindAllStringSubmatch(out, -1)
	if len(m) != n {
		t.Fatalf("want %d joined lines:\n%s\nstderr:\n%s", n, out, stderr)
	}
	for _, l := range m {
		if l[1] != l[2] || l[2] != l[3] || l[4] != m[0][4] {
			t.Fatalf("bad line %q", l[0])
		}
		if _, err := os.Stat(l[5]); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("credentials file %s survived the job: %v", l[5], err)
		}
		if _, err := os.Stat(filepath.Dir(l[5])); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary directory survived the job: %v", err)
		}
	}
	for r := range n {
		want := fmt.Sprintf("[rank %d] opened from rank %d: greetings from rank %d\n", r, (r+n-1)%n, (r+n-1)%n)
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
		for _, want := range []string{fmt.Sprintf("[rank %d] a line on stderr\n", r), fmt.Sprintf("[rank %d] and a partial one\n", r)} {
			if !strings.Contains(stderr.String(), want) {
				t.Fatalf("missing %q in stderr:\n%s", want, stderr)
			}
		}
	}
	checkNoLeaks(t)
}

func TestRunFailurePropagates(t *testing.T) {
	cfg, stdout, stderr := config(t, 3, "fail")
	cfg.GracePeriod = 10 * time.Second // SIGTERM alone must do
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	j, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Rank 1 exits right after joining (so after every rank joined); the
	// others sleep until the launcher terminates them.
	err = j.Wait()
	var re *RankError
	if !errors.As(err, &re) || re.Rank != 1 || re.ExitCode != 3 {
		t.Fatalf("got %v, want rank 1 with status 3\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if len(re.Stderr) != 2 || re.Stderr[1] != "rank 1 failing on purpose" ||
		!strings.Contains(err.Error(), "rank 1 exited with status 3") || !strings.Contains(err.Error(), "failing on purpose") {
		t.Fatalf("error %q, stderr tail %q", err, re.Stderr)
	}
	if d := time.Since(start); d > cfg.GracePeriod/2 {
		t.Fatalf("the job took %v to stop: SIGTERM did not end the other ranks", d)
	}
	checkGone(t, j.Pids())
	checkNoLeaks(t)
}

func TestRunCancel(t *testing.T) {
	cfg, stdout, _ := config(t, 3, "hang")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stdout.waitFor(t, regexp.MustCompile(`\] ready`), 3)
	cancel()
	err = j.Wait()
	var re *RankError
	if !errors.Is(err, context.Canceled) || errors.As(err, &re) {
		t.Fatalf("got %v", err)
	}
	checkGone(t, j.Pids())
	checkNoLeaks(t)
}

// TestRunTimeoutKillsStubbornRanks: ranks that ignore SIGTERM get SIGKILL
// after the grace period.
func TestRunTimeoutKillsStubbornRanks(t *testing.T) {
	cfg, stdout, _ := config(t, 2, "stubborn")
	cfg.GracePeriod = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stdout.waitFor(t, regexp.MustCompile(`\] ready`), 2)
	start := time.Now()
	j.Stop()
	err = j.Wait()
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d < cfg.GracePeriod || d > 5*time.Second {
		t.Fatalf("stopping took %v", d)
	}
	checkGone(t, j.Pids())

	// Timeout works the same way.
	cfg.Timeout = 200 * time.Millisecond
	err = Run(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timeout: %v", err)
	}
	checkNoLeaks(t)
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []Config{
		{N: 0, Command: []string{"true"}},
		{N: 1},
		{N: 1, Command: []string{"/nonexistent/program"}},
		{N: 1, Command: []string{"true"}, StoreAddr: "256.0.0.1:1"},
	} {
		if err := Run(ctx, cfg); err == nil {
			t.Errorf("Run(%+v) succeeded", cfg)
		}
	}
	// A rank that dies by a signal.
	err := Run(ctx, Config{N: 2, Command: []string{"sh", "-c", `[ "$SEALRING_RANK" = 1 ] && kill -9 $$; sleep 30`},
		Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, GracePeriod: time.Second})
	var re *RankError
	if !errors.As(err, &re) || re.Rank != 1 || re.ExitCode != -1 || re.Signal != syscall.SIGKILL {
		t.Fatalf("got %v", err)
	}
	checkNoLeaks(t)
}

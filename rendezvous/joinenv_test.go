package rendezvous

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/secure"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestJoinFromEnvRank0Hosts: under an external launcher with a job secret
// and no store running, rank 0 hosts the store and the key controller;
// the other ranks, started first, retry until it is up.
func TestJoinFromEnvRank0Hosts(t *testing.T) {
	checkNoLeaks(t)
	const n = 3
	secretFile := filepath.Join(t.TempDir(), "secret")
	if _, err := NewJobSecret(secretFile); err != nil {
		t.Fatal(err)
	}
	store := freePort(t)
	ctx := ctxT(t)
	worlds := make([]*World, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for _, r := range []int{2, 1, 0} {
		env := mapEnv(map[string]string{
			"SLURM_PROCID": strconv.Itoa(r), "SLURM_NTASKS": strconv.Itoa(n),
			EnvStore: store, EnvSecretFile: secretFile,
		})
		wg.Go(func() {
			worlds[r], errs[r] = joinFromEnv(ctx, env, testAddr(r), envOptions{timeout: 10 * time.Second, logger: discardLogger, settle: -1})
		})
		time.Sleep(60 * time.Millisecond) // rank 0 comes last
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	kc := worlds[0].KeyController()
	if kc == nil || worlds[1].KeyController() != nil || !worlds[0].hosting || worlds[1].hosting {
		t.Fatal("rank 0 should host the store and run the key controller")
	}
	for _, w := range worlds {
		if w.JobID == "" || w.JobID != worlds[0].JobID {
			t.Fatalf("rank %d job %q", w.Rank, w.JobID)
		}
	}
	if err := kc.RotateRootKey(ctx, secure.Task); err != nil {
		t.Fatal(err)
	}
	checkInterop(t, worlds[2], worlds[0])
	checkInterop(t, worlds[0], worlds[1])
	// Rank 0 closes first: it keeps serving until the others have closed.
	closed := make(chan error, 1)
	go func() { closed <- worlds[0].Close() }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-closed:
		t.Fatalf("hosting rank 0 closed before the others: %v", err)
	default:
	}
	if _, err := worlds[1].Refresh(ctx); err != nil {
		t.Fatalf("store gone while rank 1 is open: %v", err)
	}
	worlds[1].Close()
	worlds[2].Close()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t)
}

// TestJoinFromEnvCredentialsFile: ranks started by a launcher that hosts
// the store and hands out credentials files.
func TestJoinFromEnvCredentialsFile(t *testing.T) {
	ts := startServer(t, ServerConfig{Logger: discardLogger})
	ctrl := dialTest(t, ts.addr, issue(t, testCA(t), "launcher", 0))
	newController(t, ctrl, 2, -1)
	dir := t.TempDir()
	ctx := ctxT(t)
	worlds := make([]*World, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		path := filepath.Join(dir, "rank"+strconv.Itoa(r))
		if err := issue(t, testCA(t), "rank", r).Save(path); err != nil {
			t.Fatal(err)
		}
		env := mapEnv(map[string]string{EnvRank: strconv.Itoa(r), EnvWorldSize: "2", EnvStore: ts.addr, EnvCredentialsFile: path})
		wg.Go(func() { worlds[r], errs[r] = joinFromEnv(ctx, env, testAddr(r), envOptions{timeout: 5 * time.Second}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	defer worlds[0].Close()
	defer worlds[1].Close()
	if worlds[0].KeyController() != nil || worlds[0].JobID != testCA(t).JobID() {
		t.Fatal("a rank with a credentials file must not run a controller")
	}
	checkInterop(t, worlds[0], worlds[1])
}

// TestJoinFromEnvWrongJob: a rank whose credentials belong to another job
// is refused at once, not retried until the timeout.
func TestJoinFromEnvWrongJob(t *testing.T) {
	ts := startServer(t, ServerConfig{})
	other, err := NewJobCA()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "creds")
	if err := issue(t, other, "rank", 0).Save(path); err != nil {
		t.Fatal(err)
	}
	env := mapEnv(map[string]string{EnvRank: "0", EnvWorldSize: "1", EnvStore: ts.addr, EnvCredentialsFile: path})
	start := time.Now()
	_, err = joinFromEnv(ctxT(t), env, testAddr(0), envOptions{timeout: 10 * time.Second})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusal took %v", d)
	}
	ts.log.waitFor(t, "rejected connection")
}

func TestJoinFromEnvErrors(t *testing.T) {
	ctx := ctxT(t)
	for name, env := range map[string]map[string]string{
		"no launcher":    {},
		"no store":       {EnvRank: "0", EnvWorldSize: "1", EnvCredentialsFile: "/nonexistent"},
		"no credentials": {EnvRank: "0", EnvWorldSize: "1", EnvStore: "127.0.0.1:1"},
	} {
		if _, err := joinFromEnv(ctx, mapEnv(env), testAddr(0), envOptions{timeout: time.Second}); err == nil {
			t.Errorf("%s: joined", name)
		}
	}
	// Nobody hosts the store and this rank may not: it gives up at the timeout.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if _, err := NewJobSecret(secretFile); err != nil {
		t.Fatal(err)
	}
	env := mapEnv(map[string]string{EnvRank: "1", EnvWorldSize: "2", EnvStore: freePort(t), EnvSecretFile: secretFile})
	_, err := joinFromEnv(ctx, env, testAddr(1), envOptions{timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := joinFromEnv(cctx, env, testAddr(1), envOptions{timeout: 10 * time.Second}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}

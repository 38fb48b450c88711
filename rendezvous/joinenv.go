package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"
)

// EnvCredentialsFile names a file holding this party's job credentials
// (Credentials.Save format, mode 0600), as written by rendezvous/launch for
// each rank. It takes precedence over SEALRING_JOB_SECRET_FILE.
const EnvCredentialsFile = "SEALRING_CREDENTIALS_FILE"

// JoinFromEnv joins the job that started this process, as described by its
// environment (see DetectLauncher), with addr as this rank's transport
// address:
//
//   - credentials come from SEALRING_CREDENTIALS_FILE, else are derived
//     from the job secret in SEALRING_JOB_SECRET_FILE (CredentialsFromSecret);
//   - the store is dialed at SEALRING_STORE (or MASTER_ADDR:MASTER_PORT
//     under torchrun), retrying with backoff while it is not up yet, until
//     ctx ends or DefaultJoinTimeout (or ctx's deadline, if earlier) passes.
//     Authentication failures are not retried: they wrap ErrAuth;
//   - with a job secret, rank 0 also hosts the store when none answers at
//     that address (it listens there itself), and runs the job's
//     KeyController (World.KeyController), creating the trust group or
//     resuming it from the store. Under rendezvous/launch (credentials
//     file) the launcher hosts the store and runs the controller.
//
// The World owns the connection (and the server, on a hosting rank 0);
// Close releases them. A hosting rank 0's Close waits for every rank to
// close first, up to the join timeout, so that the store outlives its users.
func JoinFromEnv(ctx context.Context, addr netip.AddrPort) (*World, error) {
	return joinFromEnv(ctx, os.Getenv, addr, envOptions{})
}

// envOptions are test knobs for joinFromEnv.
type envOptions struct {
	timeout time.Duration // zero: DefaultJoinTimeout
	logger  *slog.Logger  // hosted server's logger; nil: slog.Default()
	settle  time.Duration // hosted KeyController's Settle
}

func joinFromEnv(ctx context.Context, getenv func(string) string, addr netip.AddrPort, opt envOptions) (w *World, err error) {
	info, err := DetectLauncher(getenv)
	if err != nil {
		return nil, err
	}
	if info.StoreAddr == "" {
		return nil, fmt.Errorf("rendezvous: join from env: no store address (set %s, or MASTER_ADDR and MASTER_PORT under torchrun): %w", EnvStore, ErrBadEnv)
	}
	timeout := opt.timeout
	if timeout <= 0 {
		timeout = DefaultJoinTimeout
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	deadline := time.Now().Add(timeout)

	credFile := getenv(EnvCredentialsFile)
	var creds *Credentials
	switch {
	case credFile != "":
		creds, err = LoadCredentials(credFile)
	case info.SecretFile != "":
		creds, err = CredentialsFromSecret(info.SecretFile, "rank", info.Rank)
	default:
		err = fmt.Errorf("rendezvous: join from env: no job credentials (set %s or %s): %w", EnvCredentialsFile, EnvSecretFile, ErrBadEnv)
	}
	if err != nil {
		return nil, err
	}

	var owned []func() error
	defer func() {
		if err != nil {
			for i := len(owned) - 1; i >= 0; i-- {
				owned[i]()
			}
		}
	}()
	controls := info.Rank == 0 && credFile == "" && info.SecretFile != ""
	var store Store
	hosting := false
	var hostErr error
	if controls {
		// Rank 0 with a job secret: use a running store, else host one.
		c, derr := Dial(ctx, info.StoreAddr, ClientConfig{Credentials: creds, DialTimeout: min(2*time.Second, timeout)})
		switch {
		case derr == nil:
			store = c
			owned = append(owned, c.Close)
		case errors.Is(derr, ErrAuth) || ctx.Err() != nil:
			return nil, derr
		default:
			mem, srvClose, herr := hostStore(info, opt.logger)
			if herr == nil {
				store, hosting = mem, true
				owned = append(owned, srvClose)
			}
			hostErr = herr
		}
	}
	if store == nil {
		c, derr := dialRetry(ctx, info.StoreAddr, creds, deadline)
		if derr != nil {
			if hostErr != nil {
				derr = fmt.Errorf("%w (and rank 0 could not host the store: %v)", derr, hostErr)
			}
			return nil, derr
		}
		store = c
		owned = append(owned, c.Close)
	}
	var kc *KeyController
	if controls {
		kc, err = NewKeyController(ctx, store, KeyControllerConfig{Size: info.WorldSize, JobID: creds.JobID(), Settle: opt.settle})
		if err != nil {
			return nil, err
		}
		owned = append(owned, kc.Close)
	}
	w, err = Join(ctx, JoinConfig{Store: store, Rank: info.Rank, Size: info.WorldSize, Addr: addr, Timeout: time.Until(deadline)})
	if err != nil {
		return nil, err
	}
	if w.JobID == "" {
		w.JobID = creds.JobID()
	}
	// Close releases in reverse order of acquisition.
	for i := len(owned) - 1; i >= 0; i-- {
		w.owned = append(w.owned, owned[i])
	}
	w.hosting = hosting
	w.keyController = kc
	return w, nil
}

// hostStore starts a store server on info.StoreAddr with server
// credentials derived from the job secret. Rank 0 uses the backing
// MemStore directly.
func hostStore(info LaunchInfo, logger *slog.Logger) (*MemStore, func() error, error) {
	creds, err := CredentialsFromSecret(info.SecretFile, "server", 0)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", info.StoreAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("rendezvous: hosting the store: %w", err)
	}
	mem := NewMemStore(MemStoreConfig{})
	srv, err := NewServer(ServerConfig{Credentials: creds, Store: mem, Addr: info.StoreAddr, Logger: logger})
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	return mem, func() error {
		err := srv.Close()
		<-served
		mem.Close()
		return err
	}, nil
}

// dialRetry dials addr until it succeeds, authentication fails, ctx ends
// or deadline passes, backing off from 20 ms to 1 s.
func dialRetry(ctx context.Context, addr string, creds *Credentials, deadline time.Time) (*Client, error) {
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		left := time.Until(deadline)
		c, err := Dial(ctx, addr, ClientConfig{Credentials: creds, DialTimeout: max(min(5*time.Second, left), time.Millisecond)})
		if err == nil {
			return c, nil
		}
		if errors.Is(err, ErrAuth) || ctx.Err() != nil {
			return nil, err
		}
		left = time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("rendezvous: join from env: store at %s not reachable after %d attempts: %w", addr, attempt, err)
		}
		t := time.NewTimer(min(backoff, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("rendezvous: join from env: dialing the store at %s: %w", addr, ctx.Err())
		}
		backoff = min(2*backoff, time.Second)
	}
}

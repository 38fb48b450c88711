// Package launch starts the N ranks of a sealring job as local child
// processes, the way a job launcher (mpirun, srun, torchrun) would, and
// hosts the job's rendezvous store and key controller for them.
//
// Start (or Run, which is Start then Wait):
//
//   - creates a job CA (rendezvous.NewJobCA) and a private temporary
//     directory (mode 0700) holding one credentials file per rank (mode 0600,
//     rendezvous.Credentials.Save format). Credentials reach the ranks as
//     files, never through the environment; the directory is removed when
//     the job ends;
//   - hosts a TLS 1.3 mutual-auth store server (rendezvous.Server) on
//     loopback, backed by an in-process MemStore, and runs the job's
//     rendezvous.KeyController on that MemStore, so the root keys are
//     published before any rank starts and never leave the launcher except
//     over the authenticated store connection;
//   - starts each rank with SEALRING_RANK, SEALRING_WORLD_SIZE,
//     SEALRING_LOCAL_RANK, SEALRING_STORE and SEALRING_CREDENTIALS_FILE set
//     (ranks call rendezvous.JoinFromEnv), in its own process group;
//   - streams every line a rank writes, prefixed with "[rank N] ";
//   - propagates failure: when a rank exits with a non-zero status or dies
//     by a signal, the other ranks get SIGTERM, then SIGKILL after
//     GracePeriod, and Wait returns a *RankError naming the rank, its exit
//     status and the last lines of its stderr. Canceling ctx or exceeding
//     Timeout terminates the ranks the same way.
//
// When Wait returns, every rank's process group has been signaled and
// every rank reaped, the output streams are drained, the store server is
// closed and the temporary directory removed.
package launch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sealring/sealring/rendezvous"
)

// Defaults, used where a Config field is zero.
const (
	DefaultGracePeriod = 5 * time.Second
	DefaultStderrLines = 20
)

// Config describes a job.
type Config struct {
	// N is the number of ranks, >= 1.
	N int
	// Command is the program and its arguments, run once per rank.
	Command []string
	// Env is added to the launcher's environment (later entries win);
	// the SEALRING_* variables the launcher sets override both.
	Env []string
	// Dir is the ranks' working directory; "" means the launcher's.
	Dir string
	// Stdout and Stderr receive the ranks' output, line by line, each
	// line prefixed with "[rank N] ". nil means os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Timeout bounds the whole job; zero means none (only ctx).
	Timeout time.Duration
	// GracePeriod is the time between SIGTERM and SIGKILL when ranks are
	// terminated; zero means DefaultGracePeriod.
	GracePeriod time.Duration
	// StoreAddr is where the store server listens; "" means 127.0.0.1:0.
	StoreAddr string
	// Keys configures the job's key controller; Size is set to N.
	Keys rendezvous.KeyControllerConfig
	// StderrLines is how many of a failed rank's last stderr lines the
	// error reports; zero means DefaultStderrLines.
	StderrLines int
	// Logger receives the store server's log; nil discards it.
	Logger *slog.Logger
}

// RankError reports the rank whose failure ended the job.
type RankError struct {
	Rank     int
	ExitCode int            // -1 if the rank was killed by a signal
	Signal   syscall.Signal // the signal, if ExitCode is -1
	Stderr   []string       // the last lines the rank wrote to stderr
	Err      error          // a wait error, if the status is unknown
}

func (e *RankError) Error() string {
	var b strings.Builder
	switch {
	case e.Err != nil:
		fmt.Fprintf(&b, "launch: rank %d failed: %v", e.Rank, e.Err)
	case e.ExitCode == -1:
		fmt.Fprintf(&b, "launch: rank %d was killed by signal %v", e.Rank, e.Signal)
	default:
		fmt.Fprintf(&b, "launch: rank %d exited with status %d", e.Rank, e.ExitCode)
	}
	if len(e.Stderr) > 0 {
		fmt.Fprintf(&b, "; its last %d stderr line(s):", len(e.Stderr))
		for _, l := range e.Stderr {
			b.WriteString("\n\t")
			b.WriteString(l)
		}
	}
	return b.String()
}

func (e *RankError) Unwrap() error { return e.Err }

// Job is a running job.
type Job struct {
	cfg      Config
	dir      string
	srvClose func()
	mem      *rendezvous.MemStore
	kc       *rendezvous.KeyController
	addr     string
	ranks    []*rank

	out     sync.Mutex // serialises output lines
	stopReq chan struct{}
	stopped sync.Once
	done    chan struct{}
	err     error
}

type rank struct {
	n    int
	cmd  *exec.Cmd
	pipe [2]*os.File // read ends: stdout, stderr

	mu     sync.Mutex
	exited bool // exit observed; the process group may no longer be signaled

	tailMu sync.Mutex
	tail   []string
}

// Run starts the job and waits for it: Start then Wait.
func Run(ctx context.Context, cfg Config) error {
	j, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	return j.Wait()
}

// Start hosts the store, writes the credentials and starts the ranks. The
// job runs until every rank has exited, one fails, ctx ends, the Timeout
// passes, or Stop is called; Wait reports the outcome.
func Start(ctx context.Context, cfg Config) (_ *Job, err error) {
	if cfg.N < 1 {
		return nil, fmt.Errorf("launch: N is %d, want >= 1", cfg.N)
	}
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("launch: empty Command")
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.StderrLines <= 0 {
		cfg.StderrLines = DefaultStderrLines
	}
	if cfg.StoreAddr == "" {
		cfg.StoreAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	path, err := exec.LookPath(cfg.Command[0])
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}

	j := &Job{cfg: cfg, stopReq: make(chan struct{}), done: make(chan struct{})}
	defer func() {
		if err != nil {
			// Kill the ranks already started, then release everything.
			for _, rk := range j.ranks {
				killGroup(rk.cmd.Process.Pid, syscall.SIGKILL)
				rk.cmd.Wait()
				rk.closePipes()
			}
			j.cleanup()
		}
	}()
	if j.dir, err = os.MkdirTemp("", "sealring-job-*"); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	if err = os.Chmod(j.dir, 0o700); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	ca, err := rendezvous.NewJobCA()
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	srvCreds, err := ca.Issue("server", 0)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.StoreAddr)
	if err != nil {
		return nil, fmt.Errorf("launch: store: %w", err)
	}
	j.mem = rendezvous.NewMemStore(rendezvous.MemStoreConfig{})
	srv, err := rendezvous.NewServer(rendezvous.ServerConfig{Credentials: srvCreds, Store: j.mem, Logger: cfg.Logger})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("launch: %w", err)
	}
	j.addr = ln.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	j.srvClose = func() { srv.Close(); <-served }

	kcfg := cfg.Keys
	kcfg.Size = cfg.N
	kcfg.JobID = ca.JobID()
	if j.kc, err = rendezvous.NewKeyController(ctx, j.mem, kcfg); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}

	env := append(os.Environ(), cfg.Env...)
	for r := range cfg.N {
		credFile := filepath.Join(j.dir, "rank-"+strconv.Itoa(r)+".pem")
		creds, err := ca.Issue("rank", r)
		if err != nil {
			return nil, fmt.Errorf("launch: %w", err)
		}
		if err := creds.Save(credFile); err != nil {
			return nil, fmt.Errorf("launch: %w", err)
		}
		cmd := exec.Command(path, cfg.Command[1:]...)
		cmd.Args[0] = cfg.Command[0]
		cmd.Dir = cfg.Dir
		cmd.Env = append(env[:len(env):len(env)],
			rendezvous.EnvRank+"="+strconv.Itoa(r),
			rendezvous.EnvWorldSize+"="+strconv.Itoa(cfg.N),
			rendezvous.EnvLocalRank+"="+strconv.Itoa(r),
			rendezvous.EnvStore+"="+j.addr,
			rendezvous.EnvCredentialsFile+"="+credFile,
		)
		cmd.SysProcAttr = sysProcAttr()
		rk := &rank{n: r, cmd: cmd}
		var wr [2]*os.File
		for i := range 2 {
			if rk.pipe[i], wr[i], err = os.Pipe(); err != nil {
				rk.closePipes()
				return nil, fmt.Errorf("launch: %w", err)
			}
		}
		cmd.Stdout, cmd.Stderr = wr[0], wr[1]
		err = cmd.Start()
		wr[0].Close()
		wr[1].Close()
		if err != nil {
			rk.closePipes()
			return nil, fmt.Errorf("launch: starting rank %d: %w", r, err)
		}
		j.ranks = append(j.ranks, rk)
	}
	go j.supervise(ctx)
	return j, nil
}

// StoreAddr returns the address of the job's store server.
func (j *Job) StoreAddr() string { return j.addr }

// Keys returns the job's key controller, for rotations and epoch bumps
// while the ranks run.
func (j *Job) Keys() *rendezvous.KeyController { return j.kc }

// Store returns the launcher's in-process view of the job's store.
func (j *Job) Store() rendezvous.Store { return j.mem }

// Pids returns the ranks' process IDs, by rank.
func (j *Job) Pids() []int {
	p := make([]int, len(j.ranks))
	for i, r := range j.ranks {
		p[i] = r.cmd.Process.Pid
	}
	return p
}

// Stop terminates the ranks (SIGTERM, then SIGKILL after GracePeriod).
// Wait then returns an error wrapping context.Canceled, unless a rank had
// already failed.
func (j *Job) Stop() { j.stopped.Do(func() { close(j.stopReq) }) }

// Wait waits for the job to end and returns nil if every rank exited with
// status 0, else the first failure: a *RankError, or an error wrapping
// ctx's error or context.DeadlineExceeded (Timeout).
func (j *Job) Wait() error {
	<-j.done
	return j.err
}

// exitResult is one rank's end.
type exitResult struct {
	rank  int
	state *os.ProcessState
	err   error
}

func (j *Job) supervise(ctx context.Context) {
	defer close(j.done)
	results := make(chan exitResult, len(j.ranks))
	var waiters sync.WaitGroup
	for _, rk := range j.ranks {
		waiters.Go(func() {
			var pumps sync.WaitGroup
			pumps.Go(func() { j.pump(rk, rk.pipe[0], j.cfg.Stdout, false) })
			pumps.Go(func() { j.pump(rk, rk.pipe[1], j.cfg.Stderr, true) })
			var err error
			if waitExit(rk.cmd.Process) {
				// The rank has exited but is not reaped yet, so its PID
				// (and process group ID) cannot be reused: it is safe to
				// signal the group, and leftovers of the group go with it.
				rk.mu.Lock()
				rk.exited = true
				killGroup(rk.cmd.Process.Pid, syscall.SIGKILL)
				rk.mu.Unlock()
				err = rk.cmd.Wait()
			} else {
				err = rk.cmd.Wait()
				rk.mu.Lock()
				rk.exited = true
				rk.mu.Unlock()
			}
			// Drain the output; a process outside the group that still
			// holds the pipes gets one second.
			deadline := time.Now().Add(time.Second)
			rk.pipe[0].SetReadDeadline(deadline)
			rk.pipe[1].SetReadDeadline(deadline)
			pumps.Wait()
			results <- exitResult{rank: rk.n, state: rk.cmd.ProcessState, err: err}
		})
	}

	var timeout <-chan time.Time
	if j.cfg.Timeout > 0 {
		t := time.NewTimer(j.cfg.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var kill <-chan time.Time
	terminating := false
	terminate := func(err error) {
		if j.err == nil {
			j.err = err
		}
		if terminating {
			return
		}
		terminating = true
		j.signalAll(syscall.SIGTERM)
		t := time.NewTimer(j.cfg.GracePeriod)
		defer func() {
			if kill == nil {
				t.Stop()
			}
		}()
		kill = t.C
	}
	ctxDone := ctx.Done()
	for left := len(j.ranks); left > 0; {
		select {
		case r := <-results:
			left--
			if terminating {
				continue // a consequence of our signals
			}
			if f := j.failure(r); f != nil {
				terminate(f)
			}
		case <-ctxDone:
			ctxDone = nil
			terminate(fmt.Errorf("launch: job canceled; ranks terminated: %w", context.Cause(ctx)))
		case <-timeout:
			timeout = nil
			terminate(fmt.Errorf("launch: job timed out after %v; ranks terminated: %w", j.cfg.Timeout, context.DeadlineExceeded))
		case <-j.stopReq:
			j.stopReq = nil
			terminate(fmt.Errorf("launch: job stopped; ranks terminated: %w", context.Canceled))
		case <-kill:
			kill = nil
			j.signalAll(syscall.SIGKILL)
		}
	}
	waiters.Wait()
	j.cleanup()
}

// failure returns the error a rank's exit means, or nil for status 0.
func (j *Job) failure(r exitResult) error {
	rk := j.ranks[r.rank]
	e := &RankError{Rank: r.rank, Stderr: rk.lastLines()}
	switch {
	case r.state == nil:
		e.Err = r.err
		e.ExitCode = -1
	case r.state.Success():
		return nil
	default:
		e.ExitCode = r.state.ExitCode()
		if ws, ok := r.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.ExitCode, e.Signal = -1, ws.Signal()
		}
	}
	return e
}

// signalAll signals the process group of every rank still running.
func (j *Job) signalAll(sig syscall.Signal) {
	for _, rk := range j.ranks {
		rk.mu.Lock()
		if !rk.exited {
			killGroup(rk.cmd.Process.Pid, sig)
		}
		rk.mu.Unlock()
	}
}

// pump copies lines from f to w with the rank's prefix.
func (j *Job) pump(rk *rank, f *os.File, w io.Writer, keep bool) {
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	prefix := "[rank " + strconv.Itoa(rk.n) + "] "
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			text := strings.TrimSuffix(string(line), "\n")
			j.out.Lock()
			io.WriteString(w, prefix+text+"\n")
			j.out.Unlock()
			if keep {
				rk.keep(text, j.cfg.StderrLines)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (rk *rank) keep(line string, n int) {
	rk.tailMu.Lock()
	defer rk.tailMu.Unlock()
	rk.tail = append(rk.tail, line)
	if len(rk.tail) > n {
		rk.tail = append(rk.tail[:0], rk.tail[len(rk.tail)-n:]...)
	}
}

func (rk *rank) lastLines() []string {
	rk.tailMu.Lock()
	defer rk.tailMu.Unlock()
	return append([]string(nil), rk.tail...)
}

func (rk *rank) closePipes() {
	for _, f := range rk.pipe {
		if f != nil {
			f.Close()
		}
	}
}

// cleanup releases the launcher's resources.
func (j *Job) cleanup() {
	if j.kc != nil {
		j.kc.Close()
	}
	if j.srvClose != nil {
		j.srvClose()
	}
	if j.mem != nil {
		j.mem.Close()
	}
	if j.dir != "" {
		os.RemoveAll(j.dir)
	}
}

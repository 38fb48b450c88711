package rendezvous

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// FileStoreConfig configures a FileStore. The zero value is ready to use.
type FileStoreConfig struct {
	Limits Limits

	// PollInterval is the first interval at which Wait re-checks missing
	// keys; it doubles after each miss up to MaxPollInterval.
	// Zero means 2ms and 250ms.
	PollInterval    time.Duration
	MaxPollInterval time.Duration

	// NoSync skips the fsync of each written file and of the directory.
	// Writes stay atomic (rename) but may be lost on a machine crash.
	// Useful for tests and for tmpfs.
	NoSync bool
}

// FileStore is a Store kept in a directory, typically on a filesystem
// shared by all nodes of a job (NFS, Lustre, GPFS) or on local disk for
// processes of one node. Several processes may open the same directory.
//
// Each key is one file whose name encodes the key (base64url, or a SHA-256
// for long keys), so keys cannot escape the directory. A write goes to a
// temporary file that is fsynced and renamed over the key's file, so a
// reader sees the old or the new value, never a torn one. Writers (Set,
// Add, CompareAndSet, Delete) serialise on flock(2) of the directory's
// ".lock" file, which makes Add and CompareAndSet atomic across processes;
// readers take no lock. Wait polls for the key files, starting at
// PollInterval and backing off exponentially to MaxPollInterval, because a
// shared filesystem offers no portable change notification.
//
// The directory is created with mode 0700 and files with 0600: a FileStore
// is as private as its directory, and it authenticates nobody.
// flock over NFS needs NFSv4 or lockd; see docs/architecture.md.
type FileStore struct {
	dir  string
	lim  Limits
	cfg  FileStoreConfig
	lock chan struct{} // in-process writer semaphore, held around flock

	mu      sync.Mutex
	isClose bool
	closed  chan struct{}
}

var _ Store = (*FileStore)(nil)

const (
	fileKeyPrefix  = "k-"    // base64url(key)
	fileHashPrefix = "h-"    // hex(sha256(key)), for keys too long for a name
	fileTmpPrefix  = ".tmp-" // temporary files, renamed into place
	fileLockName   = ".lock"
	maxNameLen     = 200 // stay well below NAME_MAX=255
)

// OpenFileStore opens (creating if needed) a file store in dir.
func OpenFileStore(dir string, cfg FileStoreConfig) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("rendezvous: OpenFileStore: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rendezvous: OpenFileStore: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: OpenFileStore: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("rendezvous: OpenFileStore: %s is not a directory", dir)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Millisecond
	}
	if cfg.MaxPollInterval <= 0 {
		cfg.MaxPollInterval = 250 * time.Millisecond
	}
	if cfg.MaxPollInterval < cfg.PollInterval {
		cfg.MaxPollInterval = cfg.PollInterval
	}
	f, err := os.OpenFile(filepath.Join(dir, fileLockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: OpenFileStore: %w", err)
	}
	f.Close()
	return &FileStore{
		dir:    dir,
		lim:    cfg.Limits.withDefaults(),
		cfg:    cfg,
		lock:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}, nil
}

// Dir returns the store's directory.
func (s *FileStore) Dir() string { return s.dir }

// fileName maps a key to a file name inside the directory. The result
// contains only [A-Za-z0-9_-] after its prefix, so it can neither contain a
// path separator nor be "." or "..".
func fileName(key string) string {
	enc := base64.RawURLEncoding.EncodeToString([]byte(key))
	if len(fileKeyPrefix)+len(enc) <= maxNameLen {
		return fileKeyPrefix + enc
	}
	sum := sha256.Sum256([]byte(key))
	return fileHashPrefix + hex.EncodeToString(sum[:])
}

func (s *FileStore) path(key string) string { return filepath.Join(s.dir, fileName(key)) }

func (s *FileStore) checkOpen(op, key string) error {
	select {
	case <-s.closed:
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, ErrClosed)
	default:
		return nil
	}
}

// withLock runs fn holding the in-process semaphore and an exclusive flock
// on the lock file. Acquisition honours ctx and Close; flock is tried
// without blocking and retried with backoff, so a stuck peer process
// cannot make a call outlive its context.
func (s *FileStore) withLock(ctx context.Context, op, key string, fn func() error) error {
	if err := s.checkOpen(op, key); err != nil {
		return err
	}
	if err := ctxErr(ctx, op, key); err != nil {
		return err
	}
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return ctxErr(ctx, op, key)
	case <-s.closed:
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, ErrClosed)
	}
	defer func() { <-s.lock }()

	f, err := os.OpenFile(filepath.Join(s.dir, fileLockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("rendezvous: %s %q: open lock file: %w", op, key, err)
	}
	defer f.Close() // closing the descriptor releases the flock
	backoff := 50 * time.Microsecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("rendezvous: %s %q: flock: %w", op, key, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctxErr(ctx, op, key)
		case <-s.closed:
			t.Stop()
			return fmt.Errorf("rendezvous: %s %q: %w", op, key, ErrClosed)
		}
		backoff = min(2*backoff, 5*time.Millisecond)
	}
	return fn()
}

// read returns the value of key, with exists=false if it has no file.
func (s *FileStore) read(op, key string) (v []byte, exists bool, err error) {
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("rendezvous: %s %q: %w", op, key, err)
	}
	defer f.Close()
	v, err = io.ReadAll(io.LimitReader(f, int64(s.lim.MaxValueSize)+1))
	if err != nil {
		return nil, false, fmt.Errorf("rendezvous: %s %q: %w", op, key, err)
	}
	if len(v) > s.lim.MaxValueSize {
		return nil, false, fmt.Errorf("rendezvous: %s %q: stored value exceeds the %d-byte limit: %w", op, key, s.lim.MaxValueSize, ErrTooLarge)
	}
	return v, true, nil
}

// write atomically replaces key's file with v: temporary file, fsync,
// rename, fsync of the directory.
func (s *FileStore) write(op, key string, v []byte) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(s.dir, fileTmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, err)
	}
	_, err = f.Write(v)
	if err == nil && !s.cfg.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(key))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, err)
	}
	return s.syncDir(op, key)
}

func (s *FileStore) syncDir(op, key string) error {
	if s.cfg.NoSync {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("rendezvous: %s %q: sync directory: %w", op, key, err)
	}
	return nil
}

// Set implements Store.
func (s *FileStore) Set(ctx context.Context, key string, value []byte) error {
	if err := s.lim.checkKey("set", key); err != nil {
		return err
	}
	if err := s.lim.checkValue("set", key, value); err != nil {
		return err
	}
	return s.withLock(ctx, "set", key, func() error { return s.write("set", key, value) })
}

// Get implements Store. It takes no lock: renames are atomic.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.lim.checkKey("get", key); err != nil {
		return nil, err
	}
	if err := s.checkOpen("get", key); err != nil {
		return nil, err
	}
	if err := ctxErr(ctx, "get", key); err != nil {
		return nil, err
	}
	v, ok, err := s.read("get", key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("rendezvous: get %q: %w", key, ErrNotFound)
	}
	return v, nil
}

// Add implements Store, atomically across processes.
func (s *FileStore) Add(ctx context.Context, key string, delta int64) (int64, error) {
	if err := s.lim.checkKey("add", key); err != nil {
		return 0, err
	}
	var n int64
	err := s.withLock(ctx, "add", key, func() error {
		v, ok, err := s.read("add", key)
		if err != nil {
			return err
		}
		cur, err := parseCounter(key, v, ok)
		if err != nil {
			return err
		}
		if n, err = addCounter(key, cur, delta); err != nil {
			return err
		}
		return s.write("add", key, fmt.Appendf(nil, "%d", n))
	})
	return n, err
}

// CompareAndSet implements Store, atomically across processes.
func (s *FileStore) CompareAndSet(ctx context.Context, key string, old, new []byte) (bool, []byte, error) {
	if err := s.lim.checkKey("compare-and-set", key); err != nil {
		return false, nil, err
	}
	if err := s.lim.checkValue("compare-and-set", key, new); err != nil {
		return false, nil, err
	}
	var swapped bool
	var cur []byte
	err := s.withLock(ctx, "compare-and-set", key, func() error {
		v, ok, err := s.read("compare-and-set", key)
		if err != nil {
			return err
		}
		if (old == nil && ok) || (old != nil && (!ok || !bytes.Equal(old, v))) {
			cur = v
			return nil
		}
		if err := s.write("compare-and-set", key, new); err != nil {
			return err
		}
		swapped, cur = true, append(make([]byte, 0, len(new)), new...)
		return nil
	})
	if err != nil {
		return false, nil, err
	}
	return swapped, cur, nil
}

// Delete implements Store.
func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := s.lim.checkKey("delete", key); err != nil {
		return err
	}
	return s.withLock(ctx, "delete", key, func() error {
		err := os.Remove(s.path(key))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rendezvous: delete %q: %w", key, err)
		}
		if err == nil {
			return s.syncDir("delete", key)
		}
		return nil
	})
}

// Wait implements Store by polling with exponential backoff (see
// FileStoreConfig.PollInterval).
func (s *FileStore) Wait(ctx context.Context, keys []string, timeout time.Duration) error {
	if err := s.lim.checkKeys("wait", keys); err != nil {
		return err
	}
	interval := s.cfg.PollInterval
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	pending := append([]string(nil), keys...)
	return waitLoop(ctx, keys, timeout, s.closed, func() ([]string, <-chan struct{}, error) {
		select {
		case <-s.closed:
			return pending, nil, ErrClosed
		default:
		}
		var missing []string
		for _, k := range pending {
			_, err := os.Lstat(s.path(k))
			if errors.Is(err, fs.ErrNotExist) {
				missing = append(missing, k)
			} else if err != nil {
				return pending, nil, fmt.Errorf("rendezvous: wait %q: %w", k, err)
			}
		}
		// Keys are never "un-waited": once seen, a key counts as present
		// even if it is deleted again before the others arrive.
		pending = missing
		if len(missing) == 0 {
			return nil, nil, nil
		}
		again := make(chan struct{})
		if timer != nil {
			timer.Stop()
		}
		timer = time.AfterFunc(interval, func() { close(again) })
		interval = min(2*interval, s.cfg.MaxPollInterval)
		return missing, again, nil
	})
}

// Close implements Store. It does not remove the directory.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isClose {
		s.isClose = true
		close(s.closed)
	}
	return nil
}

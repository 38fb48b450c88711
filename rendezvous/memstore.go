package rendezvous

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"
)

// MemStoreConfig configures a MemStore. The zero value is ready to use.
type MemStoreConfig struct {
	Limits Limits
}

// MemStore is an in-process Store, for tests and for the TCP Server's
// default backend. Wait is notification-driven: every write that creates or
// changes a key wakes the waiters, which then re-check their keys.
type MemStore struct {
	lim Limits

	mu      sync.Mutex
	m       map[string][]byte
	changed chan struct{} // closed and replaced on every write
	closed  chan struct{}
	isClose bool
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store.
func NewMemStore(cfg MemStoreConfig) *MemStore {
	return &MemStore{
		lim:     cfg.Limits.withDefaults(),
		m:       make(map[string][]byte),
		changed: make(chan struct{}),
		closed:  make(chan struct{}),
	}
}

// lock takes the mutex, failing if the store is closed or ctx is done.
func (s *MemStore) lock(ctx context.Context, op, key string) error {
	if err := ctxErr(ctx, op, key); err != nil {
		return err
	}
	s.mu.Lock()
	if s.isClose {
		s.mu.Unlock()
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, ErrClosed)
	}
	return nil
}

// notifyLocked wakes all waiters. s.mu must be held.
func (s *MemStore) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Set implements Store.
func (s *MemStore) Set(ctx context.Context, key string, value []byte) error {
	if err := s.lim.checkKey("set", key); err != nil {
		return err
	}
	if err := s.lim.checkValue("set", key, value); err != nil {
		return err
	}
	v := append(make([]byte, 0, len(value)), value...)
	if err := s.lock(ctx, "set", key); err != nil {
		return err
	}
	s.m[key] = v
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// Get implements Store.
func (s *MemStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.lim.checkKey("get", key); err != nil {
		return nil, err
	}
	if err := s.lock(ctx, "get", key); err != nil {
		return nil, err
	}
	v, ok := s.m[key]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("rendezvous: get %q: %w", key, ErrNotFound)
	}
	return append(make([]byte, 0, len(v)), v...), nil
}

// Add implements Store.
func (s *MemStore) Add(ctx context.Context, key string, delta int64) (int64, error) {
	if err := s.lim.checkKey("add", key); err != nil {
		return 0, err
	}
	if err := s.lock(ctx, "add", key); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	v, ok := s.m[key]
	cur, err := parseCounter(key, v, ok)
	if err != nil {
		return 0, err
	}
	n, err := addCounter(key, cur, delta)
	if err != nil {
		return 0, err
	}
	s.m[key] = fmt.Appendf(nil, "%d", n)
	s.notifyLocked()
	return n, nil
}

// CompareAndSet implements Store.
func (s *MemStore) CompareAndSet(ctx context.Context, key string, old, new []byte) (bool, []byte, error) {
	if err := s.lim.checkKey("compare-and-set", key); err != nil {
		return false, nil, err
	}
	if err := s.lim.checkValue("compare-and-set", key, new); err != nil {
		return false, nil, err
	}
	if err := s.lock(ctx, "compare-and-set", key); err != nil {
		return false, nil, err
	}
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if (old == nil && ok) || (old != nil && (!ok || !bytes.Equal(old, v))) {
		return false, cloneBytes(v), nil
	}
	nv := append(make([]byte, 0, len(new)), new...)
	s.m[key] = nv
	s.notifyLocked()
	return true, cloneBytes(nv), nil
}

// Delete implements Store.
func (s *MemStore) Delete(ctx context.Context, key string) error {
	if err := s.lim.checkKey("delete", key); err != nil {
		return err
	}
	if err := s.lock(ctx, "delete", key); err != nil {
		return err
	}
	delete(s.m, key)
	s.mu.Unlock()
	return nil
}

// Wait implements Store. It blocks on a notification channel, not a timer
// loop: each write wakes it once to re-check the keys.
func (s *MemStore) Wait(ctx context.Context, keys []string, timeout time.Duration) error {
	if err := s.lim.checkKeys("wait", keys); err != nil {
		return err
	}
	return waitLoop(ctx, keys, timeout, s.closed, func() ([]string, <-chan struct{}, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.isClose {
			return nil, nil, ErrClosed
		}
		var missing []string
		for _, k := range keys {
			if _, ok := s.m[k]; !ok {
				missing = append(missing, k)
			}
		}
		return missing, s.changed, nil
	})
}

// Close implements Store. Pending Waits return ErrClosed.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isClose {
		s.isClose = true
		close(s.closed)
	}
	return nil
}

// waitLoop is the Wait algorithm shared by the stores. check reports the
// missing keys and a channel that is closed when it is worth checking again
// (nil means: never, rely on the other wake-ups; poll-based stores return a
// timer channel). closed unblocks the loop when the store closes.
func waitLoop(ctx context.Context, keys []string, timeout time.Duration, closed <-chan struct{},
	check func() (missing []string, again <-chan struct{}, err error)) error {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		missing, again, err := check()
		if err != nil {
			return &WaitError{Missing: missingOr(missing, keys), Err: err}
		}
		if len(missing) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return &WaitError{Missing: missing, Err: err}
		}
		select {
		case <-again:
		case <-ctx.Done():
			return &WaitError{Missing: missing, Err: ctx.Err()}
		case <-deadline:
			// One last look: a key may have arrived with the timer.
			if m, _, err := check(); err == nil {
				if len(m) == 0 {
					return nil
				}
				missing = m
			}
			return &WaitError{Missing: missing, Timeout: timeout, Err: ErrTimeout}
		case <-closed:
			return &WaitError{Missing: missing, Err: ErrClosed}
		}
	}
}

func missingOr(missing, keys []string) []string {
	if missing != nil {
		return missing
	}
	return append([]string(nil), keys...)
}

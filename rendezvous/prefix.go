package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// WithPrefix returns a view of s in which every key is prefixed with prefix,
// so that jobs, sub-communicators or protocol phases get separate
// namespaces in one store. Views nest: WithPrefix(WithPrefix(s, "a/"), "b/")
// uses keys "a/b/...". The prefix counts toward the key size limit.
//
// Closing the view does not close s: it only makes further calls on the view
// fail with ErrClosed and unblocks the view's pending Waits. Keys named in a
// *WaitError are relative to the view.
func WithPrefix(s Store, prefix string) Store {
	if prefix == "" {
		return s
	}
	return newPrefixStore(s, prefix)
}

type prefixStore struct {
	s      Store
	prefix string

	mu      sync.Mutex
	closed  chan struct{}
	isClose bool
}

func newPrefixStore(s Store, prefix string) *prefixStore {
	return &prefixStore{s: s, prefix: prefix, closed: make(chan struct{})}
}

func (p *prefixStore) check(op, key string) error {
	select {
	case <-p.closed:
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, ErrClosed)
	default:
		return nil
	}
}

// key maps a view key to the underlying key. An empty key stays empty so
// that the underlying store reports ErrInvalidKey.
func (p *prefixStore) key(k string) string {
	if k == "" {
		return ""
	}
	return p.prefix + k
}

func (p *prefixStore) Set(ctx context.Context, key string, value []byte) error {
	if err := p.check("set", key); err != nil {
		return err
	}
	return p.s.Set(ctx, p.key(key), value)
}

func (p *prefixStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := p.check("get", key); err != nil {
		return nil, err
	}
	return p.s.Get(ctx, p.key(key))
}

func (p *prefixStore) Add(ctx context.Context, key string, delta int64) (int64, error) {
	if err := p.check("add", key); err != nil {
		return 0, err
	}
	return p.s.Add(ctx, p.key(key), delta)
}

func (p *prefixStore) CompareAndSet(ctx context.Context, key string, old, new []byte) (bool, []byte, error) {
	if err := p.check("compare-and-set", key); err != nil {
		return false, nil, err
	}
	return p.s.CompareAndSet(ctx, p.key(key), old, new)
}

func (p *prefixStore) Delete(ctx context.Context, key string) error {
	if err := p.check("delete", key); err != nil {
		return err
	}
	return p.s.Delete(ctx, p.key(key))
}

func (p *prefixStore) Wait(ctx context.Context, keys []string, timeout time.Duration) error {
	if err := p.check("wait", strings.Join(keys, ",")); err != nil {
		return &WaitError{Missing: append([]string(nil), keys...), Err: ErrClosed}
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = p.key(k)
	}
	// Unblock the inner Wait when this view is closed.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-p.closed:
			cancel(ErrClosed)
		case <-ctx.Done():
		}
	}()

	err := p.s.Wait(ctx, full, timeout)
	var we *WaitError
	if err == nil || !errors.As(err, &we) {
		return err
	}
	out := &WaitError{Timeout: we.Timeout, Err: we.Err}
	if errors.Is(context.Cause(ctx), ErrClosed) && ctx.Err() != nil && errors.Is(we.Err, context.Canceled) {
		out.Err = ErrClosed
	}
	for _, k := range we.Missing {
		out.Missing = append(out.Missing, strings.TrimPrefix(k, p.prefix))
	}
	return out
}

func (p *prefixStore) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.isClose {
		p.isClose = true
		close(p.closed)
	}
	return nil
}

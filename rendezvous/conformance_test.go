package rendezvous

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// opener returns a new handle ("client") on one shared backing store, so
// that tests can play several ranks. Handles are closed at cleanup.
type opener func(t *testing.T) Store

// harness creates a fresh backing store with the given limits.
type harness func(t *testing.T, lim Limits) opener

func memHarness(t *testing.T, lim Limits) opener {
	s := NewMemStore(MemStoreConfig{Limits: lim})
	t.Cleanup(func() { s.Close() })
	return func(t *testing.T) Store { return s }
}

func fileHarness(t *testing.T, lim Limits) opener {
	dir := t.TempDir()
	return func(t *testing.T) Store {
		s, err := OpenFileStore(dir, FileStoreConfig{Limits: lim, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func tcpHarness(t *testing.T, lim Limits) opener {
	ts := startServer(t, ServerConfig{Limits: lim, Logger: discardLogger})
	rank := 0
	return func(t *testing.T) Store {
		rank++
		return dialTest(t, ts.addr, issue(t, testCA(t), "rank", rank))
	}
}

func TestConformanceMem(t *testing.T)  { testStore(t, memHarness) }
func TestConformanceFile(t *testing.T) { testStore(t, fileHarness) }
func TestConformanceTCP(t *testing.T)  { testStore(t, tcpHarness) }

// TestConformanceFileSynced runs the suite once with fsync on.
func TestConformanceFileSynced(t *testing.T) {
	testStore(t, func(t *testing.T, lim Limits) opener {
		dir := t.TempDir()
		return func(t *testing.T) Store {
			s, err := OpenFileStore(dir, FileStoreConfig{Limits: lim})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}

// TestConformancePrefixed runs the suite on a prefixed view of each store.
func TestConformancePrefixed(t *testing.T) {
	for name, h := range map[string]harness{"mem": memHarness, "tcp": tcpHarness} {
		t.Run(name, func(t *testing.T) {
			testStore(t, func(t *testing.T, lim Limits) opener {
				open := h(t, lim)
				return func(t *testing.T) Store { return WithPrefix(open(t), "job/7/") }
			})
		})
	}
}

// testStore is the conformance suite every Store must pass.
func testStore(t *testing.T, h harness) {
	t.Run("SetGetDelete", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		keys := []string{"a", "a/b", "../../etc/passwd", "/abs", ".", "..", "ключ", "nul\x00key", "sp ace", strings.Repeat("L", 1000)}
		for i, k := range keys {
			v := []byte(fmt.Sprintf("value %d \x00\xff", i))
			if err := s.Set(ctx, k, v); err != nil {
				t.Fatalf("Set(%q): %v", k, err)
			}
			v[0] = 'X' // the store must have copied it
		}
		for i, k := range keys {
			got, err := s.Get(ctx, k)
			if err != nil || string(got) != fmt.Sprintf("value %d \x00\xff", i) {
				t.Fatalf("Get(%q) = %q, %v", k, got, err)
			}
		}
		if err := s.Set(ctx, "a", []byte("second")); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, "a"); err != nil || string(got) != "second" {
			t.Fatalf("Get after overwrite = %q, %v", got, err)
		}
		if err := s.Set(ctx, "empty", nil); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, "empty"); err != nil || len(got) != 0 {
			t.Fatalf("Get(empty) = %q, %v", got, err)
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatalf("Delete of a missing key: %v, want nil", err)
		}
		if got, err := s.Get(ctx, "a/b"); err != nil || !strings.HasPrefix(string(got), "value 1") {
			t.Fatalf("Get(a/b) after deleting a = %q, %v", got, err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		_, err := s.Get(ctx, "nope")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "nope") {
			t.Errorf("error %q does not name the key", err)
		}
	})

	t.Run("Add", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		if n, err := s.Add(ctx, "c", 5); err != nil || n != 5 {
			t.Fatalf("Add(new, 5) = %d, %v", n, err)
		}
		if n, err := s.Add(ctx, "c", -7); err != nil || n != -2 {
			t.Fatalf("Add(c, -7) = %d, %v", n, err)
		}
		if n, err := s.Add(ctx, "c", 0); err != nil || n != -2 {
			t.Fatalf("Add(c, 0) = %d, %v", n, err)
		}
		if v, err := s.Get(ctx, "c"); err != nil || string(v) != "-2" {
			t.Fatalf("Get(counter) = %q, %v", v, err)
		}
		s.Set(ctx, "text", []byte("hello"))
		if _, err := s.Add(ctx, "text", 1); !errors.Is(err, ErrNotCounter) {
			t.Fatalf("Add on text: %v, want ErrNotCounter", err)
		}
		s.Set(ctx, "big", []byte(strconv.FormatInt(1<<62, 10)))
		if _, err := s.Add(ctx, "big", 1<<62); !errors.Is(err, ErrOverflow) {
			t.Fatalf("Add overflowing: %v, want ErrOverflow", err)
		}
		if v, _ := s.Get(ctx, "big"); string(v) != strconv.FormatInt(1<<62, 10) {
			t.Fatalf("failed Add changed the value to %q", v)
		}
	})

	t.Run("AddConcurrent", func(t *testing.T) {
		ctx := ctxT(t)
		open := h(t, Limits{})
		clients := []Store{open(t), open(t), open(t)}
		const N, M = 8, 40
		var wg sync.WaitGroup
		seen := make([][]int64, N)
		for i := range N {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := clients[i%len(clients)]
				for range M {
					n, err := s.Add(ctx, "ctr", 1)
					if err != nil {
						t.Error(err)
						return
					}
					seen[i] = append(seen[i], n)
				}
			}()
		}
		wg.Wait()
		if n, err := clients[0].Add(ctx, "ctr", 0); err != nil || n != N*M {
			t.Fatalf("after %d×%d adds the counter is %d, %v", N, M, n, err)
		}
		// Every intermediate value must have been returned exactly once.
		got := make(map[int64]bool)
		for _, vs := range seen {
			for _, v := range vs {
				if got[v] {
					t.Fatalf("Add returned %d twice", v)
				}
				got[v] = true
			}
		}
	})

	t.Run("CompareAndSet", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		ok, cur, err := s.CompareAndSet(ctx, "k", nil, []byte("v1"))
		if err != nil || !ok || string(cur) != "v1" {
			t.Fatalf("create-if-absent = %v, %q, %v", ok, cur, err)
		}
		ok, cur, err = s.CompareAndSet(ctx, "k", nil, []byte("v2"))
		if err != nil || ok || string(cur) != "v1" {
			t.Fatalf("create-if-absent on existing = %v, %q, %v", ok, cur, err)
		}
		ok, cur, err = s.CompareAndSet(ctx, "k", []byte("wrong"), []byte("v2"))
		if err != nil || ok || string(cur) != "v1" {
			t.Fatalf("CAS with wrong old = %v, %q, %v", ok, cur, err)
		}
		ok, cur, err = s.CompareAndSet(ctx, "k", []byte("v1"), []byte("v2"))
		if err != nil || !ok || string(cur) != "v2" {
			t.Fatalf("CAS with right old = %v, %q, %v", ok, cur, err)
		}
		if v, _ := s.Get(ctx, "k"); string(v) != "v2" {
			t.Fatalf("Get after CAS = %q", v)
		}
		ok, cur, err = s.CompareAndSet(ctx, "missing", []byte{}, []byte("x"))
		if err != nil || ok || cur != nil {
			t.Fatalf("CAS(empty old) on missing key = %v, %q, %v; want false, nil", ok, cur, err)
		}
		s.Set(ctx, "e", nil)
		ok, cur, err = s.CompareAndSet(ctx, "e", []byte{}, nil)
		if err != nil || !ok || cur == nil || len(cur) != 0 {
			t.Fatalf("CAS(empty old, nil new) on empty value = %v, %q (nil=%v), %v", ok, cur, cur == nil, err)
		}
		ok, cur, err = s.CompareAndSet(ctx, "e", nil, []byte("y"))
		if err != nil || ok || cur == nil || len(cur) != 0 {
			t.Fatalf("create-if-absent on existing empty value = %v, %q (nil=%v), %v; want false, empty non-nil", ok, cur, cur == nil, err)
		}
	})

	t.Run("CompareAndSetConcurrent", func(t *testing.T) {
		ctx := ctxT(t)
		open := h(t, Limits{})
		clients := []Store{open(t), open(t)}
		const N, M = 6, 15
		var wg sync.WaitGroup
		for i := range N {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := clients[i%len(clients)]
				for range M {
					if err := casIncrement(ctx, s, "n"); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if v, err := clients[0].Get(ctx, "n"); err != nil || string(v) != strconv.Itoa(N*M) {
			t.Fatalf("after %d×%d CAS increments the value is %q, %v", N, M, v, err)
		}
	})

	t.Run("WaitLater", func(t *testing.T) {
		ctx := ctxT(t)
		open := h(t, Limits{})
		a, b := open(t), open(t)
		if err := a.Wait(ctx, nil, time.Second); err != nil {
			t.Fatalf("Wait(no keys) = %v", err)
		}
		b.Set(ctx, "early", []byte("1"))
		if err := a.Wait(ctx, []string{"early"}, time.Second); err != nil {
			t.Fatalf("Wait(existing) = %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Wait(ctx, []string{"r/0", "r/1", "early"}, 10*time.Second) }()
		time.Sleep(30 * time.Millisecond)
		b.Set(ctx, "r/1", []byte("x"))
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v with r/0 still missing", err)
		case <-time.After(30 * time.Millisecond):
		}
		b.Add(ctx, "r/0", 1)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Wait = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return after the keys arrived")
		}
	})

	t.Run("WaitTimeout", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		s.Set(ctx, "here", []byte("1"))
		start := time.Now()
		err := s.Wait(ctx, []string{"here", "gone/1", "gone/2"}, 150*time.Millisecond)
		el := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Wait = %v, want ErrTimeout", err)
		}
		if el < 140*time.Millisecond || el > 5*time.Second {
			t.Errorf("Wait timed out after %v, want ~150ms", el)
		}
		var we *WaitError
		if !errors.As(err, &we) || strings.Join(we.Missing, ",") != "gone/1,gone/2" {
			t.Fatalf("Wait error %#v: Missing should be [gone/1 gone/2]", err)
		}
		for _, k := range []string{`"gone/1"`, `"gone/2"`} {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("error %q does not name %s", err, k)
			}
		}
		if strings.Contains(err.Error(), `"here"`) {
			t.Errorf("error %q names a key that exists", err)
		}
	})

	t.Run("WaitContext", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Wait(cctx, []string{"never"}, 0) }()
		time.Sleep(30 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Wait ignored its context")
		}
		dctx, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel2()
		if err := s.Wait(dctx, []string{"never"}, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait past ctx deadline = %v, want DeadlineExceeded", err)
		}
		// The store still works after abandoned waits.
		if err := s.Set(ctx, "never", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Wait(ctx, []string{"never"}, time.Second); err != nil {
			t.Fatal(err)
		}
		// An already-canceled context fails every call.
		cctx, cancel = context.WithCancel(ctx)
		cancel()
		if _, err := s.Get(cctx, "never"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get with canceled ctx = %v", err)
		}
	})

	t.Run("Prefix", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		p1, p2 := WithPrefix(s, "job1/"), WithPrefix(s, "job2/")
		p1.Set(ctx, "k", []byte("one"))
		p2.Set(ctx, "k", []byte("two"))
		if v, err := p1.Get(ctx, "k"); err != nil || string(v) != "one" {
			t.Fatalf("p1.Get = %q, %v", v, err)
		}
		if v, err := s.Get(ctx, "job2/k"); err != nil || string(v) != "two" {
			t.Fatalf("underlying Get(job2/k) = %q, %v", v, err)
		}
		if _, err := p1.Get(ctx, "job2/k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("p1 sees job2's key: %v", err)
		}
		if n, err := p2.Add(ctx, "ctr", 3); err != nil || n != 3 {
			t.Fatalf("p2.Add = %d, %v", n, err)
		}
		if _, err := p1.Get(ctx, "ctr"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("p1 sees p2's counter: %v", err)
		}
		nested := WithPrefix(p1, "sub/")
		nested.Set(ctx, "x", nil)
		if _, err := s.Get(ctx, "job1/sub/x"); err != nil {
			t.Fatalf("nested prefix: %v", err)
		}
		err := p2.Wait(ctx, []string{"k", "absent"}, 50*time.Millisecond)
		var we *WaitError
		if !errors.As(err, &we) || len(we.Missing) != 1 || we.Missing[0] != "absent" {
			t.Fatalf("prefixed Wait = %v, want missing [absent] relative to the prefix", err)
		}
		if _, err := p1.Get(ctx, ""); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("prefixed Get(\"\") = %v, want ErrInvalidKey", err)
		}
		// Closing a view leaves the store open.
		done := make(chan error, 1)
		go func() { done <- p1.Wait(ctx, []string{"never"}, 0) }()
		time.Sleep(20 * time.Millisecond)
		p1.Close()
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("view Wait after view Close = %v, want ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("closing the view did not unblock its Wait")
		}
		if _, err := p1.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
			t.Fatalf("view Get after Close = %v", err)
		}
		if v, err := p2.Get(ctx, "k"); err != nil || string(v) != "two" {
			t.Fatalf("sibling view after closing p1: %q, %v", v, err)
		}
	})

	t.Run("Limits", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		if err := s.Set(ctx, strings.Repeat("k", 1024-prefixLen(s)), make([]byte, 1<<20)); err != nil {
			t.Fatalf("Set at the default limits: %v", err)
		}
		if err := s.Set(ctx, strings.Repeat("k", 1025), nil); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Set with a 1025-byte key: %v, want ErrTooLarge", err)
		} else if !strings.Contains(err.Error(), "1024") {
			t.Errorf("error %q does not state the limit", err)
		}
		if err := s.Set(ctx, "v", make([]byte, 1<<20+1)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Set with a 1 MiB+1 value: %v, want ErrTooLarge", err)
		}
		if _, err := s.Get(ctx, ""); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Get(\"\") = %v, want ErrInvalidKey", err)
		}
		if err := s.Wait(ctx, []string{"ok", ""}, time.Millisecond); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Wait with an empty key = %v, want ErrInvalidKey", err)
		}

		small := h(t, Limits{MaxKeySize: 32, MaxValueSize: 64})(t)
		if err := small.Set(ctx, "x", make([]byte, 64)); err != nil {
			t.Fatalf("Set at a configured limit: %v", err)
		}
		if err := small.Set(ctx, "x", make([]byte, 65)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Set over a configured value limit: %v", err)
		}
		if _, _, err := small.CompareAndSet(ctx, "x", nil, make([]byte, 65)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("CAS over a configured value limit: %v", err)
		}
		if _, err := small.Add(ctx, strings.Repeat("k", 33), 1); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Add over a configured key limit: %v", err)
		}
		if v, err := small.Get(ctx, "x"); err != nil || len(v) != 64 {
			t.Fatalf("a rejected write changed the value: %d bytes, %v", len(v), err)
		}
	})

	t.Run("Close", func(t *testing.T) {
		ctx := ctxT(t)
		s := h(t, Limits{})(t)
		s.Set(ctx, "k", []byte("v"))
		done := make(chan error, 1)
		go func() { done <- s.Wait(ctx, []string{"never"}, 0) }()
		time.Sleep(30 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("pending Wait after Close = %v, want ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not unblock a pending Wait")
		}
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed (and net.ErrClosed)", op, err)
			}
		}
		check("Set", s.Set(ctx, "k", nil))
		_, err := s.Get(ctx, "k")
		check("Get", err)
		_, err = s.Add(ctx, "c", 1)
		check("Add", err)
		_, _, err = s.CompareAndSet(ctx, "k", nil, nil)
		check("CompareAndSet", err)
		check("Wait", s.Wait(ctx, []string{"k"}, time.Second))
		check("Delete", s.Delete(ctx, "k"))
		if err := s.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
	})
}

// prefixLen returns the length of the prefix of a view, 0 for a store.
func prefixLen(s Store) int {
	if p, ok := s.(*prefixStore); ok {
		return len(p.prefix) + prefixLen(p.s)
	}
	return 0
}

// casIncrement increments a decimal counter with a CAS loop.
func casIncrement(ctx context.Context, s Store, key string) error {
	cur, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		cur, err = nil, nil
	}
	if err != nil {
		return err
	}
	for {
		n := 0
		if cur != nil {
			if n, err = strconv.Atoi(string(cur)); err != nil {
				return err
			}
		}
		next := []byte(strconv.Itoa(n + 1))
		ok, now, err := s.CompareAndSet(ctx, key, cur, next)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if bytes.Equal(now, cur) && (now == nil) == (cur == nil) {
			return fmt.Errorf("CAS failed but reports the expected value %q", cur)
		}
		cur = now
	}
}

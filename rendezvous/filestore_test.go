package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	helperEnv     = "SEALRING_TEST_FILESTORE_HELPER"
	helperDirEnv  = "SEALRING_TEST_FILESTORE_DIR"
	helperProcs   = 4
	helperAdds    = 50
	helperCASIncs = 20
)

// TestFileStoreHelperProcess is not a test: it is the body of the child
// processes of TestFileStoreMultiProcess (re-executed test binary).
func TestFileStoreHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process only")
	}
	s, err := OpenFileStore(os.Getenv(helperDirEnv), FileStoreConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Start together: wait for the parent's go signal.
	if err := s.Wait(ctx, []string{"go"}, 30*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	for i := range max(helperAdds, helperCASIncs) {
		if i < helperAdds {
			if _, err := s.Add(ctx, "adds", 1); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(4)
			}
		}
		if i < helperCASIncs {
			if err := casIncrement(ctx, s, "cas"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(5)
			}
		}
	}
	// Exactly one process wins the create-if-absent race.
	if ok, _, err := s.CompareAndSet(ctx, "leader", nil, []byte(strconv.Itoa(os.Getpid()))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(6)
	} else if ok {
		s.Add(ctx, "leaders", 1)
	}
	s.Set(ctx, "done/"+strconv.Itoa(os.Getpid()), nil)
	os.Exit(0)
}

func TestFileStoreMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for range helperProcs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=1", helperDirEnv+"="+dir)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("child %d output:\n%s", cmd.Process.Pid, out.String())
			}
		})
	}
	s, err := OpenFileStore(dir, FileStoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t)
	s.Set(ctx, "go", nil)
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("child %d: %v", cmd.Process.Pid, err)
		}
	}
	if t.Failed() {
		return
	}
	check := func(key string, want int) {
		t.Helper()
		v, err := s.Get(ctx, key)
		if err != nil || string(v) != strconv.Itoa(want) {
			t.Errorf("%s = %q, %v; want %d", key, v, err, want)
		}
	}
	check("adds", helperProcs*helperAdds)
	check("cas", helperProcs*helperCASIncs)
	check("leaders", 1)
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fileTmpPrefix) {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestFileStoreNames(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFileStore(filepath.Join(dir, "store"), FileStoreConfig{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t)
	keys := []string{"../escape", "../../../../tmp/x", "/etc/passwd", "a/../../b", ".", "..", ".lock", strings.Repeat("z", 1024)}
	for _, k := range keys {
		if err := s.Set(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
	}
	// Everything stayed inside the store directory, one flat file per key.
	var n int
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if fi.IsDir() {
			if p != dir && p != s.Dir() {
				t.Errorf("unexpected directory %s", p)
			}
			return nil
		}
		if filepath.Dir(p) != s.Dir() {
			t.Errorf("file %s outside the store directory", p)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v", p, fi.Mode().Perm())
		}
		if len(fi.Name()) > 255 {
			t.Errorf("file name of %d bytes", len(fi.Name()))
		}
		n++
		return nil
	})
	if n != len(keys)+1 { // + .lock
		t.Errorf("%d files for %d keys", n, len(keys))
	}
	for _, k := range keys {
		if v, err := s.Get(ctx, k); err != nil || string(v) != k {
			t.Errorf("Get(%q) = %q, %v", k, v, err)
		}
	}
	if fi, _ := os.Stat(s.Dir()); fi.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestFileStoreLockHonoursContext(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFileStore(dir, FileStoreConfig{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Another "process" holds the lock.
	f, err := os.OpenFile(filepath.Join(dir, fileLockName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flockExclusive(f); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Add(ctx, "c", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add with the lock held elsewhere = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Add returned after %v", el)
	}
	// Reads take no lock.
	if _, err := s.Get(context.Background(), "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get = %v", err)
	}
	f.Close() // releases the lock
	if n, err := s.Add(context.Background(), "c", 1); err != nil || n != 1 {
		t.Fatalf("Add after release = %d, %v", n, err)
	}
}

func flockExclusive(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

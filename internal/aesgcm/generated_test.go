package aesgcm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestGeneratedUpToDate runs the assembly generator (_asm, its own module,
// standard library only) into a temporary directory and checks that the
// checked-in .s files are exactly its output, so a generator change cannot
// land without the code it generates, nor a hand edit of generated code.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("no go command: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(goBin, "run", ".", "-o", dir)
	cmd.Dir = "_asm"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, out)
	}
	for _, f := range []string{"aesni_amd64.s", "vaes_amd64.s", "vaes2_amd64.s"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator's output: run `go generate ./internal/aesgcm/`", f)
		}
	}
}

package psp

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestVectorCopiesMatchShared checks that testdata/vectors holds verbatim
// copies of ../shared/vectors (when that directory is beside the
// repository; the copies are what the other tests read).
func TestVectorCopiesMatchShared(t *testing.T) {
	local := filepath.Dir(sharedVectors(t, "psp-kdf.txt"))
	shared := filepath.Join(local, "..", "..", "..", "..", "..", "shared", "vectors")
	if _, err := os.Stat(shared); err != nil {
		t.Skipf("no %s beside the repository: nothing to compare", shared)
	}
	n := 0
	err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "SOURCE.md" {
			return err
		}
		rel, _ := filepath.Rel(local, p)
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(shared, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from its source in ../shared/vectors", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 40 {
		t.Fatalf("compared only %d files", n)
	}
}

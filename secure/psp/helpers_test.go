package psp

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

// vectorsDir holds copies of the reference vectors, relative to the module
// root (source and provenance: SOURCE.md there).
const vectorsDir = "secure/psp/testdata/vectors"

// sharedVectors returns the path of the copy of reference vector file name
// (as named under ../shared/vectors/).
func sharedVectors(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, vectorsDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("reference vectors not found at %s: %v", p, err)
	}
	return p
}

// vectorLines returns the non-comment, non-empty lines of a vector file,
// split into fields.
func vectorLines(t testing.TB, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Fields(line))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// testPaths lists every crypto path this machine supports.
func testPaths() []cpu.Path { return cpu.SupportedPaths() }

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131) ^ seed
	}
	return b
}

func testKey(v Version, seed byte) []byte { return pattern(v.KeyLen(), seed) }

var allVersions = []Version{V0, V1, V2, V3}

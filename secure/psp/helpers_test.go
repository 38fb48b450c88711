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

// sharedVectors returns the path of the copy of reference vector file name
// (as named under ../shared/vectors/), kept in testdata/vectors (source
// and provenance: SOURCE.md there). Tests run in the package directory.
func sharedVectors(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("testdata", "vectors", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("reference vectors: %v", err)
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

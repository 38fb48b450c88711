package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestExample(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "allreduce")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for r := range 4 {
		want := "rank " + string(rune('0'+r)) + " of 4: sum = [6 4 8]"
		if !strings.Contains(string(out), want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
}

package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLauncher(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "launcher")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	out, err := exec.Command(bin, "-np", "3").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, r := range []string{"0", "1", "2"} {
		if !strings.Contains(string(out), "[rank "+r+"] joined as rank "+r+" of 3") {
			t.Fatalf("rank %s missing:\n%s", r, out)
		}
	}
	// A failing rank program: the launcher reports it and exits non-zero.
	out, err = exec.Command(bin, "-np", "2", "--", "sh", "-c", `if [ "$SEALRING_RANK" = 1 ]; then echo boom >&2; exit 3; fi; sleep 30`).CombinedOutput()
	if err == nil {
		t.Fatalf("a failing rank did not fail the job:\n%s", out)
	}
	if !strings.Contains(string(out), "rank 1") || !strings.Contains(string(out), "boom") {
		t.Fatalf("failure report does not name rank 1 and its stderr:\n%s", out)
	}
}

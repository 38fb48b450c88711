package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestPSPExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lines, err := run(ctx, 0, 4)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(lines, "\n"))
	}
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		`client A: server got "client A message 0" under SPI 00000002`,
		`client A: server got "client A message 3" under SPI 00000002`,
		"rotated master keys (current slot 1",
		"client B: received SPI 80000002",
		`client B: server got "client B message 1" under SPI 80000002`,
		"opened 6 datagrams, rejected 0",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in\n%s", want, out)
		}
	}
}

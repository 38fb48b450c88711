package main

import (
	"context"
	"strings"
	"testing"
)

func TestProxyExample(t *testing.T) {
	lines, err := run(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 8 {
		t.Fatalf("%d lines: %q", len(lines), lines)
	}
	for i, l := range lines[:7] {
		if !strings.Contains(l, "activation shard") || !strings.Contains(l, "sender 1000") {
			t.Fatalf("line %d: %s", i, l)
		}
	}
}

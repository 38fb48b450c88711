package main

import (
	"context"
	"testing"
)

func TestKeyRotationUnderTraffic(t *testing.T) {
	res, err := run(context.Background(), 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.errors != 0 {
		t.Fatalf("%d errors", res.errors)
	}
	if res.allreduces < 40 {
		t.Fatalf("only %d allreduces ran", res.allreduces)
	}
	if len(res.epochs) < 3 {
		t.Fatalf("epochs seen %v: the bumps did not reach the ranks during traffic", res.epochs)
	}
	if len(res.generations) < 4 {
		t.Fatalf("key generations seen %v: rotations did not happen during traffic", res.generations)
	}
	t.Logf("%d allreduces, epochs %v, generations %v", res.allreduces, res.epochs, res.generations)
}

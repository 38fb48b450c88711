package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// TestStatelessBench runs a small configuration and checks the properties
// the benchmark exists to show: sealring's receiver memory is flat in the
// number of senders while the stateful receiver's grows, and every
// receiver opens every packet.
func TestStatelessBench(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-n", "10,20000", "-size", "64", "-dist", "uniform,zipf", "-packets", "400", "-json"}, &out); err != nil {
		t.Fatal(err)
	}
	var rows []row
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r row
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 2*2*6 {
		t.Fatalf("%d rows", len(rows))
	}
	state := map[string]map[int]float64{}
	for _, r := range rows {
		if r.PktPerSec <= 0 || r.NsPerPkt <= 0 {
			t.Fatalf("row %+v", r)
		}
		if state[r.Receiver] == nil {
			state[r.Receiver] = map[int]float64{}
		}
		state[r.Receiver][r.N] = r.StateMiB
		if r.Receiver == "sealring/cache=1024" && r.N == 10 && r.HitRate < 0.99 {
			t.Fatalf("10 senders, 1024-entry cache: hit rate %.2f", r.HitRate)
		}
	}
	if s := state["stateful/map"]; s[20000] < 10*s[10]+5 {
		t.Fatalf("stateful memory did not grow with the senders: %v", s)
	}
	if s := state["sealring/cache=1024"]; s[20000] > s[10]+0.5 {
		t.Fatalf("sealring memory grew with the senders: %v", s)
	}
	if s := state["sealring/cache=0"]; s[20000] > 0.5 {
		t.Fatalf("cache-less receiver holds %v MiB", s[20000])
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "0"}, {"-size", "x"}, {"-dist", "pareto"}, {"-zipf-s", "1"}, {"-packets", "0"}, {"-batch", "0"}} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestBatchSizes: sealring opens every packet one by one (-batch 1) and in
// batches that do not divide the trace (-batch 7), and reports the batch.
func TestBatchSizes(t *testing.T) {
	for _, b := range []string{"1", "7"} {
		var out bytes.Buffer
		if err := run([]string{"-n", "50", "-size", "64,1400", "-dist", "uniform", "-packets", "250", "-json", "-batch", b}, &out); err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(&out)
		rows := 0
		for dec.More() {
			var r row
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			rows++
			if r.PktPerSec <= 0 {
				t.Fatalf("row %+v", r)
			}
			if strings.HasPrefix(r.Receiver, "sealring/") && strconv.Itoa(r.Batch) != b {
				t.Fatalf("-batch %s: row reports batch %d", b, r.Batch)
			}
		}
		if rows != 2*6 {
			t.Fatalf("-batch %s: %d rows", b, rows)
		}
	}
}

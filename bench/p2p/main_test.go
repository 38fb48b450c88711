package main

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	latRE = regexp.MustCompile(`(?m)^\s+(sealed|insecure|tcp)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+|-)$`)
	bwRE  = regexp.MustCompile(`(?m)^\s+(\d+)\s+(sealed|insecure|tcp)\s+([\d.]+)\s+(\d+)\s+([\d.]+|-)$`)
)

// TestTable runs the benchmark with tiny settings and checks the table's
// shape and that its values are sane.
func TestTable(t *testing.T) {
	for _, w := range []string{"udp", "mem"} {
		t.Run(w, func(t *testing.T) {
			var out bytes.Buffer
			args := []string{"-b", "8", "-e", "64K", "-f", "16", "-n", "20", "-r", "2", "-pp", "50", "-window", "4", "-wire", w}
			if err := run(args, &out, io.Discard); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			s := out.String()
			if !strings.HasPrefix(s, "# sealring p2p: wire "+w) {
				t.Errorf("missing title:\n%s", s)
			}
			lat := latRE.FindAllStringSubmatch(s, -1)
			if len(lat) != 3 {
				t.Fatalf("want 3 latency rows, got %d:\n%s", len(lat), s)
			}
			for i, r := range lat {
				if want := []string{"sealed", "insecure", "tcp"}[i]; r[1] != want {
					t.Errorf("latency row %d is %s, want %s", i, r[1], want)
				}
				half, rtt := num(t, r[2]), num(t, r[3])
				if rtt <= 0 || rtt > 1e6 || half*2 < rtt*0.99 || half*2 > rtt*1.01 {
					t.Errorf("latency row %s: half %v, rtt %v", r[1], half, rtt)
				}
				if r[1] == "tcp" && r[5] != "1.00" {
					t.Errorf("tcp's ratio to itself is %s", r[5])
				}
			}
			bw := bwRE.FindAllStringSubmatch(s, -1)
			sizes := []string{"8", "16", "256", "4096", "65536"} // -e down by -f, plus -b
			if len(bw) != 3*len(sizes) {
				t.Fatalf("want %d bandwidth rows, got %d:\n%s", 3*len(sizes), len(bw), s)
			}
			for i, r := range bw {
				if r[1] != sizes[i/3] {
					t.Errorf("bandwidth row %d: size %s, want %s", i, r[1], sizes[i/3])
				}
				if g := num(t, r[3]); g <= 0 && r[1] != "8" || g < 0 || g > 1000 {
					t.Errorf("bandwidth row %d (%s %s): %v GB/s", i, r[1], r[2], g)
				}
				if r[4] != "20" {
					t.Errorf("bandwidth row %d: %s messages, want 20", i, r[4])
				}
				if r[1] != "8" && (r[5] == "-" || num(t, r[5]) <= 0) {
					t.Errorf("bandwidth row %d: ratio %s", i, r[5])
				}
			}
		})
	}
}

func TestJSON(t *testing.T) {
	var out bytes.Buffer
	args := []string{"-b", "1K", "-e", "1K", "-n", "8", "-r", "1", "-pp", "10", "-rows", "sealed,tcp", "-json"}
	if err := run(args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	dec := json.NewDecoder(&out)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, m["kind"].(string)+"/"+m["row"].(string))
	}
	want := "bandwidth/sealed bandwidth/tcp latency/sealed latency/tcp"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSizesAndFlags(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := o.sizes()
	if got[0] != 8 || got[len(got)-1] != 64<<20 {
		t.Errorf("default sizes %v", got)
	}
	has1M := false
	for _, s := range got {
		has1M = has1M || s == 1<<20
	}
	if !has1M {
		t.Errorf("default sizes %v lack 1 MiB (the target's size)", got)
	}
	for _, bad := range [][]string{
		{"-b", "0"}, {"-b", "2M", "-e", "1M"}, {"-f", "1"}, {"-wire", "tcp"},
		{"-rows", "sealed,quic"}, {"-r", "0"}, {"-maxpayload", "70000"}, {"extra"},
	} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestQUICBaseline: -wire quic measures quic-go's raw datagram throughput
// in the same run and reports the sealed rows against it.
func TestQUICBaseline(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-wire", "quic", "-b", "64K", "-e", "64K", "-n", "16", "-r", "1", "-pp", "20", "-rows", "sealed"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	s := out.String()
	if !strings.Contains(s, "quic-go raw datagram baseline (same run)") || !strings.Contains(s, "x the raw datagram throughput") {
		t.Fatalf("no baseline:\n%s", s)
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vectorDir returns the copy of the PSP reference vectors kept in
// secure/psp/testdata/vectors/psp (source: ../shared/vectors/psp; see
// SOURCE.md there). Tests run in the package directory.
func vectorDir(t *testing.T) string {
	t.Helper()
	v := filepath.Join("..", "..", "secure", "psp", "testdata", "vectors", "psp")
	if _, err := os.Stat(v); err != nil {
		t.Fatalf("PSP reference vectors not found at %s: %v", v, err)
	}
	return v
}

// TestVectorsThroughCLI runs every reference vector through the command:
// encrypt must reproduce the reference's file byte for byte, and decrypt
// must give back the cleartext's packets.
func TestVectorsThroughCLI(t *testing.T) {
	dir := vectorDir(t)
	tmp := t.TempDir()
	names, _ := filepath.Glob(filepath.Join(dir, "encrypted", "*.pcap"))
	if len(names) != 22 {
		t.Fatalf("%d encrypted vectors, want 22", len(names))
	}
	for _, n := range names {
		base := strings.TrimSuffix(filepath.Base(n), ".pcap")
		ipv, rest, _ := strings.Cut(base, "_")
		clear := ipv + "_cleartext.pcap"
		if strings.HasSuffix(rest, "_empty") {
			clear = ipv + "_cleartext_empty.pcap"
		}
		enc := filepath.Join(tmp, base+".pcap")
		var out bytes.Buffer
		if err := run([]string{"encrypt", "-c", filepath.Join(dir, "cfg", "encrypt_"+rest+".cfg"), "-i", filepath.Join(dir, "cleartext", clear), "-o", enc}, &out); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if !strings.Contains(out.String(), "encrypted 1 packets") {
			t.Errorf("%s: %q", base, out.String())
		}
		got, _ := os.ReadFile(enc)
		want, _ := os.ReadFile(n)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: output differs from the reference", base)
		}
		dec := filepath.Join(tmp, base+".clear.pcap")
		if err := run([]string{"decrypt", "-c", filepath.Join(dir, "cfg", "decrypt.cfg"), "-i", enc, "-o", dec}, &out); err != nil {
			t.Fatalf("%s: decrypt: %v", base, err)
		}
		got, _ = os.ReadFile(dec)
		want, _ = os.ReadFile(filepath.Join(dir, "cleartext", clear))
		// Same records; the file headers differ only in the snapshot
		// length (the reference writes 9014).
		if !bytes.Equal(got[24:], want[24:]) || !bytes.Equal(got[:16], want[:16]) || !bytes.Equal(got[20:24], want[20:24]) {
			t.Fatalf("%s: decryption differs from the cleartext", base)
		}
	}
}

func TestCLIErrors(t *testing.T) {
	dir := vectorDir(t)
	tmp := t.TempDir()
	out := filepath.Join(tmp, "x.pcap")
	clear := filepath.Join(dir, "cleartext", "v4_cleartext_n5.pcap")
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"encrypt", "-bogus"},
		{"encrypt", "-c", filepath.Join(dir, "cfg", "decrypt.cfg"), "-i", clear, "-o", out},
		{"decrypt", "-c", filepath.Join(dir, "cfg", "decrypt.cfg"), "-i", filepath.Join(tmp, "missing"), "-o", out},
		{"encrypt", "-port", "0", "-c", filepath.Join(dir, "cfg", "encrypt_tunnel_crypt_off_128.cfg"), "-i", clear, "-o", out},
		{"decrypt", "-e"},
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	// -e: every packet must then fail to decrypt, and the failed output
	// is removed.
	enc := filepath.Join(tmp, "bad.pcap")
	if err := run([]string{"encrypt", "-e", "-c", filepath.Join(dir, "cfg", "encrypt_tunnel_crypt_off_128.cfg"), "-i", clear, "-o", enc}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"decrypt", "-c", filepath.Join(dir, "cfg", "decrypt.cfg"), "-i", enc, "-o", out}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("corrupted capture: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("failed output left behind")
	}
}

// TestCLISameFile: an output path naming the input is refused before the
// input is truncated.
func TestCLISameFile(t *testing.T) {
	dir := vectorDir(t)
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.pcap")
	want, err := os.ReadFile(filepath.Join(dir, "cleartext", "v4_cleartext_n5.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, want, 0o644); err != nil {
		t.Fatal(err)
	}
	err = run([]string{"encrypt", "-c", filepath.Join(dir, "cfg", "encrypt_tunnel_crypt_off_128.cfg"), "-i", in, "-o", filepath.Join(tmp, ".", "in.pcap")}, &bytes.Buffer{})
	if err == nil {
		t.Error("output over the input accepted")
	}
	if got, _ := os.ReadFile(in); !bytes.Equal(got, want) {
		t.Fatalf("input clobbered: %d bytes left of %d", len(got), len(want))
	}
}

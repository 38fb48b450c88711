package secure

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

// readVectorLines returns the non-comment, non-empty lines of a testdata
// file, split into fields.
func readVectorLines(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open("testdata/" + name)
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

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	if s == "-" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestCMACVectors: RFC 4493 §4 (AES-128) and NIST SP 800-38B D.3 (AES-256),
// on every crypto path the machine has.
func TestCMACVectors(t *testing.T) {
	lines := readVectorLines(t, "cmac.txt")
	if len(lines) != 8 {
		t.Fatalf("expected 8 CMAC vectors, found %d", len(lines))
	}
	for _, l := range lines {
		key, msg, want := unhex(t, l[0]), unhex(t, l[1]), unhex(t, l[2])
		got, err := CMAC(key, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], want) {
			t.Errorf("CMAC(%x, %d bytes) = %x, want %x", key, len(msg), got, want)
		}
		for _, p := range testPaths() {
			var c cmacKey
			if err := c.init(p, key); err != nil {
				t.Fatal(err)
			}
			if got := c.sum(msg, nil); !bytes.Equal(got[:], want) {
				t.Errorf("%v: CMAC = %x, want %x", p, got, want)
			}
			// Split input: the streaming path must agree.
			for cut := 0; cut <= len(msg); cut += 7 {
				if got := c.sum(msg[:cut], msg[cut:]); !bytes.Equal(got[:], want) {
					t.Errorf("%v: CMAC split at %d = %x, want %x", p, cut, got, want)
				}
			}
		}
	}
}

// TestCounterKDFPSP reproduces the PSP specification's key-derivation
// examples, which are SP 800-108 counter mode with a 4-byte counter.
func TestCounterKDFPSP(t *testing.T) {
	var mk [2][]byte
	n := 0
	for _, l := range readVectorLines(t, "psp-kdf.txt") {
		switch l[0] {
		case "master_key0":
			mk[0] = unhex(t, l[1])
		case "master_key1":
			mk[1] = unhex(t, l[1])
		default:
			version, spi, want := l[0], unhex(t, l[1]), unhex(t, l[2])
			label, bits := "Pv0", uint32(128)
			if version == "1" {
				label, bits = "Pv1", 256
			}
			fixed := append([]byte(label), 0)
			fixed = append(fixed, spi...)
			fixed = binary.BigEndian.AppendUint32(fixed, bits)
			key := mk[spi[0]>>7]
			out := make([]byte, bits/8)
			if err := CounterKDF(key, fixed, 4, out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("PSP v%s SPI %x: got %x, want %x", version, spi, out, want)
			}
			n++
		}
	}
	if n != 3 {
		t.Fatalf("expected 3 PSP KDF vectors, ran %d", n)
	}
}

func TestCounterKDFLimits(t *testing.T) {
	key := make([]byte, 32)
	if err := CounterKDF(key, nil, 0, make([]byte, 16)); err == nil {
		t.Error("counterBytes 0 accepted")
	}
	if err := CounterKDF(key, nil, 5, make([]byte, 16)); err == nil {
		t.Error("counterBytes 5 accepted")
	}
	if err := CounterKDF(key, nil, 1, make([]byte, 255*16)); err != nil {
		t.Errorf("255 blocks with a 1-byte counter: %v", err)
	}
	if err := CounterKDF(key, nil, 1, make([]byte, 255*16+1)); err == nil {
		t.Error("256 blocks with a 1-byte counter accepted")
	}
	if err := CounterKDF(make([]byte, 24), nil, 1, make([]byte, 16)); err == nil {
		t.Error("24-byte key accepted")
	}
	if _, err := CMAC(make([]byte, 7), nil); err == nil {
		t.Error("7-byte CMAC key accepted")
	}
}

// TestDeriveMatchesCounterKDF checks that the fast single-block derivation
// is exactly SP 800-108 counter mode over the documented fixed input.
func TestDeriveMatchesCounterKDF(t *testing.T) {
	mkey := bytes.Repeat([]byte{0x42}, 32)
	for _, p := range testPaths() {
		m, err := newMasterKey(p, mkey)
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []Mode{ModeSender, ModeFlow, ModeDevice} {
			var d derived
			if err := m.derive(&d, p, mode, 0x0102030405060708&idMask(mode), 0x0a0b); err != nil {
				t.Fatal(err)
			}
			fixed := []byte{labelByte, byte(mode), 0}
			fixed = binary.BigEndian.AppendUint64(fixed, 0x0102030405060708&idMask(mode))
			fixed = binary.BigEndian.AppendUint16(fixed, 0x0a0b)
			fixed = binary.BigEndian.AppendUint16(fixed, 352)
			out := make([]byte, 44)
			if err := CounterKDF(mkey, fixed, 1, out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out[32:], d.ivMask[:]) {
				t.Errorf("%v %v: IV mask %x, CounterKDF says %x", p, mode, d.ivMask, out[32:])
			}
			// The data key is checked through the AEAD it keyed.
			var ref derived
			if err := ref.aead.Init(cpu.Generic, out[:32]); err != nil {
				t.Fatal(err)
			}
			n := make([]byte, 12)
			a := d.aead.Seal(nil, n, []byte("probe"), nil)
			b := ref.aead.Seal(nil, n, []byte("probe"), nil)
			if !bytes.Equal(a, b) {
				t.Errorf("%v %v: data key differs from CounterKDF output", p, mode)
			}
		}
	}
}

func idMask(m Mode) uint64 {
	if m == ModeDevice {
		return 0xffffffff
	}
	return ^uint64(0)
}

func testPaths() []cpu.Path {
	var ps []cpu.Path
	for _, p := range cpu.SupportedPaths() {
		if p <= implementedPath {
			ps = append(ps, p)
		}
	}
	return ps
}

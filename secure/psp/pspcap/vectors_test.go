package pspcap

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealring/sealring/secure/psp"
)

// vectorDir returns the copy of the PSP reference vectors kept in
// secure/psp/testdata/vectors/psp (source: ../shared/vectors/psp; see
// SOURCE.md there). Tests run in the package directory.
func vectorDir(t testing.TB) string {
	t.Helper()
	v := filepath.Join("..", "testdata", "vectors", "psp")
	if fi, err := os.Stat(v); err != nil || !fi.IsDir() {
		t.Fatalf("PSP reference vectors not found at %s: %v", v, err)
	}
	return v
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vectorCase is one encrypted capture and where it came from (README of the
// vectors: v4_/v6_ prefix names the cleartext, the rest the config).
type vectorCase struct {
	name, encrypted, cleartext, config string
}

func vectorCases(t testing.TB) []vectorCase {
	t.Helper()
	dir := vectorDir(t)
	names, err := filepath.Glob(filepath.Join(dir, "encrypted", "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 22 {
		t.Fatalf("expected 22 encrypted captures, found %d", len(names))
	}
	var cs []vectorCase
	for _, n := range names {
		base := strings.TrimSuffix(filepath.Base(n), ".pcap")
		ipv, rest, ok := strings.Cut(base, "_")
		if !ok || (ipv != "v4" && ipv != "v6") {
			t.Fatalf("unexpected vector name %s", base)
		}
		clear := ipv + "_cleartext.pcap"
		if strings.HasSuffix(rest, "_empty") {
			clear = ipv + "_cleartext_empty.pcap"
		}
		cs = append(cs, vectorCase{
			name:      base,
			encrypted: n,
			cleartext: filepath.Join(dir, "cleartext", clear),
			config:    filepath.Join(dir, "cfg", "encrypt_"+rest+".cfg"),
		})
	}
	return cs
}

// records returns the data of every record of a capture.
func records(t testing.TB, b []byte) (FileHeader, []Record) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return r.Header(), out
		}
		if err != nil {
			t.Fatal(err)
		}
		rec.Data = bytes.Clone(rec.Data)
		out = append(out, rec)
	}
}

// TestReferenceVectors: every capture in encrypted/ is reproduced byte for
// byte from its cleartext and config, and decrypts back to the cleartext's
// packets (the reference writes snapshot length 9014 where the cleartext
// files say 1434, so the file headers differ by that field alone).
func TestReferenceVectors(t *testing.T) {
	dcfg, err := ParseDecryptConfig(string(readFile(t, filepath.Join(vectorDir(t), "cfg", "decrypt.cfg"))))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range vectorCases(t) {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseEncryptConfig(string(readFile(t, c.config)))
			if err != nil {
				t.Fatal(err)
			}
			clearText := readFile(t, c.cleartext)
			want := readFile(t, c.encrypted)
			var got bytes.Buffer
			st, err := Encrypt(bytes.NewReader(clearText), &got, cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Packets != 1 || st.Skipped != 0 {
				t.Errorf("stats %+v, want one packet", st)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("encryption differs from the reference:\n got %x\nwant %x", got.Bytes(), want)
			}

			var dec bytes.Buffer
			if _, err := Decrypt(bytes.NewReader(want), &dec, dcfg, Options{}); err != nil {
				t.Fatal(err)
			}
			dh, drecs := records(t, dec.Bytes())
			ch, crecs := records(t, clearText)
			if dh != ReferenceHeader() || ch.LinkType != dh.LinkType {
				t.Errorf("decrypted file header %+v", dh)
			}
			if len(drecs) != len(crecs) {
				t.Fatalf("%d decrypted records, %d cleartext", len(drecs), len(crecs))
			}
			for i := range crecs {
				if drecs[i].Sec != crecs[i].Sec || drecs[i].Frac != crecs[i].Frac || drecs[i].OrigLen != crecs[i].OrigLen || !bytes.Equal(drecs[i].Data, crecs[i].Data) {
					t.Fatalf("record %d decrypts to\n%x\nwant\n%x", i, drecs[i].Data, crecs[i].Data)
				}
			}
		})
	}
}

// pspOffset returns where the PSP header starts in an Ethernet frame of an
// encrypted vector.
func pspOffset(frame []byte) int {
	return ethLen + ipHeaderLen(frame[ethLen:]) + 8
}

// TestTamperedVectors flips every bit of every vector's PSP packet (header,
// clear part, ciphertext, ICV): each must be rejected. This includes the
// two captures whose encrypted part is empty, which the reference's
// decryptor accepts without checking the ICV. Bits of the outer IP and UDP
// headers are not covered by PSP's ICV (by design) and are not flipped.
func TestTamperedVectors(t *testing.T) {
	dcfg, err := ParseDecryptConfig(string(readFile(t, filepath.Join(vectorDir(t), "cfg", "decrypt.cfg"))))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := psp.NewServer(psp.ServerConfig{MasterKeys: &dcfg.MasterKeys})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range vectorCases(t) {
		_, recs := records(t, readFile(t, c.encrypted))
		frame := recs[0].Data
		ip := frame[ethLen:]
		off := pspOffset(frame) - ethLen
		work := make([]byte, len(ip))
		// Sanity: the untouched packet opens.
		copy(work, ip)
		if _, err := srv.OpenIP(work, 0); err != nil {
			t.Fatalf("%s: genuine packet rejected: %v", c.name, err)
		}
		flips := 0
		for bit := off * 8; bit < len(ip)*8; bit++ {
			copy(work, ip)
			work[bit/8] ^= 1 << (bit % 8)
			d, err := srv.OpenIP(work, 0)
			if err == nil {
				t.Fatalf("%s: flipping bit %d of byte %d (PSP offset %d) was accepted: %x", c.name, bit%8, bit/8, bit/8-off, d.Packet)
			}
			flips++
		}
		if strings.HasSuffix(c.name, "_empty") {
			// The encrypted part is empty: the ICV follows the clear part.
			h, n, err := psp.ParsePacket(ip[off:])
			if err != nil {
				t.Fatal(err)
			}
			if got := len(ip) - off - psp.BaseHeaderLen - int(h.CryptOffset)*4 - psp.ICVLen; got != 0 {
				t.Fatalf("%s: %d encrypted bytes, want 0 (header %d bytes)", c.name, got, n)
			}
			copy(work, ip)
			work[len(work)-1] ^= 1
			if _, err := srv.OpenIP(work, 0); !errors.Is(err, psp.ErrAuth) {
				t.Fatalf("%s: tampered ICV of an empty packet: %v, want ErrAuth", c.name, err)
			}
		}
		t.Logf("%s: %d bit flips rejected", c.name, flips)
	}
}

// TestCorruptFlag: the reference's -e (reserved bit 7 of the crypt offset
// byte set after sealing) makes every packet fail authentication.
func TestCorruptFlag(t *testing.T) {
	dir := vectorDir(t)
	cfg, err := ParseEncryptConfig(string(readFile(t, filepath.Join(dir, "cfg", "encrypt_transport_crypt_off_128.cfg"))))
	if err != nil {
		t.Fatal(err)
	}
	dcfg, err := ParseDecryptConfig(string(readFile(t, filepath.Join(dir, "cfg", "decrypt.cfg"))))
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	if _, err := Encrypt(bytes.NewReader(readFile(t, filepath.Join(dir, "cleartext", "v4_cleartext_n5.pcap"))), &enc, cfg, Options{Corrupt: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Decrypt(bytes.NewReader(enc.Bytes()), io.Discard, dcfg, Options{}); !errors.Is(err, psp.ErrAuth) {
		t.Fatalf("corrupted capture: %v, want ErrAuth", err)
	}
}

// TestMultiPacketRoundTrip runs the five-packet capture through every
// configuration: IVs increase per packet and every packet decrypts back.
func TestMultiPacketRoundTrip(t *testing.T) {
	dir := vectorDir(t)
	dcfg, err := ParseDecryptConfig(string(readFile(t, filepath.Join(dir, "cfg", "decrypt.cfg"))))
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := filepath.Glob(filepath.Join(dir, "cfg", "encrypt_*.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	clearText := readFile(t, filepath.Join(dir, "cleartext", "v4_cleartext_n5.pcap"))
	_, crecs := records(t, clearText)
	for _, name := range cfgs {
		for _, v := range []psp.Version{psp.V0, psp.V1, psp.V2, psp.V3} {
			cfg, err := ParseEncryptConfig(string(readFile(t, name)))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Version = v
			var enc, dec bytes.Buffer
			if _, err := Encrypt(bytes.NewReader(clearText), &enc, cfg, Options{}); err != nil {
				t.Fatalf("%s %v: %v", name, v, err)
			}
			_, erecs := records(t, enc.Bytes())
			for i, r := range erecs {
				h, _, err := psp.ParsePacket(r.Data[pspOffset(r.Data):])
				if err != nil || h.IV != uint64(i+1) || h.Version != v {
					t.Fatalf("%s %v: record %d header %+v, %v", name, v, i, h, err)
				}
			}
			if _, err := Decrypt(bytes.NewReader(enc.Bytes()), &dec, dcfg, Options{}); err != nil {
				t.Fatalf("%s %v: %v", name, v, err)
			}
			_, drecs := records(t, dec.Bytes())
			if len(drecs) != len(crecs) {
				t.Fatalf("%s %v: %d records, want %d", name, v, len(drecs), len(crecs))
			}
			for i := range crecs {
				if !bytes.Equal(drecs[i].Data, crecs[i].Data) {
					t.Fatalf("%s %v: record %d differs", name, v, i)
				}
			}
		}
	}
}

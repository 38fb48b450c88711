package pspcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealring/sealring/secure/psp"
)

// FuzzReader: the pcap reader never panics, never returns a record longer
// than MaxRecordLen, and what it reads writes back to the same bytes.
func FuzzReader(f *testing.F) {
	var b bytes.Buffer
	w, _ := NewWriter(&b, ReferenceHeader())
	w.Write(Record{Sec: 1, Frac: 2, Data: []byte("frame")})
	f.Add(b.Bytes())
	be := FileHeader{BigEndian: true, Nano: true, VersionMajor: 2, VersionMinor: 4, SnapLen: 65535, LinkType: 1}
	b.Reset()
	w, _ = NewWriter(&b, be)
	w.Write(Record{Sec: 3, Frac: 999999999, Data: make([]byte, 60), OrigLen: 70})
	f.Add(b.Bytes())
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint32(nil, magicMicro))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := NewReader(bytes.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		w, err := NewWriter(&out, r.Header())
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
			if len(rec.Data) > MaxRecordLen {
				t.Fatal("record over the limit")
			}
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("rewrite differs:\n%x\n%x", out.Bytes(), in)
		}
	})
}

func TestReaderErrors(t *testing.T) {
	var b bytes.Buffer
	w, _ := NewWriter(&b, ReferenceHeader())
	w.Write(Record{Sec: 1, Data: []byte("abc")})
	good := b.Bytes()
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"short header", good[:10]},
		{"pcapng", append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, good[4:]...)},
		{"version 3", append(append([]byte{}, good[:4]...), append([]byte{3, 0}, good[6:]...)...)},
		{"short record header", good[:30]},
		{"short data", good[:len(good)-1]},
		{"huge caplen", patch(good, 32, 0xffffffff)},
		{"orig < cap", patch(good, 36, 1)},
		{"usec >= 1e6", patch(good, 28, 1000000)},
	} {
		r, err := NewReader(bytes.NewReader(c.in))
		if err == nil {
			_, err = r.Next()
		}
		if err == nil || err == io.EOF {
			t.Errorf("%s: accepted (%v)", c.name, err)
		}
	}
}

func patch(b []byte, off int, v uint32) []byte {
	c := bytes.Clone(b)
	binary.LittleEndian.PutUint32(c[off:], v)
	return c
}

func TestConfigErrors(t *testing.T) {
	keys := bytes.Repeat([]byte("00 "), 64)
	for _, c := range []string{
		"",
		string(keys),
		string(keys) + "zz transport aes-gcm-128 1 6 11 vc",
		string(keys) + "1 sideways aes-gcm-128 1 6 11 vc",
		string(keys) + "1 transport aes-gcm-512 1 6 11 vc",
		string(keys) + "1 transport aes-gcm-128 64 6 11 vc",
		string(keys) + "1 transport aes-gcm-128 1 6 11 maybe",
		string(keys) + "1 transport aes-gcm-128 1 6 11 vc extra",
		"xyz " + string(keys[3:]) + "1 transport aes-gcm-128 1 6 11 vc",
	} {
		if _, err := ParseEncryptConfig(c); err == nil {
			t.Errorf("accepted %q", c)
		}
	}
	cfg, err := ParseEncryptConfig(string(keys) + "0x8000000A tunnel aes-gmac-256 0 0 63 no-vc")
	if err != nil || cfg.SPI != 0x8000000a || cfg.Version != 3 || cfg.TunnelCryptOffsetV6 != 63 || cfg.VC {
		t.Errorf("%+v %v", cfg, err)
	}
	if _, err := ParseDecryptConfig(string(keys[:30])); err == nil {
		t.Error("short decrypt config accepted")
	}
}

// FuzzEncryptDecrypt: Encrypt and Decrypt never panic on arbitrary
// captures, and whatever Encrypt writes, Decrypt opens: every record
// authenticates.
func FuzzEncryptDecrypt(f *testing.F) {
	dir := vectorDir(f)
	for _, name := range []string{"v4_cleartext.pcap", "v6_cleartext.pcap", "v4_cleartext_empty.pcap", "v4_cleartext_n5.pcap"} {
		f.Add(readFile(f, filepath.Join(dir, "cleartext", name)), byte(0))
		f.Add(readFile(f, filepath.Join(dir, "cleartext", name)), byte(0xff))
	}
	f.Add([]byte{}, byte(0))
	var mk [2][psp.MasterKeyLen]byte
	mk[1][0] = 1
	f.Fuzz(func(t *testing.T, in []byte, sel byte) {
		cfg := EncryptConfig{
			MasterKeys:           mk,
			SPI:                  uint32(sel&1) << 31,
			Mode:                 psp.Transport,
			Version:              psp.Version(sel >> 1 & 3),
			TransportCryptOffset: sel >> 3 & 3,
			TunnelCryptOffsetV4:  sel >> 3 & 3,
			TunnelCryptOffsetV6:  sel >> 5 & 3,
			VC:                   sel&0x80 != 0,
		}
		if sel&0x40 != 0 {
			cfg.Mode = psp.Tunnel
		}
		var enc bytes.Buffer
		est, err := Encrypt(bytes.NewReader(in), &enc, cfg, Options{})
		if _, derr := Decrypt(bytes.NewReader(in), io.Discard, DecryptConfig{MasterKeys: mk}, Options{}); derr != nil && !errors.Is(derr, ErrFormat) && !errors.Is(derr, psp.ErrAuth) && !errors.Is(derr, psp.ErrIP) && !errors.Is(derr, psp.ErrTruncated) && !errors.Is(derr, psp.ErrHeader) && !errors.Is(derr, psp.ErrVersion) && !strings.Contains(derr.Error(), "partial capture") {
			t.Fatalf("Decrypt of arbitrary input: unexpected error %v", derr)
		}
		if err != nil {
			return
		}
		dst, err := Decrypt(bytes.NewReader(enc.Bytes()), io.Discard, DecryptConfig{MasterKeys: mk}, Options{})
		if err != nil {
			t.Fatalf("Decrypt of Encrypt's output: %v", err)
		}
		if dst.Packets != est.Packets || dst.Skipped != 0 {
			t.Fatalf("encrypted %d packets, decrypted %d, skipped %d", est.Packets, dst.Packets, dst.Skipped)
		}
	})
}

// FuzzParseConfig: the configuration parsers never panic, and an accepted
// encryption configuration has encodable crypt offsets.
func FuzzParseConfig(f *testing.F) {
	keys := strings.Repeat("0x1f ", 64)
	f.Add(keys + "9A345678 transport aes-gcm-128 1 6 11 vc")
	f.Add(keys + "0x8000000A tunnel aes-gmac-256 0 0 63 no-vc")
	f.Add(keys)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := ParseEncryptConfig(s); err == nil {
			if max(c.TransportCryptOffset, c.TunnelCryptOffsetV4, c.TunnelCryptOffsetV6) > psp.MaxCryptOffset || !c.Version.Valid() {
				t.Fatalf("accepted %+v", c)
			}
		}
		ParseDecryptConfig(s)
	})
}

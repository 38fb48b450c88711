package aesgcm

import (
	"bytes"
	"testing"
)

// FuzzAEAD compares every supported path with crypto/cipher's AES-GCM.
// The first byte of key selects AES-128 or AES-256; key and nonce are
// zero-padded or truncated to size.
func FuzzAEAD(f *testing.F) {
	f.Add([]byte{0}, []byte{}, []byte{}, []byte{})
	f.Add([]byte{1, 2, 3}, []byte("nonce"), []byte("aad"), []byte("hello, world"))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xfe}, 12), make([]byte, 13), make([]byte, 127))
	f.Add([]byte{0x80}, make([]byte, 12), make([]byte, 129), make([]byte, 300))
	f.Add([]byte{7}, make([]byte, 12), make([]byte, 16), make([]byte, 1400))
	f.Fuzz(func(t *testing.T, keyIn, nonceIn, aad, pt []byte) {
		ks := 16
		if len(keyIn) > 0 && keyIn[0]&1 != 0 {
			ks = 32
		}
		key := make([]byte, ks)
		copy(key, keyIn)
		nonce := make([]byte, nonceSize)
		copy(nonce, nonceIn)
		ref := stdGCM(t, key)
		want := ref.Seal(nil, nonce, pt, aad)
		for _, p := range testPaths() {
			var a AEAD
			if err := a.Init(p, key); err != nil {
				t.Fatal(err)
			}
			got := a.Seal(nil, nonce, pt, aad)
			if !bytes.Equal(got, want) {
				t.Fatalf("%v: Seal mismatch\n got %x\nwant %x", p, got, want)
			}
			dec, err := a.Open(nil, nonce, want, aad)
			if err != nil || !bytes.Equal(dec, pt) {
				t.Fatalf("%v: Open failed: %v", p, err)
			}
			// The fuzz input as a forged ciphertext: must agree with the stdlib.
			_, refErr := ref.Open(nil, nonce, pt, aad)
			_, err = a.Open(nil, nonce, pt, aad)
			if (refErr == nil) != (err == nil) {
				t.Fatalf("%v: Open(forged) = %v, stdlib %v", p, err, refErr)
			}
			var b Block
			if err := b.Init(p, key); err != nil {
				t.Fatal(err)
			}
			if n := len(pt) &^ 15; n > 0 {
				out := make([]byte, n)
				b.EncryptBlocks(out, pt[:n])
				refc := stdBlock(t, key)
				exp := make([]byte, n)
				for i := 0; i < n; i += 16 {
					refc.Encrypt(exp[i:], pt[i:])
				}
				if !bytes.Equal(out, exp) {
					t.Fatalf("%v: EncryptBlocks mismatch", p)
				}
			}
		}
	})
}

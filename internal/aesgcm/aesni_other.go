//go:build !amd64 || purego

package aesgcm

// Without amd64 assembly cpu.Supported(cpu.AESNI) is false, so Init never
// selects this path and these stubs are unreachable.

func expandKeyAESNI(nr int, key *byte, rk *[60]uint32) { panic("aesgcm: AESNI path unavailable") }

func initGCMAESNI(nr int, key *byte, rk *[60]uint32, htab *[32]uint64) {
	panic("aesgcm: AESNI path unavailable")
}

func encryptBlocksAESNI(nr int, rk *[60]uint32, dst, src *byte, nblocks int) {
	panic("aesgcm: AESNI path unavailable")
}

func sealAESNI(a *AEAD, out, nonce, plaintext, aad []byte) { panic("aesgcm: AESNI path unavailable") }

func openAESNI(a *AEAD, out, nonce, ciphertext, aad []byte, tag *[16]byte) {
	panic("aesgcm: AESNI path unavailable")
}

func initGCMVAES(nr int, key *byte, rk *[60]uint32, htab *[32]uint64) {
	panic("aesgcm: VAES512 path unavailable")
}

func sealVAES(a *AEAD, out, nonce, plaintext, aad []byte) { panic("aesgcm: VAES512 path unavailable") }

func openVAES(a *AEAD, out, nonce, ciphertext, aad []byte, tag *[16]byte) {
	panic("aesgcm: VAES512 path unavailable")
}

func deriveGCMVAES(nr int, mrk *[60]uint32, hi, lo uint64, rk *[60]uint32, htab *[32]uint64, mask *[12]byte) {
	panic("aesgcm: VAES512 path unavailable")
}

func sealAVX2(a *AEAD, out, nonce, plaintext, aad []byte) { panic("aesgcm: VAES256 path unavailable") }

func openAVX2(a *AEAD, out, nonce, ciphertext, aad []byte, tag *[16]byte) {
	panic("aesgcm: VAES256 path unavailable")
}

func deriveGCMAESNI(nr int, mrk *[60]uint32, hi, lo uint64, rk *[60]uint32, htab *[32]uint64, mask *[12]byte) {
	panic("aesgcm: AESNI path unavailable")
}

func deriveGCMVAES2(mrk *[60]uint32, hi, lo uint64, rk *[60]uint32, htab *[32]uint64, mask *[12]byte, mrk2 *[60]uint32, hi2, lo2 uint64, rk2 *[60]uint32, htab2 *[32]uint64, mask2 *[12]byte) {
	panic("aesgcm: VAES512 path unavailable")
}

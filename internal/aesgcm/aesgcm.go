package aesgcm

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"

	"github.com/sealring/sealring/internal/cpu"
)

const (
	blockSize = 16 // AES block size
	nonceSize = 12 // the only nonce size AEAD accepts
	tagSize   = 16 // size of the tag Seal appends

	// maxPlaintext is the largest message GCM can process with a 96-bit
	// nonce: 2^32-2 blocks (the 32-bit counter must not wrap into J0).
	maxPlaintext = (1<<32 - 2) * blockSize

	// maxImplemented is the fastest cpu.Path this package implements.
	// Adding a path means raising this and adding a case to every
	// switch on a.path / b.path below.
	maxImplemented = cpu.VAES512
)

var (
	// ErrKeySize is returned by Init for keys that are neither 16 nor 32
	// bytes long.
	ErrKeySize = errors.New("aesgcm: invalid key size (want 16 or 32 bytes)")
	// ErrOpen is returned by AEAD.Open when authentication fails.
	ErrOpen = errors.New("aesgcm: message authentication failed")
)

// pathError is returned by Init for paths this build or machine cannot
// run. It is a single byte, so converting it to an error does not
// allocate (the runtime boxes byte-sized values without allocating).
type pathError cpu.Path

func (e pathError) Error() string {
	p := cpu.Path(e)
	if p > maxImplemented {
		return "aesgcm: path " + p.String() + " is not implemented yet"
	}
	return "aesgcm: path " + p.String() + " is not supported by this CPU or build"
}

// checkPath reports whether p can be used here.
func checkPath(p cpu.Path) error {
	if p > maxImplemented || !cpu.Supported(p) {
		return pathError(p)
	}
	return nil
}

// Block is an expanded AES-128 or AES-256 encryption key.
//
// A Block is a fixed-size value without pointers: it can be embedded in
// other structs or arrays and initialised in place with Init, which does
// not allocate. The zero Block is not usable; call Init first.
// A Block must not be copied while another goroutine calls Init or Wipe on
// it; once initialised, Encrypt and EncryptBlocks may be called
// concurrently.
type Block struct {
	// rk is the encryption key schedule, (nr+1) round keys of 16 bytes.
	// For cpu.Generic the words hold the big-endian interpretation of
	// each 4-byte column (as the table implementation wants them); for
	// the assembly paths they hold the raw bytes in memory order.
	rk [60]uint32
	// nr is the number of rounds: 10 or 14; 0 means not initialised.
	nr   uint8
	path cpu.Path
}

// Init expands key (16 bytes for AES-128, 32 for AES-256) for path p,
// overwriting whatever b held. It does not allocate. On error b is wiped.
func (b *Block) Init(p cpu.Path, key []byte) error {
	if err := checkPath(p); err != nil {
		b.Wipe()
		return err
	}
	nr := 0
	switch len(key) {
	case 16:
		nr = 10
	case 32:
		nr = 14
	default:
		b.Wipe()
		return ErrKeySize
	}
	switch p {
	case cpu.Generic:
		expandKeyGeneric(&b.rk, key)
	case cpu.AESNI, cpu.VAES256, cpu.VAES512:
		expandKeyAESNI(nr, &key[0], &b.rk)
	}
	b.nr = uint8(nr)
	b.path = p
	return nil
}

// Path returns the implementation b was initialised for.
func (b *Block) Path() cpu.Path { return b.path }

// Key writes the AES key b was initialised with to dst and returns its
// length (16 or 32), or 0 if b is not initialised. The key is the first
// round keys of the schedule, so this costs nothing to keep; callers that
// cache keys compactly (secure's key cache) store it instead of the
// expanded schedule.
func (b *Block) Key(dst *[32]byte) int {
	n := 0
	switch b.nr {
	case 10:
		n = 16
	case 14:
		n = 32
	default:
		return 0
	}
	for i := range n / 4 {
		if b.path == cpu.Generic {
			binary.BigEndian.PutUint32(dst[4*i:], b.rk[i])
		} else {
			binary.LittleEndian.PutUint32(dst[4*i:], b.rk[i])
		}
	}
	return n
}

// Wipe zeroes the key material; b must be initialised again before use.
func (b *Block) Wipe() {
	clear(b.rk[:])
	b.nr = 0
	b.path = cpu.Generic
}

func (b *Block) mustInit() {
	if b.nr == 0 {
		panic("aesgcm: Block used before Init")
	}
}

// Encrypt encrypts the first 16 bytes of src into the first 16 bytes of
// dst. dst and src may overlap entirely. It panics if either is shorter
// than 16 bytes or if they overlap inexactly, as crypto/cipher.Block does.
func (b *Block) Encrypt(dst, src []byte) {
	b.mustInit()
	if len(src) < blockSize {
		panic("aesgcm: input not full block")
	}
	if len(dst) < blockSize {
		panic("aesgcm: output not full block")
	}
	if inexactOverlap(dst[:blockSize], src[:blockSize]) {
		panic("aesgcm: invalid buffer overlap")
	}
	switch b.path {
	case cpu.Generic:
		encryptBlockGeneric(&b.rk, int(b.nr), dst, src)
	case cpu.AESNI, cpu.VAES256, cpu.VAES512:
		encryptBlocksAESNI(int(b.nr), &b.rk, &dst[0], &src[0], 1)
	}
}

// EncryptBlocks encrypts len(src) bytes of src into dst in ECB mode: each
// 16-byte block independently. The assembly paths process up to eight
// blocks in parallel, so encrypting several independent blocks (for
// example the lanes of parallel CMAC computations) with one call is much
// faster than calling Encrypt for each. len(src) must be a multiple of 16
// and dst at least as long; dst and src may overlap only exactly.
func (b *Block) EncryptBlocks(dst, src []byte) {
	b.mustInit()
	if len(src)%blockSize != 0 {
		panic("aesgcm: input not a multiple of the block size")
	}
	if len(dst) < len(src) {
		panic("aesgcm: output smaller than input")
	}
	if len(src) == 0 {
		return
	}
	if inexactOverlap(dst[:len(src)], src) {
		panic("aesgcm: invalid buffer overlap")
	}
	switch b.path {
	case cpu.Generic:
		for i := 0; i < len(src); i += blockSize {
			encryptBlockGeneric(&b.rk, int(b.nr), dst[i:], src[i:])
		}
	case cpu.AESNI, cpu.VAES256, cpu.VAES512:
		encryptBlocksAESNI(int(b.nr), &b.rk, &dst[0], &src[0], len(src)/blockSize)
	}
}

// AEAD is AES-GCM with a 12-byte nonce and a 16-byte tag. *AEAD
// implements crypto/cipher.AEAD.
//
// An AEAD is a fixed-size value without pointers, so a cache can hold an
// array of them and re-key an entry in place with Init, which does not
// allocate. After Init, Seal and Open may be called concurrently from any
// number of goroutines: they never modify the AEAD. Init and Wipe must
// not run concurrently with other uses of the same AEAD.
type AEAD struct {
	blk Block
	// htab holds the GHASH key in the form the path's GHASH wants:
	//   AESNI:   for i = 8..1, H^i (bit-reflected, premultiplied by x) and
	//            its Karatsuba half (hi^lo in both lanes), 32 bytes each;
	//            H^8 at offset 0, H^1 at offset 224.
	//   (VAES256 uses the AESNI layout.)
	//   VAES512: H^16..H^1 (bit-reflected, premultiplied by x), 16 bytes
	//            each, no Karatsuba halves; H^16 at offset 0, H^1 at 240.
	//   Generic: the 16-entry 4-bit multiplication table, (lo, hi) pairs.
	htab [32]uint64
}

// Init derives the AES key schedule and the GHASH key from key (16 or 32
// bytes) for path p, overwriting any previous key. It does not allocate.
// On error a is wiped.
func (a *AEAD) Init(p cpu.Path, key []byte) error {
	if err := checkPath(p); err != nil {
		a.Wipe()
		return err
	}
	nr := 0
	switch len(key) {
	case 16:
		nr = 10
	case 32:
		nr = 14
	default:
		a.Wipe()
		return ErrKeySize
	}
	switch p {
	case cpu.Generic:
		expandKeyGeneric(&a.blk.rk, key)
		initGHASHGeneric(&a.htab, &a.blk.rk, nr)
	case cpu.AESNI, cpu.VAES256:
		initGCMAESNI(nr, &key[0], &a.blk.rk, &a.htab)
	case cpu.VAES512:
		initGCMVAES(nr, &key[0], &a.blk.rk, &a.htab)
	}
	a.blk.nr = uint8(nr)
	a.blk.path = p
	return nil
}

// InitKDF is a key derivation fused with Init, for package secure's
// data keys (SP 800-108 counter mode with one-block CMAC inputs, where a
// derivation is three AES block encryptions under the KDF key). It
// encrypts with kdf the three blocks B_i whose big-endian 64-bit halves
// are hi ^ i<<56 and lo (i = 1, 2, 3), initialises a for path p as
// AES-256-GCM with the key E(B_1) ‖ E(B_2) and writes the first 12 bytes
// of E(B_3) to mask. The result is exactly that of kdf.EncryptBlocks
// followed by a.Init, but on the assembly paths it is a single assembly
// call (deriveGCMVAES, deriveGCMAESNI) that keeps the derived key in
// registers until it is expanded. It does not allocate.
// On error a is wiped.
func (a *AEAD) InitKDF(p cpu.Path, kdf *Block, hi, lo uint64, mask *[12]byte) error {
	// The fast paths are one assembly call each.
	if kdf.path >= cpu.AESNI && kdf.nr != 0 {
		switch {
		case p == cpu.VAES512 && vaesSupported:
			deriveGCMVAES(int(kdf.nr), &kdf.rk, hi, lo, &a.blk.rk, &a.htab, mask)
		case p == cpu.VAES256 && vaes256Supported, p == cpu.AESNI && aesniSupported:
			deriveGCMAESNI(int(kdf.nr), &kdf.rk, hi, lo, &a.blk.rk, &a.htab, mask)
		default:
			return a.initKDFSlow(p, kdf, hi, lo, mask)
		}
		a.blk.nr = 14
		a.blk.path = p
		return nil
	}
	return a.initKDFSlow(p, kdf, hi, lo, mask)
}

// InitKDFPair is a.InitKDF(p, ka, hiA, loA, maskA) followed by
// b.InitKDF(p, kb, hiB, loB, maskB), with exactly their results (both run
// whatever the first returns; the first error is returned). On the
// VAES512 path with two AES-256 KDF keys, distinct AEADs and KDF keys that
// are not the AEADs' own blocks, the two derivations run together in one
// assembly call with their instruction streams interleaved, which fills
// the idle time of each one's dependency chain: 0.65–0.75× the time of
// the two calls. It does not allocate.
func InitKDFPair(p cpu.Path, a *AEAD, ka *Block, hiA, loA uint64, maskA *[12]byte, b *AEAD, kb *Block, hiB, loB uint64, maskB *[12]byte) error {
	if p == cpu.VAES512 && vaesSupported && a != b &&
		ka != &a.blk && ka != &b.blk && kb != &a.blk && kb != &b.blk &&
		ka.path >= cpu.AESNI && ka.nr == 14 && kb.path >= cpu.AESNI && kb.nr == 14 {
		deriveGCMVAES2(&ka.rk, hiA, loA, &a.blk.rk, &a.htab, maskA, &kb.rk, hiB, loB, &b.blk.rk, &b.htab, maskB)
		a.blk.nr, a.blk.path = 14, p
		b.blk.nr, b.blk.path = 14, p
		return nil
	}
	errA := a.InitKDF(p, ka, hiA, loA, maskA)
	errB := b.InitKDF(p, kb, hiB, loB, maskB)
	if errA != nil {
		return errA
	}
	return errB
}

// The paths' support, cached for InitKDF's fast paths.
var (
	vaesSupported    = cpu.Supported(cpu.VAES512)
	vaes256Supported = cpu.Supported(cpu.VAES256)
	aesniSupported   = cpu.Supported(cpu.AESNI)
)

func (a *AEAD) initKDFSlow(p cpu.Path, kdf *Block, hi, lo uint64, mask *[12]byte) error {
	kdf.mustInit()
	var blocks [3 * blockSize]byte
	for i := range 3 {
		binary.BigEndian.PutUint64(blocks[i*blockSize:], hi^uint64(i+1)<<56)
		binary.BigEndian.PutUint64(blocks[i*blockSize+8:], lo)
	}
	kdf.EncryptBlocks(blocks[:], blocks[:])
	err := a.Init(p, blocks[:32])
	copy(mask[:], blocks[32:32+nonceSize])
	clear(blocks[:])
	return err
}

// NonceSize returns 12.
func (a *AEAD) NonceSize() int { return nonceSize }

// Overhead returns 16, the tag size.
func (a *AEAD) Overhead() int { return tagSize }

// Path returns the implementation a was initialised for.
func (a *AEAD) Path() cpu.Path { return a.blk.path }

// Key writes the AES key a was initialised with (also by InitKDF) to dst
// and returns its length, or 0 if a is not initialised.
func (a *AEAD) Key(dst *[32]byte) int { return a.blk.Key(dst) }

// Wipe zeroes the key material; a must be initialised again before use.
func (a *AEAD) Wipe() {
	a.blk.Wipe()
	clear(a.htab[:])
}

// Seal encrypts and authenticates plaintext, authenticates additionalData
// and appends the result to dst, returning the updated slice. It has the
// semantics of crypto/cipher.AEAD.Seal: the nonce must be 12 bytes and
// must never be reused with the same key; to reuse plaintext's storage
// use plaintext[:0] as dst; otherwise dst must not overlap plaintext.
// Seal does not allocate if dst has room for len(plaintext)+16 more bytes.
func (a *AEAD) Seal(dst, nonce, plaintext, additionalData []byte) []byte {
	if a.blk.nr == 0 {
		panic("aesgcm: AEAD used before Init")
	}
	if len(nonce) != nonceSize {
		panic("crypto/cipher: incorrect nonce length given to GCM")
	}
	if uint64(len(plaintext)) > maxPlaintext {
		panic("crypto/cipher: message too large for GCM")
	}
	ret, out := sliceForAppend(dst, len(plaintext)+tagSize)
	if inexactOverlap(out, plaintext) {
		panic("crypto/cipher: invalid buffer overlap of output and input")
	}
	if anyOverlap(out, additionalData) {
		panic("crypto/cipher: invalid buffer overlap of output and additional data")
	}
	switch a.blk.path {
	case cpu.Generic:
		sealGeneric(a, out, nonce, plaintext, additionalData)
	case cpu.AESNI:
		sealAESNI(a, out, nonce, plaintext, additionalData)
	case cpu.VAES256:
		sealAVX2(a, out, nonce, plaintext, additionalData)
	case cpu.VAES512:
		sealVAES(a, out, nonce, plaintext, additionalData)
	}
	return ret
}

// Open authenticates and decrypts ciphertext (which ends with the 16-byte
// tag), authenticates additionalData and, on success, appends the
// plaintext to dst, returning the updated slice. It has the semantics of
// crypto/cipher.AEAD.Open; to reuse ciphertext's storage use
// ciphertext[:0] as dst. On failure it returns ErrOpen and zeroes the
// part of dst's capacity that would have held the plaintext. The tag is
// compared in constant time. Open does not allocate if dst has room for
// len(ciphertext)-16 more bytes.
func (a *AEAD) Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error) {
	if a.blk.nr == 0 {
		panic("aesgcm: AEAD used before Init")
	}
	if len(nonce) != nonceSize {
		panic("crypto/cipher: incorrect nonce length given to GCM")
	}
	if len(ciphertext) < tagSize {
		return nil, ErrOpen
	}
	if uint64(len(ciphertext)) > maxPlaintext+tagSize {
		return nil, ErrOpen
	}
	n := len(ciphertext) - tagSize
	ret, out := sliceForAppend(dst, n)
	if inexactOverlap(out, ciphertext) {
		panic("crypto/cipher: invalid buffer overlap of output and input")
	}
	if anyOverlap(out, additionalData) {
		panic("crypto/cipher: invalid buffer overlap of output and additional data")
	}
	var tag [tagSize]byte
	switch a.blk.path {
	case cpu.Generic:
		openGeneric(a, out, nonce, ciphertext[:n], additionalData, &tag)
	case cpu.AESNI:
		openAESNI(a, out, nonce, ciphertext[:n], additionalData, &tag)
	case cpu.VAES256:
		openAVX2(a, out, nonce, ciphertext[:n], additionalData, &tag)
	case cpu.VAES512:
		openVAES(a, out, nonce, ciphertext[:n], additionalData, &tag)
	}
	if subtle.ConstantTimeCompare(tag[:], ciphertext[n:]) != 1 {
		clear(out)
		return nil, ErrOpen
	}
	return ret, nil
}

// sliceForAppend takes a slice and a requested number of bytes. It returns
// a slice with the contents of the given slice followed by that many
// bytes and a second slice that aliases into it and contains only the
// extra bytes. If the original slice has sufficient capacity then no
// allocation is performed.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}

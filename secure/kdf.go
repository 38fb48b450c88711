package secure

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/sealring/sealring/internal/aesgcm"
	"github.com/sealring/sealring/internal/cpu"
)

// The data-key derivation profile (docs/protocol.md §3).
//
// Each PRF input is exactly one AES block:
//
//	counter (1) ‖ label (2) = 'S', V ‖ 0x00 ‖ context (10) = ID (8) ‖ epoch (2) ‖ L (2) = 0x0160
//
// (a 4-byte ModeDevice ID is zero-extended to 8 bytes). CMAC of one
// complete block is AES(K, M ⊕ K1), so with K1 precomputed per master key a
// derivation is three independent AES-256 block encryptions, run together.
// Output: 352 bits = data key (32 bytes) ‖ IV mask (12 bytes).
const (
	labelByte  = 'S'
	derivedLen = 44
	derivedL   = derivedLen * 8 // 352
	nonceSize  = 12
)

// masterKey is a group's master key for one combination of root-key
// generations, ready to act as the KDF's PRF key.
type masterKey struct {
	// id distinguishes master keys in the key cache; random so that no
	// global counter is needed and a collision is negligible (and would
	// only cause an authentication failure, never wrong plaintext).
	id  uint64
	prf cmacKey
}

func newMasterKey(p cpu.Path, key []byte) (*masterKey, error) {
	m := new(masterKey)
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("secure: master key id: %w", err)
	}
	m.id = binary.LittleEndian.Uint64(id[:])
	if err := m.prf.init(p, key); err != nil {
		return nil, err
	}
	return m, nil
}

// derived is what a derivation produces: the data key's AEAD and IV mask.
type derived struct {
	aead   aesgcm.AEAD
	ivMask [nonceSize]byte
}

// fixedInputs builds the three PRF input blocks for (mode, id, epoch).
func fixedInputs(blocks *[3 * blockSize]byte, mode Mode, id uint64, epoch uint16) {
	for i := range 3 {
		b := blocks[i*blockSize : (i+1)*blockSize]
		b[0] = byte(i + 1)
		b[1] = labelByte
		b[2] = byte(mode)
		b[3] = 0
		binary.BigEndian.PutUint64(b[4:], id)
		binary.BigEndian.PutUint16(b[12:], epoch)
		binary.BigEndian.PutUint16(b[14:], derivedL)
	}
}

// derive computes the data key and IV mask of (m, mode, id, epoch) into d
// without allocating.
func (m *masterKey) derive(d *derived, p cpu.Path, mode Mode, id uint64, epoch uint16) error {
	var blocks [3 * blockSize]byte
	fixedInputs(&blocks, mode, id, epoch)
	for i := 0; i < 3*blockSize; i += blockSize {
		subtle.XORBytes(blocks[i:i+blockSize], blocks[i:i+blockSize], m.prf.k1[:])
	}
	m.prf.b.EncryptBlocks(blocks[:], blocks[:])
	err := d.aead.Init(p, blocks[:KeySize])
	copy(d.ivMask[:], blocks[KeySize:derivedLen])
	clear(blocks[:])
	return err
}

// nonce builds (low 32 bits of ID ‖ epoch ‖ counter) ⊕ IV mask.
func nonce(n *[nonceSize]byte, mask *[nonceSize]byte, id uint64, epoch uint16, ctr uint64) {
	binary.BigEndian.PutUint32(n[0:], uint32(id))
	binary.BigEndian.PutUint16(n[4:], epoch)
	binary.BigEndian.PutUint16(n[6:], uint16(ctr>>32))
	binary.BigEndian.PutUint32(n[8:], uint32(ctr))
	subtle.XORBytes(n[:], n[:], mask[:])
}

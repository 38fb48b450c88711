// Package secure implements sealring's per-message stateless encryption,
// our profile of draft-xia-ipsecme-eesp-stateless-encryption-02.
//
// The ranks of a job form a trust group and share the group's root keys
// (trust region, user group, task group, each with previous, current and
// next generations) instead of per-pair sessions. Every packet carries a
// small security header (version, header length, key-context mode, crypt
// and integrity offsets, sender ID, master-key option, epoch, counter).
// From that header and the root keys any member derives the packet's data
// key and nonce on the spot: there is no handshake and no per-peer state,
// so a receiver's security state does not grow with the number of peers.
//
//   - Group holds a trust group's root keys and epoch, combines them into
//     master keys (HKDF-SHA256 by default, the draft's XOR on request) and
//     rotates them without stopping traffic.
//   - Sealer seals one sender's packets in place. It owns the sender's
//     48-bit counter and is lock-free on the hot path.
//   - Opener authenticates and decrypts packets of one or more groups in
//     place, deriving each data key from the header (NIST SP 800-108
//     counter mode with AES-256-CMAC), with an optional bounded cache of
//     derived keys that only saves time.
//   - Proxy re-encrypts between two trust groups, in place, with no
//     per-flow state (the draft's gateway case).
//   - CMAC and CounterKDF expose the primitives for interoperability tests.
//
// The byte layouts and algorithms are specified in docs/protocol.md, with
// worked vectors in testdata/vectors.json; docs/security.md gives the
// threat model and why no (key, nonce) pair ever repeats.
//
// The shortest correct use, one sender and one receiver of a group:
//
//	region, _ := secure.GenerateLevelKeys() // in practice: from the job's controllers
//	user, _ := secure.GenerateLevelKeys()
//	task, _ := secure.GenerateLevelKeys()
//	g, err := secure.NewGroup(secure.GroupConfig{ID: jobID, Keys: [3]secure.LevelKeys{region, user, task}})
//	s, err := secure.NewSealer(g, secure.SealerConfig{ID: secure.SenderID(rank, incarnation)})
//	o, err := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{g}, CacheCapacity: 4096})
//
//	pkt := make([]byte, s.HeaderLen(), s.Overhead()+len(msg))
//	pkt, err = s.Seal(append(pkt, msg...), 0, 0) // header ‖ ciphertext ‖ tag
//	r, err := o.Open(pkt, 0)                      // r.Payload == msg
//
// The AES and AES-GCM implementation (CryptoPath) is chosen once per
// process from the CPU's features; SEALRING_CRYPTO=generic|aesni|vaes-avx2|vaes-avx512
// forces one.
package secure

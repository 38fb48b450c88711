package secure

import (
	"testing"

	"github.com/sealring/sealring/internal/cpu"
)

// fixedKey returns a deterministic 32-byte key.
func fixedKey(tag byte, gen uint8) RootKey {
	k := RootKey{Gen: gen & 3}
	for i := range k.Key {
		k.Key[i] = tag ^ byte(i*7+int(gen)*31)
	}
	return k
}

// testGroupConfig builds a group config with fixed keys: seed separates groups.
func testGroupConfig(seed byte, idLen int) GroupConfig {
	cfg := GroupConfig{ID: make([]byte, idLen), Epoch: 10}
	for i := range cfg.ID {
		cfg.ID[i] = seed + byte(i)
	}
	for l := range numLevels {
		tag := seed*16 + byte(l)
		prev := fixedKey(tag, 3)
		cfg.Keys[l] = LevelKeys{Previous: &prev, Current: fixedKey(tag, 0), Next: fixedKey(tag, 1)}
	}
	return cfg
}

func newTestGroup(t testing.TB, seed byte, p cpu.Path) *Group {
	t.Helper()
	g, err := newGroup(testGroupConfig(seed, 16), p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// clone makes an independent Group with the same keys (another member's view).
func cloneGroup(t testing.TB, seed byte, p cpu.Path) *Group { return newTestGroup(t, seed, p) }

func newTestSealer(t testing.TB, g *Group, cfg SealerConfig) *Sealer {
	t.Helper()
	s, err := NewSealer(g, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestOpener(t testing.TB, cfg OpenerConfig) *Opener {
	t.Helper()
	o, err := NewOpener(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// packet lays out prefix ‖ header room ‖ clear ‖ payload with tag capacity.
func packet(s *Sealer, prefix, clearPart, payload []byte) []byte {
	b := make([]byte, 0, len(prefix)+s.HeaderLen()+len(clearPart)+len(payload)+TagSize)
	b = append(b, prefix...)
	b = append(b, make([]byte, s.HeaderLen())...)
	b = append(b, clearPart...)
	return append(b, payload...)
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131) ^ seed
	}
	return b
}

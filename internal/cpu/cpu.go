// Package cpu decides, once per process, which crypto implementation
// sealring uses, from the CPU's features (probed with
// github.com/klauspost/cpuid/v2) and the SEALRING_CRYPTO environment
// variable.
//
// The decision is made in exactly one place so that every package agrees
// on it and so that tests can ask which paths the machine supports and
// run each of them explicitly for differential testing.
package cpu

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/klauspost/cpuid/v2"
)

// Path names one implementation of AES and AES-GCM.
type Path uint8

const (
	// Generic is portable Go; always available.
	Generic Path = iota
	// AESNI uses 128-bit AES-NI and PCLMULQDQ (amd64).
	AESNI
	// VAES256 uses VAES and VPCLMULQDQ on 256-bit registers (AVX2, no
	// AVX-512): the default on CPUs with VAES but without AVX-512.
	VAES256
	// VAES512 uses VAES and VPCLMULQDQ on 512-bit registers (AVX-512).
	VAES512
)

// EnvVar is the environment variable that forces a path.
const EnvVar = "SEALRING_CRYPTO"

var pathNames = [...]string{Generic: "generic", AESNI: "aesni", VAES256: "vaes-avx2", VAES512: "vaes-avx512"}

// String returns the path's name as SEALRING_CRYPTO spells it.
func (p Path) String() string {
	if int(p) < len(pathNames) {
		return pathNames[p]
	}
	return fmt.Sprintf("cpu.Path(%d)", uint8(p))
}

// ParsePath parses a SEALRING_CRYPTO value. "auto" and "" return ok=false
// with a nil error, meaning "choose by CPU features".
func ParsePath(s string) (p Path, ok bool, err error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "", "auto":
		return Generic, false, nil
	}
	for i, n := range pathNames {
		if s == n {
			return Path(i), true, nil
		}
	}
	return Generic, false, fmt.Errorf("cpu: unknown %s value %q (want auto, %s)", EnvVar, s, strings.Join(pathNames[:], ", "))
}

// features is probed once at package initialisation and never changes.
var features = probe()

type featureSet struct {
	aesni, vaes256, vaes512 bool
}

func probe() featureSet {
	if runtime.GOARCH != "amd64" || purego {
		return featureSet{}
	}
	c := cpuid.CPU
	f := featureSet{aesni: c.Supports(cpuid.AESNI, cpuid.CLMUL, cpuid.SSE4, cpuid.SSSE3)}
	f.vaes256 = f.aesni && c.Supports(cpuid.VAES, cpuid.VPCLMULQDQ, cpuid.AVX, cpuid.AVX2)
	f.vaes512 = f.vaes256 && c.Supports(cpuid.AVX512F, cpuid.AVX512VL, cpuid.AVX512BW)
	return f
}

// Supported reports whether this machine (and this build: the purego tag
// disables assembly) can run path p.
func Supported(p Path) bool {
	switch p {
	case Generic:
		return true
	case AESNI:
		return features.aesni
	case VAES256:
		return features.vaes256
	case VAES512:
		return features.vaes512
	}
	return false
}

// SupportedPaths lists every path this machine can run, slowest first.
func SupportedPaths() []Path {
	var ps []Path
	for p := Generic; p <= VAES512; p++ {
		if Supported(p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// Best returns the fastest path the machine supports, ignoring the
// environment. maxPath caps the choice at the fastest path that has been
// implemented by the caller.
func Best(maxPath Path) Path {
	for p := maxPath; p > Generic; p-- {
		if Supported(p) {
			return p
		}
	}
	return Generic
}

// Choose returns the path to use: the one SEALRING_CRYPTO forces, or the
// best supported path up to maxPath. Forcing a path the machine cannot run,
// or naming an unknown one, is an error rather than a silent fallback, so a
// benchmark never measures something other than what it claims.
func Choose(maxPath Path) (Path, error) {
	return choose(os.Getenv(EnvVar), maxPath)
}

func choose(env string, maxPath Path) (Path, error) {
	p, forced, err := ParsePath(env)
	if err != nil {
		return Generic, err
	}
	if !forced {
		return Best(maxPath), nil
	}
	if p > maxPath {
		return Generic, fmt.Errorf("cpu: %s=%s is not implemented in this build (fastest is %s)", EnvVar, p, maxPath)
	}
	if !Supported(p) {
		return Generic, fmt.Errorf("cpu: %s=%s is not supported by this CPU or build", EnvVar, p)
	}
	return p, nil
}

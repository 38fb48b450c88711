package secure

import "github.com/sealring/sealring/internal/cpu"

// implementedPath is the fastest crypto path this build implements.
const implementedPath = cpu.VAES512

// The crypto path is chosen once per process, from the CPU's features and
// SEALRING_CRYPTO (auto, generic, aesni, vaes-avx2, vaes-avx512). An
// invalid forced value makes every constructor fail with ErrConfig rather
// than silently measuring a different path.
var defaultPath, defaultPathErr = cpu.Choose(implementedPath)

// CryptoPath reports the AES and AES-GCM implementation in use: "generic"
// (portable Go), "aesni" (AES-NI and PCLMULQDQ assembly), "vaes-avx2" (VAES
// and VPCLMULQDQ on 256-bit registers, for CPUs without AVX-512) or
// "vaes-avx512".
// If SEALRING_CRYPTO names a path this machine or build cannot run, it
// returns "invalid" and constructors return the reason.
func CryptoPath() string {
	if defaultPathErr != nil {
		return "invalid"
	}
	return defaultPath.String()
}

// pathFor resolves a config's Crypto field: "" means the process default.
func pathFor(name string) (cpu.Path, error) {
	if name == "" {
		return defaultPath, defaultPathErr
	}
	p, forced, err := cpu.ParsePath(name)
	if err != nil {
		return cpu.Generic, err
	}
	if !forced {
		return cpu.Best(implementedPath), nil
	}
	if p > implementedPath || !cpu.Supported(p) {
		return cpu.Generic, errUnsupportedPath(p)
	}
	return p, nil
}

type errUnsupportedPath cpu.Path

func (e errUnsupportedPath) Error() string {
	return "crypto path " + cpu.Path(e).String() + " is not available on this machine or build"
}

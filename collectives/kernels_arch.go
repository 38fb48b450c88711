//go:build !amd64 || purego

package collectives

// installArchKernels replaces entries of t with architecture-specific
// kernels; this build has none (see kernels_amd64.go), so every entry stays
// the portable Go kernel.
func installArchKernels(t *kernelTable) {}

// kernelPath names one implementation of the kernel table.
type kernelPath struct {
	name  string
	table kernelTable
}

// archPaths lists the architecture-specific implementations: none here.
var archPaths []kernelPath

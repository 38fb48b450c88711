package collectives

// installArchKernels replaces entries of t with architecture-specific
// kernels. None yet: every entry is the portable Go kernel. An AVX2/AVX-512
// implementation goes into kernels_amd64.go (+ .s) with this function moved
// to a kernels_other.go / purego-tagged file, deciding once from
// internal/cpu which entries to replace.
func installArchKernels(t *kernelTable) {}

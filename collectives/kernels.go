package collectives

// The reduction kernels: one function per (DataType, Op), chosen once per
// collective call through the kernels table. This file is the seam for
// assembly: installArchKernels (kernels_arch.go) may replace entries with
// AVX2/AVX-512 versions selected by CPU features at init, and the tests in
// kernels_test.go compare every entry against a scalar reference, so a new
// kernel only has to be dropped into the table.

// kernelFunc reduces src into dst element-wise, dst[i] = dst[i] op src[i],
// over the len(dst)/size elements of dst. src is at least as long as dst.
// Both are aligned to the element size. bfloat16 and float16 are reduced in
// float32 and rounded back once per element (round to nearest even).
type kernelFunc func(dst, src []byte)

type kernelTable [numDataTypes][numOps]kernelFunc

// kernels is the table the collectives use; set once at init.
var kernels kernelTable

// genericTable is the portable Go implementation of every entry; kept for
// differential tests of architecture-specific kernels.
var genericTable kernelTable

func init() {
	genericTable = genericKernels()
	kernels = genericTable
	installArchKernels(&kernels)
}

func genericKernels() kernelTable {
	var t kernelTable
	setNumeric[float32](&t, Float32)
	setNumeric[float64](&t, Float64)
	setNumeric[int32](&t, Int32)
	setNumeric[int64](&t, Int64)
	setNumeric[uint8](&t, Uint8)
	t[BF16] = [numOps]kernelFunc{
		Sum: wrapKernel(sumBF16), Prod: wrapKernel(prodBF16),
		Min: wrapKernel(minBF16), Max: wrapKernel(maxBF16),
	}
	t[F16] = [numOps]kernelFunc{
		Sum: wrapKernel(sumF16), Prod: wrapKernel(prodF16),
		Min: wrapKernel(minF16), Max: wrapKernel(maxF16),
	}
	return t
}

func setNumeric[T number](t *kernelTable, dt DataType) {
	t[dt] = [numOps]kernelFunc{
		Sum:  wrapKernel(sumKernel[T]),
		Prod: wrapKernel(prodKernel[T]),
		Min:  wrapKernel(minKernel[T]),
		Max:  wrapKernel(maxKernel[T]),
	}
}

// wrapKernel adapts a typed kernel to the byte-level table; the
// reinterpretation costs nothing per element.
func wrapKernel[T any](f func(d, s []T)) kernelFunc {
	return func(d, s []byte) { f(asType[T](d), asType[T](s)) }
}

// kernelFor returns the kernel for (t, o); both must be valid.
func kernelFor(t DataType, o Op) kernelFunc { return kernels[t][o] }

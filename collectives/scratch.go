package collectives

import (
	"math/bits"
	"sync"
)

// Scratch buffers, pooled by power-of-two size class so that large
// collectives do not allocate per call.
var scratchPools [48]sync.Pool

func getScratch(n int) *[]byte {
	if n == 0 {
		b := []byte{}
		return &b
	}
	c := bits.Len(uint(n - 1))
	if p, ok := scratchPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func putScratch(p *[]byte) {
	c := cap(*p)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	scratchPools[bits.Len(uint(c-1))].Put(p)
}

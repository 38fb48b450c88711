//go:build linux

package collectives

import (
	"math/rand/v2"
	"syscall"
	"testing"
)

// guardedPage maps [PROT_NONE page | data page | PROT_NONE page] and
// returns the data page; any access outside it faults.
func guardedPage(t *testing.T) []byte {
	t.Helper()
	ps := syscall.Getpagesize()
	m, err := syscall.Mmap(-1, 0, 3*ps, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(m) })
	if err := syscall.Mprotect(m[:ps], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mprotect(m[2*ps:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	return m[ps : 2*ps : 2*ps]
}

// TestKernelGuardPages runs every kernel of every path with dst and src
// ending exactly at a page followed by an inaccessible page (and starting
// exactly after one), for all lengths 0..260: an over-read or over-write
// faults the test binary.
func TestKernelGuardPages(t *testing.T) {
	dpage, spage := guardedPage(t), guardedPage(t)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, p := range allKernelPaths() {
		for _, dt := range DataTypes() {
			es := dt.Size()
			for _, op := range Ops() {
				k := p.table[dt][op]
				for n := 0; n <= 260; n++ {
					b := n * es
					for _, at := range []string{"end", "start"} {
						var d, s []byte
						if at == "end" {
							d, s = dpage[len(dpage)-b:], spage[len(spage)-b:]
						} else {
							d, s = dpage[:b:b], spage[:b:b]
						}
						fillSpecial(rng, dt, d)
						fillSpecial(rng, dt, s)
						want := append([]byte(nil), d...)
						genericTable[dt][op](want, append([]byte(nil), s...))
						d0 := append([]byte(nil), d...)
						k(d, s)
						if e := firstMismatch(dt, op, d, want, d0, s); e >= 0 {
							t.Fatalf("%v/%v/%s n=%d at page %s: element %d differs", dt, op, p.name, n, at, e)
						}
					}
				}
			}
		}
	}
}

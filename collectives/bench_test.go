package collectives

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sealring/sealring/transport"
)

// BenchmarkAllReduce runs float32 AllReduce over the in-process fake Conn
// (rendezvous copies for messages above 4 KiB): it measures the
// algorithms' own cost (reduction kernels, copies, scheduling) without a
// network. MB/s is the algorithm bandwidth; busbw-GB/s the nccl-tests bus
// bandwidth.
func BenchmarkAllReduce(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, size := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20} {
			for _, algo := range allAlgos {
				b.Run(fmt.Sprintf("n=%d/%s/%v", n, sizeName(size), algo), func(b *testing.B) {
					cs, _ := world(b, n, Options{Algorithm: algo}, nil)
					bufs := make([][]float32, n)
					for r := range bufs {
						bufs[r] = make([]float32, size/4)
					}
					ctx := context.Background()
					b.SetBytes(int64(size))
					b.ResetTimer()
					for b.Loop() {
						for r, err := range run(cs, func(r int, c *Communicator) error {
							return AllReduce(ctx, c, nil, bufs[r], Sum)
						}) {
							if err != nil {
								b.Fatalf("rank %d: %v", r, err)
							}
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(BusBandwidth(KindAllReduce, int64(size), sec, n)/1e9, "busbw-GB/s")
				})
			}
		}
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkAllReduceTransport runs float32 AllReduce over encrypted
// transport endpoints on the in-memory wire: the whole stack in one
// process (ranks share the machine's cores).
func BenchmarkAllReduceTransport(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, size := range []int{64 << 10, 1 << 20, 16 << 20} {
			for _, algo := range allAlgos {
				b.Run(fmt.Sprintf("n=%d/%s/%v", n, sizeName(size), algo), func(b *testing.B) {
					cs, _ := endpointWorld(b, n, Options{Algorithm: algo}, 0)
					bufs := make([][]float32, n)
					for r := range bufs {
						bufs[r] = make([]float32, size/4)
					}
					ctx := context.Background()
					b.SetBytes(int64(size))
					b.ResetTimer()
					for b.Loop() {
						for r, err := range run(cs, func(r int, c *Communicator) error {
							return AllReduce(ctx, c, nil, bufs[r], Sum)
						}) {
							if err != nil {
								b.Fatalf("rank %d: %v", r, err)
							}
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(BusBandwidth(KindAllReduce, int64(size), sec, n)/1e9, "busbw-GB/s")
				})
			}
		}
	}
}

// BenchmarkAllReduceOutOfPlace is BenchmarkAllReduce with separate send
// and receive buffers on power-of-two rank counts: every algorithm reads
// its input from the send buffer and receives straight into recv.
func BenchmarkAllReduceOutOfPlace(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, size := range []int{64 << 10, 1 << 20, 4 << 20} {
			for _, algo := range []Algorithm{RecursiveDoubling, Rabenseifner, Ring} {
				if algo == Rabenseifner && n == 2 {
					continue // the ring's exchanges, unpipelined
				}
				b.Run(fmt.Sprintf("n=%d/%s/%v", n, sizeName(size), algo), func(b *testing.B) {
					benchOutOfPlace(b, n, size, algo)
				})
			}
		}
	}
}

func benchOutOfPlace(b *testing.B, n, size int, algo Algorithm) {
	cs, _ := world(b, n, Options{Algorithm: algo}, nil)
	send, recv := make([][]float32, n), make([][]float32, n)
	for r := range n {
		send[r], recv[r] = make([]float32, size/4), make([]float32, size/4)
	}
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		for r, err := range run(cs, func(r int, c *Communicator) error {
			return AllReduce(ctx, c, send[r], recv[r], Sum)
		}) {
			if err != nil {
				b.Fatalf("rank %d: %v", r, err)
			}
		}
	}
}

// BenchmarkAllReduceLatency runs back-to-back small float32 AllReduces over
// encrypted transport endpoints on the in-memory wire, with
// Config.LocalCompletion as bench/allreduce runs it, each rank looping in
// its own goroutine for the whole benchmark: the per-collective cost of
// the stack above the kernel. allocs/op and B/op are the sums over all
// ranks for one collective.
func BenchmarkAllReduceLatency(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, size := range []int{8, 1024} {
			b.Run(fmt.Sprintf("n=%d/%s", n, sizeName(size)), func(b *testing.B) {
				cs, _ := endpointWorldWith(b, n, Options{}, func(cfg *transport.Config) { cfg.LocalCompletion = true })
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				bufs := make([][]float32, n)
				for r := range bufs {
					bufs[r] = make([]float32, size/4)
				}
				// Warm the pools and caches before measuring.
				for _, err := range run(cs, func(r int, c *Communicator) error {
					for range 100 {
						if err := AllReduce(ctx, c, nil, bufs[r], Sum); err != nil {
							return err
						}
					}
					return nil
				}) {
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				iters := b.N
				for r, err := range run(cs, func(r int, c *Communicator) error {
					for range iters {
						if err := AllReduce(ctx, c, nil, bufs[r], Sum); err != nil {
							return err
						}
					}
					return nil
				}) {
					if err != nil {
						b.Fatalf("rank %d: %v", r, err)
					}
				}
			})
		}
	}
}

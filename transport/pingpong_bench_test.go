package transport

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPingPong is an 8-byte ping-pong between two endpoints: one
// op is a round trip (blocking Send then Recv on one side, Recv then Send
// on the other).
func BenchmarkPingPong(b *testing.B) {
	for _, kind := range kinds() {
		for _, mode := range []string{"sealed", "insecure"} {
			b.Run(fmt.Sprintf("%s/%s", kind, mode), func(b *testing.B) {
				c := newCluster(b, kind, 2, func(cfg *Config) { cfg.Insecure = mode == "insecure" }, nil)
				x, y := c.eps[0], c.eps[1]
				ctx := context.Background()
				n := b.N
				errc := make(chan error, 1)
				go func() {
					buf := make([]byte, 8)
					for range n {
						if _, err := y.Recv(ctx, 0, 1, ^uint64(0), buf); err != nil {
							errc <- err
							return
						}
						if err := y.Send(ctx, 0, 1, buf); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				msg, buf := make([]byte, 8), make([]byte, 8)
				b.ReportAllocs()
				b.ResetTimer()
				for range n {
					if err := x.Send(ctx, 1, 1, msg); err != nil {
						b.Fatal(err)
					}
					if _, err := x.Recv(ctx, 1, 1, ^uint64(0), buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				sx, sy := x.Stats(), y.Stats()
				b.ReportMetric(float64(sx.PacketsSent+sy.PacketsSent)/float64(n), "pkts/op")
			})
		}
	}
}

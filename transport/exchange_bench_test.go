package transport

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkExchange: two ranks swap a message at once, as a collective's
// step does (each posts its receive, sends, and waits for both), beside
// the same message sent one way at a time. An exchange moves twice the
// bytes; on two cores it should take about as long as a one-way transfer.
func BenchmarkExchange(b *testing.B) {
	for _, kind := range []string{"udp"} {
		for _, size := range []int{65536, 1 << 20, 8 << 20} {
			for _, mode := range []string{"oneway", "exchange"} {
				b.Run(fmt.Sprintf("%s/%s/%d", kind, mode, size), func(b *testing.B) {
					c := newCluster(b, kind, 2, nil, nil)
					ctx := context.Background()
					run := func(me, peer *Endpoint, send bool, recv bool, n int) error {
						msg := make([]byte, size)
						buf := make([]byte, size)
						for range n {
							var rq *Request
							if recv {
								rq = me.RecvAsync(ctx, peer.rank, 1, ^uint64(0), buf)
							}
							if send {
								if err := me.Send(ctx, peer.rank, 1, msg); err != nil {
									return err
								}
							}
							if rq != nil {
								if _, err := rq.Wait(ctx); err != nil {
									return err
								}
							}
						}
						return nil
					}
					x, y := c.eps[0], c.eps[1]
					b.SetBytes(int64(size))
					b.ResetTimer()
					errc := make(chan error, 1)
					go func() { errc <- run(y, x, mode == "exchange", true, b.N) }()
					if err := run(x, y, true, mode == "exchange", b.N); err != nil {
						b.Fatal(err)
					}
					if err := <-errc; err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					s := x.Stats()
					b.ReportMetric(float64(s.Retransmits), "retx")
				})
			}
		}
	}
}

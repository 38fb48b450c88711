package transport

import (
	"context"
	"fmt"
	"testing"
)

// TestSteadyStateAllocs checks that small messages cost ~0 allocations
// once pools are warm (the receive is posted before the send, and also
// the unexpected path).
func TestSteadyStateAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, insecure := range []bool{false, true} {
		c := newCluster(t, "mem", 2, func(cfg *Config) { cfg.Insecure = insecure }, nil)
		a, b := c.eps[0], c.eps[1]
		ctx := context.Background()
		msg := make([]byte, 64)
		buf := make([]byte, 64)
		stop := make(chan struct{})
		recvd := make(chan struct{}, 1)
		go func() {
			for {
				if _, err := b.Recv(ctx, 0, 1, ^uint64(0), buf); err != nil {
					return
				}
				select {
				case recvd <- struct{}{}:
				case <-stop:
					return
				}
			}
		}()
		round := func() {
			if err := a.Send(ctx, 1, 1, msg); err != nil {
				t.Fatal(err)
			}
			<-recvd
		}
		// Warm up pools, and the mem wire's 4096 receive slots (each
		// allocates on first use).
		for range 5000 {
			round()
		}
		n := testing.AllocsPerRun(2000, round)
		close(stop)
		t.Logf("insecure=%v: %.3f allocations per message (1 data packet + 1 ACK)", insecure, n)
		if n > 0.5 {
			t.Errorf("insecure=%v: %.2f allocations per message", insecure, n)
		}
		c.close()
	}
}

func BenchmarkSendRecv(b *testing.B) {
	for _, kind := range kinds() {
		for _, mode := range []string{"sealed", "insecure"} {
			for _, size := range []int{8, 1400, 65536, 1 << 20} {
				b.Run(fmt.Sprintf("%s/%s/%d", kind, mode, size), func(b *testing.B) {
					benchSendRecv(b, kind, mode == "insecure", size)
				})
			}
		}
	}
}

// benchSendRecv streams messages from rank 0 to rank 1 with up to 16
// sends in flight and a receive always posted.
func benchSendRecv(b *testing.B, kind string, insecure bool, size int) {
	c := newCluster(b, kind, 2, func(cfg *Config) { cfg.Insecure = insecure }, nil)
	a, r := c.eps[0], c.eps[1]
	ctx := context.Background()
	msg := make([]byte, size)
	errc := make(chan error, 1)
	n := b.N
	go func() {
		buf := make([]byte, size)
		for range n {
			if _, err := r.Recv(ctx, 0, 1, ^uint64(0), buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	const depth = 16
	var reqs [depth]*Request
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range n {
		if q := reqs[i%depth]; q != nil {
			if _, err := q.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		reqs[i%depth] = a.SendAsync(ctx, 1, 1, msg)
	}
	for _, q := range reqs {
		if q != nil {
			if _, err := q.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	s := a.Stats()
	b.ReportMetric(float64(s.Retransmits)/float64(max(s.PacketsSent, 1))*100, "%retx")
}

package wire_test

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/transport/wire"
)

// BenchmarkUDP measures loopback throughput of one sender goroutine (the
// benchmark's) and one receiver goroutine; one op is one datagram, so the
// MB/s column is payload bytes. The sender keeps at most `window`
// datagrams ahead of the receiver so that the socket buffer never
// overflows; datagrams lost anyway (no progress for 500 ms) are reported
// in the "lost" column and not waited for.
func BenchmarkUDP(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  wire.UDPConfig
	}{
		{"gso+gro", wire.UDPConfig{}},
		{"nogso", wire.UDPConfig{DisableGSO: true}},
		{"nogro", wire.UDPConfig{DisableGRO: true}},
		{"nommsg", wire.UDPConfig{DisableMMsg: true}},
	} {
		for _, size := range []int{1400} {
			b.Run(c.name+"/"+strconv.Itoa(size), func(b *testing.B) { benchUDP(b, c.cfg, size) })
		}
	}
}

func benchUDP(b *testing.B, cfg wire.UDPConfig, size int) {
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	tx := listen(b, "udp4", lo, cfg)
	rx := listen(b, "udp4", lo, cfg)
	const window = 2048
	var received atomic.Int64
	progress := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		msgs := make([]wire.Message, rx.BatchSize())
		for {
			n, err := rx.ReadBatch(msgs)
			if err != nil {
				return
			}
			received.Add(int64(n))
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}()
	batch := tx.BatchSize()
	msgs := wiretest.Msgs(rx.LocalAddr(), 0, wiretest.Repeat(size, batch)...)
	total := int64(b.N)
	var sent, lost int64
	// waitFor blocks until received+lost >= target, declaring the
	// difference lost after 500 ms without progress.
	waitFor := func(target int64) {
		for received.Load()+lost < target {
			select {
			case <-progress:
			case <-time.After(500 * time.Millisecond):
				if r := received.Load(); r+lost < target {
					lost = sent - r
				}
			}
		}
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for sent < total {
		k := min(int64(batch), total-sent)
		waitFor(sent + k - window)
		n, err := tx.WriteBatch(msgs[:k])
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	waitFor(total)
	b.StopTimer()
	b.ReportMetric(float64(lost), "lost")
	s := tx.Stats()
	b.ReportMetric(float64(total)/float64(max(s.SendSyscalls, 1)), "dgrams/sendcall")
	r := rx.Stats()
	b.ReportMetric(float64(received.Load())/float64(max(r.RecvSyscalls, 1)), "dgrams/recvcall")
	rx.Close()
	<-done
}

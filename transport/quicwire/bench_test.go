package quicwire_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/quicwire"
	"github.com/sealring/sealring/transport/wire"
)

// The benchmarks compare, in one run on loopback:
//
//   - Raw: quic-go alone, one connection, a bare SendDatagram loop against
//     a ReceiveDatagram loop, datagrams of the largest size the connection
//     takes (the baseline; MB/s counts datagrams delivered, %loss those
//     quic-go's 128-datagram receive queue dropped);
//   - Wire: the same through quicwire's WriteBatch/ReadBatch;
//   - Transport: sealring messages (sealed, and insecure for reference)
//     over the QUIC wire, 16 sends in flight; MB/s is message payload.
//
// go test -run '^$' -bench . -benchtime 3s -count 5 ./transport/quicwire/

func BenchmarkQUIC(b *testing.B) {
	b.Run("raw", func(b *testing.B) { benchRaw(b, 1) })
	b.Run("raw-2senders", func(b *testing.B) { benchRaw(b, 2) })
	b.Run("wire", benchWire)
	for _, mode := range []string{"sealed", "insecure"} {
		for _, size := range []int{64 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("transport/%s/%s", mode, sizeName(size)), func(b *testing.B) {
				benchTransport(b, mode == "insecure", size)
			})
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// rawPair connects two quic-go endpoints configured as quicwire
// configures its connections, with the job's TLS credentials.
func rawPair(b *testing.B) (client, server *quic.Conn) {
	ca := newCA(b)
	sc, cc := issue(b, ca, 0), issue(b, ca, 1)
	qconf := &quic.Config{
		EnableDatagrams:         true,
		InitialPacketSize:       quicwire.DefaultPacketSize,
		DisablePathMTUDiscovery: true,
		MaxIdleTimeout:          30 * time.Second,
	}
	stls := sc.ServerTLSConfig()
	stls.NextProtos = []string{quicwire.ALPN}
	ctls := cc.ClientTLSConfig()
	ctls.NextProtos = []string{quicwire.ALPN}
	ln, err := quic.ListenAddr("127.0.0.1:0", stls, qconf)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	ctx := context.Background()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = quic.DialAddr(ctx, ln.Addr().String(), ctls, qconf)
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() {
		client.CloseWithError(0, "")
		server.CloseWithError(0, "")
	})
	return client, server
}

// benchRaw: one op is one datagram sent, by one goroutine (the bare loop)
// or split between several.
func benchRaw(b *testing.B, senders int) {
	client, server := rawPair(b)
	if !client.ConnectionState().GSO {
		b.Log("quic-go does not use GSO here")
	}
	// The largest datagram the connection takes.
	size := 1452
	for ; size > 0; size-- {
		var tl *quic.DatagramTooLargeError
		if err := client.SendDatagram(make([]byte, size)); !errors.As(err, &tl) {
			break
		}
	}
	var got, bytes atomic.Int64
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			d, err := server.ReceiveDatagram(rctx)
			if err != nil {
				return
			}
			got.Add(1)
			bytes.Add(int64(len(d)))
		}
	}()
	time.Sleep(50 * time.Millisecond)
	got.Store(0)
	bytes.Store(0)
	p := make([]byte, size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < b.N; i += senders {
				if err := client.SendDatagram(p); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Wait for the tail to arrive (or be dropped).
	last := got.Load()
	for {
		time.Sleep(10 * time.Millisecond)
		if g := got.Load(); g == last || g >= int64(b.N) {
			break
		} else {
			last = g
		}
	}
	el := time.Since(start)
	b.StopTimer()
	stop()
	<-done
	b.ReportMetric(float64(bytes.Load())/el.Seconds()/1e6, "MB/s")
	b.ReportMetric(100*(1-float64(got.Load())/float64(b.N)), "%loss")
	b.ReportMetric(float64(size), "B/dgram")
}

// benchWire: one op is one datagram of MaxPayload bytes through
// WriteBatch, in batches of 32.
func benchWire(b *testing.B) {
	ca := newCA(b)
	a := listen(b, loopback, quicwire.Config{Credentials: issue(b, ca, 0)})
	r := listen(b, loopback, quicwire.Config{Credentials: issue(b, ca, 1)})
	size := a.MaxPayload()
	var got, bytes atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		msgs := make([]wire.Message, r.BatchSize())
		for {
			n, err := r.ReadBatch(msgs)
			if err != nil {
				return
			}
			got.Add(int64(n))
			for _, m := range msgs[:n] {
				bytes.Add(int64(len(m.Buf)))
			}
		}
	}()
	// Connect first.
	for got.Load() == 0 {
		a.WriteBatch(wiretest.Msgs(r.LocalAddr(), 0, 1))
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	got.Store(0)
	bytes.Store(0)
	const batch = 32
	msgs := make([]wire.Message, batch)
	for i := range msgs {
		msgs[i] = wire.Message{Buf: make([]byte, size), Addr: r.LocalAddr()}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += batch {
		if _, err := a.WriteBatch(msgs[:min(batch, b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
	last := got.Load()
	for {
		time.Sleep(10 * time.Millisecond)
		if g := got.Load(); g == last || g >= int64(b.N) {
			break
		} else {
			last = g
		}
	}
	el := time.Since(start)
	b.StopTimer()
	r.Close()
	<-done
	b.ReportMetric(float64(bytes.Load())/el.Seconds()/1e6, "MB/s")
	b.ReportMetric(100*(1-float64(got.Load())/float64(b.N)), "%loss")
	b.ReportMetric(float64(size), "B/dgram")
}

func benchGroup(b *testing.B) *secure.Group {
	cfg := secure.GroupConfig{ID: make([]byte, 16), Epoch: 1}
	for i := range cfg.ID {
		cfg.ID[i] = byte(i + 1)
	}
	for l := range 3 {
		for gen := range 2 {
			k := secure.RootKey{Gen: uint8(gen)}
			for i := range k.Key {
				k.Key[i] = byte(l*16 + i*7 + gen*31)
			}
			if gen == 0 {
				cfg.Keys[l].Current = k
			} else {
				cfg.Keys[l].Next = k
			}
		}
	}
	g, err := secure.NewGroup(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// benchTransport streams size-byte messages from rank 0 to rank 1 over
// QUIC wires, 16 sends in flight and a receive always posted (as the
// transport's own BenchmarkSendRecv).
func benchTransport(b *testing.B, insecure bool, size int) {
	ca := newCA(b)
	g := benchGroup(b)
	var eps [2]*transport.Endpoint
	for i := range eps {
		w, err := quicwire.Listen(loopback, quicwire.Config{Credentials: issue(b, ca, i)})
		if err != nil {
			b.Fatal(err)
		}
		ep, err := transport.New(transport.Config{Rank: uint32(i), Incarnation: 1, Wire: w, Group: g, Insecure: insecure})
		if err != nil {
			w.Close()
			b.Fatal(err)
		}
		b.Cleanup(func() { ep.Close() })
		eps[i] = ep
	}
	for _, x := range eps {
		for _, y := range eps {
			if err := x.AddPeer(y.Rank(), y.LocalAddr()); err != nil {
				b.Fatal(err)
			}
		}
	}
	a, r := eps[0], eps[1]
	ctx := context.Background()
	msg := make([]byte, size)
	// Warm up: connection, windows.
	n := b.N + 4
	errc := make(chan error, 1)
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
	for range 4 {
		if err := a.Send(ctx, 1, 1, msg); err != nil {
			b.Fatal(err)
		}
	}
	const depth = 16
	var reqs [depth]*transport.Request
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
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

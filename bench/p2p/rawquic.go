package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/transport/quicwire"
)

// RawQUIC is the baseline of -wire quic: quic-go alone, one connection, a
// bare SendDatagram loop against a ReceiveDatagram loop, with datagrams of
// the largest size the connection takes and the same TLS and QUIC settings
// as the QUIC wire.
type RawQUIC struct {
	Kind      string  `json:"kind"` // "raw-quic"
	Datagram  int     `json:"datagram_bytes"`
	Sent      int     `json:"sent"`
	Delivered int64   `json:"delivered"`
	GBps      float64 `json:"gbps"` // delivered bytes per second, 1e9
}

// measureRawQUIC sends count datagrams and measures what arrives.
func measureRawQUIC(ctx context.Context, count int) (RawQUIC, error) {
	r := RawQUIC{Kind: "raw-quic", Sent: count}
	ca, err := rendezvous.NewJobCA()
	if err != nil {
		return r, err
	}
	sc, err := ca.Issue("rank", 0)
	if err != nil {
		return r, err
	}
	cc, err := ca.Issue("rank", 1)
	if err != nil {
		return r, err
	}
	qconf := &quic.Config{EnableDatagrams: true, InitialPacketSize: quicwire.DefaultPacketSize,
		DisablePathMTUDiscovery: true, MaxIdleTimeout: 30 * time.Second}
	stls, ctls := sc.ServerTLSConfig(), cc.ClientTLSConfig()
	stls.NextProtos, ctls.NextProtos = []string{quicwire.ALPN}, []string{quicwire.ALPN}
	ln, err := quic.ListenAddr("127.0.0.1:0", stls, qconf)
	if err != nil {
		return r, err
	}
	defer ln.Close()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := quic.DialAddr(ctx, ln.Addr().String(), ctls, qconf)
	if err != nil {
		return r, err
	}
	defer client.CloseWithError(0, "")
	server, ok := <-accepted
	if !ok {
		return r, errors.New("raw quic: accept failed")
	}
	defer server.CloseWithError(0, "")
	size := 1452
	for ; size > 0; size-- {
		var tl *quic.DatagramTooLargeError
		if err := client.SendDatagram(make([]byte, size)); !errors.As(err, &tl) {
			break
		}
	}
	r.Datagram = size
	var got, bytes atomic.Int64
	rctx, stop := context.WithCancel(ctx)
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
	start := time.Now()
	for range count {
		if err := client.SendDatagram(p); err != nil {
			stop()
			<-done
			return r, fmt.Errorf("raw quic: %w", err)
		}
	}
	last := got.Load()
	for { // wait for the tail to arrive (or be dropped)
		time.Sleep(10 * time.Millisecond)
		if g := got.Load(); g == last || g >= int64(count) {
			break
		} else {
			last = g
		}
	}
	el := time.Since(start)
	stop()
	<-done
	r.Delivered = got.Load()
	r.GBps = float64(bytes.Load()) / el.Seconds() / 1e9
	return r, nil
}

// printRawQUIC prints the baseline and the ratio of the sealed rows to it.
func printRawQUIC(w io.Writer, raw RawQUIC, res Results) {
	fmt.Fprintf(w, "#\n# quic-go raw datagram baseline (same run): %.4f GB/s delivered, %d-byte datagrams, %.1f %% of %d dropped at its receive queue\n",
		raw.GBps, raw.Datagram, 100*(1-float64(raw.Delivered)/float64(raw.Sent)), raw.Sent)
	for _, b := range res.BW {
		if b.Row == "sealed" && b.Size >= 64<<10 && raw.GBps > 0 {
			fmt.Fprintf(w, "#   sealed %d B messages over the QUIC wire: %.2fx the raw datagram throughput\n", b.Size, b.GBps/raw.GBps)
		}
	}
}

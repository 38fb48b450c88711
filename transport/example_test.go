package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/sealring/sealring/transport"
	"github.com/sealring/sealring/transport/wire"
)

// Rank 1 registers a buffer and sends its key to rank 0, which writes into
// it with Put and reads it back with Get, without rank 1 posting a receive
// for the data.
func ExampleEndpoint_Register() {
	ctx := context.Background()
	// Two ranks on an in-memory network. Insecure only to keep the example
	// short: a real job passes its Group (and a UDP or QUIC wire).
	nw := wire.NewMemNetwork()
	var eps [2]*transport.Endpoint
	for rank := range eps {
		w, _ := nw.Listen(netip.AddrPort{})
		ep, err := transport.New(transport.Config{Rank: uint32(rank), Incarnation: 1, Wire: w, Insecure: true})
		if err != nil {
			panic(err)
		}
		defer ep.Close()
		eps[rank] = ep
	}
	for _, a := range eps {
		for _, b := range eps {
			a.AddPeer(b.Rank(), b.LocalAddr())
		}
	}

	// Rank 1: register, and send the key.
	buf := make([]byte, 64)
	region, err := eps[1].Register(buf, transport.AccessRemoteRead|transport.AccessRemoteWrite)
	if err != nil {
		panic(err)
	}
	keyBytes, _ := region.Key().MarshalBinary()
	go eps[1].Send(ctx, 0, 7, keyBytes)

	// Rank 0: receive the key, write into the region, read it back.
	msg := make([]byte, transport.RemoteKeySize)
	eps[0].Recv(ctx, 1, 7, ^uint64(0), msg)
	var key transport.RemoteKey
	if err := key.UnmarshalBinary(msg); err != nil {
		panic(err)
	}
	if err := eps[0].Put(ctx, 1, key, 8, []byte("written remotely")); err != nil {
		panic(err)
	}
	got := make([]byte, 16)
	if err := eps[0].Get(ctx, 1, key, 8, got); err != nil {
		panic(err)
	}
	fmt.Printf("%s, %d-byte region of rank %d\n", got, key.Len(), key.Rank())

	// Out of bounds: refused before anything is sent.
	err = eps[0].Put(ctx, 1, key, 60, []byte("too long"))
	fmt.Println(errors.Is(err, transport.ErrOutOfBounds))

	// After Deregister, rank 1's buffer is its own again.
	eps[1].Deregister(region)
	err = eps[0].Get(ctx, 1, key, 0, got)
	fmt.Println(errors.Is(err, transport.ErrRegionNotFound))
	// Output:
	// written remotely, 64-byte region of rank 1
	// true
	// true
}

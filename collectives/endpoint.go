package collectives

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealring/sealring/transport"
)

// FromEndpoint adapts a transport Endpoint to a Conn. ranks[i] is the
// endpoint rank of communicator rank i; nil means communicator rank i is
// endpoint rank i. Every one of those ranks must have been added to ep with
// AddPeer. The Conn also receives from any source (for abort messages).
//
// A message whose length differs from the receive buffer fails the receive
// with an error wrapping ErrSizeMismatch (and, when it was longer,
// transport.ErrTruncated); the transport errors (ErrPeerUnreachable,
// ErrClosed, context errors) are passed through, wrapped.
func FromEndpoint(ep *transport.Endpoint, ranks []uint32) Conn {
	return &endpointConn{ep: ep, ranks: append([]uint32(nil), ranks...)}
}

type endpointConn struct {
	ep    *transport.Endpoint
	ranks []uint32
}

func (c *endpointConn) rank(peer int) uint32 {
	if c.ranks == nil {
		return uint32(peer)
	}
	if peer < 0 || peer >= len(c.ranks) {
		return transport.AnySource // rejected below
	}
	return c.ranks[peer]
}

func (c *endpointConn) Isend(ctx context.Context, peer int, tag uint64, buf []byte) Pending {
	r := c.rank(peer)
	if r == transport.AnySource {
		return failed(fmt.Errorf("%w: peer %d outside the rank map", ErrInvalid, peer))
	}
	return epSend{c.ep.SendAsync(ctx, r, tag, buf)}
}

func (c *endpointConn) IsendEager(ctx context.Context, peer int, tag uint64, buf []byte) Pending {
	r := c.rank(peer)
	if r == transport.AnySource {
		return failed(fmt.Errorf("%w: peer %d outside the rank map", ErrInvalid, peer))
	}
	return epSend{c.ep.SendAsyncWith(ctx, r, tag, buf, transport.SendOptions{Eager: true})}
}

func (c *endpointConn) Irecv(ctx context.Context, peer int, tag uint64, buf []byte) Pending {
	r := c.rank(peer)
	if r == transport.AnySource {
		return failed(fmt.Errorf("%w: peer %d outside the rank map", ErrInvalid, peer))
	}
	return &epRecv{c.ep.RecvAsync(ctx, r, tag, ^uint64(0), buf), len(buf)}
}

func (c *endpointConn) IrecvAny(ctx context.Context, tag uint64, buf []byte) Pending {
	return &epRecv{c.ep.RecvAsync(ctx, transport.AnySource, tag, ^uint64(0), buf), len(buf)}
}

// epSend is a value: holding one pointer, it fits in an interface without
// an allocation.
type epSend struct{ r *transport.Request }

func (p epSend) Wait(ctx context.Context) error {
	_, err := p.r.Wait(ctx)
	return err
}

type epRecv struct {
	r    *transport.Request
	want int
}

func (p *epRecv) Wait(ctx context.Context) error {
	st, err := p.r.Wait(ctx)
	switch {
	case errors.Is(err, transport.ErrTruncated):
		return fmt.Errorf("%w: message of %d bytes from endpoint rank %d, expected %d: %w", ErrSizeMismatch, st.Len, st.Source, p.want, err)
	case err != nil:
		return err
	case st.Len != p.want:
		return fmt.Errorf("%w: message of %d bytes from endpoint rank %d, expected %d", ErrSizeMismatch, st.Len, st.Source, p.want)
	}
	return nil
}

type failedPending struct{ err error }

func failed(err error) Pending                         { return failedPending{err} }
func (f failedPending) Wait(ctx context.Context) error { return f.err }

package transport

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// pbuf is a pooled packet buffer. A sealed packet waiting for its ACK is
// shared between the retransmission ring and any WriteBatch in progress,
// so it is reference counted: it returns to the pool when the last holder
// releases it.
type pbuf struct {
	b    []byte
	refs atomic.Int32
	pool *sync.Pool
	// A packet built for sealing from the sender's buffer (rendezvous
	// DATA): b holds the room for the security header and the clear
	// transport header (clear bytes), src the payload still in the
	// operation's buffer, op that operation. The pump clears them.
	src   []byte
	clear int
	op    *sendOp
}

func newPktPool(size int) *sync.Pool {
	p := &sync.Pool{}
	p.New = func() any { return &pbuf{b: make([]byte, 0, size), pool: p} }
	return p
}

// getPbuf returns a buffer with one reference.
func getPbuf(p *sync.Pool) *pbuf {
	b := p.Get().(*pbuf)
	b.b = b.b[:0]
	b.src, b.clear, b.op = nil, 0, nil
	b.refs.Store(1)
	return b
}

func (b *pbuf) ref() { b.refs.Add(1) }

func (b *pbuf) release() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		b.pool.Put(b)
	case n < 0:
		panic("transport: pbuf released twice")
	}
}

// ubuf is a pooled buffer for unexpected eager messages, in power-of-two
// size classes.
type ubuf struct {
	b     []byte
	class int
}

const (
	minUbufClass = 8  // 256 bytes
	maxUbufClass = 24 // 16 MiB; larger buffers are not pooled
)

var ubufPools [maxUbufClass + 1]sync.Pool

func getUbuf(n int) *ubuf {
	c := max(bits.Len(uint(max(n, 1)-1)), minUbufClass)
	if c > maxUbufClass {
		return &ubuf{b: make([]byte, n), class: -1}
	}
	if u, ok := ubufPools[c].Get().(*ubuf); ok {
		u.b = u.b[:n]
		return u
	}
	return &ubuf{b: make([]byte, n, 1<<c), class: c}
}

func putUbuf(u *ubuf) {
	if u == nil || u.class < 0 {
		return
	}
	ubufPools[u.class].Put(u)
}

package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/sealring/sealring/secure"
)

// packetSealer is what the codec needs of a *secure.Sealer (an interface so
// tests can make sealing fail).
type packetSealer interface {
	Seal(pkt []byte, hdrOff, clearLen int) ([]byte, error)
	SealFrom(pkt []byte, hdrOff, clearLen int, payload []byte) ([]byte, error)
	BumpEpoch() error
	Epoch() uint16
	HeaderLen() int
}

// codec seals and opens datagrams: a secure.Sealer/Opener pair, or the
// Insecure mode's plain rank ‖ incarnation prefix.
type codec struct {
	sealer packetSealer
	bumpMu sync.Mutex // one epoch bump per exhausted counter
	opener *secure.Opener
	id     uint64 // secure.SenderID(rank, incarnation)
	pre    int    // bytes before the transport header (security header or prefix)
	post   int    // bytes after the payload (GCM tag)
}

const insecurePrefix = 8

var errInsecureShort = errors.New("transport: datagram shorter than the insecure prefix")

func newCodec(cfg *Config) (*codec, error) {
	c := &codec{id: secure.SenderID(cfg.Rank, cfg.Incarnation)}
	if cfg.Insecure {
		c.pre = insecurePrefix
		return c, nil
	}
	s, err := secure.NewSealer(cfg.Group, secure.SealerConfig{ID: c.id})
	if err != nil {
		return nil, err
	}
	o, err := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{cfg.Group}, CacheCapacity: cfg.CacheCapacity})
	if err != nil {
		return nil, err
	}
	c.sealer, c.opener = s, o
	c.pre, c.post = s.HeaderLen(), secure.TagSize
	return c, nil
}

// overhead is the bytes the codec adds to a transport packet.
func (c *codec) overhead() int { return c.pre + c.post }

// seal seals pkt in place: pkt[:pre] is room for the security header (or
// prefix), pkt[pre:] the transport packet. cap(pkt) must leave room for
// the tag, so nothing allocates.
//
// When the sender's 48-bit counter is used up, seal moves the sender to the
// next epoch (a fresh data key) once, however many goroutines hit the limit
// together, and seals again. If sealing still fails, seal wipes pkt, so
// that the plaintext can never reach the wire (now or as a retransmission),
// and returns an error wrapping ErrSeal.
func (c *codec) seal(pkt []byte) ([]byte, error) {
	if c.sealer == nil {
		binary.BigEndian.PutUint64(pkt, c.id)
		return pkt, nil
	}
	return c.sealWith(pkt, 0, nil, false)
}

// sealFrom seals a packet whose transport header stays in clear
// (authenticated: the security header's COffset covers it) and whose
// payload is encrypted from src into the packet, without copying it in
// first: pkt[:pre] is room for the security header, pkt[pre:] the
// transport header (clearLen bytes, a multiple of 4). Only rendezvous DATA
// is sealed this way (docs/protocol.md §8.2). A secure codec only.
func (c *codec) sealFrom(pkt []byte, clearLen int, src []byte) ([]byte, error) {
	return c.sealWith(pkt, clearLen, src, true)
}

// sealClear seals pkt in place with its transport header (clearLen
// bytes) in clear, authenticated: a served Get's DATA, copied from the
// region. A secure codec only.
func (c *codec) sealClear(pkt []byte, clearLen int) ([]byte, error) {
	return c.sealWith(pkt, clearLen, nil, false)
}

func (c *codec) sealWith(pkt []byte, clearLen int, src []byte, from bool) ([]byte, error) {
	seal := func() ([]byte, error) {
		if from {
			return c.sealer.SealFrom(pkt, 0, clearLen, src)
		}
		return c.sealer.Seal(pkt, 0, clearLen)
	}
	epoch := c.sealer.Epoch()
	out, err := seal()
	if errors.Is(err, secure.ErrCounterExhausted) {
		c.bumpMu.Lock()
		if c.sealer.Epoch() == epoch {
			err = c.sealer.BumpEpoch()
		} else {
			err = nil
		}
		c.bumpMu.Unlock()
		if err == nil {
			out, err = seal()
		}
	}
	if err != nil {
		clear(pkt)
		return pkt, fmt.Errorf("%w: %w", ErrSeal, err)
	}
	return out, nil
}

// open authenticates and decrypts pkt in place and returns the sender's ID
// (rank ‖ incarnation) and the transport packet.
func (c *codec) open(pkt []byte) (uint64, []byte, error) {
	if c.opener == nil {
		if len(pkt) < insecurePrefix {
			return 0, nil, errInsecureShort
		}
		return binary.BigEndian.Uint64(pkt), pkt[insecurePrefix:], nil
	}
	r, err := c.opener.Open(pkt, 0)
	if err != nil {
		return 0, nil, err
	}
	return accept(&r, pkt)
}

// accept checks that an opened packet is sealed in sender mode without a
// prefix, and returns the sender's ID and the transport packet.
func accept(r *secure.Opened, pkt []byte) (uint64, []byte, error) {
	if r.Header.Mode != secure.ModeSender || len(r.Prefix) != 0 {
		return 0, nil, errNotSender
	}
	// A clear part (rendezvous DATA's transport header) and the payload,
	// decrypted in place, are contiguous: the transport packet.
	return r.Header.ID, pkt[r.HeaderLen : r.HeaderLen+len(r.Clear)+len(r.Payload)], nil
}

// openBatch opens the datagrams of ms in place, as open does one by one
// (Opener.OpenBatch: the keys of the packets a cache does not serve are
// derived two at a time); result then gives each one's sender and
// transport packet. ms[i].HdrOff must be 0.
func (c *codec) openBatch(ms []secure.Message) {
	if c.opener != nil {
		c.opener.OpenBatch(ms)
	}
}

// result is open's result for a message that went through openBatch.
func (c *codec) result(m *secure.Message) (uint64, []byte, error) {
	if c.opener == nil {
		return c.open(m.Packet)
	}
	if m.Err != nil {
		return 0, nil, m.Err
	}
	return accept(&m.Opened, m.Packet)
}

// peekClear reports whether pkt is sealed with a clear part after its
// security header (rendezvous DATA whose transport header is in clear), and
// returns, unauthenticated, the sender's ID and the clear part's bounds.
// Such a packet is opened by the receive goroutine under ep.mu, straight
// into the receive buffer when it can be (placeData).
func (c *codec) peekClear(pkt []byte) (id uint64, hdrLen, clearLen int, ok bool) {
	// COffset sits in bits 4..11 of the first word (docs/protocol.md §2):
	// the common case, no clear part, is decided without a full parse.
	if c.opener == nil || len(pkt) < 4 || binary.BigEndian.Uint32(pkt)>>4&0xff == 0 {
		return 0, 0, 0, false
	}
	h, n, err := secure.ParseHeader(pkt)
	if err != nil || h.COffset == 0 || h.IOffset != 0 || h.Mode != secure.ModeSender {
		return 0, 0, 0, false
	}
	return h.ID, n, int(h.COffset) * 4, true
}

var errNotSender = errors.New("transport: packet not sealed in sender mode without a prefix")

func (c *codec) cacheStats() secure.CacheStats {
	if c.opener == nil {
		return secure.CacheStats{}
	}
	return c.opener.CacheStats()
}

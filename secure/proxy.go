package secure

import (
	"fmt"
	"slices"
)

// Proxy re-encrypts packets from one trust group to another, in place: the
// draft's gateway (a DPU or switch at the edge of a trust domain, §2.4)
// that holds both domains' root keys and keeps no per-flow state.
//
// It opens with From, which must hold the source group, and seals with To,
// the gateway's own Sealer in the destination group: the gateway is a
// sender there with its own ID and counter, so nonce uniqueness in the
// destination group rests on the same argument as for any other sender.
// The original sender's header is returned to the caller, which may carry
// the identity onward in the payload if its protocol needs it.
type Proxy struct {
	From *Opener
	To   *Sealer
}

// Forward opens the packet whose header starts at pkt[hdrOff] with p.From
// and re-seals it, in place, with p.To. The cleartext prefix pkt[:hdrOff]
// and the COffset cleartext are carried over (and authenticated in the new
// group); the payload never leaves the buffer. If the destination header is
// longer than the source's, pkt needs that much spare capacity or Forward
// allocates. It returns the new packet and the source packet's header.
func (p *Proxy) Forward(pkt []byte, hdrOff int) ([]byte, Header, error) {
	r, err := p.From.Open(pkt, hdrOff)
	if err != nil {
		return pkt, r.Header, fmt.Errorf("secure: proxy: opening in the source group: %w", err)
	}
	body := len(r.Clear) + len(r.Payload)
	oldStart := hdrOff + r.HeaderLen
	newStart := hdrOff + p.To.HeaderLen()
	newLen := newStart + body
	if newLen+TagSize > cap(pkt) {
		pkt = slices.Grow(pkt[:len(pkt)], newLen+TagSize-len(pkt))
	}
	pkt = pkt[:max(len(pkt), newLen)]
	copy(pkt[newStart:newLen], pkt[oldStart:oldStart+body])
	out, err := p.To.Seal(pkt[:newLen], hdrOff, len(r.Clear))
	if err != nil {
		return pkt, r.Header, fmt.Errorf("secure: proxy: sealing in the destination group: %w", err)
	}
	return out, r.Header, nil
}

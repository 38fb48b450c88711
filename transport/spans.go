package transport

import "slices"

// spans is the set of byte ranges of a rendezvous message that have
// arrived: a prefix [0, prefix) plus the disjoint, sorted ranges that came
// ahead of it (out of order, after a loss). Rendezvous DATA may be
// decrypted straight into the receive buffer before it is authenticated
// (Opener.OpenTo writes, then checks the tag, and clears what it wrote on
// failure); the receiver does that only into ranges that have not arrived,
// so that a forged packet can never overwrite delivered bytes. In order,
// spans only moves prefix and allocates nothing.
type spans struct {
	prefix uint64
	extra  []span
}

type span struct{ lo, hi uint64 }

// overlaps reports whether [lo, hi) shares a byte with an arrived range.
func (s *spans) overlaps(lo, hi uint64) bool {
	if lo >= hi {
		return false
	}
	if lo < s.prefix {
		return true
	}
	for i := len(s.extra) - 1; i >= 0; i-- {
		if e := s.extra[i]; e.lo < hi {
			return e.hi > lo
		}
	}
	return false
}

// add records [lo, hi), which must not overlap an arrived range.
func (s *spans) add(lo, hi uint64) {
	if lo >= hi {
		return
	}
	if lo == s.prefix {
		s.prefix = hi
		n := 0
		for n < len(s.extra) && s.extra[n].lo == s.prefix {
			s.prefix = s.extra[n].hi
			n++
		}
		s.extra = slices.Delete(s.extra, 0, n)
		return
	}
	a := s.extra
	i := len(a)
	for i > 0 && a[i-1].lo >= hi {
		i--
	}
	left := i > 0 && a[i-1].hi == lo
	right := i < len(a) && a[i].lo == hi
	switch {
	case left && right:
		a[i-1].hi = a[i].hi
		a = slices.Delete(a, i, i+1)
	case left:
		a[i-1].hi = hi
	case right:
		a[i].lo = lo
	default:
		a = slices.Insert(a, i, span{lo, hi})
	}
	s.extra = a
}

// slot returns buf[off:off+n] if that range lies within [0, limit) and
// none of it has arrived, else nil: where a DATA fragment may land.
func (s *spans) slot(buf []byte, limit, off, n uint64) []byte {
	if off > limit || n > limit-off || s.overlaps(off, off+n) {
		return nil
	}
	return buf[off : off+n]
}

// place writes an authenticated DATA fragment at off in buf (unless it is
// already there: placed by placeData) and records it. It reports false,
// writing nothing, if the range leaves [0, limit) or shares a byte with
// what arrived (a sender sends each byte once; a retransmission reuses
// the PSN and is dropped before this).
func (s *spans) place(buf []byte, limit, off uint64, payload []byte) bool {
	n := uint64(len(payload))
	if n == 0 {
		return off <= limit
	}
	dst := s.slot(buf, limit, off, n)
	if dst == nil {
		return false
	}
	if &dst[0] != &payload[0] {
		copy(dst, payload)
	}
	s.add(off, off+n)
	return true
}

// reset forgets every range, keeping the storage.
func (s *spans) reset() { s.prefix, s.extra = 0, s.extra[:0] }

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

// reset forgets every range, keeping the storage.
func (s *spans) reset() { s.prefix, s.extra = 0, s.extra[:0] }

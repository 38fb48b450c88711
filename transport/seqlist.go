package transport

// seqLinks are the links an element of a seqList embeds.
type seqLinks[T any] struct {
	prev, next T
	inList     bool
}

// seqElem is what a seqList holds: a pointer type with embedded links and
// an order key.
type seqElem[T any] interface {
	comparable
	links() *seqLinks[T]
	order() uint64
}

// seqList is an intrusive doubly linked list kept in increasing order():
// posted receives in post order and unexpected messages in arrival order.
// Inserting scans from the tail, so appends (the common case) cost O(1).
type seqList[T seqElem[T]] struct{ head, tail T }

func (l *seqList[T]) insert(x T) {
	var none T
	xl := x.links()
	xl.inList = true
	at := l.tail
	for at != none && at.order() > x.order() {
		at = at.links().prev
	}
	xl.prev = at
	if at == none {
		xl.next = l.head
		l.head = x
	} else {
		xl.next = at.links().next
		at.links().next = x
	}
	if xl.next == none {
		l.tail = x
	} else {
		xl.next.links().prev = x
	}
}

// remove unlinks x; removing an element that is not in the list does nothing.
func (l *seqList[T]) remove(x T) {
	var none T
	xl := x.links()
	if !xl.inList {
		return
	}
	xl.inList = false
	if xl.prev == none {
		l.head = xl.next
	} else {
		xl.prev.links().next = xl.next
	}
	if xl.next == none {
		l.tail = xl.prev
	} else {
		xl.next.links().prev = xl.prev
	}
	xl.prev, xl.next = none, none
}

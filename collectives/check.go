package collectives

import (
	"fmt"
	"unsafe"
)

func checkTypeOp(dt DataType, op Op) error {
	if !dt.valid() {
		return fmt.Errorf("%w: data type %v", ErrInvalid, dt)
	}
	if !op.valid() {
		return fmt.Errorf("%w: op %v", ErrInvalid, op)
	}
	return nil
}

func checkRoot(root, n int) error {
	if root < 0 || root >= n {
		return fmt.Errorf("%w: root %d outside [0, %d)", ErrInvalid, root, n)
	}
	return nil
}

// sameBuf reports whether a and b are the same memory (same start and
// length).
func sameBuf(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b))
}

// overlap reports whether a and b share memory.
func overlap(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

// checkInPlace rejects send and recv that overlap without being the same
// buffer.
func checkInPlace(send, recv []byte) error {
	if send != nil && overlap(send, recv) && !sameBuf(send, recv) {
		return fmt.Errorf("%w: send and recv overlap partially", ErrInvalid)
	}
	return nil
}

//go:build linux

package wire

import "golang.org/x/sys/unix"

// ForceSendEAGAIN makes the wire's sendmmsg calls see a full socket buffer.
func ForceSendEAGAIN(u *UDP, on bool) { u.sys.forceSendEAGAIN.Store(on) }

// SetNoCheck sets SO_NO_CHECK, with which the kernel refuses GSO sends
// (EINVAL): a real refusal for the run-time fallback test.
func SetNoCheck(u *UDP) error {
	var serr error
	err := u.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// ReadSlots is how many datagrams the wire's last recvmmsg asked for. Only
// for a test that calls ReadBatch itself (no concurrent reader).
func ReadSlots(u *UDP) int { return u.sys.recv.vlen }

// OneProbe is how many single-datagram reads in a row may find data
// waiting before a batch read checks for a backlog.
const OneProbe = oneProbe

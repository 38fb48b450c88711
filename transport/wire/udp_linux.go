//go:build linux

package wire

import (
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxGSOSegments is the most segments in one UDP_SEGMENT send
	// (UDP_MAX_SEGMENTS was 64 before Linux 6.10, 128 after).
	maxGSOSegments = 64
	// maxGSOBytes4/6 bound the payload of one UDP_SEGMENT send: the IPv4
	// total length and the IPv6 payload length are 16-bit fields.
	maxGSOBytes4 = 65535 - 20 - 8
	maxGSOBytes6 = 65535 - 8

	// groSlots is how many receive slots the wire keeps with GRO on; each
	// holds one coalesced packet of up to groSlotSize bytes.
	groSlots    = 16
	groSlotSize = 65535

	sendCtrlSize = 24 // unix.CmsgSpace(2): one UDP_SEGMENT cmsg
	recvCtrlSize = 64 // room for a UDP_GRO cmsg (unix.CmsgSpace(4)) and spare
)

// udpSys is the Linux state of a UDP wire.
type udpSys struct {
	gsoOn  atomic.Bool
	gsoMu  sync.Mutex
	gsoErr error // why GSO was switched off at run time

	gro bool

	sendMu   sync.Mutex
	sendFree []*sendState // idle send states, reused by writers

	recv *recvState // owned by the one reading goroutine

	// forceSendEAGAIN makes sendmmsg look like a full socket buffer, so a
	// test can park a writer in the netpoller (loopback never fills it).
	forceSendEAGAIN atomic.Bool
}

// open configures the socket and decides which path the wire takes.
func (u *UDP) open(cfg *UDPConfig) error {
	var err error
	cerr := u.raw.Control(func(fd uintptr) {
		s := int(fd)
		var dom int
		if dom, err = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
			err = os.NewSyscallError("getsockopt SO_DOMAIN", err)
			return
		}
		u.v6 = dom == unix.AF_INET6
		if cfg.SocketBuffer > 0 {
			setBuffer(s, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, cfg.SocketBuffer)
			setBuffer(s, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, cfg.SocketBuffer)
		}
		u.feat.RecvBuffer, _ = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF)
		u.feat.SendBuffer, _ = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF)
		if cfg.DisableMMsg {
			return
		}
		// A kernel with UDP_SEGMENT (4.18+) answers this getsockopt.
		if !cfg.DisableGSO {
			if _, e := unix.GetsockoptInt(s, unix.SOL_UDP, unix.UDP_SEGMENT); e == nil {
				u.sys.gsoOn.Store(true)
			}
		}
		if !cfg.DisableGRO {
			u.sys.gro = unix.SetsockoptInt(s, unix.SOL_UDP, unix.UDP_GRO, 1) == nil
		}
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	if cfg.DisableMMsg {
		u.single = true
		return nil
	}
	u.feat.MMsg = true
	u.feat.GRO = u.sys.gro
	u.sys.recv = newRecvState(u)
	u.sys.sendFree = make([]*sendState, 0, 4)
	return nil
}

// setBuffer asks for size with the privileged option, then the capped one.
func setBuffer(fd, force, plain, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
}

func (u *UDP) gsoState() (bool, error) {
	if u.single {
		return false, nil
	}
	u.sys.gsoMu.Lock()
	defer u.sys.gsoMu.Unlock()
	return u.sys.gsoOn.Load(), u.sys.gsoErr
}

// disableGSO switches GSO off for good after the kernel refused a
// segmented send (EIO: no TX checksum offload on the route's device or an
// IPsec route; EINVAL: checksums off (SO_NO_CHECK) or a stack that refuses;
// EMSGSIZE: segment larger than the path MTU, which a plain send fragments).
func (u *UDP) disableGSO(err error) {
	u.sys.gsoMu.Lock()
	if u.sys.gsoOn.Load() {
		u.sys.gsoOn.Store(false)
		u.sys.gsoErr = err
	}
	u.sys.gsoMu.Unlock()
}

// ---- send ----

// sendState is one writer's preallocated sendmmsg arguments.
type sendState struct {
	u      *UDP
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	names  []unix.RawSockaddrInet6
	ctrl   []byte
	counts []int // datagrams carried by each hdr
	nhdr   int   // hdrs built
	niov   int   // iovecs built
	off    int   // hdrs sent so far
	calls  int   // successful sendmmsg (or sendto) calls in this send
	errno  unix.Errno
	write  func(fd uintptr) bool // bound once: no closure per call
}

func newSendState(u *UDP) *sendState {
	b := u.batchSize
	s := &sendState{
		u:      u,
		hdrs:   make([]unix.Mmsghdr, b),
		iovs:   make([]unix.Iovec, b),
		names:  make([]unix.RawSockaddrInet6, b),
		ctrl:   make([]byte, b*sendCtrlSize),
		counts: make([]int, b),
	}
	s.write = s.doWrite
	return s
}

func (u *UDP) getSendState() *sendState {
	u.sys.sendMu.Lock()
	if n := len(u.sys.sendFree); n > 0 {
		s := u.sys.sendFree[n-1]
		u.sys.sendFree = u.sys.sendFree[:n-1]
		u.sys.sendMu.Unlock()
		return s
	}
	u.sys.sendMu.Unlock()
	return newSendState(u)
}

// putSendState returns s for reuse. The free list grows to the largest
// number of concurrent writers seen, so steady state allocates nothing.
func (u *UDP) putSendState(s *sendState) {
	u.sys.sendMu.Lock()
	u.sys.sendFree = append(u.sys.sendFree, s)
	u.sys.sendMu.Unlock()
}

func (u *UDP) writeMMsg(msgs []Message) (int, error) {
	s := u.getSendState()
	defer u.putSendState(s)
	sent := 0
	for sent < len(msgs) {
		gso := u.sys.gsoOn.Load()
		built, berr := s.build(msgs[sent:], gso)
		if built > 0 {
			n, usedGSO, err := s.send()
			sent += n
			if err != nil {
				if usedGSO && (s.errno == unix.EIO || s.errno == unix.EINVAL || s.errno == unix.EMSGSIZE) {
					u.disableGSO(err)
					continue // resend the rest one datagram per message
				}
				return sent, err
			}
		}
		if berr != nil {
			return sent, berr
		}
	}
	return sent, nil
}

// build fills the mmsghdrs for a prefix of msgs and returns its length.
// With gso, a run of datagrams to one address, all of one length except a
// shorter last one, becomes one message with a UDP_SEGMENT cmsg; the
// datagrams are gathered by iovecs, not copied. A datagram that cannot be
// sent ends the prefix and is reported as the error.
func (s *sendState) build(msgs []Message, gso bool) (int, error) {
	u := s.u
	s.nhdr, s.niov = 0, 0
	i := 0
	for i < len(msgs) && s.nhdr < len(s.hdrs) && s.niov < len(s.iovs) {
		first := &msgs[i]
		size := len(first.Buf)
		if size > u.maxPayload {
			return i, ErrTooLarge
		}
		dst, err := u.sendAddr(first.Addr)
		if err != nil {
			return i, err
		}
		iov0 := s.niov
		s.setIov(first.Buf)
		i++
		nseg, total := 1, size
		if gso && size > 0 {
			limit := maxGSOBytes6
			if dst.Addr().Is4() || dst.Addr().Is4In6() {
				limit = maxGSOBytes4
			}
			for i < len(msgs) && s.niov < len(s.iovs) && nseg < maxGSOSegments {
				m := &msgs[i]
				l := len(m.Buf)
				if l == 0 || l > size || m.Addr != first.Addr || total+l > limit {
					break
				}
				s.setIov(m.Buf)
				i++
				nseg++
				total += l
				if l < size {
					break // a shorter datagram ends the run
				}
			}
		}
		j := s.nhdr
		h := &s.hdrs[j]
		h.Len = 0
		h.Hdr.Name = (*byte)(unsafe.Pointer(&s.names[j]))
		h.Hdr.Namelen = putSockaddr(&s.names[j], dst, u.v6)
		h.Hdr.Iov = &s.iovs[iov0]
		h.Hdr.SetIovlen(nseg)
		h.Hdr.Flags = 0
		if nseg > 1 {
			c := s.ctrl[j*sendCtrlSize : (j+1)*sendCtrlSize]
			ch := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			ch.Level = unix.SOL_UDP
			ch.Type = unix.UDP_SEGMENT
			ch.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(size)
			h.Hdr.Control = &c[0]
			h.Hdr.SetControllen(sendCtrlSize)
		} else {
			h.Hdr.Control = nil
			h.Hdr.Controllen = 0
		}
		s.counts[j] = nseg
		s.nhdr++
	}
	return i, nil
}

func (s *sendState) setIov(b []byte) {
	v := &s.iovs[s.niov]
	v.Base = unsafe.SliceData(b)
	v.SetLen(len(b))
	s.niov++
}

// send issues sendmmsg until every built hdr went out. It returns how many
// datagrams were sent and whether a failing hdr carried a GSO send.
func (s *sendState) send() (n int, usedGSO bool, err error) {
	s.off, s.calls, s.errno = 0, 0, 0
	werr := s.u.raw.Write(s.write)
	gso := 0
	for j := 0; j < s.off; j++ {
		n += s.counts[j]
		if s.counts[j] > 1 {
			gso++
		}
	}
	s.u.sendCalls.Add(uint64(s.calls))
	if gso > 0 {
		s.u.gsoSends.Add(uint64(gso))
	}
	// Drop references to the caller's buffers.
	for j := 0; j < s.niov; j++ {
		s.iovs[j].Base = nil
	}
	switch {
	case werr != nil:
		return n, false, mapErr(werr)
	case s.errno != 0:
		call := "sendmmsg"
		if s.single(s.off) {
			call = "sendto"
		}
		return n, s.counts[s.off] > 1, os.NewSyscallError(call, s.errno)
	}
	return n, false, nil
}

// doWrite runs inside RawConn.Write; returning false waits for the socket
// to become writable in the netpoller.
//
// The socket is non-blocking, so sendto and sendmmsg never sleep: they are
// made with RawSyscall6, which skips the runtime's entersyscall and
// exitsyscall. Those are not free here. entersyscall wakes the sysmon
// thread whenever it has gone to sleep on an idle process (a futex wake,
// and an inter-processor interrupt to a halted vCPU on a VM), and a call
// longer than sysmon's 20 µs tick (a 64 KiB GSO send that delivers into
// the peer's socket) gets its P retaken and handed to another thread,
// which exitsyscall must then win back; each retake also keeps sysmon
// polling every 20 µs. In a 2-rank 64 KiB allreduce this cost about a
// quarter of the run's time (docs/performance.md §7, "Session 14"). What
// RawSyscall gives up is the P hand-off during the call, which only helps
// a call that blocks.
func (s *sendState) doWrite(fd uintptr) bool {
	for s.off < s.nhdr {
		if s.u.sys.forceSendEAGAIN.Load() {
			return false
		}
		var r uintptr
		var e unix.Errno
		if s.single(s.off) {
			// One plain datagram (the common case of latency-bound
			// traffic): sendto skips sendmmsg's per-message header and
			// iovec import, ~0.2 µs of kernel time per datagram here
			// (docs/performance.md §7, "Session 12").
			h := &s.hdrs[s.off]
			iov := h.Hdr.Iov
			_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(iov.Base)),
				uintptr(iov.Len), 0, uintptr(unsafe.Pointer(h.Hdr.Name)), uintptr(h.Hdr.Namelen))
			r = 1
		} else {
			r, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
				uintptr(unsafe.Pointer(&s.hdrs[s.off])), uintptr(s.nhdr-s.off), 0, 0, 0)
		}
		switch e {
		case 0:
			s.off += int(r)
			s.calls++
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			s.errno = e
			return true
		}
	}
	return true
}

// single reports whether hdr j is the last one built and carries one
// datagram without a UDP_SEGMENT cmsg: doWrite sends it with sendto.
func (s *sendState) single(j int) bool {
	return j == s.nhdr-1 && s.counts[j] == 1
}

// putSockaddr writes ap as a sockaddr of the socket's family.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	port := ap.Port()
	if !v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa4.Addr = ap.Addr().As4()
		sa4.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	sa.Flowinfo = 0
	sa.Addr = ap.Addr().As16()
	sa.Scope_id = 0
	return unix.SizeofSockaddrInet6
}

// ---- receive ----

// recvState is the reader's preallocated recvmmsg arguments and buffers,
// and the cursor into datagrams received but not yet handed out.
type recvState struct {
	u        *UDP
	hdrs     []unix.Mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrInet6
	ctrl     []byte
	bufs     []byte // len(hdrs) slots of slotSize bytes
	slotSize int

	vlen  int // slots asked for by the current recvmmsg
	n     int // slots filled by the last recvmmsg
	slot  int // cursor: next slot to hand out
	off   int // cursor: offset in that slot
	errno unix.Errno
	read  func(fd uintptr) bool

	polling   bool      // doRead is in a BusyPoll window
	pollStart time.Time // when the window opened
	sparse    bool      // the last recvmmsg returned a few small datagrams
	waited    bool      // the current fill found the socket empty at least once
	one       bool      // latency-bound: fills ask for a single datagram (see fill)
	ahead     int       // single-datagram fills in a row that found data waiting
}

func newRecvState(u *UDP) *recvState {
	slots, size := u.batchSize, u.maxPayload
	if u.sys.gro {
		slots, size = min(u.batchSize, groSlots), groSlotSize
	}
	r := &recvState{
		u:        u,
		hdrs:     make([]unix.Mmsghdr, slots),
		iovs:     make([]unix.Iovec, slots),
		names:    make([]unix.RawSockaddrInet6, slots),
		ctrl:     make([]byte, slots*recvCtrlSize),
		bufs:     make([]byte, slots*size),
		slotSize: size,
	}
	for j := range r.hdrs {
		r.iovs[j].Base = &r.bufs[j*size]
		r.iovs[j].SetLen(size)
		h := &r.hdrs[j].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[j]))
		h.Iov = &r.iovs[j]
		h.SetIovlen(1)
	}
	r.read = r.doRead
	return r
}

func (u *UDP) readMMsg(msgs []Message) (int, error) {
	r := u.sys.recv
	for {
		if n := r.drain(msgs); n > 0 {
			return n, nil
		}
		if err := r.fill(len(msgs)); err != nil {
			return 0, err
		}
	}
}

// fill blocks until recvmmsg returns at least one slot. It overwrites every
// slot, so it runs only once all earlier datagrams were handed out.
//
// Latency-bound traffic is read one datagram per call: for each slot
// beyond the first that it cannot fill, recvmmsg still imports a message
// header and tries the queue, ~0.25 µs of kernel time per read here
// (docs/performance.md §7, "Session 12" and "Session 13"). A batch read
// that returns a single small datagram starts this; a read of more than
// one, or of a large one, ends it. A backlog of small datagrams would keep
// single reads busy at one datagram per call, so once oneProbe of them in
// a row found data already waiting, the next read asks for a whole batch
// again. A single read can therefore return one datagram while more are
// queued, which a caller taking "fewer than asked for" as "drained" sees
// as an early idle moment, at most oneProbe times per backlog.
func (r *recvState) fill(want int) error {
	r.vlen = min(want, len(r.hdrs))
	if r.one && r.ahead < oneProbe {
		r.vlen = 1
	}
	for j := 0; j < r.vlen; j++ {
		h := &r.hdrs[j]
		h.Len = 0
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		h.Hdr.Flags = 0
		if r.u.sys.gro {
			h.Hdr.Control = &r.ctrl[j*recvCtrlSize]
			h.Hdr.SetControllen(recvCtrlSize)
		}
	}
	r.n, r.slot, r.off, r.errno, r.waited = 0, 0, 0, 0, false
	if err := r.u.raw.Read(r.read); err != nil {
		return mapErr(err)
	}
	if r.errno != 0 {
		return mapErr(os.NewSyscallError("recvmmsg", r.errno))
	}
	r.u.recvCalls.Add(1)
	r.sparse = false
	if r.n <= sparseDatagrams {
		total := 0
		for j := 0; j < r.n; j++ {
			total += int(r.hdrs[j].Len)
		}
		r.sparse = total <= sparseBytes
	}
	switch {
	case r.n != 1 || int(r.hdrs[0].Len) > sparseBytes:
		r.one, r.ahead = false, 0
	case r.vlen > 1:
		r.one, r.ahead = true, 0
	case r.waited:
		r.ahead = 0
	default:
		r.ahead++
	}
	return nil
}

// oneProbe is how many single-datagram reads in a row may find data
// already waiting before a batch read checks for a backlog.
const oneProbe = 8

// A read that returns at most sparseDatagrams datagrams of at most
// sparseBytes in total marks the traffic as latency-bound (small messages
// and their acknowledgements), the only case in which UDPConfig.BusyPoll
// polls. Streaming traffic arrives in larger batches or GRO-coalesced
// slots and never polls, so the poller does not take CPU from sealing and
// copying.
const (
	sparseDatagrams = 4
	sparseBytes     = 4096
)

// doRead runs inside RawConn.Read; returning false waits for data in the
// netpoller. recvmmsg on the non-blocking socket is a RawSyscall6 for the
// reasons doWrite gives.
func (r *recvState) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.vlen), 0, 0, 0)
		switch e {
		case 0:
			r.n = int(n)
			r.polling = false
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			r.waited = true
			if r.poll() {
				continue
			}
			return false
		default:
			r.errno = e
			return true
		}
	}
}

// poll reports whether doRead should try again at once (UDPConfig.BusyPoll)
// rather than sleep in the netpoller; it yields the processor first. It
// polls only while the traffic is sparse (see sparseBytes).
func (r *recvState) poll() bool {
	u := r.u
	if u.busyPoll <= 0 || !r.sparse || u.noPoll.Load() || u.closed.Load() {
		r.polling = false
		return false
	}
	if !r.polling {
		r.polling, r.pollStart = true, time.Now()
	} else if time.Since(r.pollStart) >= u.busyPoll {
		r.polling = false
		return false
	}
	u.busyPolls.Add(1)
	// Yield to this process's other goroutines, and with BusyPollYield
	// to other processes (a peer rank sharing the core runs sooner, as
	// with MPI's yield-when-idle).
	runtime.Gosched()
	if u.pollYield {
		unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) // raw: see doWrite
	}
	return true
}

// drain hands out received datagrams from the cursor, splitting GRO slots
// into their segments; the Bufs point into the slots.
func (r *recvState) drain(msgs []Message) int {
	u := r.u
	k := 0
	for k < len(msgs) && r.slot < r.n {
		h := &r.hdrs[r.slot]
		total := int(h.Len)
		seg := total
		if u.sys.gro {
			if g := groSegSize(r.ctrl[r.slot*recvCtrlSize : r.slot*recvCtrlSize+int(h.Hdr.Controllen)]); g > 0 {
				seg = g
			}
		}
		if h.Hdr.Flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || seg > u.maxPayload {
			cnt := 1
			if seg > 0 {
				cnt = (total + seg - 1) / seg
			}
			u.recvDropped.Add(uint64(cnt))
			r.slot, r.off = r.slot+1, 0
			continue
		}
		if seg < total && r.off == 0 {
			u.groRecvs.Add(1)
		}
		addr := sockaddrAddrPort(&r.names[r.slot])
		base := r.slot * r.slotSize
		buf := r.bufs[base : base+total : base+total]
		if total == 0 {
			msgs[k] = Message{Buf: buf, Addr: addr}
			k++
		}
		for r.off < total && k < len(msgs) {
			end := min(r.off+seg, total)
			msgs[k] = Message{Buf: buf[r.off:end:end], Addr: addr}
			k++
			r.off = end
		}
		if r.off >= total {
			r.slot, r.off = r.slot+1, 0
		}
	}
	return k
}

// groSegSize returns the UDP_GRO segment size in a control buffer, or 0.
func groSegSize(c []byte) int {
	for len(c) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(c) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&c[unix.CmsgLen(0)])))
		}
		c = c[min(cmsgAlign(l), len(c)):]
	}
	return 0
}

func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// InputPending reports whether a datagram is queued on the socket, not yet
// read (SIOCINQ: the size of the first queued datagram; a queued 0-byte
// datagram reads as none). It implements InputPender.
func (u *UDP) InputPending() bool {
	pending := false
	_ = u.raw.Control(func(fd uintptr) {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		pending = err == nil && n > 0
	})
	return pending
}

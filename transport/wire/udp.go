package wire

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultSocketBuffer is the SO_RCVBUF/SO_SNDBUF size asked for when
// UDPConfig.SocketBuffer is zero.
const DefaultSocketBuffer = 8 << 20

// UDPConfig configures ListenUDP. The zero value is ready to use.
type UDPConfig struct {
	// MaxPayload is the largest datagram payload sent or accepted.
	// 0 means DefaultMaxPayload; at most MaxUDPPayload.
	MaxPayload int

	// SocketBuffer is the size asked for SO_RCVBUF and SO_SNDBUF.
	// 0 means DefaultSocketBuffer; negative leaves the kernel defaults.
	SocketBuffer int

	// BatchSize is the ideal batch length reported by BatchSize and the
	// most datagrams moved per system call. 0 means DefaultBatchSize.
	BatchSize int

	// DisableGSO turns off UDP_SEGMENT send offload (Linux).
	DisableGSO bool
	// DisableGRO turns off UDP_GRO receive offload (Linux).
	DisableGRO bool
	// DisableMMsg turns off sendmmsg/recvmmsg (Linux): one datagram per
	// system call, as on other systems. It implies DisableGSO and DisableGRO.
	DisableMMsg bool

	// BusyPoll is how long ReadBatch keeps polling an empty socket,
	// yielding the processor to other goroutines (and, with
	// BusyPollYield, to other processes) between tries, before it sleeps
	// in the netpoller (Linux, recvmmsg path). It removes the wake-up from the
	// latency of a message that arrives within the window, as the polling
	// progress engines of MPI libraries do, at the cost of keeping a core
	// busy while waiting. It polls only while traffic is sparse (the last
	// read returned a single small datagram), never while streaming, and
	// not while the wire's user expects bulk traffic (AllowBusyPoll(false):
	// the transport says so while a receive larger than 8 KiB is pending),
	// unless BusyPollBulk. With more runnable ranks than cores a poller
	// that does not yield (BusyPollYield) takes the core a peer needs,
	// which that rule limits to the latency-bound phases. 0 (the default)
	// never polls.
	BusyPoll time.Duration
	// BusyPollBulk keeps BusyPoll on through bulk phases (AllowBusyPoll
	// is ignored): measured better when every rank has a core of its own,
	// and, with BusyPollYield, when ranks outnumber cores.
	BusyPollBulk bool
	// BusyPollYield makes the poller also give up the CPU to other
	// processes (sched_yield) between tries. Ranks that share cores need
	// it: the peer whose message is awaited may need this core (4 ranks
	// on 2 cores measured several times the 8-byte allreduce latency
	// without it). Where every rank has a core it only costs a system
	// call per try and delays the pick-up (docs/performance.md §7,
	// "Session 14"), so it is off by default.
	BusyPollYield bool
}

// Features reports what a UDP wire is using.
type Features struct {
	MMsg bool // sendmmsg/recvmmsg batching
	GSO  bool // UDP_SEGMENT send offload (can turn off at run time)
	GRO  bool // UDP_GRO receive offload

	// GSOError is why GSO was switched off after the socket opened, if it
	// was (the kernel refused a segmented send).
	GSOError error

	// RecvBuffer and SendBuffer are the socket buffer sizes the kernel
	// reports (it doubles what was asked, for bookkeeping); 0 if unknown.
	RecvBuffer, SendBuffer int
}

// UDPStats counts events on a UDP wire.
type UDPStats struct {
	SendSyscalls uint64 // sendmmsg (or per-datagram send) calls that sent
	RecvSyscalls uint64 // recvmmsg (or per-datagram receive) calls that received
	GSOSends     uint64 // messages sent with UDP_SEGMENT carrying >1 datagram
	GROReceives  uint64 // received messages that GRO had coalesced from >1 datagram

	// RecvDropped counts received datagrams dropped because they were
	// longer than MaxPayload (or truncated by the receive buffer).
	RecvDropped uint64

	// BusyPolls counts empty receive attempts made while busy polling
	// (UDPConfig.BusyPoll).
	BusyPolls uint64
}

// UDP is a Wire over one UDP socket. Create it with ListenUDP.
type UDP struct {
	conn         *net.UDPConn
	raw          syscall.RawConn
	laddr        netip.AddrPort
	v6           bool // socket family is AF_INET6
	maxPayload   int
	batchSize    int
	busyPoll     time.Duration
	noPoll       atomic.Bool // AllowBusyPoll(false)
	busyPollBulk bool
	pollYield    bool // BusyPollYield

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	sendCalls, recvCalls atomic.Uint64
	gsoSends, groRecvs   atomic.Uint64
	recvDropped          atomic.Uint64
	busyPolls            atomic.Uint64
	feat                 Features // static part, set at open

	// single selects the one-datagram-per-syscall path.
	single bool
	rbuf   []byte // single path receive buffer, MaxPayload+1 bytes

	sys udpSys // platform state
}

var _ Wire = (*UDP)(nil)

// ListenUDP opens a UDP wire on laddr. network is "udp", "udp4" or "udp6";
// a zero laddr listens on every address with a system-chosen port.
func ListenUDP(network string, laddr netip.AddrPort, cfg UDPConfig) (*UDP, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("wire: ListenUDP: unknown network %q", network)
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.MaxPayload < 1 || cfg.MaxPayload > MaxUDPPayload {
		return nil, fmt.Errorf("wire: ListenUDP: MaxPayload %d out of range [1, %d]", cfg.MaxPayload, MaxUDPPayload)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.BatchSize < 1 {
		return nil, fmt.Errorf("wire: ListenUDP: BatchSize %d must be positive", cfg.BatchSize)
	}
	if cfg.SocketBuffer == 0 {
		cfg.SocketBuffer = DefaultSocketBuffer
	}
	if cfg.DisableMMsg {
		cfg.DisableGSO, cfg.DisableGRO = true, true
	}

	var ua *net.UDPAddr
	if laddr.IsValid() {
		ua = net.UDPAddrFromAddrPort(laddr)
	}
	conn, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("wire: %w", err)
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	u := &UDP{
		conn:         conn,
		raw:          raw,
		laddr:        netip.AddrPortFrom(local.Addr().Unmap(), local.Port()),
		maxPayload:   cfg.MaxPayload,
		batchSize:    cfg.BatchSize,
		busyPoll:     max(cfg.BusyPoll, 0),
		busyPollBulk: cfg.BusyPollBulk,
		pollYield:    cfg.BusyPollYield,
	}
	if err := u.open(&cfg); err != nil {
		conn.Close()
		return nil, fmt.Errorf("wire: ListenUDP: %w", err)
	}
	if u.single {
		u.rbuf = make([]byte, u.maxPayload+1)
	}
	return u, nil
}

// LocalAddr returns the address the socket is bound to.
func (u *UDP) LocalAddr() netip.AddrPort { return u.laddr }

// MaxPayload returns the configured largest payload.
func (u *UDP) MaxPayload() int { return u.maxPayload }

// BatchSize returns the ideal batch length.
func (u *UDP) BatchSize() int { return u.batchSize }

// AllowBusyPoll turns UDPConfig.BusyPoll off (false) and back on (true) at
// run time. A user that knows the traffic it waits for is bulk (a large
// receive is pending) turns polling off meanwhile, so that the poller does
// not take the core from a process sharing it; the transport does this.
// It has no effect without BusyPoll. Safe for concurrent use.
func (u *UDP) AllowBusyPoll(on bool) {
	if !u.busyPollBulk {
		u.noPoll.Store(!on)
	}
}

// Features reports the offloads and buffer sizes in use.
func (u *UDP) Features() Features {
	f := u.feat
	f.GSO, f.GSOError = u.gsoState()
	return f
}

// Stats returns the wire's counters.
func (u *UDP) Stats() UDPStats {
	return UDPStats{
		SendSyscalls: u.sendCalls.Load(),
		RecvSyscalls: u.recvCalls.Load(),
		GSOSends:     u.gsoSends.Load(),
		GROReceives:  u.groRecvs.Load(),
		RecvDropped:  u.recvDropped.Load(),
		BusyPolls:    u.busyPolls.Load(),
	}
}

// Close closes the socket, unblocking ReadBatch and WriteBatch with
// ErrClosed. Later calls return the first call's result.
func (u *UDP) Close() error {
	u.closeOnce.Do(func() {
		u.closed.Store(true)
		if err := u.conn.Close(); err != nil {
			u.closeErr = fmt.Errorf("wire: %w", err)
		}
	})
	return u.closeErr
}

// WriteBatch sends msgs in order; see Wire.
func (u *UDP) WriteBatch(msgs []Message) (int, error) {
	if u.closed.Load() {
		return 0, ErrClosed
	}
	if u.single {
		return u.writeSingle(msgs)
	}
	return u.writeMMsg(msgs)
}

// ReadBatch receives at least one datagram; see Wire.
func (u *UDP) ReadBatch(msgs []Message) (int, error) {
	if u.closed.Load() {
		return 0, ErrClosed
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if u.single {
		return u.readSingle(msgs)
	}
	return u.readMMsg(msgs)
}

// sendAddr checks a destination and converts it to the socket's family.
func (u *UDP) sendAddr(ap netip.AddrPort) (netip.AddrPort, error) {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return ap, errInvalidAddr
	case a.Zone() != "":
		return ap, errZone
	case !u.v6:
		if a = a.Unmap(); !a.Is4() {
			return ap, errFamily
		}
		return netip.AddrPortFrom(a, ap.Port()), nil
	}
	return ap, nil
}

var (
	errInvalidAddr = errors.New("wire: invalid destination address")
	errZone        = errors.New("wire: IPv6 zones are not supported")
	errFamily      = errors.New("wire: IPv6 destination on an IPv4 socket")
)

// mapErr turns a closed-socket error into ErrClosed and names other errors.
func mapErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("wire: %w", err)
}

// writeSingle sends one datagram per system call.
func (u *UDP) writeSingle(msgs []Message) (int, error) {
	for i := range msgs {
		m := &msgs[i]
		if len(m.Buf) > u.maxPayload {
			return i, ErrTooLarge
		}
		dst, err := u.sendAddr(m.Addr)
		if err != nil {
			return i, err
		}
		if _, err := u.conn.WriteToUDPAddrPort(m.Buf, dst); err != nil {
			return i, mapErr(err)
		}
		u.sendCalls.Add(1)
	}
	return len(msgs), nil
}

// readSingle receives one datagram per call into the wire's buffer.
func (u *UDP) readSingle(msgs []Message) (int, error) {
	for {
		n, src, err := u.conn.ReadFromUDPAddrPort(u.rbuf)
		if err != nil {
			return 0, mapErr(err)
		}
		u.recvCalls.Add(1)
		if n > u.maxPayload {
			u.recvDropped.Add(1)
			continue
		}
		msgs[0] = Message{
			Buf:  u.rbuf[:n:n],
			Addr: netip.AddrPortFrom(src.Addr().Unmap(), src.Port()),
		}
		return 1, nil
	}
}

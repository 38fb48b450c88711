package pspnet

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealring/sealring/secure/psp"
)

const (
	// ALPN is the TLS application protocol of the key handover.
	ALPN = "sealring-psp/1"
	// NextHeader is the PSP next header of pspnet datagrams.
	NextHeader = 253
	// DefaultHandoverTimeout bounds a key handover (handshake, request,
	// response) when a config's Timeout is zero.
	DefaultHandoverTimeout = 10 * time.Second
	// MaxPayload is the largest message a datagram carries.
	MaxPayload = 65507 - psp.BaseHeaderLen - psp.ICVLen

	requestLen  = 5
	responseLen = 72
	magic       = "PSP1"

	statusOK          = 0
	statusBadRequest  = 1
	statusUnavailable = 2
)

// Sentinel errors.
var (
	// ErrConfig: a configuration is invalid (for example a TLS config
	// that does not authenticate clients).
	ErrConfig = errors.New("pspnet: invalid configuration")
	// ErrHandover: the key handover failed.
	ErrHandover = errors.New("pspnet: key handover failed")
	// ErrClosed: the Server or Client is closed.
	ErrClosed = errors.New("pspnet: closed")
	// ErrTooLarge: a message does not fit in one datagram.
	ErrTooLarge = errors.New("pspnet: message too large")
)

// Handler answers one request datagram: spi identifies the client's
// association, req is the decrypted payload (valid only during the call).
// A non-nil result is sent back, sealed, to the address the request came
// from.
type Handler func(spi uint32, req []byte) []byte

// ServerConfig configures a Server. TLSConfig and Handler are required;
// the other zero fields mean their defaults.
type ServerConfig struct {
	// TLSConfig authenticates the server and its clients for the key
	// handover. It must require and verify client certificates
	// (tls.RequireAndVerifyClientCert) against its own ClientCAs, as
	// rendezvous.Credentials.ServerTLSConfig does: keys go only to
	// authenticated clients. The Server uses a copy with TLS 1.3 as the
	// minimum and ALPN as the only application protocol, and hands keys
	// only to clients that negotiated it.
	TLSConfig *tls.Config
	// Handler answers requests.
	Handler Handler
	// PSP is the key server; nil means a new psp.Server with random
	// master keys. Several Servers may share one: replies take their IVs
	// from its NextIV.
	PSP *psp.Server
	// KeyAddr is the TCP address of the key handover; "" means ":0" (an
	// ephemeral port; see Server.KeyAddr).
	KeyAddr string
	// UDPAddr is the UDP address of the datagrams; "" means ":1000"
	// (psp.DefaultPort, which needs privileges on most systems: tests and
	// unprivileged users pass ":0").
	UDPAddr string
	// Timeout bounds each key handover; 0 means DefaultHandoverTimeout.
	Timeout time.Duration
	// Logger receives rejected handovers and datagrams (debug) and socket
	// errors (warn); nil means slog.Default().
	Logger *slog.Logger
}

// Server is the server endpoint of the cloud use case.
type Server struct {
	cfg     ServerConfig
	psp     *psp.Server
	tlsConf *tls.Config
	log     *slog.Logger
	ln      net.Listener
	udp     *net.UDPConn
	stop    func() bool

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	opened, rejected atomic.Uint64
}

// Listen binds the handover and datagram sockets and starts serving. The
// Server runs until Close is called or ctx is done.
func Listen(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.TLSConfig == nil || cfg.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, fmt.Errorf("%w: the key handover needs a TLS config that requires and verifies client certificates", ErrConfig)
	}
	if v := cfg.TLSConfig.MaxVersion; v != 0 && v < tls.VersionTLS13 {
		return nil, fmt.Errorf("%w: the key handover needs TLS 1.3, the TLS config's MaxVersion is %#x", ErrConfig, v)
	}
	if cfg.TLSConfig.ClientCAs == nil {
		return nil, fmt.Errorf("%w: the key handover's TLS config has no ClientCAs (it would accept any client certificate from the system roots)", ErrConfig)
	}
	if cfg.Handler == nil {
		return nil, fmt.Errorf("%w: no Handler", ErrConfig)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHandoverTimeout
	}
	if cfg.KeyAddr == "" {
		cfg.KeyAddr = ":0"
	}
	if cfg.UDPAddr == "" {
		cfg.UDPAddr = ":" + strconv.Itoa(psp.DefaultPort)
	}
	s := &Server{cfg: cfg, psp: cfg.PSP, log: cfg.Logger, conns: make(map[net.Conn]struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.psp == nil {
		var err error
		if s.psp, err = psp.NewServer(psp.ServerConfig{}); err != nil {
			return nil, err
		}
	}
	s.tlsConf = cfg.TLSConfig.Clone()
	s.tlsConf.NextProtos = []string{ALPN}
	s.tlsConf.MinVersion = tls.VersionTLS13
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.KeyAddr)
	if err != nil {
		return nil, fmt.Errorf("pspnet: key handover listener: %w", err)
	}
	pc, err := lc.ListenPacket(ctx, "udp", cfg.UDPAddr)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("pspnet: UDP socket %s: %w (port 1000 needs privileges; use :0 or another port)", cfg.UDPAddr, err)
	}
	s.ln, s.udp = ln, pc.(*net.UDPConn)
	s.wg.Add(2)
	go s.acceptLoop()
	go s.datagramLoop()
	s.mu.Lock()
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Unlock()
	return s, nil
}

// KeyAddr returns the address of the key handover listener.
func (s *Server) KeyAddr() net.Addr { return s.ln.Addr() }

// UDPAddr returns the address datagrams go to.
func (s *Server) UDPAddr() net.Addr { return s.udp.LocalAddr() }

// PSP returns the key server, for rotation (Rotate) and inspection.
func (s *Server) PSP() *psp.Server { return s.psp }

// Stats returns the number of datagrams opened and rejected.
func (s *Server) Stats() (opened, rejected uint64) { return s.opened.Load(), s.rejected.Load() }

// Close stops the Server: it closes both sockets and every handover in
// progress, and waits for its goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	stop := s.stop
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	err := s.ln.Close()
	if e := s.udp.Close(); err == nil {
		err = e
	}
	s.wg.Wait()
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.isClosed() {
				return
			}
			s.log.Warn("pspnet: accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			if err := s.handover(c); err != nil {
				s.log.Debug("pspnet: key handover failed", "peer", c.RemoteAddr(), "err", err)
			}
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// handover runs one key handover: TLS handshake (mutual), request, fresh
// SPI pair, response.
func (s *Server) handover(raw net.Conn) error {
	raw.SetDeadline(time.Now().Add(s.cfg.Timeout))
	c := tls.Server(raw, s.tlsConf)
	if err := c.Handshake(); err != nil {
		return err
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != ALPN {
		return fmt.Errorf("client negotiated application protocol %q, want %q", p, ALPN)
	}
	var req [requestLen]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return err
	}
	var resp [responseLen]byte
	v := psp.Version(req[4])
	if string(req[:4]) != magic || !v.Valid() {
		resp[0] = statusBadRequest
		c.Write(resp[:])
		return fmt.Errorf("bad request %x", req)
	}
	spi, err := s.psp.AllocatePairRotating()
	var tx, rx psp.SAKey
	if err == nil {
		tx, err = s.psp.DeriveSA(spi, v)
	}
	if err == nil {
		rx, err = s.psp.DeriveSA(spi|1, v)
	}
	if err != nil {
		resp[0] = statusUnavailable
		c.Write(resp[:])
		return err
	}
	resp[0], resp[1] = statusOK, byte(v)
	binary.BigEndian.PutUint16(resp[2:], uint16(s.udp.LocalAddr().(*net.UDPAddr).Port))
	binary.BigEndian.PutUint32(resp[4:], spi)
	copy(resp[8:40], tx.Key[:])
	copy(resp[40:72], rx.Key[:])
	tx.Wipe()
	rx.Wipe()
	_, err = c.Write(resp[:])
	clear(resp[:])
	if err != nil {
		return err
	}
	id := ""
	if cs := c.ConnectionState(); len(cs.PeerCertificates) > 0 {
		id = cs.PeerCertificates[0].Subject.CommonName
	}
	s.log.Debug("pspnet: handed out an association", "peer", raw.RemoteAddr(), "client", id, "spi", fmt.Sprintf("%08x", spi))
	return c.Close()
}

func (s *Server) datagramLoop() {
	defer s.wg.Done()
	in := make([]byte, 1<<16)
	out := make([]byte, 1<<16+psp.ICVLen)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(in)
		if err != nil {
			if s.isClosed() {
				return
			}
			s.log.Warn("pspnet: UDP read failed", "err", err)
			continue
		}
		if err := s.serveDatagram(in[:n], out, from); err != nil {
			s.rejected.Add(1)
			s.log.Debug("pspnet: datagram rejected", "from", from, "err", err)
		}
	}
}

var errReflected = fmt.Errorf("%w: odd SPI (a server→client association) sent to the server", psp.ErrSPI)

// serveDatagram opens one request (deriving its key from its SPI), runs the
// handler and seals the reply under the paired SPI.
func (s *Server) serveDatagram(pkt, out []byte, from netip.AddrPort) error {
	h, _, err := psp.ParsePacket(pkt)
	if err != nil {
		return err
	}
	if h.SPI&1 != 0 {
		return errReflected
	}
	r, err := s.psp.Open(pkt)
	if err != nil {
		return err
	}
	s.opened.Add(1)
	resp := s.cfg.Handler(h.SPI, r.Payload)
	if resp == nil {
		return nil
	}
	if len(resp) > MaxPayload {
		return ErrTooLarge
	}
	var sa psp.SA
	if err := s.psp.InitSA(&sa, h.SPI|1, h.Version); err != nil {
		return err
	}
	defer sa.Wipe()
	hdr := psp.Header{NextHeader: NextHeader, Version: h.Version, SPI: h.SPI | 1, IV: s.psp.NextIV()}
	pkt = out[:psp.BaseHeaderLen+len(resp)]
	copy(pkt[psp.BaseHeaderLen:], resp)
	if pkt, err = sa.Seal(pkt, &hdr); err != nil {
		return err
	}
	_, err = s.udp.WriteToUDPAddrPort(pkt, from)
	return err
}

// ClientConfig configures a Client. TLSConfig is required.
type ClientConfig struct {
	// TLSConfig authenticates the client and the server for the key
	// handover, e.g. rendezvous.Credentials.ClientTLSConfig(). It must
	// carry a client certificate and verify the server (InsecureSkipVerify
	// only with a verification callback). Dial uses a copy with TLS 1.3 as
	// the minimum and ALPN, and takes keys only from a server that
	// negotiated it.
	TLSConfig *tls.Config
	// Version is the PSP version asked for; the zero value is V0
	// (AES-GCM-128).
	Version psp.Version
	// Timeout bounds the key handover; 0 means DefaultHandoverTimeout.
	Timeout time.Duration
	// Crypto forces a crypto path by name ("" = the process default).
	Crypto string
}

// Client is the client endpoint: it holds the two associations the server
// handed over and a UDP socket connected to the server.
type Client struct {
	tx  *psp.Sealer
	rx  psp.SA
	udp *net.UDPConn

	sendMu  sync.Mutex
	sendBuf []byte
	recvMu  sync.Mutex
	recvBuf []byte
	closed  atomic.Bool
}

// Dial runs the key handover with the server at keyAddr and connects a UDP
// socket to the server's datagram port (on the handover's host).
func Dial(ctx context.Context, keyAddr string, cfg ClientConfig) (*Client, error) {
	if cfg.TLSConfig == nil || (len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetClientCertificate == nil) {
		return nil, fmt.Errorf("%w: the key handover needs a TLS config with a client certificate", ErrConfig)
	}
	if cfg.TLSConfig.InsecureSkipVerify && cfg.TLSConfig.VerifyPeerCertificate == nil && cfg.TLSConfig.VerifyConnection == nil {
		return nil, fmt.Errorf("%w: the key handover's TLS config does not verify the server (InsecureSkipVerify without a verification callback)", ErrConfig)
	}
	if v := cfg.TLSConfig.MaxVersion; v != 0 && v < tls.VersionTLS13 {
		return nil, fmt.Errorf("%w: the key handover needs TLS 1.3, the TLS config's MaxVersion is %#x", ErrConfig, v)
	}
	if !cfg.Version.Valid() {
		return nil, fmt.Errorf("%w: PSP version %d", ErrConfig, cfg.Version)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHandoverTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	tc := cfg.TLSConfig.Clone()
	tc.NextProtos = []string{ALPN}
	tc.MinVersion = tls.VersionTLS13
	d := tls.Dialer{Config: tc}
	conn, err := d.DialContext(ctx, "tcp", keyAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHandover, err)
	}
	defer conn.Close()
	if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != ALPN {
		return nil, fmt.Errorf("%w: server negotiated application protocol %q, want %q", ErrHandover, p, ALPN)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req := append([]byte(magic), byte(cfg.Version))
	var resp [responseLen]byte
	if _, err = conn.Write(req); err == nil {
		_, err = io.ReadFull(conn, resp[:])
	}
	defer clear(resp[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHandover, err)
	}
	if resp[0] != statusOK || psp.Version(resp[1]) != cfg.Version {
		return nil, fmt.Errorf("%w: server answered status %d, version %d", ErrHandover, resp[0], resp[1])
	}
	port := binary.BigEndian.Uint16(resp[2:])
	spi := binary.BigEndian.Uint32(resp[4:])
	kl := cfg.Version.KeyLen()
	c := &Client{sendBuf: make([]byte, 0, 1<<16+psp.ICVLen), recvBuf: make([]byte, 1<<16)}
	if c.tx, err = psp.NewSealer(psp.SealerConfig{Key: resp[8 : 8+kl], SPI: spi, Version: cfg.Version, Crypto: cfg.Crypto}); err != nil {
		return nil, err
	}
	if err := c.rx.Init(resp[40:40+kl], spi|1, cfg.Version, cfg.Crypto); err != nil {
		c.tx.Wipe()
		return nil, err
	}
	host := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	var dl net.Dialer
	uc, err := dl.DialContext(ctx, "udp", netip.AddrPortFrom(host, port).String())
	if err != nil {
		c.tx.Wipe()
		c.rx.Wipe()
		return nil, fmt.Errorf("pspnet: UDP socket: %w", err)
	}
	c.udp = uc.(*net.UDPConn)
	return c, nil
}

// SPI returns the client→server association's SPI.
func (c *Client) SPI() uint32 { return c.tx.SPI() }

// Send seals msg and sends it to the server as one datagram.
func (c *Client) Send(msg []byte) error {
	if len(msg) > MaxPayload {
		return ErrTooLarge
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	hl := c.tx.HeaderLen()
	b := c.sendBuf[:hl+len(msg)]
	copy(b[hl:], msg)
	pkt, err := c.tx.Seal(b, NextHeader, 0)
	if err != nil {
		return err
	}
	_, err = c.udp.Write(pkt)
	return err
}

// Recv waits for the next datagram from the server that authenticates,
// copies its payload into p and returns its length (ErrTooLarge if p is
// too short). Datagrams that fail authentication are dropped. It returns
// when ctx is done.
func (c *Client) Recv(ctx context.Context, p []byte) (int, error) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	defer c.udp.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.udp.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		if c.closed.Load() {
			return 0, ErrClosed
		}
		n, err := c.udp.Read(c.recvBuf)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if c.closed.Load() {
				return 0, ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// A deadline left by a previous call's context: clear it,
				// then look at ctx again (its AfterFunc runs only after
				// ctx.Err is set, so no cancellation is lost).
				c.udp.SetReadDeadline(time.Time{})
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				continue
			}
			return 0, err
		}
		r, err := c.rx.Open(c.recvBuf[:n])
		if err != nil {
			continue
		}
		if len(r.Payload) > len(p) {
			return 0, ErrTooLarge
		}
		return copy(p, r.Payload), nil
	}
}

// Close closes the UDP socket and wipes both keys.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.udp.Close()
	c.recvMu.Lock()
	c.rx.Wipe()
	c.recvMu.Unlock()
	c.sendMu.Lock()
	c.tx.Wipe()
	c.sendMu.Unlock()
	return err
}

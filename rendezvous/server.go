package rendezvous

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// alpnStore is the ALPN protocol of the store, so that a store connection
// cannot be confused with another sealring protocol using the same
// credentials.
const alpnStore = "sealring-store/1"

// DefaultStorePort is the TCP port ListenAndServe uses when
// ServerConfig.Addr has none.
const DefaultStorePort = "29410"

// Server defaults, used where a ServerConfig field is zero.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultReadTimeout      = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxWaits         = 1024
)

// ServerConfig configures a Server. Credentials is required; every other
// zero field means its default.
type ServerConfig struct {
	// Credentials authenticate the server to clients and define the job
	// whose members may connect. Required.
	Credentials *Credentials

	// Store holds the data. nil means a new MemStore with Limits, closed
	// with the Server; a non-nil Store is not closed by the Server.
	Store Store

	// Limits bounds keys and values. Frames larger than these limits
	// require are rejected before they are read.
	Limits Limits

	// Addr is the address ListenAndServe listens on; "" means
	// ":"+DefaultStorePort.
	Addr string

	// HandshakeTimeout bounds the TLS handshake of a new connection.
	HandshakeTimeout time.Duration
	// ReadTimeout bounds the time from the first byte of a frame to its
	// last: a client that sends part of a frame and stalls is dropped.
	ReadTimeout time.Duration
	// IdleTimeout bounds the silence between frames on a connection with
	// no Wait pending. Clients also ping every ClientConfig.KeepAlive.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one response: a client that stops
	// reading is dropped.
	WriteTimeout time.Duration
	// MaxWaits bounds the Waits pending on one connection; more fail with
	// ErrUnavailable.
	MaxWaits int

	// Logger receives connection events: rejected peers (warn), dropped
	// misbehaving clients (warn), connects and disconnects (debug).
	// nil means slog.Default().
	Logger *slog.Logger
}

// Server serves a Store to the members of one job over TLS 1.3 with mutual
// authentication. It is hosted by the launcher or by rank 0.
//
// Each connection has one reader goroutine that decodes frames and runs
// requests in order; Waits run in their own goroutines, so a pending Wait
// never blocks other requests on its connection or on the server. A client
// that sends a malformed or oversized frame, stalls mid-frame, goes silent
// or stops reading is disconnected; the others are unaffected.
type Server struct {
	cfg      ServerConfig
	lim      Limits
	store    Store
	ownStore bool
	tlsConf  *tls.Config
	log      *slog.Logger
	maxFrame int

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// NewServer returns a Server for cfg. It does not listen yet: call Serve or
// ListenAndServe.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("rendezvous: NewServer: ServerConfig.Credentials is required")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxWaits <= 0 {
		cfg.MaxWaits = DefaultMaxWaits
	}
	if cfg.Addr == "" {
		cfg.Addr = ":" + DefaultStorePort
	}
	s := &Server{
		cfg:       cfg,
		lim:       cfg.Limits.withDefaults(),
		store:     cfg.Store,
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.store == nil {
		s.store = NewMemStore(MemStoreConfig{Limits: s.lim})
		s.ownStore = true
	}
	s.maxFrame = maxFrameLen(s.lim)
	s.tlsConf = cfg.Credentials.ServerTLSConfig()
	s.tlsConf.NextProtos = []string{alpnStore}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// ListenAndServe listens on cfg.Addr and serves until ctx is done or the
// Server is closed. When ctx is done it closes the Server and returns an
// error wrapping context.Cause(ctx); after Close it returns ErrClosed.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("rendezvous: listen: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	err = s.Serve(ln)
	if ctx.Err() != nil {
		return fmt.Errorf("rendezvous: server stopped: %w", context.Cause(ctx))
	}
	return err
}

// Serve accepts connections on ln, a plain (non-TLS) listener such as
// net.Listen("tcp", addr) returns, and serves them until the Server is
// closed or ln fails. The Server performs TLS itself. Serve closes ln when
// it returns; after Close it returns ErrClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return fmt.Errorf("rendezvous: serve: %w", ErrClosed)
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return fmt.Errorf("rendezvous: serve: %w", ErrClosed)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAcceptError(err) {
				// E.g. EMFILE: back off as net/http does, rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("rendezvous: accept failed; retrying", "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
				}
				continue
			}
			return fmt.Errorf("rendezvous: accept: %w", err)
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			return fmt.Errorf("rendezvous: serve: %w", ErrClosed)
		}
		go s.handle(c)
	}
}

func isTemporaryAcceptError(err error) bool {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return true // EMFILE, ENFILE, ECONNABORTED, ENOBUFS...
	}
	return false
}

// track registers a connection and its goroutine; false after Close.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops the listeners, disconnects every client, ends every pending
// Wait, and waits for the Server's goroutines to finish. It closes the
// backing Store if the Server created it. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.cancel()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.ownStore {
		return s.store.Close()
	}
	return nil
}

// serverConn is the state of one client connection.
type serverConn struct {
	s    *Server
	raw  net.Conn
	tc   *tls.Conn
	br   *bufio.Reader
	peer string // identity or remote address, for logs
	ctx  context.Context
	stop context.CancelFunc

	wmu  sync.Mutex // serialises writes
	wbuf []byte

	mu      sync.Mutex
	waits   map[uint32]*pendingWait
	inFrame bool           // reading a frame: the frame deadline applies
	wg      sync.WaitGroup // wait goroutines
}

func (s *Server) handle(raw net.Conn) {
	defer s.untrack(raw)
	defer raw.Close()
	log := s.log.With("remote", raw.RemoteAddr().String())

	tc := tls.Server(raw, s.tlsConf)
	hctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		if s.ctx.Err() == nil {
			log.Warn("rendezvous: rejected connection", "reason", describeHandshakeError(err, "client"))
		}
		return
	}
	peer := raw.RemoteAddr().String()
	if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
		if id, err := IdentityOf(st.PeerCertificates[0]); err == nil {
			peer = id.String()
		}
	}
	log = log.With("peer", peer)
	log.Debug("rendezvous: client connected")

	ctx, stop := context.WithCancel(s.ctx)
	c := &serverConn{s: s, raw: raw, tc: tc, br: bufio.NewReader(tc), peer: peer, ctx: ctx, stop: stop,
		waits: make(map[uint32]*pendingWait)}
	err = c.serve()
	stop()
	tc.Close()
	c.wg.Wait()
	switch {
	case s.ctx.Err() != nil, err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		log.Debug("rendezvous: client disconnected", "err", err)
	default:
		log.Warn("rendezvous: dropped client", "reason", err)
	}
}

// describeHandshakeError explains why a handshake with peer ("client" or
// "server") failed, in terms of the job.
func describeHandshakeError(err error, peer string) string {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var cie x509.CertificateInvalidError
	var he x509.HostnameError
	switch {
	case errors.Is(err, ErrAuth):
		return err.Error()
	case errors.As(err, &he):
		return fmt.Sprintf("%s is not from this job: its certificate names another job (%v)", peer, err)
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return fmt.Sprintf("%s is not from this job: it presented no certificate issued by this job's CA (%v)", peer, err)
	case errors.As(err, &uae):
		return fmt.Sprintf("%s is not from this job: its certificate is not signed by this job's CA (%v)", peer, err)
	case errors.As(err, &cie):
		return fmt.Sprintf("%s certificate is invalid (%v)", peer, err)
	case errors.As(err, &cve):
		return fmt.Sprintf("%s certificate failed verification (%v)", peer, err)
	case isRemoteAlert(err):
		return fmt.Sprintf("the %s rejected our certificate; it is probably from another job (%v)", peer, err)
	case errors.Is(err, context.DeadlineExceeded):
		return "TLS handshake timed out"
	}
	return fmt.Sprintf("TLS handshake failed: %v", err)
}

// serve reads and dispatches frames until the connection fails. Deadlines:
// IdleTimeout while waiting for the first byte of a frame, ReadTimeout from
// there to the frame's end.
func (c *serverConn) serve() error {
	s := c.s
	if err := c.write(&frame{Kind: kindHello, MaxKey: uint32(s.lim.MaxKeySize), MaxValue: uint32(s.lim.MaxValueSize)}); err != nil {
		return err
	}
	startFrame := func() {
		c.mu.Lock()
		c.inFrame = true
		c.tc.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		c.mu.Unlock()
	}
	for {
		c.mu.Lock()
		c.inFrame = false
		c.setIdleDeadlineLocked()
		c.mu.Unlock()
		f, err := readFrame(c.br, s.maxFrame, startFrame)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("read deadline exceeded (idle for %v or a frame took longer than %v): %w", s.cfg.IdleTimeout, s.cfg.ReadTimeout, err)
			}
			return err
		}
		if err := c.dispatch(&f); err != nil {
			return err
		}
	}
}

// setIdleDeadlineLocked arms the idle deadline between frames. A
// connection with Waits pending is not idle: it has no deadline until they
// end. c.mu must be held.
func (c *serverConn) setIdleDeadlineLocked() {
	if len(c.waits) > 0 {
		c.tc.SetReadDeadline(time.Time{})
	} else {
		c.tc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
	}
}

// dispatch runs one request. It returns an error only when the connection
// must be dropped.
func (c *serverConn) dispatch(f *frame) error {
	s := c.s
	ctx := c.ctx
	resp := frame{Kind: kindResponse, ID: f.ID}
	var err error
	switch f.Kind {
	case kindPing:
	case kindCancel:
		// Forget the wait at once, so that it no longer counts against
		// MaxWaits for the requests that follow the cancel.
		c.mu.Lock()
		if w, ok := c.waits[f.ID]; ok {
			w.cancel()
			delete(c.waits, f.ID)
		}
		c.mu.Unlock()
		return nil
	case kindSet:
		if err = s.lim.checkKey("set", f.Key); err == nil {
			if err = s.lim.checkValue("set", f.Key, f.Value); err == nil {
				err = s.store.Set(ctx, f.Key, f.Value)
			}
		}
	case kindGet:
		if err = s.lim.checkKey("get", f.Key); err == nil {
			resp.Value, err = s.store.Get(ctx, f.Key)
			resp.HasValue = err == nil
		}
	case kindAdd:
		if err = s.lim.checkKey("add", f.Key); err == nil {
			resp.Int, err = s.store.Add(ctx, f.Key, f.Int)
		}
	case kindCAS:
		if err = s.lim.checkKey("compare-and-set", f.Key); err == nil {
			if err = s.lim.checkValue("compare-and-set", f.Key, f.Value); err == nil {
				var old []byte
				if f.HasOld {
					old = f.Old
					if old == nil {
						old = []byte{}
					}
				}
				resp.Swapped, resp.Value, err = s.store.CompareAndSet(ctx, f.Key, old, f.Value)
				resp.HasValue = err == nil && resp.Value != nil
			}
		}
	case kindDelete:
		if err = s.lim.checkKey("delete", f.Key); err == nil {
			err = s.store.Delete(ctx, f.Key)
		}
	case kindWait:
		return c.startWait(f)
	default:
		return fmt.Errorf("client sent a %v frame: %w", f.Kind, ErrProtocol)
	}
	if err != nil {
		resp = errorResponse(f.ID, err)
	}
	return c.write(&resp)
}

func (c *serverConn) startWait(f *frame) error {
	s := c.s
	if err := s.lim.checkKeys("wait", f.Keys); err != nil {
		return c.write(ptr(errorResponse(f.ID, err)))
	}
	c.mu.Lock()
	if _, dup := c.waits[f.ID]; dup {
		c.mu.Unlock()
		return fmt.Errorf("client reused the ID %d of a pending wait: %w", f.ID, ErrProtocol)
	}
	if len(c.waits) >= s.cfg.MaxWaits {
		c.mu.Unlock()
		return c.write(ptr(frame{Kind: kindResponse, ID: f.ID, Status: statusBusy,
			Msg: fmt.Sprintf("rendezvous: server: more than %d waits pending on this connection", s.cfg.MaxWaits)}))
	}
	ctx, cancel := context.WithCancel(c.ctx)
	w := &pendingWait{cancel: cancel}
	c.waits[f.ID] = w
	c.wg.Add(1)
	c.mu.Unlock()

	timeout := time.Duration(f.Int) * time.Millisecond
	go func() {
		defer c.wg.Done()
		err := s.store.Wait(ctx, f.Keys, timeout)
		c.mu.Lock()
		if c.waits[f.ID] == w {
			delete(c.waits, f.ID)
		}
		if !c.inFrame {
			c.setIdleDeadlineLocked()
		}
		c.mu.Unlock()
		cancel()
		resp := frame{Kind: kindResponse, ID: f.ID}
		if err != nil {
			resp = errorResponse(f.ID, err)
		}
		if c.ctx.Err() != nil {
			return // connection gone; nobody to tell
		}
		if err := c.write(&resp); err != nil {
			c.tc.Close() // the reader notices and drops the connection
		}
	}()
	return nil
}

// pendingWait is a Wait running on a connection.
type pendingWait struct {
	cancel context.CancelFunc
}

func ptr[T any](v T) *T { return &v }

// errorResponse maps a store error to a response frame.
func errorResponse(id uint32, err error) frame {
	f := frame{Kind: kindResponse, ID: id, Msg: err.Error()}
	if len(f.Msg) > 4096 {
		f.Msg = f.Msg[:4096]
	}
	var we *WaitError
	if errors.As(err, &we) {
		f.Keys = we.Missing
		f.Int = int64(we.Timeout / time.Millisecond)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		f.Status = statusNotFound
	case errors.Is(err, ErrTimeout):
		f.Status = statusTimeout
	case errors.Is(err, ErrTooLarge):
		f.Status = statusTooLarge
	case errors.Is(err, ErrInvalidKey):
		f.Status = statusInvalidKey
	case errors.Is(err, ErrNotCounter):
		f.Status = statusNotCounter
	case errors.Is(err, ErrOverflow):
		f.Status = statusOverflow
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		f.Status = statusCanceled
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable):
		f.Status = statusUnavailable
	default:
		f.Status = statusInternal
	}
	return f
}

// write sends one frame, bounded by WriteTimeout.
func (c *serverConn) write(f *frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	c.wbuf, err = appendFrame(c.wbuf[:0], f)
	if err != nil {
		return err
	}
	c.tc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	_, err = c.tc.Write(c.wbuf)
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil // do not pin a large buffer per idle connection
	}
	return err
}

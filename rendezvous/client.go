package rendezvous

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Client defaults, used where a ClientConfig field is zero.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultKeepAlive   = 30 * time.Second
)

// ClientConfig configures a Client. Credentials is required; every other
// zero field means its default.
type ClientConfig struct {
	// Credentials authenticate the client to the server and define the
	// job whose server it accepts. Required.
	Credentials *Credentials

	// DialTimeout bounds connecting, the TLS handshake and the server's
	// greeting, when the context allows longer.
	DialTimeout time.Duration

	// KeepAlive is the interval of the client's pings. A connection whose
	// ping goes unanswered for KeepAlive is declared dead, failing its
	// pending calls with ErrUnavailable; the pings also keep the server's
	// IdleTimeout from dropping a healthy client. Negative disables them
	// (then the server's IdleTimeout must exceed the longest Wait).
	KeepAlive time.Duration

	// WriteTimeout bounds writing one request when the context allows
	// longer. Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// Client is a Store served by a remote Server over TLS 1.3 with mutual
// authentication. It is safe for concurrent use.
//
// All calls share one connection and are multiplexed by request ID: a
// reader goroutine routes each response to its caller, so a pending Wait
// does not delay other calls. A call whose context ends stops waiting at
// once (a Wait also tells the server to stop waiting).
//
// If the connection fails, the calls in flight fail with ErrUnavailable
// (the server may or may not have applied them, so nothing is retried), and
// the next call dials again, once, within its context. Authentication
// failures are reported as ErrAuth.
type Client struct {
	addr    string
	cfg     ClientConfig
	tlsConf *tls.Config
	dialSem chan struct{} // one dial at a time

	mu     sync.Mutex
	cur    *clientConn
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup // goroutines of all connections
}

var _ Store = (*Client)(nil)

// Dial connects to the store server at addr (host:port) and returns a
// Client once the server has been authenticated and has authenticated the
// client. Errors wrap ErrAuth if either side rejected the other's
// credentials, ErrUnavailable if the server could not be reached.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("rendezvous: Dial: ClientConfig.Credentials is required")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	c := &Client{
		addr:    addr,
		cfg:     cfg,
		tlsConf: cfg.Credentials.ClientTLSConfig(),
		dialSem: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	c.tlsConf.NextProtos = []string{alpnStore}
	if _, err := c.conn(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Addr returns the server address the client dials.
func (c *Client) Addr() string { return c.addr }

var errClientClosed = fmt.Errorf("rendezvous: client: %w", ErrClosed)

// conn returns the live connection, dialing a new one if needed.
func (c *Client) conn(ctx context.Context) (*clientConn, error) {
	live := func() (*clientConn, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return nil, errClientClosed
		}
		if c.cur != nil && !c.cur.isDead() {
			return c.cur, nil
		}
		return nil, nil
	}
	if cc, err := live(); cc != nil || err != nil {
		return cc, err
	}
	select {
	case c.dialSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("rendezvous: dial %s: %w", c.addr, ctx.Err())
	case <-c.done:
		return nil, errClientClosed
	}
	defer func() { <-c.dialSem }()
	if cc, err := live(); cc != nil || err != nil {
		return cc, err // another caller dialed meanwhile
	}
	cc, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cc.tc.Close()
		return nil, errClientClosed
	}
	c.cur = cc
	c.wg.Add(1)
	go cc.readLoop()
	if c.cfg.KeepAlive > 0 {
		c.wg.Add(1)
		go cc.pingLoop()
	}
	return cc, nil
}

// dial connects, handshakes and reads the server's greeting.
func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", c.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rendezvous: dial %s: %w", c.addr, ctx.Err())
		}
		return nil, fmt.Errorf("rendezvous: dial %s: %w: %w", c.addr, ErrUnavailable, err)
	}
	tc := tls.Client(raw, c.tlsConf)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		if isAuthError(err) {
			return nil, fmt.Errorf("rendezvous: dial %s: %s: %w", c.addr, describeHandshakeError(err, "server"), ErrAuth)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rendezvous: dial %s: %w", c.addr, ctx.Err())
		}
		return nil, fmt.Errorf("rendezvous: dial %s: TLS handshake: %w: %w", c.addr, ErrUnavailable, err)
	}
	// In TLS 1.3 the server checks the client's certificate after the
	// client's side of the handshake is done, so only the server's hello
	// proves that it accepted us; a rejection arrives as a TLS alert.
	dl, _ := dctx.Deadline()
	tc.SetReadDeadline(dl)
	stop := context.AfterFunc(dctx, func() { tc.SetReadDeadline(time.Now()) })
	br := bufio.NewReader(tc)
	hello, err := readFrame(br, 64, nil)
	stop()
	if err != nil {
		tc.Close()
		if isRemoteAlert(err) {
			return nil, fmt.Errorf("rendezvous: dial %s: the server rejected this party's certificate "+
				"(not a member of the server's job, or expired/invalid): %v: %w", c.addr, err, ErrAuth)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rendezvous: dial %s: %w", c.addr, ctx.Err())
		}
		return nil, fmt.Errorf("rendezvous: dial %s: no greeting from server "+
			"(it may have rejected this party's certificate): %w: %w", c.addr, ErrUnavailable, err)
	}
	if hello.Kind != kindHello || hello.MaxKey == 0 || hello.MaxKey > hardMaxKeySize ||
		hello.MaxValue == 0 || hello.MaxValue > hardMaxValueSize {
		tc.Close()
		return nil, fmt.Errorf("rendezvous: dial %s: bad greeting (%v frame, limits %d/%d): %w",
			c.addr, hello.Kind, hello.MaxKey, hello.MaxValue, ErrProtocol)
	}
	tc.SetReadDeadline(time.Time{})
	lim := Limits{MaxKeySize: int(hello.MaxKey), MaxValueSize: int(hello.MaxValue)}
	return &clientConn{
		c:        c,
		tc:       tc,
		br:       br,
		lim:      lim,
		maxFrame: maxFrameLen(lim),
		pending:  make(map[uint32]chan frame),
		dead:     make(chan struct{}),
	}, nil
}

func isAuthError(err error) bool {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var cie x509.CertificateInvalidError
	var he x509.HostnameError
	return errors.Is(err, ErrAuth) || errors.As(err, &cve) || errors.As(err, &uae) ||
		errors.As(err, &cie) || errors.As(err, &he) || isRemoteAlert(err)
}

// isRemoteAlert reports a TLS alert received from the peer.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// Close closes the connection; pending and later calls fail with ErrClosed.
// It waits for the client's goroutines to exit. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	close(c.done)
	cc := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cc != nil {
		cc.fail(errClientClosed)
	}
	c.wg.Wait()
	return nil
}

// clientConn is one connection to the server.
type clientConn struct {
	c        *Client
	tc       *tls.Conn
	br       *bufio.Reader
	lim      Limits // the server's, from its hello
	maxFrame int

	wmu     sync.Mutex // serialises writes
	wbuf    []byte
	dlMu    sync.Mutex // guards the write deadline against late AfterFuncs
	writeID uint64
	writing bool

	mu       sync.Mutex
	pending  map[uint32]chan frame
	cancels  []uint32 // cancel frames not yet written
	flushing bool     // a goroutine is writing cancels
	nextID   uint32
	err      error
	dead     chan struct{}
}

func (cc *clientConn) isDead() bool {
	select {
	case <-cc.dead:
		return true
	default:
		return false
	}
}

// fail marks the connection dead with err (the first error wins) and
// closes it; calls waiting on it return err.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
		close(cc.dead)
	}
	cc.mu.Unlock()
	cc.tc.Close()
}

func (cc *clientConn) deadErr() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err
}

func (cc *clientConn) readLoop() {
	defer cc.c.wg.Done()
	for {
		f, err := readFrame(cc.br, cc.maxFrame, nil)
		if err != nil {
			cc.fail(fmt.Errorf("rendezvous: connection to %s lost: %w: %w", cc.c.addr, ErrUnavailable, err))
			return
		}
		if f.Kind != kindResponse {
			cc.fail(fmt.Errorf("rendezvous: server %s sent a %v frame: %w: %w", cc.c.addr, f.Kind, ErrUnavailable, ErrProtocol))
			return
		}
		cc.mu.Lock()
		ch, ok := cc.pending[f.ID]
		delete(cc.pending, f.ID)
		cc.mu.Unlock()
		if ok {
			ch <- f // buffered
		}
		// Else a late answer to a call whose context ended: drop it.
	}
}

func (cc *clientConn) pingLoop() {
	defer cc.c.wg.Done()
	every := cc.c.cfg.KeepAlive
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cc.dead:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		_, err := cc.roundTrip(ctx, &frame{Kind: kindPing})
		cancel()
		if err != nil && !cc.isDead() {
			cc.fail(fmt.Errorf("rendezvous: server %s did not answer a ping within %v: %w", cc.c.addr, every, ErrUnavailable))
			return
		}
	}
}

// send writes one frame. A write interrupted by ctx or failed for any
// reason leaves the stream unusable, so it fails the connection.
func (cc *clientConn) send(ctx context.Context, f *frame) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	// Queued cancels go first, so that the server has released the
	// canceled Waits before it sees anything this caller sends next.
	cc.mu.Lock()
	cancels := cc.cancels
	cc.cancels = nil
	cc.mu.Unlock()
	cc.wbuf = cc.wbuf[:0]
	var err error
	for _, id := range cancels {
		if cc.wbuf, err = appendFrame(cc.wbuf, &frame{Kind: kindCancel, ID: id}); err != nil {
			return err
		}
	}
	if f != nil {
		if cc.wbuf, err = appendFrame(cc.wbuf, f); err != nil {
			return err
		}
	}
	if len(cc.wbuf) == 0 {
		return nil
	}
	dl := time.Now().Add(cc.c.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	cc.dlMu.Lock()
	cc.writeID++
	id := cc.writeID
	cc.writing = true
	cc.dlMu.Unlock()
	cc.tc.SetWriteDeadline(dl)
	stop := context.AfterFunc(ctx, func() {
		cc.dlMu.Lock()
		if cc.writing && cc.writeID == id {
			cc.tc.SetWriteDeadline(time.Now())
		}
		cc.dlMu.Unlock()
	})
	_, err = cc.tc.Write(cc.wbuf)
	cc.dlMu.Lock()
	cc.writing = false
	cc.dlMu.Unlock()
	stop()
	if cap(cc.wbuf) > 64<<10 {
		cc.wbuf = nil
	}
	if err != nil {
		cerr := fmt.Errorf("rendezvous: write to %s: %w: %w", cc.c.addr, ErrUnavailable, err)
		cc.fail(cerr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return cc.deadErr()
	}
	return nil
}

// roundTrip sends req and waits for its response, ctx, or the connection's
// death.
func (cc *clientConn) roundTrip(ctx context.Context, req *frame) (frame, error) {
	if err := ctx.Err(); err != nil {
		return frame{}, err
	}
	ch := make(chan frame, 1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return frame{}, err
	}
	cc.nextID++
	if cc.nextID == 0 {
		cc.nextID++
	}
	req.ID = cc.nextID
	cc.pending[req.ID] = ch
	cc.mu.Unlock()
	forget := func() {
		cc.mu.Lock()
		delete(cc.pending, req.ID)
		cc.mu.Unlock()
	}
	if err := cc.send(ctx, req); err != nil {
		forget()
		return frame{}, err
	}
	select {
	case f := <-ch:
		return f, nil
	case <-cc.dead:
		forget()
		select {
		case f := <-ch: // answered just before the connection died
			return f, nil
		default:
		}
		return frame{}, cc.deadErr()
	case <-ctx.Done():
		forget()
		if req.Kind == kindWait {
			cc.cancelAsync(req.ID)
		}
		return frame{}, ctx.Err()
	}
}

// cancelAsync tells the server to stop a Wait, without blocking the caller:
// the cancel is queued, written before the connection's next frame, and
// flushed by a goroutine if no other frame comes first.
func (cc *clientConn) cancelAsync(id uint32) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.cancels = append(cc.cancels, id)
	start := !cc.flushing
	cc.flushing = true
	cc.mu.Unlock()
	if !start {
		return
	}
	cc.c.mu.Lock()
	if cc.c.closed {
		cc.c.mu.Unlock()
		return
	}
	cc.c.wg.Add(1)
	cc.c.mu.Unlock()
	go func() {
		defer cc.c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), cc.c.cfg.WriteTimeout)
		defer cancel()
		cc.mu.Lock()
		cc.flushing = false
		cc.mu.Unlock()
		cc.send(ctx, nil)
	}()
}

// call runs one request on the live connection, dialing if needed, and
// returns its response.
func (c *Client) call(ctx context.Context, op, key string, req *frame, check func(Limits) error) (frame, error) {
	cc, err := c.conn(ctx)
	if err != nil {
		return frame{}, wrapOp(op, key, err)
	}
	if check != nil {
		if err := check(cc.lim); err != nil {
			return frame{}, err
		}
	}
	f, err := cc.roundTrip(ctx, req)
	if err != nil {
		return frame{}, wrapOp(op, key, err)
	}
	return f, nil
}

func wrapOp(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("rendezvous: %s %q: %w", op, key, err)
	}
	return err
}

// remoteError is an error reported by the server.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg + " (reported by the server)" }
func (e *remoteError) Unwrap() error { return e.err }

// responseError turns a non-OK response into an error wrapping the
// matching sentinel.
func responseError(op, key string, f *frame) error {
	var sentinel error
	switch f.Status {
	case statusOK:
		return nil
	case statusNotFound:
		sentinel = ErrNotFound
	case statusTimeout:
		sentinel = ErrTimeout
	case statusTooLarge:
		sentinel = ErrTooLarge
	case statusInvalidKey:
		sentinel = ErrInvalidKey
	case statusNotCounter:
		sentinel = ErrNotCounter
	case statusOverflow:
		sentinel = ErrOverflow
	case statusCanceled:
		sentinel = context.Canceled
	case statusUnavailable, statusBusy:
		sentinel = ErrUnavailable
	default:
		sentinel = errors.New("rendezvous: server error")
	}
	if op == "wait" && f.Keys != nil {
		return &WaitError{Missing: f.Keys, Timeout: time.Duration(f.Int) * time.Millisecond, Err: sentinel}
	}
	msg := f.Msg
	if msg == "" {
		msg = fmt.Sprintf("rendezvous: %s %q failed", op, key)
	}
	return &remoteError{msg: msg, err: sentinel}
}

// Set implements Store.
func (c *Client) Set(ctx context.Context, key string, value []byte) error {
	f, err := c.call(ctx, "set", key, &frame{Kind: kindSet, Key: key, Value: value}, func(l Limits) error {
		if err := l.checkKey("set", key); err != nil {
			return err
		}
		return l.checkValue("set", key, value)
	})
	if err != nil {
		return err
	}
	return responseError("set", key, &f)
}

// Get implements Store.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	f, err := c.call(ctx, "get", key, &frame{Kind: kindGet, Key: key}, func(l Limits) error { return l.checkKey("get", key) })
	if err != nil {
		return nil, err
	}
	if err := responseError("get", key, &f); err != nil {
		return nil, err
	}
	return f.Value, nil
}

// Add implements Store.
func (c *Client) Add(ctx context.Context, key string, delta int64) (int64, error) {
	f, err := c.call(ctx, "add", key, &frame{Kind: kindAdd, Key: key, Int: delta}, func(l Limits) error { return l.checkKey("add", key) })
	if err != nil {
		return 0, err
	}
	if err := responseError("add", key, &f); err != nil {
		return 0, err
	}
	return f.Int, nil
}

// CompareAndSet implements Store.
func (c *Client) CompareAndSet(ctx context.Context, key string, old, new []byte) (bool, []byte, error) {
	req := &frame{Kind: kindCAS, Key: key, HasOld: old != nil, Old: old, Value: new}
	f, err := c.call(ctx, "compare-and-set", key, req, func(l Limits) error {
		if err := l.checkKey("compare-and-set", key); err != nil {
			return err
		}
		return l.checkValue("compare-and-set", key, new)
	})
	if err != nil {
		return false, nil, err
	}
	if err := responseError("compare-and-set", key, &f); err != nil {
		return false, nil, err
	}
	var cur []byte
	if f.HasValue {
		cur = f.Value
	}
	return f.Swapped, cur, nil
}

// Delete implements Store.
func (c *Client) Delete(ctx context.Context, key string) error {
	f, err := c.call(ctx, "delete", key, &frame{Kind: kindDelete, Key: key}, func(l Limits) error { return l.checkKey("delete", key) })
	if err != nil {
		return err
	}
	return responseError("delete", key, &f)
}

// Wait implements Store. The server waits, notified by the writes it
// serves; the client does not poll. If ctx ends first, Missing in the
// returned *WaitError lists all of keys (the client does not know which
// arrived).
func (c *Client) Wait(ctx context.Context, keys []string, timeout time.Duration) error {
	var ms int64
	if timeout > 0 {
		ms = int64((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	req := &frame{Kind: kindWait, Keys: keys, Int: ms}
	cc, err := c.conn(ctx)
	if err != nil {
		return &WaitError{Missing: append([]string(nil), keys...), Err: err}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := cc.lim.checkKeys("wait", keys); err != nil {
		return err
	}
	size := minFrameLen + 8 + 4
	for _, k := range keys {
		size += 2 + len(k)
	}
	if size > cc.maxFrame {
		return fmt.Errorf("rendezvous: wait for %d keys: request of %d bytes exceeds the server's %d-byte frame limit; wait in batches: %w",
			len(keys), size, cc.maxFrame, ErrTooLarge)
	}
	f, err := cc.roundTrip(ctx, req)
	if err != nil {
		return &WaitError{Missing: append([]string(nil), keys...), Err: err}
	}
	if f.Status == statusTimeout {
		return &WaitError{Missing: f.Keys, Timeout: timeout, Err: ErrTimeout}
	}
	return responseError("wait", "", &f)
}

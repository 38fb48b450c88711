package rendezvous

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawConn opens an authenticated TLS connection and reads the server's
// hello, so that a test can write arbitrary bytes as a job member.
func rawConn(t *testing.T, addr string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	creds := issue(t, testCA(t), "rank", 99)
	conf := creds.ClientTLSConfig()
	conf.NextProtos = []string{alpnStore}
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readFrame(br, 64, nil)
	if err != nil || f.Kind != kindHello {
		t.Fatalf("hello: %v, %v", f.Kind, err)
	}
	c.SetReadDeadline(time.Time{})
	return c, br
}

// expectDropped asserts that the server closes c within d.
func expectDropped(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server did not drop the connection within %v", d)
	}
}

// stillServes asserts that a fresh client can use the server.
func stillServes(t *testing.T, addr string) {
	t.Helper()
	c := dialTest(t, addr, nil)
	ctx := ctxT(t)
	if err := c.Set(ctx, "alive", []byte("yes")); err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
	if v, err := c.Get(ctx, "alive"); err != nil || string(v) != "yes" {
		t.Fatalf("server stopped serving: %q, %v", v, err)
	}
	c.Close()
}

func TestServerBadInput(t *testing.T) {
	ts := startServer(t, ServerConfig{ReadTimeout: 200 * time.Millisecond, IdleTimeout: 400 * time.Millisecond, MaxWaits: 4})
	frameBytes := func(f frame) []byte {
		b, err := appendFrame(nil, &f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		send func(c net.Conn)
		log  string
	}{
		{"bad version", func(c net.Conn) {
			b := frameBytes(frame{Kind: kindGet, ID: 1, Key: "k"})
			b[4] = 9
			c.Write(b)
		}, "version"},
		{"unknown kind", func(c net.Conn) {
			b := frameBytes(frame{Kind: kindPing, ID: 1})
			b[5] = 0x42
			c.Write(b)
		}, "kind"},
		{"response from client", func(c net.Conn) { c.Write(frameBytes(frame{Kind: kindResponse, ID: 1})) }, "response frame"},
		{"trailing garbage in frame", func(c net.Conn) {
			b := frameBytes(frame{Kind: kindGet, ID: 1, Key: "k"})
			b = append(b, 0xAA)
			binary.BigEndian.PutUint32(b, uint32(len(b)-4))
			c.Write(b)
		}, "trailing"},
		{"oversized frame", func(c net.Conn) {
			var b [8]byte
			binary.BigEndian.PutUint32(b[:], 0x7fffffff)
			c.Write(b[:])
		}, "exceeds"},
		{"undersized length", func(c net.Conn) { c.Write([]byte{0, 0, 0, 1, 1}) }, "minimum"},
		{"slowloris", func(c net.Conn) {
			b := frameBytes(frame{Kind: kindSet, ID: 1, Key: "k", Value: make([]byte, 100)})
			c.Write(b[:20]) // then silence
		}, "deadline"},
		{"idle", func(c net.Conn) {}, "deadline"},
		{"duplicate wait id", func(c net.Conn) {
			c.Write(frameBytes(frame{Kind: kindWait, ID: 7, Keys: []string{"never"}}))
			c.Write(frameBytes(frame{Kind: kindWait, ID: 7, Keys: []string{"never"}}))
		}, "reused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawConn(t, ts.addr)
			tc.send(c)
			start := time.Now()
			expectDropped(t, c, br, 3*time.Second)
			if tc.name == "slowloris" || tc.name == "idle" {
				t.Logf("dropped after %v", time.Since(start))
			}
			ts.log.waitFor(t, tc.log)
			stillServes(t, ts.addr)
		})
	}

	t.Run("disconnect mid-frame", func(t *testing.T) {
		c, _ := rawConn(t, ts.addr)
		b := frameBytes(frame{Kind: kindSet, ID: 1, Key: "k", Value: make([]byte, 1000)})
		c.Write(b[:500])
		c.Close()
		stillServes(t, ts.addr)
	})

	t.Run("disconnect with pending waits", func(t *testing.T) {
		c, _ := rawConn(t, ts.addr)
		for i := range 3 {
			c.Write(frameBytes(frame{Kind: kindWait, ID: uint32(i + 1), Keys: []string{"never"}}))
		}
		time.Sleep(50 * time.Millisecond)
		c.Close()
		stillServes(t, ts.addr)
	})

	t.Run("too many waits", func(t *testing.T) {
		cl := dialTest(t, ts.addr, nil)
		ctx, cancel := context.WithCancel(ctxT(t))
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := cl.Wait(ctx, []string{"never"}, 0); !errors.Is(err, context.Canceled) {
					t.Errorf("background Wait = %v", err)
				}
			}()
		}
		time.Sleep(200 * time.Millisecond) // let the four register
		err := cl.Wait(ctxT(t), []string{"never"}, time.Second)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "waits pending") {
			t.Fatalf("fifth Wait = %v, want ErrUnavailable (busy)", err)
		}
		cancel()
		wg.Wait()
		// Canceled waits are released on the server.
		if err := cl.Wait(ctxT(t), []string{"alive"}, time.Second); err != nil {
			t.Fatalf("Wait after releasing = %v", err)
		}
	})

	t.Run("not TLS", func(t *testing.T) {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		expectDropped(t, c, bufio.NewReader(c), 3*time.Second)
		ts.log.waitFor(t, "rejected connection")
		stillServes(t, ts.addr)
	})

	t.Run("silent before handshake", func(t *testing.T) {
		ts2 := startServer(t, ServerConfig{HandshakeTimeout: 200 * time.Millisecond})
		c, err := net.Dial("tcp", ts2.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		expectDropped(t, c, bufio.NewReader(c), 3*time.Second)
		ts2.log.waitFor(t, "handshake timed out")
		stillServes(t, ts2.addr)
	})
}

// TestKeepAliveBeatsIdleTimeout: a client with a Wait pending longer than
// the server's idle timeout is not dropped, thanks to its pings.
func TestKeepAliveBeatsIdleTimeout(t *testing.T) {
	ts := startServer(t, ServerConfig{IdleTimeout: 150 * time.Millisecond})
	ctx := ctxT(t)
	c, err := Dial(ctx, ts.addr, ClientConfig{Credentials: issue(t, testCA(t), "rank", 1), KeepAlive: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other := dialTest(t, ts.addr, nil)
	go func() {
		time.Sleep(500 * time.Millisecond)
		other.Set(ctx, "late", nil)
	}()
	if err := c.Wait(ctx, []string{"late"}, 5*time.Second); err != nil {
		t.Fatalf("Wait across idle timeouts = %v", err)
	}
}

func TestClientMultiplexing(t *testing.T) {
	ts := startServer(t, ServerConfig{})
	ctx := ctxT(t)
	c := dialTest(t, ts.addr, nil)
	done := make(chan error, 1)
	go func() { done <- c.Wait(ctx, []string{"go"}, 10*time.Second) }()
	// The pending Wait must not block other calls on the same client.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Add(ctx, "n", int64(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-done:
		t.Fatalf("Wait returned early: %v", err)
	default:
	}
	c.Set(ctx, "go", nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Add(ctx, "n", 0); n != 190 {
		t.Fatalf("n = %d, want 190", n)
	}
}

func TestServerGoneAndBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ts := startServerOn(t, ln, ServerConfig{})
	ctx := ctxT(t)
	c := dialTest(t, addr, nil)
	if err := c.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait(ctx, []string{"never"}, 0) }()
	time.Sleep(30 * time.Millisecond)
	ts.srv.Close()
	if err := <-ts.done; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close = %v, want ErrClosed", err)
	}
	select {
	case err := <-waitErr:
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("pending Wait when the server went away = %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending Wait hung after the server went away")
	}
	start := time.Now()
	for _, call := range []func() error{
		func() error { return c.Set(ctx, "k", nil) },
		func() error { _, err := c.Get(ctx, "k"); return err },
		func() error { _, err := c.Add(ctx, "k", 1); return err },
		func() error { return c.Wait(ctx, []string{"k"}, time.Second) },
	} {
		if err := call(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call with the server gone = %v, want ErrUnavailable", err)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("calls took %v to fail", el)
	}

	// A server on the same address again: the client reconnects.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot rebind %s: %v", addr, err)
	}
	startServerOn(t, ln2, ServerConfig{})
	if err := c.Set(ctx, "k2", []byte("v2")); err != nil {
		t.Fatalf("Set after the server came back = %v", err)
	}
	if v, err := c.Get(ctx, "k2"); err != nil || string(v) != "v2" {
		t.Fatalf("Get after reconnect = %q, %v", v, err)
	}
}

func TestDialNoServer(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := Dial(ctxT(t), addr, ClientConfig{Credentials: issue(t, testCA(t), "rank", 0)})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Dial with no server = %v, want ErrUnavailable", err)
	}
	// A server that accepts TCP but never answers: Dial honours ctx.
	ln, _ = net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, ln.Addr().String(), ClientConfig{Credentials: issue(t, testCA(t), "rank", 0)})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("Dial to a mute server = %v after %v", err, time.Since(start))
	}
}

// authCase dials a server of testCA with client credentials and expects
// ErrAuth, with want in the message.
func expectAuthFailure(t *testing.T, addr string, creds *Credentials, want string) {
	t.Helper()
	_, err := Dial(ctxT(t), addr, ClientConfig{Credentials: creds})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Dial = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Dial error %q does not say %q", err, want)
	}
	t.Logf("client saw: %v", err)
}

// hybrid returns credentials presenting cert but trusting trustCA: a party
// that knows which server to trust but is not a member of its job.
func hybrid(t *testing.T, cert *Credentials, trust *JobCA) *Credentials {
	pool := x509.NewCertPool()
	pool.AddCert(trust.Certificate())
	return &Credentials{id: Identity{JobID: trust.JobID(), Role: "rank", Rank: 0}, cert: cert.cert, ca: trust.Certificate(), pool: pool}
}

func TestAuthFailures(t *testing.T) {
	ca := testCA(t)
	ts := startServer(t, ServerConfig{})
	other, err := NewJobCA()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("server from another job", func(t *testing.T) {
		expectAuthFailure(t, ts.addr, issue(t, other, "rank", 0), "not from this job")
		ts.log.waitFor(t, "rejected connection")
	})
	t.Run("client cert from another job", func(t *testing.T) {
		expectAuthFailure(t, ts.addr, hybrid(t, issue(t, other, "rank", 0), ca), "rejected this party's certificate")
		ts.log.waitFor(t, "not from this job")
	})
	t.Run("foreign client cert forced", func(t *testing.T) {
		// A client that sends another job's certificate even though the
		// server asked for this job's CA.
		foreign := issue(t, other, "rank", 0)
		conf := issue(t, ca, "rank", 0).ClientTLSConfig()
		conf.NextProtos = []string{alpnStore}
		conf.Certificates = nil
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign.cert, nil }
		c, err := tls.Dial("tcp", ts.addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = readFrame(bufio.NewReader(c), 64, nil)
		if !isRemoteAlert(err) {
			t.Fatalf("read after a rejected handshake = %v, want a TLS alert", err)
		}
		ts.log.waitFor(t, "not signed by this job's CA")
	})
	t.Run("no client cert", func(t *testing.T) {
		good := issue(t, ca, "rank", 0)
		nocert := *good
		nocert.cert = tls.Certificate{}
		expectAuthFailure(t, ts.addr, &nocert, "rejected this party's certificate")
	})
	t.Run("expired client cert", func(t *testing.T) {
		old, err := ca.issue("rank", 3, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		expectAuthFailure(t, ts.addr, old, "rejected this party's certificate")
		ts.log.waitFor(t, "expired")
	})
	t.Run("expired server cert", func(t *testing.T) {
		old, err := ca.issue("server", 0, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ts2 := startServer(t, ServerConfig{Credentials: old})
		expectAuthFailure(t, ts2.addr, issue(t, ca, "rank", 0), "expired")
	})
	t.Run("right CA, wrong job ID", func(t *testing.T) {
		// A certificate signed by this job's CA key but naming another job
		// (which the CA never issues) is still refused.
		forged := forgeLeaf(t, ca, "sealring://job/0123456789abcdef0123456789abcdef/rank/0")
		expectAuthFailure(t, ts.addr, forged, "rejected this party's certificate")
		ts.log.waitFor(t, "not from this job")
	})
	t.Run("self-signed claiming the job", func(t *testing.T) {
		imposter, err := newJobCA(ca.JobID(), ed25519.NewKeyFromSeed(make([]byte, 32)), big.NewInt(1), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// Same job ID, different CA key: not a member.
		expectAuthFailure(t, ts.addr, hybrid(t, issue(t, imposter, "rank", 0), ca), "rejected this party's certificate")
		ts2 := startServer(t, ServerConfig{Credentials: issue(t, imposter, "server", 0)})
		expectAuthFailure(t, ts2.addr, issue(t, ca, "rank", 0), "not signed by this job's CA")
	})
	t.Run("wrong secret", func(t *testing.T) {
		dir := t.TempDir()
		s1, s2 := filepath.Join(dir, "s1"), filepath.Join(dir, "s2")
		if _, err := NewJobSecret(s1); err != nil {
			t.Fatal(err)
		}
		if _, err := NewJobSecret(s2); err != nil {
			t.Fatal(err)
		}
		srvCreds, err := CredentialsFromSecret(s1, "server", 0)
		if err != nil {
			t.Fatal(err)
		}
		ts3 := startServer(t, ServerConfig{Credentials: srvCreds})
		bad, err := CredentialsFromSecret(s2, "rank", 1)
		if err != nil {
			t.Fatal(err)
		}
		expectAuthFailure(t, ts3.addr, bad, "not from this job")
		good, err := CredentialsFromSecret(s1, "rank", 1)
		if err != nil {
			t.Fatal(err)
		}
		c := dialTest(t, ts3.addr, good)
		if err := c.Set(ctxT(t), "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	})
	// The rejected parties did not disturb the server.
	stillServes(t, ts.addr)
}

// forgeLeaf signs, with ca's key, a leaf carrying an arbitrary URI.
func forgeLeaf(t *testing.T, ca *JobCA, uri string) *Credentials {
	t.Helper()
	u, _ := url.Parse(uri)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "forged"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{jobDNSName(ca.JobID())},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &Credentials{id: Identity{JobID: ca.JobID(), Role: "rank"},
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, ca: ca.cert, pool: pool}
}

// TestNoGoroutineLeaks closes a busy server and its clients and checks that
// every goroutine of the package exits.
func TestNoGoroutineLeaks(t *testing.T) {
	checkNoLeaks(t) // start clean
	func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := NewServer(ServerConfig{Credentials: issue(t, testCA(t), "server", 0), Logger: discardLogger})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		ctx := ctxT(t)
		var clients []*Client
		var wg sync.WaitGroup
		for i := range 4 {
			c, err := Dial(ctx, ln.Addr().String(), ClientConfig{Credentials: issue(t, testCA(t), "rank", i), KeepAlive: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
			c.Set(ctx, "k", nil)
			wg.Add(2)
			go func() { defer wg.Done(); c.Wait(ctx, []string{"never"}, 0) }()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
			go func() { defer wg.Done(); defer cancel(); c.Wait(wctx, []string{"never2"}, 0) }()
		}
		raw, _ := rawConn(t, ln.Addr().String())
		raw.Write([]byte{0, 0, 0, 40, 1}) // a partial frame, left hanging
		time.Sleep(100 * time.Millisecond)
		clients[0].Close() // a client closes with a Wait pending
		srv.Close()        // the server closes under the others
		for _, c := range clients[1:] {
			c.Close()
		}
		wg.Wait()
		<-served
		raw.Close()
	}()
	checkNoLeaks(t)
}

func TestListenAndServe(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	srv, err := NewServer(ServerConfig{Credentials: issue(t, testCA(t), "server", 0), Addr: addr, Logger: discardLogger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	var c *Client
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err = Dial(ctxT(t), addr, ClientConfig{Credentials: issue(t, testCA(t), "rank", 0)})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.Close()
	if err := c.Set(ctxT(t), "k", nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ListenAndServe after cancel = %v", err)
	}
	if _, err := c.Get(ctxT(t), "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get after the server stopped = %v", err)
	}
	if err := srv.Serve(ln); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close = %v", err)
	}
	if _, err := NewServer(ServerConfig{}); err == nil {
		t.Fatal("NewServer without credentials succeeded")
	}
	if _, err := Dial(ctxT(t), addr, ClientConfig{}); err == nil {
		t.Fatal("Dial without credentials succeeded")
	}
}

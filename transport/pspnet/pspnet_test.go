package pspnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure/psp"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func creds(t *testing.T, ca *rendezvous.JobCA, role string, rank int) *rendezvous.Credentials {
	t.Helper()
	c, err := ca.Issue(role, rank)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func upper(_ uint32, req []byte) []byte { return bytes.ToUpper(req) }

func startServer(t *testing.T, ca *rendezvous.JobCA, cfg ServerConfig) *Server {
	t.Helper()
	cfg.TLSConfig = creds(t, ca, "server", 0).ServerTLSConfig()
	if cfg.Handler == nil {
		cfg.Handler = upper
	}
	if cfg.KeyAddr == "" {
		cfg.KeyAddr = "127.0.0.1:0"
	}
	if cfg.UDPAddr == "" {
		cfg.UDPAddr = "127.0.0.1:0"
	}
	cfg.Logger = quiet()
	s, err := Listen(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, ca *rendezvous.JobCA, s *Server, v psp.Version) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, s.KeyAddr().String(), ClientConfig{TLSConfig: creds(t, ca, "rank", 1).ClientTLSConfig(), Version: v})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func exchange(t *testing.T, c *Client, msg string, wait time.Duration) (string, error) {
	t.Helper()
	if err := c.Send([]byte(msg)); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	buf := make([]byte, 2048)
	n, err := c.Recv(ctx, buf)
	return string(buf[:n]), err
}

func TestExchange(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	s := startServer(t, ca, ServerConfig{})
	for _, v := range []psp.Version{psp.V0, psp.V1, psp.V2, psp.V3} {
		c := dial(t, ca, s, v)
		if c.SPI()&1 != 0 || c.SPI() == 0 {
			t.Fatalf("client SPI %08x", c.SPI())
		}
		for i := range 3 {
			got, err := exchange(t, c, "hello psp", 5*time.Second)
			if err != nil || got != "HELLO PSP" {
				t.Fatalf("%v round %d: %q %v", v, i, got, err)
			}
		}
	}
	if opened, rejected := s.Stats(); opened != 12 || rejected != 0 {
		t.Fatalf("stats %d opened, %d rejected", opened, rejected)
	}
}

// TestStatelessRestart: the server keeps no per-client key state, so a new
// server process with the same master keys serves an existing client.
func TestStatelessRestart(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	var mk [2][psp.MasterKeyLen]byte
	mk[0][0], mk[1][0] = 1, 2
	// First start with these keys: nothing handed out under them yet.
	p1, _ := psp.NewServer(psp.ServerConfig{MasterKeys: &mk, Allocated: &[2]uint32{}})
	s1 := startServer(t, ca, ServerConfig{PSP: p1})
	c := dial(t, ca, s1, psp.V1)
	if got, err := exchange(t, c, "one", 5*time.Second); err != nil || got != "ONE" {
		t.Fatalf("%q %v", got, err)
	}
	addr := s1.UDPAddr().String()
	s1.Close()
	state := p1.Allocated()
	p2, _ := psp.NewServer(psp.ServerConfig{MasterKeys: &mk, Allocated: &state})
	s2 := startServer(t, ca, ServerConfig{PSP: p2, UDPAddr: addr})
	if got, err := exchange(t, c, "two", 5*time.Second); err != nil || got != "TWO" {
		t.Fatalf("after restart: %q %v", got, err)
	}
	if opened, _ := s2.Stats(); opened != 1 {
		t.Fatalf("restarted server opened %d", opened)
	}
	// A client that joins after the restart must not get c's SPI (and so
	// c's key) again.
	c2 := dial(t, ca, s2, psp.V1)
	if c2.SPI() == c.SPI() {
		t.Fatalf("SPI %08x handed out again after the restart", c2.SPI())
	}
	// Restarted without the allocation state, the server cannot know
	// which SPIs are taken: it rotates before handing one out.
	addr = s2.UDPAddr().String()
	s2.Close()
	p3, _ := psp.NewServer(psp.ServerConfig{MasterKeys: &mk})
	s3 := startServer(t, ca, ServerConfig{PSP: p3, UDPAddr: addr})
	c3 := dial(t, ca, s3, psp.V1)
	if c3.SPI()>>31 != 1 {
		t.Fatalf("SPI %08x handed out under a restored key without its allocation state", c3.SPI())
	}
	for _, cl := range []*Client{c, c2, c3} {
		if got, err := exchange(t, cl, "three", 5*time.Second); err != nil || got != "THREE" {
			t.Fatalf("after new handovers: %q %v", got, err)
		}
	}
}

func TestRotation(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	s := startServer(t, ca, ServerConfig{})
	c := dial(t, ca, s, psp.V0)
	if err := s.PSP().Rotate(); err != nil {
		t.Fatal(err)
	}
	if got, err := exchange(t, c, "still", 5*time.Second); err != nil || got != "STILL" {
		t.Fatalf("after one rotation: %q %v", got, err)
	}
	c2 := dial(t, ca, s, psp.V0)
	if c2.SPI()>>31 != 1 {
		t.Fatalf("new client after rotation got SPI %08x", c2.SPI())
	}
	if err := s.PSP().Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(t, c, "gone", 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after two rotations: %v, want no answer", err)
	}
	if got, err := exchange(t, c2, "ok", 5*time.Second); err != nil || got != "OK" {
		t.Fatalf("second client: %q %v", got, err)
	}
}

// TestRejects: garbage, forgeries and a reflected reply are dropped and
// counted; the server stays up.
func TestRejects(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	var reply []byte
	s := startServer(t, ca, ServerConfig{})
	c := dial(t, ca, s, psp.V1)
	raw, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Capture a genuine reply on a raw socket by sealing a request with the
	// client's key through the client itself, then reflect it.
	spy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	hl := c.tx.HeaderLen()
	b := make([]byte, hl+4, hl+4+psp.ICVLen)
	copy(b[hl:], "spy!")
	req, err := c.tx.Seal(b, NextHeader, 0)
	if err != nil {
		t.Fatal(err)
	}
	spy.WriteTo(req, s.UDPAddr())
	buf := make([]byte, 2048)
	spy.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := spy.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	reply = buf[:n]
	for _, d := range [][]byte{
		{},
		[]byte("not psp at all"),
		append(bytes.Clone(req[:len(req)-1]), req[len(req)-1]^1),
		reply,
	} {
		raw.Write(d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, rejected := s.Stats(); rejected == 4 {
			break
		}
		if time.Now().After(deadline) {
			_, rejected := s.Stats()
			t.Fatalf("%d rejected, want 4", rejected)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := exchange(t, c, "alive", 5*time.Second); err != nil || got != "ALIVE" {
		t.Fatalf("%q %v", got, err)
	}
}

// TestHandoverAuth: only members of the server's job get keys.
func TestHandoverAuth(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	other, _ := rendezvous.NewJobCA()
	s := startServer(t, ca, ServerConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, s.KeyAddr().String(), ClientConfig{TLSConfig: creds(t, other, "rank", 1).ClientTLSConfig()})
	if !errors.Is(err, ErrHandover) {
		t.Fatalf("client of another job: %v", err)
	}
	noCert := creds(t, ca, "rank", 1).ClientTLSConfig()
	noCert.Certificates = nil
	if _, err := Dial(ctx, s.KeyAddr().String(), ClientConfig{TLSConfig: noCert}); !errors.Is(err, ErrConfig) {
		t.Fatalf("client without a certificate: %v", err)
	}
	// A server config that does not verify clients is refused.
	loose := creds(t, ca, "server", 0).ServerTLSConfig()
	loose.ClientAuth = tls.RequestClientCert
	if _, err := Listen(ctx, ServerConfig{TLSConfig: loose, Handler: upper}); !errors.Is(err, ErrConfig) {
		t.Fatalf("server without client authentication: %v", err)
	}
	if _, err := Listen(ctx, ServerConfig{TLSConfig: creds(t, ca, "server", 0).ServerTLSConfig()}); !errors.Is(err, ErrConfig) {
		t.Fatalf("server without handler: %v", err)
	}
	// A bad request gets a refusal, not keys.
	conn, err := tls.Dial("tcp", s.KeyAddr().String(), func() *tls.Config {
		c := creds(t, ca, "rank", 2).ClientTLSConfig()
		c.NextProtos = []string{ALPN}
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("PSP1\x09"))
	resp, _ := io.ReadAll(conn)
	conn.Close()
	if len(resp) != responseLen || resp[0] != statusBadRequest || !bytes.Equal(resp[8:], make([]byte, 64)) {
		t.Fatalf("bad request answered %x", resp)
	}
}

func TestCloseAndContext(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, ServerConfig{TLSConfig: creds(t, ca, "server", 0).ServerTLSConfig(), Handler: upper,
		KeyAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, ca, s, psp.V0)
	cancel() // closes the server
	deadline := time.Now().Add(5 * time.Second)
	for !s.isClosed() {
		if time.Now().After(deadline) {
			t.Fatal("server not closed by its context")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer rcancel()
	if _, err := c.Recv(rctx, make([]byte, 10)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Recv(context.Background(), make([]byte, 10)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) && !strings.Contains(err.Error(), "closed") {
			t.Fatalf("Recv after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Recv")
	}
	if err := c.Send([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, err := Listen(context.Background(), ServerConfig{TLSConfig: creds(t, ca, "server", 0).ServerTLSConfig(), Handler: upper, UDPAddr: "256.0.0.1:1"}); err == nil {
		t.Fatal("bad UDP address accepted")
	}
}

// sealedRequest seals msg with the client's key without sending it, for a
// test to send (and replay) from a socket of its own.
func sealedRequest(t *testing.T, c *Client, msg string) []byte {
	t.Helper()
	hl := c.tx.HeaderLen()
	b := make([]byte, hl+len(msg), hl+len(msg)+psp.ICVLen)
	copy(b[hl:], msg)
	req, err := c.tx.Seal(b, NextHeader, 0)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestSharedKeyServerReplyIVs: two Servers sharing one psp.Server derive
// the same reply key for an SPI, and a network attacker can replay a
// client's request to both (PSP authenticates neither addresses nor
// freshness). Their reply IVs must still never repeat: they come from one
// counter, so they strictly increase in the order the replies are sealed.
func TestSharedKeyServerReplyIVs(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	keys, err := psp.NewServer(psp.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s1 := startServer(t, ca, ServerConfig{PSP: keys})
	s2 := startServer(t, ca, ServerConfig{PSP: keys})
	c := dial(t, ca, s1, psp.V0)
	req := sealedRequest(t, c, "replayed")
	spy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var last uint64
	buf := make([]byte, 2048)
	for i, s := range []*Server{s1, s2, s1, s2} {
		spy.WriteTo(req, s.UDPAddr())
		spy.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := spy.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := psp.ParsePacket(buf[:n])
		if err != nil || h.SPI != c.SPI()|1 {
			t.Fatalf("reply %d: SPI %08x %v", i, h.SPI, err)
		}
		if h.IV <= last {
			t.Fatalf("reply %d under SPI %08x has IV %d after IV %d: the servers' IV counters overlap", i, h.SPI, h.IV, last)
		}
		last = h.IV
	}
}

// TestHandoverRequiresALPNAndTLS13: the server hands keys out only over
// TLS 1.3 with the handover's ALPN, whatever the caller's tls.Config
// allows.
func TestHandoverRequiresALPNAndTLS13(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	loose := creds(t, ca, "server", 0).ServerTLSConfig()
	loose.MinVersion, loose.MaxVersion = tls.VersionTLS12, 0
	s, err := Listen(context.Background(), ServerConfig{TLSConfig: loose, Handler: upper, KeyAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		name string
		mod  func(*tls.Config)
	}{
		{"no ALPN", func(c *tls.Config) {}},
		{"TLS 1.2", func(c *tls.Config) {
			c.NextProtos = []string{ALPN}
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		}},
	} {
		cfg := creds(t, ca, "rank", 1).ClientTLSConfig()
		c.mod(cfg)
		conn, err := tls.Dial("tcp", s.KeyAddr().String(), cfg)
		if err != nil {
			continue // refused in the handshake: fine
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte("PSP1\x00"))
		resp, _ := io.ReadAll(conn)
		conn.Close()
		if len(resp) == responseLen && resp[0] == statusOK {
			t.Errorf("%s: keys handed out (negotiated %q)", c.name, conn.ConnectionState().NegotiatedProtocol)
		}
	}
}

// fakeKeyServer accepts one TLS connection with cfg and answers any request
// with a well-formed OK response.
func fakeKeyServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var req [requestLen]byte
			if _, err := io.ReadFull(c, req[:]); err == nil {
				var resp [responseLen]byte
				resp[1] = req[4]
				resp[3] = 9
				resp[7] = 2
				c.Write(resp[:])
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestDialChecksServer: the client takes keys only from a server that
// negotiated the handover's ALPN over TLS 1.3, and refuses a TLS config
// that does not verify the server.
func TestDialChecksServer(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	noALPN := creds(t, ca, "server", 0).ServerTLSConfig()
	addr := fakeKeyServer(t, noALPN)
	if c, err := Dial(ctx, addr, ClientConfig{TLSConfig: creds(t, ca, "rank", 1).ClientTLSConfig()}); !errors.Is(err, ErrHandover) {
		if c != nil {
			c.Close()
		}
		t.Errorf("server without ALPN: %v, want ErrHandover", err)
	}
	tls12 := creds(t, ca, "server", 0).ServerTLSConfig()
	tls12.MinVersion, tls12.MaxVersion, tls12.NextProtos = tls.VersionTLS12, tls.VersionTLS12, []string{ALPN}
	addr = fakeKeyServer(t, tls12)
	cc := creds(t, ca, "rank", 1).ClientTLSConfig()
	cc.MinVersion, cc.MaxVersion = tls.VersionTLS12, 0
	if c, err := Dial(ctx, addr, ClientConfig{TLSConfig: cc}); err == nil {
		c.Close()
		t.Error("keys taken over TLS 1.2")
	}
	cc = creds(t, ca, "rank", 1).ClientTLSConfig()
	cc.MinVersion, cc.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if _, err := Dial(ctx, addr, ClientConfig{TLSConfig: cc}); !errors.Is(err, ErrConfig) {
		t.Errorf("client config limited to TLS 1.2: %v, want ErrConfig", err)
	}
	sc := creds(t, ca, "server", 0).ServerTLSConfig()
	sc.MinVersion, sc.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if s, err := Listen(ctx, ServerConfig{TLSConfig: sc, Handler: upper, KeyAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", Logger: quiet()}); !errors.Is(err, ErrConfig) {
		if s != nil {
			s.Close()
		}
		t.Errorf("server config limited to TLS 1.2: %v, want ErrConfig", err)
	}
	s := startServer(t, ca, ServerConfig{})
	insecure := creds(t, ca, "rank", 1).ClientTLSConfig()
	insecure.InsecureSkipVerify, insecure.VerifyConnection = true, nil
	if c, err := Dial(ctx, s.KeyAddr().String(), ClientConfig{TLSConfig: insecure}); !errors.Is(err, ErrConfig) {
		if c != nil {
			c.Close()
		}
		t.Errorf("client config that does not verify the server: %v, want ErrConfig", err)
	}
	anyCA := creds(t, ca, "server", 0).ServerTLSConfig()
	anyCA.ClientCAs = nil
	if s, err := Listen(ctx, ServerConfig{TLSConfig: anyCA, Handler: upper, KeyAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", Logger: quiet()}); !errors.Is(err, ErrConfig) {
		if s != nil {
			s.Close()
		}
		t.Errorf("server config verifying clients against the system roots: %v, want ErrConfig", err)
	}
}

// TestClientCloseWipesKeys: Close wipes the send key as well as the
// receive key.
func TestClientCloseWipesKeys(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	s := startServer(t, ca, ServerConfig{})
	c := dial(t, ca, s, psp.V1)
	c.Close()
	hl := c.tx.HeaderLen()
	if _, err := c.tx.Seal(make([]byte, hl+4, hl+4+psp.ICVLen), NextHeader, 0); err == nil {
		t.Fatal("the client's send key survives Close")
	}
}

// TestRestartConcurrentHandovers: after a restart with master keys but no
// allocation state, the first handovers find the current key exhausted and
// rotate; however many do so at once, the server rotates once, so the
// clients of before the restart (under the restored current key) keep
// working.
func TestRestartConcurrentHandovers(t *testing.T) {
	ca, _ := rendezvous.NewJobCA()
	var mk [2][psp.MasterKeyLen]byte
	mk[0][0], mk[1][0] = 3, 4
	p1, _ := psp.NewServer(psp.ServerConfig{MasterKeys: &mk, Allocated: &[2]uint32{}})
	s1 := startServer(t, ca, ServerConfig{PSP: p1})
	c := dial(t, ca, s1, psp.V0)
	addr := s1.UDPAddr().String()
	s1.Close()
	for round := range 5 {
		p2, _ := psp.NewServer(psp.ServerConfig{MasterKeys: &mk})
		s2 := startServer(t, ca, ServerConfig{PSP: p2, UDPAddr: addr})
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				cl, err := Dial(ctx, s2.KeyAddr().String(), ClientConfig{TLSConfig: creds(t, ca, "rank", 2).ClientTLSConfig()})
				if err != nil {
					t.Error(err)
					return
				}
				cl.Close()
			}()
		}
		wg.Wait()
		if _, gen := p2.Current(); gen != 2 {
			t.Fatalf("round %d: generation %d after the first handovers, want 2 (one rotation)", round, gen)
		}
		if got, err := exchange(t, c, "still", 5*time.Second); err != nil || got != "STILL" {
			t.Fatalf("round %d: client of before the restart: %q %v", round, got, err)
		}
		s2.Close()
	}
}

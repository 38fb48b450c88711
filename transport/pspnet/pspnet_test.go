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
	p1, _ := psp.NewServer(psp.ServerConfig{MasterKeys: &mk})
	s1 := startServer(t, ca, ServerConfig{PSP: p1})
	c := dial(t, ca, s1, psp.V1)
	if got, err := exchange(t, c, "one", 5*time.Second); err != nil || got != "ONE" {
		t.Fatalf("%q %v", got, err)
	}
	addr := s1.UDPAddr().String()
	s1.Close()
	p2, _ := psp.NewServer(psp.ServerConfig{MasterKeys: &mk})
	s2 := startServer(t, ca, ServerConfig{PSP: p2, UDPAddr: addr})
	if got, err := exchange(t, c, "two", 5*time.Second); err != nil || got != "TWO" {
		t.Fatalf("after restart: %q %v", got, err)
	}
	if opened, _ := s2.Stats(); opened != 1 {
		t.Fatalf("restarted server opened %d", opened)
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

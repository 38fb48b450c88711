package quicwire

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"

	"github.com/quic-go/quic-go"

	"github.com/sealring/sealring/rendezvous"
)

// tlsConfigs returns the server and client TLS configurations of a wire:
// the job credentials' own configurations (TLS 1.3, mutual
// authentication against the job CA, same job ID), with our ALPN, and with
// the chain verification moved into VerifyConnection so that every refused
// peer certificate is counted and logged (crypto/tls would reject a
// foreign chain before any callback runs).
//
// The checks are those crypto/tls performs (chain to the job CA, key
// usage, and for a server the job's DNS name), followed by the
// credentials' own VerifyConnection (the leaf names this job).
func (w *Wire) tlsConfigs(creds *rendezvous.Credentials) (server, client *tls.Config) {
	roots := x509.NewCertPool()
	roots.AddCert(creds.CACertificate())

	server = creds.ServerTLSConfig()
	server.NextProtos = []string{ALPN}
	serverCheck := server.VerifyConnection
	// Ask for any certificate and check it below: with ClientCAs set, a
	// client of another job would send none (its certificate matches no
	// listed CA) and crypto/tls would refuse it before any callback.
	server.ClientAuth = tls.RequestClientCert
	server.ClientCAs = nil
	server.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verifyChain(cs, roots, "", x509.ExtKeyUsageClientAuth)
		if err == nil && serverCheck != nil {
			err = serverCheck(cs)
		}
		if err != nil {
			w.refused("client", cs, err)
		}
		return err
	}

	client = creds.ClientTLSConfig()
	client.NextProtos = []string{ALPN}
	clientCheck := client.VerifyConnection
	serverName := client.ServerName
	// Verified below, in VerifyConnection, as crypto/tls would: the
	// documented pattern for custom verification. The handshake signature
	// is checked against the leaf either way.
	client.InsecureSkipVerify = true
	client.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verifyChain(cs, roots, serverName, x509.ExtKeyUsageServerAuth)
		if err == nil && clientCheck != nil {
			err = clientCheck(cs)
		}
		if err != nil {
			w.refused("server", cs, err)
		}
		return err
	}
	return server, client
}

var errNoCertificate = errors.New("quicwire: peer presented no certificate")

func verifyChain(cs tls.ConnectionState, roots *x509.CertPool, dnsName string, usage x509.ExtKeyUsage) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: %w", errNoCertificate, rendezvous.ErrAuth)
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       dnsName,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return fmt.Errorf("quicwire: peer certificate does not chain to this job's CA: %w (%w)", rendezvous.ErrAuth, err)
	}
	return nil
}

// refused counts and logs a peer certificate refused by this end.
func (w *Wire) refused(role string, cs tls.ConnectionState, err error) {
	w.st.authRefusals.Add(1)
	subject := "none"
	if len(cs.PeerCertificates) > 0 {
		subject = cs.PeerCertificates[0].Subject.CommonName
		if id, ierr := rendezvous.IdentityOf(cs.PeerCertificates[0]); ierr == nil {
			subject = id.String()
		}
	}
	w.log.Warn("quicwire: refused peer", "local", w.local, "peer_role", role, "peer", subject, "err", err)
}

// resetKey derives the stateless reset key from the credentials' private
// key and the local address: stable across restarts that reuse the same
// credentials on the same address, secret to their holder. Other key types
// (none today) get a random key.
func resetKey(creds *rendezvous.Credentials, local netip.AddrPort) (*quic.StatelessResetKey, error) {
	var k quic.StatelessResetKey
	certs := creds.ServerTLSConfig().Certificates
	if len(certs) == 1 {
		if priv, ok := certs[0].PrivateKey.(ed25519.PrivateKey); ok {
			b, err := hkdf.Key(sha256.New, priv.Seed(), []byte("sealring/quicwire/v1"), "stateless reset key "+local.String(), len(k))
			if err != nil {
				return nil, err
			}
			copy(k[:], b)
			return &k, nil
		}
	}
	if _, err := rand.Read(k[:]); err != nil {
		return nil, err
	}
	return &k, nil
}

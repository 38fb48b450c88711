package quicwire_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/transport/quicwire"
)

// TestListenFromEnv: a rank with a job secret (as under an external
// launcher) and a rank with a credentials file (as under
// rendezvous/launch) of the same job reach each other.
func TestListenFromEnv(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	secret, err := rendezvous.NewJobSecret(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(rendezvous.EnvRank, "0")
	t.Setenv(rendezvous.EnvWorldSize, "2")
	t.Setenv(rendezvous.EnvSecretFile, secretFile)
	t.Setenv(rendezvous.EnvCredentialsFile, "")
	a, err := quicwire.ListenFromEnv(loopback, quicwire.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	ca, err := rendezvous.JobCAFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	credFile := filepath.Join(dir, "rank1.pem")
	if err := issue(t, ca, 1).Save(credFile); err != nil {
		t.Fatal(err)
	}
	t.Setenv(rendezvous.EnvCredentialsFile, credFile)
	b, err := quicwire.ListenFromEnv(loopback, quicwire.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ra, rb := wiretest.StartReader(t, a, 8), wiretest.StartReader(t, b, 8)
	waitFor(t, a, b.LocalAddr(), rb, 5*time.Second)
	waitFor(t, b, a.LocalAddr(), ra, 5*time.Second)

	t.Setenv(rendezvous.EnvCredentialsFile, "")
	t.Setenv(rendezvous.EnvSecretFile, "")
	if _, err := quicwire.ListenFromEnv(loopback, quicwire.Config{}); err == nil {
		t.Fatal("ListenFromEnv without credentials succeeded")
	}
}

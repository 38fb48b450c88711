package rendezvous

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestJobCAFromSecretDeterministic(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, JobSecretSize)
	a, err := JobCAFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	b, err := JobCAFromSecret(append([]byte(nil), secret...))
	if err != nil {
		t.Fatal(err)
	}
	if a.JobID() != b.JobID() || !bytes.Equal(a.Certificate().Raw, b.Certificate().Raw) {
		t.Fatal("the same secret gave different CAs")
	}
	if !validJobID(a.JobID()) {
		t.Fatalf("job ID %q", a.JobID())
	}
	other := bytes.Repeat([]byte{8}, JobSecretSize)
	c, _ := JobCAFromSecret(other)
	if c.JobID() == a.JobID() || bytes.Equal(c.Certificate().Raw, a.Certificate().Raw) {
		t.Fatal("different secrets gave the same CA")
	}
	// A leaf issued by one derivation verifies against the other's CA.
	leaf := issue(t, a, "rank", 4)
	pool := x509.NewCertPool()
	pool.AddCert(b.Certificate())
	if _, err := leaf.Certificate().Verify(x509.VerifyOptions{Roots: pool, DNSName: jobDNSName(b.JobID()),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if _, err := JobCAFromSecret(secret[:31]); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("short secret: %v", err)
	}
}

// TestJobCAFromSecretVector pins the derivation, so that a change to the
// labels (which would split a job whose ranks run different builds) is
// caught.
func TestJobCAFromSecretVector(t *testing.T) {
	secret := make([]byte, JobSecretSize)
	for i := range secret {
		secret[i] = byte(i)
	}
	ca, err := JobCAFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	// Computed independently with Python's hmac (RFC 5869 by hand).
	const (
		wantJobID = "ddefc9e0312887e107c69c0642fbb62f"
		wantSeed  = "deeb226a0e8c9573d08d03d3e26e1ee03fe0d37d2b18a2d775d13c103b395015"
	)
	if ca.JobID() != wantJobID {
		t.Errorf("job ID of secret 00..1f = %s, want %s", ca.JobID(), wantJobID)
	}
	if got := hex.EncodeToString(ca.key.Seed()); got != wantSeed {
		t.Errorf("CA seed of secret 00..1f = %s, want %s", got, wantSeed)
	}
}

func TestIssueAndIdentity(t *testing.T) {
	ca := testCA(t)
	c := issue(t, ca, "rank", 12)
	id := c.Identity()
	if id.JobID != ca.JobID() || id.Role != "rank" || id.Rank != 12 {
		t.Fatalf("identity %+v", id)
	}
	if got := id.String(); got != "sealring://job/"+ca.JobID()+"/rank/12" {
		t.Fatalf("URI %s", got)
	}
	if got, err := IdentityOf(c.Certificate()); err != nil || got != id {
		t.Fatalf("IdentityOf = %+v, %v", got, err)
	}
	for _, bad := range []struct {
		role string
		rank int
	}{{"", 0}, {"Rank", 0}, {"a/b", 0}, {"rank", -1}, {strings.Repeat("r", 33), 0}} {
		if _, err := ca.Issue(bad.role, bad.rank); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Issue(%q, %d) = %v, want ErrBadCredentials", bad.role, bad.rank, err)
		}
	}
	if life := c.Certificate().NotAfter.Sub(time.Now()); life < DefaultCertLifetime-time.Hour || life > DefaultCertLifetime {
		t.Errorf("lifetime %v", life)
	}
}

func TestCredentialsSaveLoad(t *testing.T) {
	dir := t.TempDir()
	ca := testCA(t)
	c := issue(t, ca, "server", 0)
	path := filepath.Join(dir, "creds.pem")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved with mode %v", fi.Mode().Perm())
	}
	got, err := LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Identity() != c.Identity() || !bytes.Equal(got.Certificate().Raw, c.Certificate().Raw) ||
		!bytes.Equal(got.CACertificate().Raw, ca.Certificate().Raw) {
		t.Fatal("loaded credentials differ")
	}
	// Loaded credentials work on the wire.
	ts := startServer(t, ServerConfig{Credentials: got})
	stillServes(t, ts.addr)

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		os.Chmod(path, mode)
		_, err := LoadCredentials(path)
		if !errors.Is(err, ErrInsecurePermissions) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("load with mode %v = %v, want ErrInsecurePermissions", mode, err)
		}
	}
	os.Chmod(path, 0o600)

	// A key that does not match the certificate.
	other := issue(t, ca, "server", 1)
	path2 := filepath.Join(dir, "other.pem")
	other.Save(path2)
	b1, _ := os.ReadFile(path)
	b2, _ := os.ReadFile(path2)
	mixed := append(b1[:bytes.Index(b1, []byte("-----BEGIN PRIVATE KEY"))], b2[bytes.Index(b2, []byte("-----BEGIN PRIVATE KEY")):]...)
	os.WriteFile(path2, mixed, 0o600)
	if _, err := LoadCredentials(path2); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("mismatched key: %v", err)
	}
	// Expired credentials are refused at load.
	old, _ := ca.issue("rank", 0, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	old.Save(path2)
	if _, err := LoadCredentials(path2); !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
}

func TestJobCASaveLoad(t *testing.T) {
	ca, err := NewJobCA()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := ca.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadJobCA(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobID() != ca.JobID() {
		t.Fatal("job ID changed")
	}
	// Leaves of the reloaded CA verify against the original.
	c := issue(t, got, "rank", 0)
	if _, err := newCredentials(c.Certificate(), nil, ca.Certificate()); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadJobCA(path); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("world-readable CA key: %v", err)
	}
}

func TestJobSecretFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	s, err := NewJobSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v", fi.Mode().Perm())
	}
	got, err := LoadJobSecret(path)
	if err != nil || !bytes.Equal(got, s) {
		t.Fatalf("LoadJobSecret = %x, %v", got, err)
	}
	if _, err := NewJobSecret(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwriting a secret: %v, want fs.ErrExist", err)
	}
	os.Chmod(path, 0o640)
	if _, err := CredentialsFromSecret(path, "rank", 0); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("group-readable secret: %v", err)
	}
	os.Chmod(path, 0o600)
	a, err := CredentialsFromSecret(path, "rank", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := CredentialsFromSecret(path, "rank", 1)
	if err != nil {
		t.Fatal(err)
	}
	if a.JobID() != b.JobID() || !bytes.Equal(a.CACertificate().Raw, b.CACertificate().Raw) {
		t.Fatal("two parties with one secret disagree on the job")
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not hex\n"), 0o600)
	if _, err := LoadJobSecret(bad); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("malformed secret: %v", err)
	}
	if _, err := LoadJobSecret(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing secret: %v", err)
	}
}

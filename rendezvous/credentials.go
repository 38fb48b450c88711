package rendezvous

import (
	"crypto"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Job credentials.
//
// Every job has its own certificate authority (CA), an Ed25519 key pair that
// signs one leaf certificate per party (launcher, store server, rank). A
// leaf names its holder in a URI SAN, sealring://job/<job-id>/<role>/<rank>,
// and carries the DNS SAN job-<job-id>.sealring.invalid, which the client
// uses as the TLS server name. Two parties trust each other if and only if
// their leaves chain to the same job CA and name the same job ID; the role
// and rank are informational (every holder of the job secret can issue
// itself any of them).
//
// The CA comes from one of two places:
//   - NewJobCA draws a random key and job ID; the launcher keeps the CA and
//     hands each party a leaf (Credentials.Save / LoadCredentials).
//   - JobCAFromSecret derives the key and job ID with HKDF-SHA256 from a
//     32-byte job secret that an external launcher (mpirun, srun, torchrun)
//     distributes as a 0600 file; every party derives the same CA and
//     issues its own leaf (CredentialsFromSecret).

// Sentinel errors for credentials.
var (
	// ErrInsecurePermissions reports a secret or key file readable or
	// writable by group or others.
	ErrInsecurePermissions = errors.New("rendezvous: insecure file permissions")
	// ErrBadCredentials reports a malformed secret, certificate or key.
	ErrBadCredentials = errors.New("rendezvous: bad credentials")
)

// JobSecretSize is the size in bytes of a job secret.
const JobSecretSize = 32

// DefaultCertLifetime is the validity of a leaf certificate issued by a
// JobCA whose CertLifetime is zero.
const DefaultCertLifetime = 30 * 24 * time.Hour

// certClockSkew backdates leaf certificates, so that parties whose clocks
// lag the issuer's still accept them.
const certClockSkew = 5 * time.Minute

// HKDF labels. Changing one changes every secret-derived CA.
const (
	hkdfSalt     = "sealring/rendezvous/v1"
	hkdfCASeed   = "sealring job CA ed25519 seed"
	hkdfJobID    = "sealring job id"
	hkdfCASerial = "sealring job CA serial"
)

// Identity names a party of a job, as carried in its certificate.
type Identity struct {
	JobID string // 32 lowercase hex digits
	Role  string // e.g. "rank", "server", "launcher"
	Rank  int    // >= 0
}

// URI returns the identity's URI, sealring://job/<job-id>/<role>/<rank>.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "sealring", Host: "job", Path: "/" + id.JobID + "/" + id.Role + "/" + strconv.Itoa(id.Rank)}
}

// String returns the identity's URI.
func (id Identity) String() string { return id.URI().String() }

func validJobID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func validRole(s string) bool {
	if s == "" || len(s) > 32 || !('a' <= s[0] && s[0] <= 'z') {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// jobDNSName is the DNS SAN shared by all leaves of a job and the server
// name the client verifies.
func jobDNSName(jobID string) string { return "job-" + jobID + ".sealring.invalid" }

// IdentityOf returns the identity carried by a leaf certificate issued by a
// JobCA. It fails unless the certificate has exactly one sealring URI SAN.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var id Identity
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != "sealring" {
			continue
		}
		found++
		parts := strings.Split(u.Path, "/")
		if u.Host != "job" || len(parts) != 4 || parts[0] != "" || u.RawQuery != "" || u.Fragment != "" {
			return Identity{}, fmt.Errorf("rendezvous: certificate URI %q is not sealring://job/<id>/<role>/<rank>: %w", u, ErrBadCredentials)
		}
		id.JobID, id.Role = parts[1], parts[2]
		n, err := strconv.Atoi(parts[3])
		if err != nil || n < 0 || strconv.Itoa(n) != parts[3] || !validJobID(id.JobID) || !validRole(id.Role) {
			return Identity{}, fmt.Errorf("rendezvous: certificate URI %q is not sealring://job/<id>/<role>/<rank>: %w", u, ErrBadCredentials)
		}
		id.Rank = n
	}
	if found != 1 {
		return Identity{}, fmt.Errorf("rendezvous: certificate %q has %d sealring URIs, want 1: %w", cert.Subject.CommonName, found, ErrBadCredentials)
	}
	return id, nil
}

// caJobID returns the job ID named by a CA certificate (sealring://job/<id>).
func caJobID(cert *x509.Certificate) (string, error) {
	if !cert.IsCA || len(cert.URIs) != 1 || cert.URIs[0].Scheme != "sealring" || cert.URIs[0].Host != "job" {
		return "", fmt.Errorf("rendezvous: %q is not a sealring job CA certificate: %w", cert.Subject.CommonName, ErrBadCredentials)
	}
	id := strings.TrimPrefix(cert.URIs[0].Path, "/")
	if !validJobID(id) {
		return "", fmt.Errorf("rendezvous: CA certificate has a malformed job ID %q: %w", id, ErrBadCredentials)
	}
	return id, nil
}

// JobCA is the certificate authority of one job. It issues the leaf
// certificates that parties present to each other.
type JobCA struct {
	// CertLifetime is the validity of issued certificates; zero means
	// DefaultCertLifetime.
	CertLifetime time.Duration

	jobID string
	cert  *x509.Certificate
	key   ed25519.PrivateKey
}

// NewJobCA returns a CA with a random Ed25519 key and a random job ID.
func NewJobCA() (*JobCA, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var id [16]byte
	rand.Read(id[:])
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return newJobCA(hex.EncodeToString(id[:]), key, serial, now.Add(-time.Hour), now.AddDate(10, 0, 0))
}

// JobCAFromSecret derives a job's CA from its secret, deterministically:
// every party holding the same secret gets the same job ID, the same CA key
// and a byte-identical CA certificate.
//
//	seed   = HKDF-SHA256(secret, salt "sealring/rendezvous/v1", info "sealring job CA ed25519 seed", 32)
//	jobID  = hex(HKDF-SHA256(secret, same salt, info "sealring job id", 16))
//	serial = HKDF-SHA256(secret, same salt, info "sealring job CA serial", 16), top bit cleared
//
// The CA key is ed25519.NewKeyFromSeed(seed); the certificate is valid from
// 2000-01-01 to 9999-12-31 (issued leaves carry the real lifetimes).
func JobCAFromSecret(secret []byte) (*JobCA, error) {
	if len(secret) != JobSecretSize {
		return nil, fmt.Errorf("rendezvous: job secret is %d bytes, want %d: %w", len(secret), JobSecretSize, ErrBadCredentials)
	}
	seed, err := hkdf.Key(sha256.New, secret, []byte(hkdfSalt), hkdfCASeed, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	id, err := hkdf.Key(sha256.New, secret, []byte(hkdfSalt), hkdfJobID, 16)
	if err != nil {
		return nil, err
	}
	sn, err := hkdf.Key(sha256.New, secret, []byte(hkdfSalt), hkdfCASerial, 16)
	if err != nil {
		return nil, err
	}
	sn[0] &= 0x7f
	serial := new(big.Int).SetBytes(sn)
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	notBefore := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	return newJobCA(hex.EncodeToString(id), ed25519.NewKeyFromSeed(seed), serial, notBefore, notAfter)
}

func newJobCA(jobID string, key ed25519.PrivateKey, serial *big.Int, notBefore, notAfter time.Time) (*JobCA, error) {
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: "sealring job " + jobID + " CA"},
		NotBefore:                   notBefore,
		NotAfter:                    notAfter,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		URIs:                        []*url.URL{{Scheme: "sealring", Host: "job", Path: "/" + jobID}},
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{jobDNSName(jobID)},
	}
	pub := key.Public()
	// SubjectKeyId from the key, so that the certificate is deterministic.
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki)
	tmpl.SubjectKeyId = sum[:20]
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: create job CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &JobCA{jobID: jobID, cert: cert, key: key}, nil
}

// JobID returns the job's ID, 32 lowercase hex digits.
func (ca *JobCA) JobID() string { return ca.jobID }

// Certificate returns the CA's self-signed certificate.
func (ca *JobCA) Certificate() *x509.Certificate { return ca.cert }

// Issue returns credentials for one party of the job: a fresh Ed25519 key
// and a certificate for it, signed by the CA, valid for CertLifetime,
// usable for both TLS client and server authentication. role is a short
// lowercase name such as "rank", "server" or "launcher"; rank is >= 0.
func (ca *JobCA) Issue(role string, rank int) (*Credentials, error) {
	life := ca.CertLifetime
	if life <= 0 {
		life = DefaultCertLifetime
	}
	now := time.Now()
	return ca.issue(role, rank, now.Add(-certClockSkew), now.Add(life))
}

func (ca *JobCA) issue(role string, rank int, notBefore, notAfter time.Time) (*Credentials, error) {
	if !validRole(role) {
		return nil, fmt.Errorf("rendezvous: issue: role %q must match [a-z][a-z0-9-]{0,31}: %w", role, ErrBadCredentials)
	}
	if rank < 0 {
		return nil, fmt.Errorf("rendezvous: issue: negative rank %d: %w", rank, ErrBadCredentials)
	}
	id := Identity{JobID: ca.jobID, Role: role, Rank: rank}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: fmt.Sprintf("sealring %s %d", role, rank)},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{jobDNSName(ca.jobID)},
		URIs:         []*url.URL{id.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: issue %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return newCredentials(leaf, key, ca.cert)
}

// Save writes the CA certificate and private key as PEM to path with mode
// 0600 (atomically: temporary file and rename).
func (ca *JobCA) Save(path string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return err
	}
	var b []byte
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return writePrivateFile(path, b)
}

// LoadJobCA reads a CA written by JobCA.Save. It refuses a file that group
// or others may access (ErrInsecurePermissions).
func LoadJobCA(path string) (*JobCA, error) {
	b, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	certs, key, err := parsePEMBundle(path, b)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("rendezvous: %s: %d certificates, want the CA only: %w", path, len(certs), ErrBadCredentials)
	}
	jobID, err := caJobID(certs[0])
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %s: %w", path, err)
	}
	edKey, ok := key.(ed25519.PrivateKey)
	if !ok || !edKey.Public().(ed25519.PublicKey).Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("rendezvous: %s: private key does not match the CA certificate: %w", path, ErrBadCredentials)
	}
	return &JobCA{jobID: jobID, cert: certs[0], key: edKey}, nil
}

// Credentials are what one party presents and trusts: its leaf certificate
// and key, and its job's CA certificate. They are immutable and safe to
// share between goroutines.
type Credentials struct {
	id   Identity
	cert tls.Certificate
	ca   *x509.Certificate
	pool *x509.CertPool
}

func newCredentials(leaf *x509.Certificate, key crypto.Signer, ca *x509.Certificate) (*Credentials, error) {
	id, err := IdentityOf(leaf)
	if err != nil {
		return nil, err
	}
	jobID, err := caJobID(ca)
	if err != nil {
		return nil, err
	}
	if id.JobID != jobID {
		return nil, fmt.Errorf("rendezvous: certificate is for job %s but the CA is job %s's: %w", id.JobID, jobID, ErrBadCredentials)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Credentials{
		id:   id,
		cert: tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf},
		ca:   ca,
		pool: pool,
	}, nil
}

// JobID returns the ID of the job the credentials belong to.
func (c *Credentials) JobID() string { return c.id.JobID }

// Identity returns the identity in the credentials' certificate.
func (c *Credentials) Identity() Identity { return c.id }

// Certificate returns the leaf certificate.
func (c *Credentials) Certificate() *x509.Certificate { return c.cert.Leaf }

// CACertificate returns the job CA's certificate.
func (c *Credentials) CACertificate() *x509.Certificate { return c.ca }

// ServerTLSConfig returns a TLS 1.3-only server configuration that presents
// these credentials, requires a client certificate that chains to the job
// CA, and checks that it names the same job. Callers may set NextProtos.
func (c *Credentials) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{c.cert},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              c.pool,
		SessionTicketsDisabled: true,
		VerifyConnection:       func(cs tls.ConnectionState) error { return c.verifyPeer(cs, "client") },
	}
}

// ClientTLSConfig returns a TLS 1.3-only client configuration that presents
// these credentials and accepts only a server whose certificate chains to
// the job CA and names the same job. Host names are not used: the server
// name is the job's DNS name, job-<id>.sealring.invalid, carried by every
// certificate of the job. Callers may set NextProtos.
func (c *Credentials) ClientTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{c.cert},
		RootCAs:          c.pool,
		ServerName:       jobDNSName(c.id.JobID),
		VerifyConnection: func(cs tls.ConnectionState) error { return c.verifyPeer(cs, "server") },
	}
}

// verifyPeer runs after the standard chain verification: it checks that the
// peer's leaf names this job.
func (c *Credentials) verifyPeer(cs tls.ConnectionState, what string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("rendezvous: %s presented no certificate: %w", what, ErrAuth)
	}
	id, err := IdentityOf(cs.PeerCertificates[0])
	if err != nil {
		return fmt.Errorf("rendezvous: %s is not a member of this job: %w (%w)", what, ErrAuth, err)
	}
	if id.JobID != c.id.JobID {
		return fmt.Errorf("rendezvous: %s %s is from job %s, not from this job %s: %w", what, id, id.JobID, c.id.JobID, ErrAuth)
	}
	return nil
}

// Save writes the credentials (leaf certificate, CA certificate, private
// key; PEM) to path with mode 0600, atomically.
func (c *Credentials) Save(path string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.cert.PrivateKey)
	if err != nil {
		return err
	}
	var b []byte
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Leaf.Raw})...)
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.ca.Raw})...)
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return writePrivateFile(path, b)
}

// LoadCredentials reads credentials written by Credentials.Save. It
// refuses a file that group or others may access (ErrInsecurePermissions),
// and checks that the key matches the certificate, that the certificate
// chains to the CA and is valid now, and that both name the same job.
func LoadCredentials(path string) (*Credentials, error) {
	b, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	certs, key, err := parsePEMBundle(path, b)
	if err != nil {
		return nil, err
	}
	var leaf, ca *x509.Certificate
	for _, c := range certs {
		switch {
		case c.IsCA && ca == nil:
			ca = c
		case !c.IsCA && leaf == nil:
			leaf = c
		default:
			return nil, fmt.Errorf("rendezvous: %s: want one leaf and one CA certificate: %w", path, ErrBadCredentials)
		}
	}
	if leaf == nil || ca == nil {
		return nil, fmt.Errorf("rendezvous: %s: want one leaf and one CA certificate: %w", path, ErrBadCredentials)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("rendezvous: %s: unsupported private key type %T: %w", path, key, ErrBadCredentials)
	}
	if pk, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pk.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("rendezvous: %s: private key does not match the certificate: %w", path, ErrBadCredentials)
	}
	creds, err := newCredentials(leaf, signer, ca)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %s: %w", path, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:     creds.pool,
		DNSName:   jobDNSName(creds.JobID()),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("rendezvous: %s: certificate does not verify against its job CA: %w (%w)", path, ErrBadCredentials, err)
	}
	return creds, nil
}

func parsePEMBundle(path string, b []byte) (certs []*x509.Certificate, key any, err error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("rendezvous: %s: %w (%w)", path, ErrBadCredentials, err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY":
			if key != nil {
				return nil, nil, fmt.Errorf("rendezvous: %s: more than one private key: %w", path, ErrBadCredentials)
			}
			if key, err = x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
				return nil, nil, fmt.Errorf("rendezvous: %s: %w (%w)", path, ErrBadCredentials, err)
			}
		default:
			return nil, nil, fmt.Errorf("rendezvous: %s: unexpected PEM block %q: %w", path, blk.Type, ErrBadCredentials)
		}
	}
	if key == nil {
		return nil, nil, fmt.Errorf("rendezvous: %s: no PRIVATE KEY block: %w", path, ErrBadCredentials)
	}
	return certs, key, nil
}

// GenerateJobSecret returns a fresh random job secret.
func GenerateJobSecret() ([]byte, error) {
	s := make([]byte, JobSecretSize)
	if _, err := io.ReadFull(rand.Reader, s); err != nil {
		return nil, err
	}
	return s, nil
}

// NewJobSecret generates a job secret and writes it to path (see
// WriteJobSecret). It is what a launcher, or a CLI such as
// "sealring secret new FILE", calls before starting the ranks.
func NewJobSecret(path string) ([]byte, error) {
	s, err := GenerateJobSecret()
	if err != nil {
		return nil, err
	}
	if err := WriteJobSecret(path, s); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteJobSecret writes secret to a new file at path, with mode 0600, as 64
// lowercase hex digits and a newline. It refuses to overwrite an existing
// file (the error wraps fs.ErrExist): replacing a running job's secret
// would lock its ranks out.
func WriteJobSecret(path string, secret []byte) error {
	if len(secret) != JobSecretSize {
		return fmt.Errorf("rendezvous: job secret is %d bytes, want %d: %w", len(secret), JobSecretSize, ErrBadCredentials)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("rendezvous: write job secret: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(secret) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("rendezvous: write job secret: %w", err)
	}
	return nil
}

// LoadJobSecret reads a job secret written by WriteJobSecret. It refuses a
// file that group or others may access (ErrInsecurePermissions).
func LoadJobSecret(path string) ([]byte, error) {
	b, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	secret, err := hex.DecodeString(s)
	if err != nil || len(secret) != JobSecretSize {
		return nil, fmt.Errorf("rendezvous: %s: a job secret is %d hex digits: %w", path, 2*JobSecretSize, ErrBadCredentials)
	}
	return secret, nil
}

// CredentialsFromSecret reads the job secret in secretFile, derives the
// job's CA from it (JobCAFromSecret) and issues credentials for role and
// rank. Every party started by an external launcher calls it with the same
// file; the CA's private key is dropped when it returns.
func CredentialsFromSecret(secretFile, role string, rank int) (*Credentials, error) {
	secret, err := LoadJobSecret(secretFile)
	if err != nil {
		return nil, err
	}
	ca, err := JobCAFromSecret(secret)
	clear(secret)
	if err != nil {
		return nil, err
	}
	return ca.Issue(role, rank)
}

// maxPrivateFile bounds what readPrivateFile reads.
const maxPrivateFile = 64 << 10

// readPrivateFile reads a small file that must not be accessible by group
// or others. The permissions are checked on the open descriptor, so the
// file checked is the file read.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("rendezvous: %s is not a regular file: %w", path, ErrBadCredentials)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("rendezvous: %s has mode %04o, so group or others can access it; "+
			"it holds a secret key and must be private (chmod 600 %s): %w", path, perm, path, ErrInsecurePermissions)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPrivateFile+1))
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	if len(b) > maxPrivateFile {
		return nil, fmt.Errorf("rendezvous: %s is larger than %d bytes: %w", path, maxPrivateFile, ErrBadCredentials)
	}
	return b, nil
}

// writePrivateFile atomically replaces path with data, mode 0600.
func writePrivateFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".sealring-tmp-*")
	if err != nil {
		return fmt.Errorf("rendezvous: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rendezvous: write %s: %w", path, err)
	}
	return nil
}

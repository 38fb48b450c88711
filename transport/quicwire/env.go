package quicwire

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/sealring/sealring/rendezvous"
)

// CredentialsFromEnv returns this process's job credentials the way
// rendezvous.JoinFromEnv finds them: from the file named by
// SEALRING_CREDENTIALS_FILE (written per rank by rendezvous/launch), else
// issued for ("rank", <rank>) from the CA derived from the job secret in
// the launcher's secret file (SEALRING_JOB_SECRET_FILE), the rank coming
// from the launcher's environment.
func CredentialsFromEnv() (*rendezvous.Credentials, error) {
	if f := os.Getenv(rendezvous.EnvCredentialsFile); f != "" {
		return rendezvous.LoadCredentials(f)
	}
	info, err := rendezvous.DetectLauncher(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("quicwire: credentials from env: %w", err)
	}
	if info.SecretFile == "" {
		return nil, fmt.Errorf("quicwire: credentials from env: set %s or %s: %w",
			rendezvous.EnvCredentialsFile, rendezvous.EnvSecretFile, rendezvous.ErrBadEnv)
	}
	return rendezvous.CredentialsFromSecret(info.SecretFile, "rank", info.Rank)
}

// ListenFromEnv is Listen with the credentials of CredentialsFromEnv when
// cfg.Credentials is nil: what a rank started by a launcher calls before
// rendezvous.JoinFromEnv(ctx, w.LocalAddr()), in place of
// wire.ListenUDP.
func ListenFromEnv(laddr netip.AddrPort, cfg Config) (*Wire, error) {
	if cfg.Credentials == nil {
		creds, err := CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.Credentials = creds
	}
	return Listen(laddr, cfg)
}

package rendezvous

import (
	"errors"
	"fmt"
)

// ErrInsecureStore reports an attempt to publish or fetch root keys through
// a Store that does not keep them on a mutually authenticated channel: a
// FileStore (values are files in clear on a possibly shared filesystem) or
// a Store implementation this package does not know.
var ErrInsecureStore = errors.New("rendezvous: store cannot carry root keys")

// keyChannel is implemented by the Stores of this package. keyChannel
// reports whether root keys may travel through the store, and if not, why.
// It is unexported on purpose: only the TCP Client (TLS 1.3, mutual
// authentication by the job CA) and the in-process MemStore qualify, and
// prefix views inherit the answer of the store they wrap.
type keyChannel interface {
	keyChannel() (ok bool, why string)
}

func (*Client) keyChannel() (bool, string) { return true, "" }

func (*MemStore) keyChannel() (bool, string) { return true, "" }

func (*FileStore) keyChannel() (bool, string) {
	return false, "a FileStore keeps every value in a clear file on a (possibly shared) filesystem; " +
		"use the TCP store (rendezvous.Server and Dial with job credentials) to distribute root keys"
}

func (p *prefixStore) keyChannel() (bool, string) { return storeCarriesKeys(p.s) }

func storeCarriesKeys(s Store) (bool, string) {
	if kc, ok := s.(keyChannel); ok {
		return kc.keyChannel()
	}
	return false, fmt.Sprintf("store type %T is not known to be a mutually authenticated channel", s)
}

// checkKeyChannel returns an error wrapping ErrInsecureStore unless s may
// carry root keys.
func checkKeyChannel(op string, s Store) error {
	if ok, why := storeCarriesKeys(s); !ok {
		return fmt.Errorf("rendezvous: %s: refusing to move root keys through this store: %s: %w", op, why, ErrInsecureStore)
	}
	return nil
}

// storeJobID returns the job ID of the credentials behind s if s is (a
// prefix view of) a TCP Client, else "".
func storeJobID(s Store) string {
	for {
		switch v := s.(type) {
		case *prefixStore:
			s = v.s
		case *Client:
			return v.cfg.Credentials.JobID()
		default:
			return ""
		}
	}
}

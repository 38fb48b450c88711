// Package rendezvous is how the ranks of a sealring job find each other:
// a small key-value Store, the job credentials that authenticate every
// party, and detection of the launcher that started the process.
//
// Three Stores share one contract (see Store): MemStore for tests, FileStore
// for a directory on a shared filesystem, and the TCP store, a Server hosted
// by the launcher or rank 0 with Clients dialing it over TLS 1.3 with mutual
// authentication. WithPrefix gives a job or sub-communicator its own
// namespace in any of them.
//
// A job is a trust domain. Its CA is either created by the launcher
// (NewJobCA, then Issue per party) or derived from a 32-byte job secret
// that an external launcher distributes as a 0600 file (NewJobSecret,
// CredentialsFromSecret). Only parties holding the job's credentials can
// connect to its store or accept its clients.
//
// The shortest correct use, with an external launcher that exported
// SEALRING_JOB_SECRET_FILE and SEALRING_STORE:
//
//	info, err := rendezvous.DetectLauncher(os.Getenv)
//	if err != nil { ... }
//	creds, err := rendezvous.CredentialsFromSecret(info.SecretFile, "rank", info.Rank)
//	if err != nil { ... }
//	if info.Rank == 0 {
//		srv, _ := rendezvous.NewServer(rendezvous.ServerConfig{Credentials: creds, Addr: info.StoreAddr})
//		go srv.ListenAndServe(ctx)
//		defer srv.Close()
//	}
//	store, err := rendezvous.Dial(ctx, info.StoreAddr, rendezvous.ClientConfig{Credentials: creds})
//	if err != nil { ... } // errors.Is(err, rendezvous.ErrAuth): not a member of this job
//	defer store.Close()
//	store.Set(ctx, fmt.Sprint("addr/", info.Rank), myAddr)
//	keys := ... // "addr/0" ... "addr/<n-1>"
//	if err := store.Wait(ctx, keys, time.Minute); err != nil { ... } // names the missing ranks
//
// Dial fails fast with ErrUnavailable while the server is not up yet;
// callers that race rank 0 retry Dial until their context ends.
//
// On top of the Store, Join forms the world: each rank takes a strictly
// increasing incarnation, fetches the job's root keys, publishes its
// transport address and waits for every rank, returning a World with the
// peer table and the rank's secure.Group. A KeyController (run by the
// launcher or rank 0) creates the trust group, publishes it for Join, and
// rotates root keys and bumps epochs while the job runs: each change is a
// numbered event that every member's World applies and acknowledges before
// the next one starts, so traffic never stops. Root keys travel only
// through a Client (TLS 1.3, mutual authentication) or an in-process
// MemStore; a FileStore is refused (ErrInsecureStore). JoinFromEnv does all
// of the above from a launcher's environment, including the rank-0-hosted
// store; the subpackage launch starts N local ranks as processes. See
// JOIN_NOTES.md for the store layout and the event protocol.
package rendezvous

package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealring/sealring/secure"
)

// DefaultJoinTimeout bounds Join (waiting for the root keys and for every
// rank) when JoinConfig.Timeout is zero.
const DefaultJoinTimeout = 60 * time.Second

// Store keys used by Join and the KeyController, relative to the Store
// they are given (which is typically one job's store or a prefix view of
// it). See JOIN_NOTES.md.
const (
	keyWorldSize   = "world/size"  // world size, decimal; created by the first party
	keyIncPrefix   = "world/inc/"  // + rank: incarnation counter (Add)
	keyPeerPrefix  = "world/peer/" // + rank: peer record "v1 <incarnation> <addr>"
	keyByePrefix   = "world/bye/"  // + rank: incarnation, written by World.Close
	keyStateKey    = "keys/state"  // key state snapshot (keyformat.go)
	keyEventPrefix = "keys/ev/"    // + seq: control event (keyformat.go)
	keyAckPrefix   = "keys/ack/"   // + seq + "/" + rank: incarnation that applied it
)

func incKey(rank int) string      { return keyIncPrefix + strconv.Itoa(rank) }
func peerKey(rank int) string     { return keyPeerPrefix + strconv.Itoa(rank) }
func byeKey(rank int) string      { return keyByePrefix + strconv.Itoa(rank) }
func eventKey(seq uint64) string  { return keyEventPrefix + strconv.FormatUint(seq, 10) }
func ackPrefix(seq uint64) string { return keyAckPrefix + strconv.FormatUint(seq, 10) + "/" }
func ackKey(seq uint64, rank int) string {
	return ackPrefix(seq) + strconv.Itoa(rank)
}

// ErrConflict reports parties of one job that disagree: on the world size,
// the job, or which controller owns the keys.
var ErrConflict = errors.New("rendezvous: conflicting job configuration")

// RanksError reports ranks that did not do something in time: join the
// world (Join) or acknowledge a key event (KeyController). It wraps
// ErrTimeout, or the context's error.
type RanksError struct {
	Op      string        // what was awaited, e.g. "join" or "key event 3 (epoch 4)"
	Ranks   []int         // the ranks that did not do it, ascending
	Size    int           // the world size
	Timeout time.Duration // the timeout that elapsed, if Err is ErrTimeout
	Detail  string        // optional explanation
	Err     error
}

// Error names the missing ranks (at most 32 of them).
func (e *RanksError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rendezvous: %s: %d of %d rank(s) missing", e.Op, len(e.Ranks), e.Size)
	if errors.Is(e.Err, ErrTimeout) && e.Timeout > 0 {
		fmt.Fprintf(&b, " after %v", e.Timeout)
	}
	b.WriteString(": ")
	b.WriteString(formatRanks(e.Ranks))
	if e.Detail != "" {
		b.WriteString(" (")
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns ErrTimeout or the context's error.
func (e *RanksError) Unwrap() error { return e.Err }

func formatRanks(ranks []int) string {
	const show = 32
	var b strings.Builder
	for i, r := range ranks {
		if i == show {
			fmt.Fprintf(&b, " ... and %d more", len(ranks)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(r))
	}
	return b.String()
}

// ranksOf maps store keys "<prefix><rank>" back to ranks.
func ranksOf(keys []string, prefix string) []int {
	var out []int
	for _, k := range keys {
		if r, err := strconv.Atoi(strings.TrimPrefix(k, prefix)); err == nil && strings.HasPrefix(k, prefix) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// JoinConfig configures Join.
type JoinConfig struct {
	// Store is the job's store (a *Client in production, a MemStore in
	// tests, or a prefix view of either). Join does not close it.
	Store Store
	// Rank and Size place this process in the world: 0 <= Rank < Size.
	Rank, Size int
	// Addr is this rank's transport endpoint address, published to peers.
	Addr netip.AddrPort
	// Timeout bounds waiting for the job's root keys and for every rank
	// to arrive; zero means DefaultJoinTimeout.
	Timeout time.Duration

	// Group, if non-nil, is this rank's trust group, obtained elsewhere:
	// Join then fetches no root keys and starts no key watcher (the caller
	// handles rotation), so any Store works, a FileStore included. If nil,
	// Join fetches the root keys that a KeyController published in Store,
	// which must then be a mutually authenticated channel (a Client or a
	// MemStore; a FileStore is refused with ErrInsecureStore).
	Group *secure.Group
}

// Peer is one rank of the world as last published in the store.
type Peer struct {
	Rank        int
	Incarnation uint32
	Addr        netip.AddrPort
}

// SenderID returns the peer's sender ID in the secure layer's header.
func (p Peer) SenderID() uint64 { return secure.SenderID(uint32(p.Rank), p.Incarnation) }

// World is one rank's view of a formed job: who it is, where its peers are,
// and the trust group that seals and opens their traffic. While the World
// is open, a watcher goroutine applies the KeyController's rotations and
// epoch bumps to Group, in order, and acknowledges each.
//
// The exported fields are set by Join and never modified afterwards.
type World struct {
	Rank        int
	Size        int
	Incarnation uint32 // strictly increases each time this rank joins
	// Peers holds every rank (Peers[r].Rank == r) as it was when Join
	// returned. A rank that restarts rejoins with a higher incarnation and
	// possibly a new address: call Refresh to see it.
	Peers []Peer
	// Group is this rank's trust group. Its epoch and root keys change
	// under the watcher; secure.Sealer and secure.Opener follow it.
	Group *secure.Group
	// JobID is the job's ID (32 hex digits) when known: from the key
	// state, else from the store's credentials; "" otherwise.
	JobID string

	store   Store
	timeout time.Duration

	mu    sync.Mutex
	peers []Peer // latest, from Refresh

	seq     atomic.Uint64 // last key event applied to Group
	applied chan struct{} // closed and replaced on every applied event

	errMu     sync.Mutex
	err       error // watcher's terminal error
	cancel    context.CancelFunc
	done      chan struct{} // closed when the watcher exits
	closed    atomic.Bool
	closeDone chan struct{} // closed when the first Close returns
	closeErr  error

	// Set by JoinFromEnv.
	owned         []func() error // closed in order after the watcher stops
	hosting       bool           // this World hosts the store server: Close waits for every rank's bye
	keyController *KeyController
}

// Join makes this process rank cfg.Rank of a world of cfg.Size ranks:
//
//  1. it claims the world size (parties that disagree fail with ErrConflict);
//  2. takes a strictly increasing incarnation for the rank (store Add on
//     "world/inc/<rank>", so it persists where the store persists);
//  3. unless cfg.Group is set, waits for the key state a KeyController
//     publishes, builds the rank's secure.Group from it, acknowledges the
//     state's sequence number and starts the key watcher;
//  4. publishes (incarnation, address) under "world/peer/<rank>", so a
//     rank is listed only once it holds the keys to open its peers' traffic;
//  5. waits until every rank has published, and reads their records.
//
// Ranks may arrive in any order and late, within cfg.Timeout. If some do
// not, Join fails with a *RanksError naming them and wrapping ErrTimeout.
// The returned World must be closed.
func Join(ctx context.Context, cfg JoinConfig) (*World, error) {
	if cfg.Store == nil {
		return nil, errors.New("rendezvous: join: JoinConfig.Store is required")
	}
	if cfg.Size < 1 || cfg.Rank < 0 || cfg.Rank >= cfg.Size || int64(cfg.Size) > math.MaxUint32 {
		return nil, fmt.Errorf("rendezvous: join: rank %d is not in a world of size %d", cfg.Rank, cfg.Size)
	}
	if !cfg.Addr.IsValid() {
		return nil, fmt.Errorf("rendezvous: join: rank %d: invalid transport address", cfg.Rank)
	}
	if cfg.Group == nil {
		if err := checkKeyChannel("join", cfg.Store); err != nil {
			return nil, err
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultJoinTimeout
	}
	deadline := time.Now().Add(cfg.Timeout)
	s := cfg.Store
	op := fmt.Sprintf("join (rank %d)", cfg.Rank)

	if err := claimSize(ctx, s, cfg.Size, op); err != nil {
		return nil, err
	}
	n, err := s.Add(ctx, incKey(cfg.Rank), 1)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %s: taking an incarnation: %w", op, err)
	}
	if n < 1 || n > math.MaxUint32 {
		return nil, fmt.Errorf("rendezvous: %s: incarnation %d is out of range", op, n)
	}
	// A previous incarnation's "left" mark no longer applies.
	if err := s.Delete(ctx, byeKey(cfg.Rank)); err != nil {
		return nil, fmt.Errorf("rendezvous: %s: %w", op, err)
	}
	w := &World{
		Rank:        cfg.Rank,
		Size:        cfg.Size,
		Incarnation: uint32(n),
		Group:       cfg.Group,
		JobID:       storeJobID(s),
		store:       s,
		timeout:     cfg.Timeout,
		applied:     make(chan struct{}),
		done:        make(chan struct{}),
		closeDone:   make(chan struct{}),
	}

	if cfg.Group == nil {
		st, err := fetchKeyState(ctx, s, time.Until(deadline), op)
		if err != nil {
			return nil, err
		}
		if st.jobID != "" {
			if w.JobID != "" && w.JobID != st.jobID {
				st.wipe()
				return nil, fmt.Errorf("rendezvous: %s: the key state belongs to job %s, but the store's credentials to job %s: %w", op, st.jobID, w.JobID, ErrConflict)
			}
			w.JobID = st.jobID
		}
		cfg := st.groupConfig()
		st.wipe()
		g, err := secure.NewGroup(cfg)
		wipeGroupConfig(&cfg)
		if err != nil {
			return nil, fmt.Errorf("rendezvous: %s: building the trust group: %w", op, err)
		}
		w.Group = g
		w.seq.Store(st.seq)
		if st.seq > 0 {
			if err := w.ack(ctx, st.seq); err != nil {
				return nil, fmt.Errorf("rendezvous: %s: %w", op, err)
			}
		}
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		w.cancel = cancel
		go w.watch(wctx, st.seq+1)
	} else {
		w.cancel = func() {}
		close(w.done)
	}

	fail := func(err error) (*World, error) {
		w.stopWatcher()
		return nil, err
	}
	self := Peer{Rank: cfg.Rank, Incarnation: w.Incarnation, Addr: cfg.Addr}
	if err := s.Set(ctx, peerKey(cfg.Rank), encodePeer(self)); err != nil {
		return fail(fmt.Errorf("rendezvous: %s: publishing the address: %w", op, err))
	}
	keys := make([]string, cfg.Size)
	for r := range keys {
		keys[r] = peerKey(r)
	}
	if err := s.Wait(ctx, keys, max(time.Until(deadline), time.Millisecond)); err != nil {
		var we *WaitError
		if errors.As(err, &we) {
			return fail(&RanksError{Op: op, Ranks: ranksOf(we.Missing, keyPeerPrefix), Size: cfg.Size,
				Timeout: cfg.Timeout, Detail: "never published an address", Err: we.Err})
		}
		return fail(fmt.Errorf("rendezvous: %s: %w", op, err))
	}
	peers, err := w.readPeers(ctx)
	if err != nil {
		return fail(fmt.Errorf("rendezvous: %s: %w", op, err))
	}
	w.Peers = peers
	w.peers = slices.Clone(peers)
	return w, nil
}

// claimSize creates "world/size" or checks that it holds size.
func claimSize(ctx context.Context, s Store, size int, op string) error {
	v := []byte(strconv.Itoa(size))
	swapped, cur, err := s.CompareAndSet(ctx, keyWorldSize, nil, v)
	if err != nil {
		return fmt.Errorf("rendezvous: %s: claiming the world size: %w", op, err)
	}
	if !swapped && string(cur) != string(v) {
		return fmt.Errorf("rendezvous: %s: world size %d, but the store says %.20q: %w", op, size, cur, ErrConflict)
	}
	return nil
}

// fetchKeyState waits up to timeout for the key state and decodes it.
func fetchKeyState(ctx context.Context, s Store, timeout time.Duration, op string) (*keyState, error) {
	if err := s.Wait(ctx, []string{keyStateKey}, max(timeout, time.Millisecond)); err != nil {
		if errors.Is(err, ErrTimeout) {
			return nil, fmt.Errorf("rendezvous: %s: no root keys were published under %q within %v "+
				"(is a KeyController running for this job?): %w", op, keyStateKey, timeout.Round(time.Millisecond), ErrTimeout)
		}
		return nil, fmt.Errorf("rendezvous: %s: waiting for the root keys: %w", op, err)
	}
	v, err := s.Get(ctx, keyStateKey)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %s: fetching the root keys: %w", op, err)
	}
	st, err := unmarshalState(v)
	clear(v)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %s: %w", op, err)
	}
	return st, nil
}

func wipeGroupConfig(cfg *secure.GroupConfig) {
	for l := range cfg.Keys {
		if p := cfg.Keys[l].Previous; p != nil {
			clear(p.Key[:])
		}
		clear(cfg.Keys[l].Current.Key[:])
		clear(cfg.Keys[l].Next.Key[:])
	}
}

func encodePeer(p Peer) []byte {
	return fmt.Appendf(nil, "v1 %d %s", p.Incarnation, p.Addr)
}

func decodePeer(rank int, v []byte) (Peer, error) {
	f := strings.Fields(string(v))
	if len(f) != 3 || f[0] != "v1" {
		return Peer{}, fmt.Errorf("rendezvous: peer record of rank %d is malformed: %.64q", rank, v)
	}
	inc, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return Peer{}, fmt.Errorf("rendezvous: peer record of rank %d has a bad incarnation %q", rank, f[1])
	}
	addr, err := netip.ParseAddrPort(f[2])
	if err != nil {
		return Peer{}, fmt.Errorf("rendezvous: peer record of rank %d has a bad address %q", rank, f[2])
	}
	return Peer{Rank: rank, Incarnation: uint32(inc), Addr: addr}, nil
}

func (w *World) readPeers(ctx context.Context) ([]Peer, error) {
	peers := make([]Peer, w.Size)
	for r := range peers {
		v, err := w.store.Get(ctx, peerKey(r))
		if err != nil {
			return nil, fmt.Errorf("reading rank %d's address: %w", r, err)
		}
		if peers[r], err = decodePeer(r, v); err != nil {
			return nil, err
		}
	}
	return peers, nil
}

// Refresh re-reads every rank's record from the store and returns the
// current table (Peers is not modified). A rank that restarted shows a
// higher Incarnation and possibly a new Addr; a transport calls Refresh
// when a peer stops answering, and tries again while the incarnation is
// unchanged.
func (w *World) Refresh(ctx context.Context) ([]Peer, error) {
	if w.closed.Load() {
		return nil, fmt.Errorf("rendezvous: refresh: world: %w", ErrClosed)
	}
	peers, err := w.readPeers(ctx)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: refresh: %w", err)
	}
	w.mu.Lock()
	w.peers = slices.Clone(peers)
	w.mu.Unlock()
	return peers, nil
}

// Peer returns rank's record as of the last Join or Refresh.
func (w *World) Peer(rank int) (Peer, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rank < 0 || rank >= len(w.peers) {
		return Peer{}, false
	}
	return w.peers[rank], true
}

// SenderID returns this rank's sender ID: secure.SenderID(Rank, Incarnation).
func (w *World) SenderID() uint64 { return secure.SenderID(uint32(w.Rank), w.Incarnation) }

// Store returns the store the World was joined through.
func (w *World) Store() Store { return w.store }

// KeyController returns the controller this World runs (JoinFromEnv on
// rank 0 with a job secret), or nil.
func (w *World) KeyController() *KeyController { return w.keyController }

// KeySeq returns the sequence number of the last key event applied to
// Group (0: the initial keys).
func (w *World) KeySeq() uint64 { return w.seq.Load() }

// WaitKeySeq blocks until Group reflects key event seq or later, ctx ends,
// or the watcher stops (its error is returned).
func (w *World) WaitKeySeq(ctx context.Context, seq uint64) error {
	for {
		w.errMu.Lock()
		ch, err := w.applied, w.err
		w.errMu.Unlock()
		if w.seq.Load() >= seq {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-w.done:
			if w.seq.Load() >= seq {
				return nil
			}
			if err := w.Err(); err != nil {
				return err
			}
			return fmt.Errorf("rendezvous: world: %w", ErrClosed)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Err returns the error that stopped the key watcher, or nil while it runs
// (and after a clean Close). A member whose watcher failed no longer
// follows rotations; the controller's next event times out naming it.
func (w *World) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// Close stops the key watcher, records that this rank left (store key
// "world/bye/<rank>"), and releases what JoinFromEnv opened. A World that
// hosts the store server first waits, up to the join timeout, for every
// rank to have closed, so that the store outlives its users. Close does
// not close a Store passed in JoinConfig. It is idempotent.
func (w *World) Close() error {
	if !w.closed.CompareAndSwap(false, true) {
		<-w.closeDone
		return w.closeErr
	}
	defer close(w.closeDone)
	w.stopWatcher()
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := w.store.Set(ctx, byeKey(w.Rank), []byte(strconv.FormatUint(uint64(w.Incarnation), 10))); err != nil && !errors.Is(err, ErrClosed) {
		errs = append(errs, fmt.Errorf("rendezvous: close: %w", err))
	}
	cancel()
	if w.hosting && w.Size > 1 {
		keys := make([]string, w.Size)
		for r := range keys {
			keys[r] = byeKey(r)
		}
		if err := w.store.Wait(context.Background(), keys, w.timeout); err != nil {
			errs = append(errs, fmt.Errorf("rendezvous: close: this rank hosts the store and stops it now: %w", err))
		}
	}
	for _, f := range w.owned {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	w.closeErr = errors.Join(errs...)
	return w.closeErr
}

func (w *World) stopWatcher() {
	w.cancel()
	<-w.done
}

func (w *World) setErr(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

func (w *World) ack(ctx context.Context, seq uint64) error {
	err := w.store.Set(ctx, ackKey(seq, w.Rank), []byte(strconv.FormatUint(uint64(w.Incarnation), 10)))
	if err != nil {
		return fmt.Errorf("acknowledging key event %d: %w", seq, err)
	}
	return nil
}

// watch applies key events next, next+1, ... to w.Group until ctx ends.
// Transient store errors are retried with backoff; a malformed event or a
// closed store stops the watcher (see Err).
func (w *World) watch(ctx context.Context, next uint64) {
	defer close(w.done)
	backoff := time.Duration(0)
	retry := func(err error) bool {
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, ErrClosed) {
			w.setErr(fmt.Errorf("rendezvous: key watcher of rank %d stopped: %w", w.Rank, err))
			return false
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		key := eventKey(next)
		if err := w.store.Wait(ctx, []string{key}, 0); err != nil {
			if retry(err) {
				continue
			}
			return
		}
		v, err := w.store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			w.setErr(fmt.Errorf("rendezvous: key watcher of rank %d: key event %d was deleted before it was applied; "+
				"this member fell behind the controller and must rejoin", w.Rank, next))
			return
		}
		if err != nil {
			if retry(err) {
				continue
			}
			return
		}
		ev, err := unmarshalEvent(v)
		clear(v)
		if err == nil {
			err = w.apply(ev, next)
		}
		if ev != nil {
			clear(ev.key[:])
		}
		if err != nil {
			w.setErr(fmt.Errorf("rendezvous: key watcher of rank %d: %w", w.Rank, err))
			return
		}
		w.errMu.Lock()
		w.seq.Store(next)
		close(w.applied)
		w.applied = make(chan struct{})
		w.errMu.Unlock()
		for {
			err := w.ack(ctx, next)
			if err == nil || !retry(err) {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		backoff = 0
		next++
	}
}

// apply installs one control event in w.Group.
func (w *World) apply(ev *keyEvent, seq uint64) error {
	if ev.seq != seq {
		return fmt.Errorf("store key %q holds %v: %w", eventKey(seq), ev, errKeyFormat)
	}
	if id := w.Group.ID(); string(id) != string(ev.groupID) {
		return fmt.Errorf("%v is for trust group %x, not this member's %x: %w", ev, ev.groupID, id, ErrConflict)
	}
	switch ev.kind {
	case eventRotate:
		cur := w.Group.KeyIndex().Gen(ev.level)
		if want := (cur + 2) & 3; ev.gen != want {
			return fmt.Errorf("%v: this member's current %v generation is %d, so the new next key should be generation %d: %w",
				ev, ev.level, cur, want, errKeyFormat)
		}
		if err := w.Group.Rotate(ev.level, ev.key); err != nil {
			return fmt.Errorf("applying %v: %w", ev, err)
		}
	case eventEpoch:
		if ev.epoch > w.Group.Epoch() {
			if err := w.Group.SetEpoch(ev.epoch); err != nil {
				return fmt.Errorf("applying %v: %w", ev, err)
			}
		}
	}
	return nil
}

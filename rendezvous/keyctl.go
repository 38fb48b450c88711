package rendezvous

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/sealring/sealring/secure"
)

// KeyController defaults, used where a KeyControllerConfig field is zero.
const (
	DefaultAckTimeout = 60 * time.Second
	DefaultSettle     = 100 * time.Millisecond
)

// KeyControllerConfig configures a KeyController.
type KeyControllerConfig struct {
	// Size is the number of ranks in the world: every event must be
	// acknowledged by ranks 0..Size-1. Required.
	Size int

	// GroupID is the trust group's root-key ID (16 or 32 bytes); nil
	// means 16 random bytes.
	GroupID []byte
	// Region, User and Task are operator-supplied root keys for each
	// level; nil means fresh random keys (secure.GenerateLevelKeys).
	Region, User, Task *secure.LevelKeys
	// Combiner is the master-key combiner (default secure.CombineHKDF).
	Combiner secure.Combiner
	// Epoch is the group's initial epoch.
	Epoch uint16
	// JobID is recorded in the key state so that members can check that
	// the keys belong to their job; "" means the job of the store's
	// credentials (if the store is a Client), else none.
	JobID string

	// AckTimeout bounds waiting for every member to acknowledge an event.
	AckTimeout time.Duration
	// Settle is the minimum time between the moment an event is
	// acknowledged by every member and the publication of the next one.
	// Packets sealed before a member applied event k may still be in
	// flight when event k+1 lands, and a receiver holds only one previous
	// generation of each root key (and EpochWindow previous epochs); so
	// Settle should exceed the longest time a packet can spend between
	// sealing and opening. Zero means DefaultSettle; negative means none.
	Settle time.Duration
}

// KeyController creates a job's trust-group keys, publishes them in the
// store for members to fetch in Join, and drives root-key rotations and
// epoch bumps while the job runs. It is run by the launcher or by rank 0;
// one per job (a second controller's events are refused with ErrConflict).
//
// Each change is a numbered control event. The controller publishes event
// k, updates the key-state snapshot, and returns only when every member
// has applied it and acknowledged; it starts event k+1 only after event k
// is fully acknowledged (and Settle has passed). So every member is always
// within one event of every other, which is what the secure layer's
// acceptance rules need for traffic never to stop: a member that rotated
// seals with a generation the others hold as next, and a member that
// bumped its epoch seals one epoch ahead, which receivers accept.
//
// A KeyController is safe for concurrent use; events are serialised.
type KeyController struct {
	store Store
	cfg   KeyControllerConfig

	mu         sync.Mutex
	state      *keyState
	stateDirty bool   // state not yet written to the store
	pending    uint64 // event not yet known to be fully acknowledged; 0 = none
	pendingOp  string
	lastDone   time.Time
	closed     bool
}

// NewKeyController returns the controller of the job whose store is s.
//
// If s holds no key state yet, it creates the trust group from cfg and
// publishes it (create-if-absent, so two controllers starting at once agree
// on one). If s already holds a key state (the launcher or rank 0
// restarted), it resumes from it: cfg's keys are not used, and a GroupID
// or operator key in cfg that contradicts the stored state is an error
// wrapping ErrConflict. An event left pending by the previous controller
// must be acknowledged before the next one starts.
//
// s must carry keys on a mutually authenticated channel (a Client or a
// MemStore, or a prefix view of one); others fail with ErrInsecureStore.
func NewKeyController(ctx context.Context, s Store, cfg KeyControllerConfig) (*KeyController, error) {
	if s == nil {
		return nil, errors.New("rendezvous: key controller: nil store")
	}
	if err := checkKeyChannel("key controller", s); err != nil {
		return nil, err
	}
	if cfg.Size < 1 {
		return nil, fmt.Errorf("rendezvous: key controller: KeyControllerConfig.Size is %d, want >= 1", cfg.Size)
	}
	if cfg.GroupID != nil && len(cfg.GroupID) != 16 && len(cfg.GroupID) != 32 {
		return nil, fmt.Errorf("rendezvous: key controller: group ID is %d bytes, want 16 or 32", len(cfg.GroupID))
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.Settle < 0 {
		cfg.Settle = 0
	}
	if cfg.JobID == "" {
		cfg.JobID = storeJobID(s)
	}
	if len(cfg.JobID) > 255 {
		return nil, errors.New("rendezvous: key controller: job ID longer than 255 bytes")
	}
	if err := claimSize(ctx, s, cfg.Size, "key controller"); err != nil {
		return nil, err
	}
	kc := &KeyController{store: s, cfg: cfg}

	fresh, err := newKeyState(cfg)
	if err != nil {
		return nil, err
	}
	// Validate the configuration before publishing it.
	gc := fresh.groupConfig()
	_, err = secure.NewGroup(gc)
	wipeGroupConfig(&gc)
	if err != nil {
		fresh.wipe()
		return nil, fmt.Errorf("rendezvous: key controller: %w", err)
	}
	enc := fresh.marshal()
	swapped, cur, err := s.CompareAndSet(ctx, keyStateKey, nil, enc)
	clear(enc)
	if err != nil {
		fresh.wipe()
		return nil, fmt.Errorf("rendezvous: key controller: publishing the key state: %w", err)
	}
	if swapped {
		kc.state = fresh
		clear(cur)
		return kc, nil
	}
	fresh.wipe()
	// Resume from the stored state.
	st, err := unmarshalState(cur)
	clear(cur)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: key controller: resuming: %w", err)
	}
	if err := st.matches(&cfg); err != nil {
		st.wipe()
		return nil, err
	}
	kc.state = st
	// Finish an event whose state update the previous controller did not
	// write (it publishes the event first, then the state).
	if v, err := s.Get(ctx, eventKey(st.seq+1)); err == nil {
		ev, err := unmarshalEvent(v)
		clear(v)
		if err != nil {
			return nil, fmt.Errorf("rendezvous: key controller: resuming: %w", err)
		}
		next, err := st.apply(ev)
		clear(ev.key[:])
		if err != nil {
			return nil, fmt.Errorf("rendezvous: key controller: resuming: %w", err)
		}
		st.wipe()
		kc.state = next
		kc.stateDirty = true
		kc.pendingOp = "key " + ev.String()
		if err := kc.writeState(ctx); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("rendezvous: key controller: resuming: %w", err)
	}
	kc.pending = kc.state.seq
	if kc.pendingOp == "" {
		kc.pendingOp = fmt.Sprintf("key event %d", kc.state.seq)
	}
	return kc, nil
}

func newKeyState(cfg KeyControllerConfig) (*keyState, error) {
	st := &keyState{jobID: cfg.JobID, combiner: cfg.Combiner, epoch: cfg.Epoch}
	if cfg.GroupID != nil {
		st.groupID = append([]byte(nil), cfg.GroupID...)
	} else {
		st.groupID = make([]byte, 16)
		if _, err := io.ReadFull(rand.Reader, st.groupID); err != nil {
			return nil, fmt.Errorf("rendezvous: key controller: generating the group ID: %w", err)
		}
	}
	for l, given := range []*secure.LevelKeys{cfg.Region, cfg.User, cfg.Task} {
		if given != nil {
			st.levels[l] = *given
			if given.Previous != nil {
				p := *given.Previous
				st.levels[l].Previous = &p
			}
			continue
		}
		lk, err := secure.GenerateLevelKeys()
		if err != nil {
			st.wipe()
			return nil, fmt.Errorf("rendezvous: key controller: %w", err)
		}
		st.levels[l] = lk
	}
	return st, nil
}

// matches checks cfg's explicit settings against a stored state.
func (s *keyState) matches(cfg *KeyControllerConfig) error {
	if cfg.GroupID != nil && subtle.ConstantTimeCompare(cfg.GroupID, s.groupID) != 1 {
		return fmt.Errorf("rendezvous: key controller: the store already holds trust group %x, not the configured %x: %w", s.groupID, cfg.GroupID, ErrConflict)
	}
	if cfg.JobID != "" && s.jobID != "" && cfg.JobID != s.jobID {
		return fmt.Errorf("rendezvous: key controller: the store's key state belongs to job %s, not %s: %w", s.jobID, cfg.JobID, ErrConflict)
	}
	for l, given := range []*secure.LevelKeys{cfg.Region, cfg.User, cfg.Task} {
		if given == nil {
			continue
		}
		// The stored level may have rotated since: the configured current
		// key must be one the state still holds.
		lk := &s.levels[l]
		held := []*secure.RootKey{&lk.Current, &lk.Next}
		if lk.Previous != nil {
			held = append(held, lk.Previous)
		}
		ok := false
		for _, k := range held {
			if k.Gen == given.Current.Gen && subtle.ConstantTimeCompare(k.Key[:], given.Current.Key[:]) == 1 {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("rendezvous: key controller: the store's %v root keys differ from the configured ones: %w", secure.Level(l), ErrConflict)
		}
	}
	return nil
}

// GroupID returns the trust group's ID.
func (kc *KeyController) GroupID() []byte {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	return append([]byte(nil), kc.state.groupID...)
}

// Seq returns the sequence number of the last published event.
func (kc *KeyController) Seq() uint64 {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	return kc.state.seq
}

// Epoch returns the group's epoch after the last published event.
func (kc *KeyController) Epoch() uint16 {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	return kc.state.epoch
}

// KeyIndex returns the generations of the current root keys after the last
// published event, as carried in the packet header.
func (kc *KeyController) KeyIndex() secure.KeyIndex {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	lv := &kc.state.levels
	return secure.MakeKeyIndex(lv[secure.Region].Current.Gen, lv[secure.User].Current.Gen, lv[secure.Task].Current.Gen)
}

// RotateRootKey rotates one level's root keys with a fresh random next key.
// See RotateRootKeyTo.
func (kc *KeyController) RotateRootKey(ctx context.Context, level secure.Level) error {
	var next [secure.KeySize]byte
	if _, err := io.ReadFull(rand.Reader, next[:]); err != nil {
		return fmt.Errorf("rendezvous: rotate %v root key: %w", level, err)
	}
	err := kc.RotateRootKeyTo(ctx, level, next)
	clear(next[:])
	return err
}

// RotateRootKeyTo rotates one level's root keys on every member: next
// becomes current, current becomes previous, and newNext (for instance
// supplied by the level's operator) becomes next. It returns when every
// member has applied the rotation and acknowledged it; on timeout, a
// *RanksError names the members that did not (the event stays published
// and the next call first waits for it again).
func (kc *KeyController) RotateRootKeyTo(ctx context.Context, level secure.Level, newNext [secure.KeySize]byte) error {
	if level > secure.Task {
		return fmt.Errorf("rendezvous: rotate: no root-key level %d", level)
	}
	return kc.event(ctx, func(st *keyState) (*keyEvent, error) {
		ev := &keyEvent{kind: eventRotate, level: level, gen: (st.levels[level].Next.Gen + 1) & 3, key: newNext}
		return ev, nil
	})
}

// BumpEpoch advances the group's epoch by one on every member and returns
// the new epoch, once every member has acknowledged it (as RotateRootKeyTo).
func (kc *KeyController) BumpEpoch(ctx context.Context) (uint16, error) {
	var epoch uint16
	err := kc.event(ctx, func(st *keyState) (*keyEvent, error) {
		if st.epoch == 0xffff {
			return nil, fmt.Errorf("rendezvous: bump epoch: %w", secure.ErrEpochExhausted)
		}
		epoch = st.epoch + 1
		return &keyEvent{kind: eventEpoch, epoch: epoch}, nil
	})
	return epoch, err
}

// Sync waits until the last published event is acknowledged by every
// member (for instance after a call that timed out).
func (kc *KeyController) Sync(ctx context.Context) error {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.closed {
		return fmt.Errorf("rendezvous: key controller: %w", ErrClosed)
	}
	return kc.settlePending(ctx)
}

// Close forgets the controller's keys (best effort). It does not touch the
// store; a new controller may resume from it.
func (kc *KeyController) Close() error {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if !kc.closed {
		kc.closed = true
		kc.state.wipe()
	}
	return nil
}

// settlePending waits for the pending event's acknowledgements and writes
// a state snapshot left unwritten. kc.mu is held.
func (kc *KeyController) settlePending(ctx context.Context) error {
	if kc.stateDirty {
		if err := kc.writeState(ctx); err != nil {
			return err
		}
	}
	if kc.pending == 0 {
		return nil
	}
	if err := kc.awaitAcks(ctx, kc.pending, kc.pendingOp); err != nil {
		return err
	}
	done := kc.pending
	kc.pending = 0
	kc.lastDone = time.Now()
	kc.cleanup(ctx, done)
	return nil
}

func (kc *KeyController) writeState(ctx context.Context) error {
	enc := kc.state.marshal()
	err := kc.store.Set(ctx, keyStateKey, enc)
	clear(enc)
	if err != nil {
		return fmt.Errorf("rendezvous: key controller: writing the key state of event %d: %w", kc.state.seq, err)
	}
	kc.stateDirty = false
	return nil
}

// event runs one control event: wait for the previous one, settle,
// publish event k (create-if-absent), publish state k, wait for every
// member's acknowledgement.
func (kc *KeyController) event(ctx context.Context, build func(*keyState) (*keyEvent, error)) error {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.closed {
		return fmt.Errorf("rendezvous: key controller: %w", ErrClosed)
	}
	if err := kc.settlePending(ctx); err != nil {
		return fmt.Errorf("rendezvous: key controller: not starting event %d before event %d is acknowledged: %w",
			kc.state.seq+1, kc.pending, err)
	}
	if wait := time.Until(kc.lastDone.Add(kc.cfg.Settle)); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("rendezvous: key controller: %w", ctx.Err())
		}
	}
	ev, err := build(kc.state)
	if err != nil {
		return err
	}
	ev.seq = kc.state.seq + 1
	ev.groupID = kc.state.groupID
	op := "key " + ev.String()
	next, err := kc.state.apply(ev)
	if err != nil {
		clear(ev.key[:])
		return err
	}
	enc := ev.marshal()
	clear(ev.key[:])
	swapped, _, err := kc.store.CompareAndSet(ctx, eventKey(ev.seq), nil, enc)
	clear(enc)
	if err != nil {
		next.wipe()
		return fmt.Errorf("rendezvous: %s: publishing: %w", op, err)
	}
	if !swapped {
		next.wipe()
		return fmt.Errorf("rendezvous: %s: the store already holds an event %d; another key controller runs for this job: %w", op, ev.seq, ErrConflict)
	}
	kc.state.wipe()
	kc.state = next
	kc.stateDirty = true
	kc.pending = ev.seq
	kc.pendingOp = op
	if err := kc.settlePending(ctx); err != nil {
		return err
	}
	return nil
}

// awaitAcks waits until every rank acknowledged event seq with its current
// incarnation (an acknowledgement by an earlier incarnation of a rank that
// rejoined does not count: the new one may not hold the event yet).
func (kc *KeyController) awaitAcks(ctx context.Context, seq uint64, op string) error {
	n := kc.cfg.Size
	timeout := kc.cfg.AckTimeout
	start := time.Now()
	keys := make([]string, n)
	for r := range keys {
		keys[r] = ackKey(seq, r)
	}
	if err := kc.store.Wait(ctx, keys, timeout); err != nil {
		var we *WaitError
		if errors.As(err, &we) {
			return &RanksError{Op: op, Ranks: ranksOf(we.Missing, ackPrefix(seq)), Size: n, Timeout: timeout,
				Detail: "did not acknowledge", Err: we.Err}
		}
		return fmt.Errorf("rendezvous: %s: %w", op, err)
	}
	backoff := time.Millisecond
	for {
		var stale []int
		for r := range n {
			ok, err := kc.ackCurrent(ctx, seq, r)
			if err != nil {
				return fmt.Errorf("rendezvous: %s: %w", op, err)
			}
			if !ok {
				stale = append(stale, r)
			}
		}
		if len(stale) == 0 {
			return nil
		}
		if time.Since(start) >= timeout {
			return &RanksError{Op: op, Ranks: stale, Size: n, Timeout: timeout,
				Detail: "acknowledged only by an earlier incarnation", Err: ErrTimeout}
		}
		t := time.NewTimer(min(backoff, max(timeout-time.Since(start), 0)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &RanksError{Op: op, Ranks: stale, Size: n, Err: ctx.Err()}
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// ackCurrent reports whether rank's acknowledgement of seq comes from its
// latest incarnation.
func (kc *KeyController) ackCurrent(ctx context.Context, seq uint64, rank int) (bool, error) {
	v, err := kc.store.Get(ctx, ackKey(seq, rank))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	acked, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return false, fmt.Errorf("acknowledgement of rank %d is malformed: %.32q", rank, v)
	}
	v, err = kc.store.Get(ctx, incKey(rank))
	if errors.Is(err, ErrNotFound) {
		return true, nil // acknowledged by a member that did not take an incarnation: count it
	}
	if err != nil {
		return false, err
	}
	latest, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return false, fmt.Errorf("incarnation counter of rank %d is malformed: %.32q", rank, v)
	}
	return acked >= latest, nil
}

// cleanup deletes the event before done and its acknowledgements: every
// member now holds event done, and joiners start from the state snapshot.
// Errors are ignored (the keys are only garbage).
func (kc *KeyController) cleanup(ctx context.Context, done uint64) {
	if done < 2 {
		return
	}
	old := done - 1
	kc.store.Delete(ctx, eventKey(old))
	for r := range kc.cfg.Size {
		kc.store.Delete(ctx, ackKey(old, r))
	}
}

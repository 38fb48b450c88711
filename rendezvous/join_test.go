package rendezvous

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/secure"
)

func testAddr(rank int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(20000+rank))
}

// joinAll joins ranks of a world of size n through stores[r] (or stores[0]
// for every rank if only one is given) concurrently, in random order with
// random delays up to maxDelay, and closes the worlds at cleanup.
func joinAll(t *testing.T, stores []Store, n int, ranks []int, maxDelay time.Duration, timeout time.Duration) ([]*World, []error) {
	t.Helper()
	worlds := make([]*World, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	order := slices.Clone(ranks)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, r := range order {
		s := stores[0]
		if len(stores) > 1 {
			s = stores[r]
		}
		var d time.Duration
		if maxDelay > 0 {
			d = rand.N(maxDelay)
		}
		wg.Go(func() {
			time.Sleep(d)
			worlds[r], errs[r] = Join(context.Background(), JoinConfig{Store: s, Rank: r, Size: n, Addr: testAddr(r), Timeout: timeout})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, w := range worlds {
			if w != nil {
				w.Close()
			}
		}
	})
	return worlds, errs
}

func allRanks(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	return r
}

func newController(t *testing.T, s Store, n int, settle time.Duration) *KeyController {
	t.Helper()
	kc, err := NewKeyController(ctxT(t), s, KeyControllerConfig{Size: n, AckTimeout: 5 * time.Second, Settle: settle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	return kc
}

// checkInterop seals a packet on a's group and opens it on b's.
func checkInterop(t *testing.T, a, b *World) {
	t.Helper()
	s, err := secure.NewSealer(a.Group, secure.SealerConfig{ID: a.SenderID()})
	if err != nil {
		t.Fatal(err)
	}
	o, err := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{b.Group}})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(fmt.Sprintf("hello from %d to %d", a.Rank, b.Rank))
	pkt := make([]byte, s.HeaderLen(), s.HeaderLen()+len(msg)+secure.TagSize)
	pkt = append(pkt, msg...)
	pkt, err = s.Seal(pkt, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := o.Open(pkt, 0)
	if err != nil {
		t.Fatalf("rank %d cannot open rank %d's packet: %v", b.Rank, a.Rank, err)
	}
	if !bytes.Equal(got.Payload, msg) || got.Header.ID != a.SenderID() {
		t.Fatalf("opened %q from %x", got.Payload, got.Header.ID)
	}
}

func TestJoinRandomOrderLateArrival(t *testing.T) {
	const n = 6
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	// The key controller starts after the first ranks are already waiting.
	kcErr := make(chan error, 1)
	go func() {
		time.Sleep(30 * time.Millisecond)
		kc, err := NewKeyController(context.Background(), s, KeyControllerConfig{Size: n})
		if err == nil {
			kc.Close()
		}
		kcErr <- err
	}()
	worlds, errs := joinAll(t, []Store{s}, n, allRanks(n), 150*time.Millisecond, 10*time.Second)
	if err := <-kcErr; err != nil {
		t.Fatal(err)
	}
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r, w := range worlds {
		if w.Rank != r || w.Size != n || w.Incarnation != 1 || len(w.Peers) != n {
			t.Fatalf("rank %d: world %+v", r, w)
		}
		for q, p := range w.Peers {
			if p.Rank != q || p.Incarnation != 1 || p.Addr != testAddr(q) {
				t.Fatalf("rank %d sees peer %d as %+v", r, q, p)
			}
		}
		if !bytes.Equal(w.Group.ID(), worlds[0].Group.ID()) {
			t.Fatalf("rank %d has another group", r)
		}
	}
	checkInterop(t, worlds[1], worlds[4])
	checkInterop(t, worlds[5], worlds[0])
}

func TestJoinNamesMissingRanks(t *testing.T) {
	const n = 4
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	newController(t, s, n, -1)
	start := time.Now()
	_, errs := joinAll(t, []Store{s}, n, []int{0, 2}, 0, 300*time.Millisecond)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("join took %v", d)
	}
	for _, r := range []int{0, 2} {
		err := errs[r]
		var re *RanksError
		if !errors.As(err, &re) || !errors.Is(err, ErrTimeout) {
			t.Fatalf("rank %d: got %v, want a *RanksError wrapping ErrTimeout", r, err)
		}
		if !slices.Equal(re.Ranks, []int{1, 3}) || re.Size != n {
			t.Fatalf("rank %d: missing %v", r, re.Ranks)
		}
		if !strings.Contains(err.Error(), "2 of 4 rank(s) missing") || !strings.Contains(err.Error(), ": 1, 3 ") {
			t.Fatalf("message does not name the ranks: %v", err)
		}
	}
}

func TestJoinNoKeyController(t *testing.T) {
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	_, err := Join(ctxT(t), JoinConfig{Store: s, Rank: 0, Size: 1, Addr: testAddr(0), Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "KeyController") {
		t.Fatalf("got %v", err)
	}
}

func TestJoinConfigErrors(t *testing.T) {
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	ctx := ctxT(t)
	for _, cfg := range []JoinConfig{
		{Rank: 0, Size: 1, Addr: testAddr(0)},
		{Store: s, Rank: 1, Size: 1, Addr: testAddr(0)},
		{Store: s, Rank: -1, Size: 1, Addr: testAddr(0)},
		{Store: s, Rank: 0, Size: 1},
	} {
		if _, err := Join(ctx, cfg); err == nil {
			t.Errorf("Join(%+v) succeeded", cfg)
		}
	}
	// Disagreeing on the world size.
	newController(t, s, 2, -1)
	_, err := Join(ctx, JoinConfig{Store: s, Rank: 0, Size: 3, Addr: testAddr(0), Timeout: time.Second})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("size mismatch: %v", err)
	}
}

func TestJoinIncarnationsIncreaseAcrossRejoin(t *testing.T) {
	const n = 3
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	kc := newController(t, s, n, -1)
	worlds, errs := joinAll(t, []Store{s}, n, allRanks(n), 0, 5*time.Second)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	last := worlds[1].Incarnation
	for i := range 3 {
		// Rank 1 restarts on a new port, while the controller bumps the epoch.
		worlds[1].Close()
		if i == 1 {
			// The rejoined rank's state must not come from replaying events.
			go kc.BumpEpoch(ctx)
		}
		addr := netip.AddrPortFrom(testAddr(1).Addr(), uint16(30000+i))
		w, err := Join(ctx, JoinConfig{Store: s, Rank: 1, Size: n, Addr: addr, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		worlds[1] = w
		if w.Incarnation <= last {
			t.Fatalf("rejoin %d: incarnation %d after %d", i, w.Incarnation, last)
		}
		last = w.Incarnation
		peers, err := worlds[0].Refresh(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if peers[1].Incarnation != w.Incarnation || peers[1].Addr != addr {
			t.Fatalf("rank 0 sees rank 1 as %+v, want incarnation %d at %v", peers[1], w.Incarnation, addr)
		}
		if p, _ := worlds[0].Peer(1); p != peers[1] {
			t.Fatalf("Peer(1) = %+v", p)
		}
		if worlds[0].Peers[1].Incarnation != 1 {
			t.Fatal("Refresh modified Peers")
		}
	}
	if err := kc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range worlds {
		if err := w.WaitKeySeq(ctx, kc.Seq()); err != nil {
			t.Fatal(err)
		}
		if w.Group.Epoch() != kc.Epoch() || w.Group.KeyIndex() != kc.KeyIndex() {
			t.Fatalf("rank %d: epoch %d index %v; controller: %d %v", w.Rank, w.Group.Epoch(), w.Group.KeyIndex(), kc.Epoch(), kc.KeyIndex())
		}
	}
	checkInterop(t, worlds[1], worlds[2])
	checkInterop(t, worlds[0], worlds[1])
}

// TestJoinAfterEvents checks that a member joining after rotations and
// epoch bumps starts from the current state, not from the initial keys.
func TestJoinAfterEvents(t *testing.T) {
	const n = 3
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	kc := newController(t, s, n, -1)
	worlds, errs := joinAll(t, []Store{s}, n, []int{0, 1, 2}, 0, 5*time.Second)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, l := range []secure.Level{secure.Task, secure.Task, secure.User, secure.Task, secure.Region} {
		if err := kc.RotateRootKey(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kc.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	worlds[2].Close()
	w, err := Join(ctx, JoinConfig{Store: s, Rank: 2, Size: n, Addr: testAddr(2), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.KeySeq() != kc.Seq() || w.Group.KeyIndex() != kc.KeyIndex() || w.Group.Epoch() != kc.Epoch() {
		t.Fatalf("late joiner at seq %d index %v epoch %d; controller %d %v %d",
			w.KeySeq(), w.Group.KeyIndex(), w.Group.Epoch(), kc.Seq(), kc.KeyIndex(), kc.Epoch())
	}
	checkInterop(t, w, worlds[0])
	checkInterop(t, worlds[1], w)
	if _, err := kc.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	// Old events are garbage-collected.
	if _, err := s.Get(ctx, eventKey(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("event 1 still stored: %v", err)
	}
}

func TestFileStoreRefusesKeys(t *testing.T) {
	fs, err := OpenFileStore(t.TempDir(), FileStoreConfig{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	ctx := ctxT(t)
	for _, s := range []Store{fs, WithPrefix(fs, "job/"), WithPrefix(WithPrefix(fs, "a/"), "b/")} {
		_, err := NewKeyController(ctx, s, KeyControllerConfig{Size: 1})
		if !errors.Is(err, ErrInsecureStore) || !strings.Contains(err.Error(), "FileStore") {
			t.Fatalf("NewKeyController on %T: %v", s, err)
		}
		_, err = Join(ctx, JoinConfig{Store: s, Rank: 0, Size: 1, Addr: testAddr(0), Timeout: time.Second})
		if !errors.Is(err, ErrInsecureStore) {
			t.Fatalf("Join on %T: %v", s, err)
		}
	}
	// Nothing was written, keys least of all.
	ents, _ := fsEntries(fs.Dir())
	if len(ents) != 0 {
		t.Fatalf("FileStore holds %v", ents)
	}
	// Membership alone through a FileStore, with a group from elsewhere, is fine.
	lk, _ := secure.GenerateLevelKeys()
	g, err := secure.NewGroup(secure.GroupConfig{ID: make([]byte, 16), Keys: [3]secure.LevelKeys{lk, lk, lk}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := Join(ctx, JoinConfig{Store: fs, Rank: 0, Size: 1, Addr: testAddr(0), Group: g, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if w.Group != g || w.Incarnation != 1 {
		t.Fatalf("world %+v", w)
	}
	w.Close()
	// An unknown Store implementation is refused too.
	_, err = NewKeyController(ctx, struct{ Store }{NewMemStore(MemStoreConfig{})}, KeyControllerConfig{Size: 1})
	if !errors.Is(err, ErrInsecureStore) {
		t.Fatalf("wrapped store: %v", err)
	}
}

func TestKeyControllerTimeoutNamesLaggards(t *testing.T) {
	const n = 4
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	ctx := ctxT(t)
	kc, err := NewKeyController(ctx, s, KeyControllerConfig{Size: n, AckTimeout: 300 * time.Millisecond, Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	worlds, errs := joinAll(t, []Store{s}, n, allRanks(n), 0, 5*time.Second)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// Ranks 1 and 3 stop following.
	worlds[1].Close()
	worlds[3].Close()
	err = kc.RotateRootKey(ctx, secure.Task)
	var re *RanksError
	if !errors.As(err, &re) || !errors.Is(err, ErrTimeout) || !slices.Equal(re.Ranks, []int{1, 3}) {
		t.Fatalf("got %v, want ranks 1 and 3 named", err)
	}
	if !strings.Contains(err.Error(), "rotate task") || !strings.Contains(err.Error(), "1, 3") {
		t.Fatalf("message: %v", err)
	}
	// The next event is refused while event 1 is not acknowledged.
	_, err = kc.BumpEpoch(ctx)
	if !errors.As(err, &re) || !slices.Equal(re.Ranks, []int{1, 3}) || kc.Seq() != 1 {
		t.Fatalf("second event: %v (seq %d)", err, kc.Seq())
	}
	if _, err := s.Get(ctx, eventKey(2)); !errors.Is(err, ErrNotFound) {
		t.Fatal("event 2 was published")
	}
	// The laggards rejoin: they start from the state with event 1 and
	// acknowledge it, so the controller can go on.
	for _, r := range []int{1, 3} {
		w, err := Join(ctx, JoinConfig{Store: s, Rank: r, Size: n, Addr: testAddr(r), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		worlds[r] = w
	}
	if err := kc.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range worlds {
		if w.KeySeq() != 2 {
			t.Fatalf("rank %d at seq %d", w.Rank, w.KeySeq())
		}
	}
	checkInterop(t, worlds[3], worlds[0])
}

// TestKeyControllerStaleIncarnation: an acknowledgement by an earlier
// incarnation of a rank does not count.
func TestKeyControllerStaleIncarnation(t *testing.T) {
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	ctx := ctxT(t)
	kc, err := NewKeyController(ctx, s, KeyControllerConfig{Size: 1, AckTimeout: 300 * time.Millisecond, Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	worlds, errs := joinAll(t, []Store{s}, 1, []int{0}, 0, 5*time.Second)
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	// A new incarnation of rank 0 has been handed out but has not joined.
	if _, err := s.Add(ctx, incKey(0), 1); err != nil {
		t.Fatal(err)
	}
	err = kc.RotateRootKey(ctx, secure.User)
	var re *RanksError
	if !errors.As(err, &re) || !slices.Equal(re.Ranks, []int{0}) || !strings.Contains(err.Error(), "earlier incarnation") {
		t.Fatalf("got %v", err)
	}
	if worlds[0].KeySeq() != 1 {
		t.Fatalf("old incarnation at seq %d", worlds[0].KeySeq())
	}
}

func TestKeyControllerResumeAndConflict(t *testing.T) {
	const n = 2
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	ctx := ctxT(t)
	kc1 := newController(t, s, n, -1)
	worlds, errs := joinAll(t, []Store{s}, n, allRanks(n), 0, 5*time.Second)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if err := kc1.RotateRootKey(ctx, secure.Task); err != nil {
		t.Fatal(err)
	}
	// A restarted controller resumes from the store.
	kc2 := newController(t, s, n, -1)
	if !bytes.Equal(kc2.GroupID(), kc1.GroupID()) || kc2.Seq() != 1 || kc2.KeyIndex() != kc1.KeyIndex() {
		t.Fatalf("resumed at seq %d", kc2.Seq())
	}
	if err := kc2.RotateRootKey(ctx, secure.Task); err != nil {
		t.Fatal(err)
	}
	// The old one is now a competing controller.
	if err := kc1.RotateRootKey(ctx, secure.Task); !errors.Is(err, ErrConflict) {
		t.Fatalf("competing controller: %v", err)
	}
	for _, w := range worlds {
		if w.KeySeq() != 2 || w.Group.KeyIndex() != kc2.KeyIndex() {
			t.Fatalf("rank %d at %d", w.Rank, w.KeySeq())
		}
	}
	// A contradicting configuration is refused.
	_, err := NewKeyController(ctx, s, KeyControllerConfig{Size: n, GroupID: bytes.Repeat([]byte{7}, 16)})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("other group ID: %v", err)
	}
	// A controller that crashed after publishing an event but before the
	// state: the next controller completes the state.
	ev := &keyEvent{seq: 3, kind: eventEpoch, epoch: 9, groupID: kc2.GroupID()}
	if err := s.Set(ctx, eventKey(3), ev.marshal()); err != nil {
		t.Fatal(err)
	}
	kc3 := newController(t, s, n, -1)
	if kc3.Seq() != 3 || kc3.Epoch() != 9 {
		t.Fatalf("resumed at seq %d epoch %d", kc3.Seq(), kc3.Epoch())
	}
	if err := kc3.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if worlds[0].Group.Epoch() != 9 {
		t.Fatalf("epoch %d", worlds[0].Group.Epoch())
	}
}

func TestKeyControllerOperatorKeys(t *testing.T) {
	s := NewMemStore(MemStoreConfig{})
	defer s.Close()
	ctx := ctxT(t)
	region, _ := secure.GenerateLevelKeys()
	user, _ := secure.GenerateLevelKeys()
	gid := bytes.Repeat([]byte{0xab}, 32)
	kc, err := NewKeyController(ctx, s, KeyControllerConfig{Size: 1, GroupID: gid, Region: &region, User: &user,
		Combiner: secure.CombineXOR, Epoch: 5, JobID: "job-x", Settle: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	w, err := Join(ctx, JoinConfig{Store: s, Rank: 0, Size: 1, Addr: testAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !bytes.Equal(w.Group.ID(), gid) || w.Group.Epoch() != 5 || w.JobID != "job-x" {
		t.Fatalf("group %v job %q", w.Group, w.JobID)
	}
	// A group built from the operator keys and a task key interoperates
	// only if the region and user keys really are the operator's: check
	// by resuming with the same keys (accepted) and other keys (refused).
	if _, err := NewKeyController(ctx, s, KeyControllerConfig{Size: 1, Region: &region}); err != nil {
		t.Fatal(err)
	}
	other, _ := secure.GenerateLevelKeys()
	if _, err := NewKeyController(ctx, s, KeyControllerConfig{Size: 1, User: &other}); !errors.Is(err, ErrConflict) {
		t.Fatalf("other user keys: %v", err)
	}
	var next [secure.KeySize]byte
	next[0] = 1
	if err := kc.RotateRootKeyTo(ctx, secure.Region, next); err != nil {
		t.Fatal(err)
	}
	if w.Group.KeyIndex().Gen(secure.Region) != 1 {
		t.Fatalf("index %v", w.Group.KeyIndex())
	}
	// Bad configurations.
	bad := region
	bad.Next.Gen = 3
	if _, err := NewKeyController(ctx, NewMemStore(MemStoreConfig{}), KeyControllerConfig{Size: 1, Region: &bad}); err == nil {
		t.Fatal("inconsistent generations accepted")
	}
	if _, err := NewKeyController(ctx, s, KeyControllerConfig{Size: 0}); err == nil {
		t.Fatal("size 0 accepted")
	}
}

// TestWatcherStopsOnClose checks that Close stops every goroutine Join
// started, and that the watcher applies events until then.
func TestWatcherStopsOnClose(t *testing.T) {
	checkNoLeaks(t)
	ts := startServer(t, ServerConfig{Logger: discardLogger})
	const n = 3
	stores := make([]Store, n)
	for r := range stores {
		stores[r] = dialTest(t, ts.addr, issue(t, testCA(t), "rank", r))
	}
	ctrl := dialTest(t, ts.addr, issue(t, testCA(t), "launcher", 0))
	kc := newController(t, ctrl, n, -1)
	worlds, errs := joinAll(t, stores, n, allRanks(n), 0, 5*time.Second)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if worlds[0].JobID != testCA(t).JobID() {
		t.Fatalf("job ID %q", worlds[0].JobID)
	}
	ctx := ctxT(t)
	if _, err := kc.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range worlds {
		if w.Group.Epoch() != 1 {
			t.Fatalf("rank %d epoch %d", w.Rank, w.Group.Epoch())
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
		if w.Err() != nil {
			t.Fatalf("watcher error after a clean close: %v", w.Err())
		}
		if _, err := w.Refresh(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Refresh after Close: %v", err)
		}
	}
	for _, s := range stores {
		s.Close()
	}
	ctrl.Close()
	ts.srv.Close()
	checkNoLeaks(t)
}

// TestWatcherStoreClosed: a member whose store goes away reports it.
func TestWatcherStoreClosed(t *testing.T) {
	s := NewMemStore(MemStoreConfig{})
	newController(t, s, 1, -1)
	w, err := Join(ctxT(t), JoinConfig{Store: s, Rank: 0, Size: 1, Addr: testAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	err = w.WaitKeySeq(ctxT(t), 1)
	if !errors.Is(err, ErrClosed) || !errors.Is(w.Err(), ErrClosed) {
		t.Fatalf("WaitKeySeq: %v; Err: %v", err, w.Err())
	}
	w.Close()
}

// TestJoinWrongJobKeyState: a member of job A whose store holds the key
// state of job B refuses it.
func TestJoinWrongJobKeyState(t *testing.T) {
	backing := NewMemStore(MemStoreConfig{})
	defer backing.Close()
	ts := startServer(t, ServerConfig{Store: backing, Logger: discardLogger})
	// The controller writes directly into the backing store, claiming another job.
	kc, err := NewKeyController(ctxT(t), backing, KeyControllerConfig{Size: 1, JobID: strings.Repeat("0", 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	c := dialTest(t, ts.addr, nil)
	_, err = Join(ctxT(t), JoinConfig{Store: c, Rank: 0, Size: 1, Addr: testAddr(0), Timeout: time.Second})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "belongs to job") {
		t.Fatalf("got %v", err)
	}
}

func TestKeyFormat(t *testing.T) {
	st, err := newKeyState(KeyControllerConfig{JobID: "j", Epoch: 3})
	if err != nil {
		t.Fatal(err)
	}
	ev := &keyEvent{seq: 1, kind: eventRotate, level: secure.User, gen: 2, groupID: st.groupID}
	ev.key[5] = 9
	st2, err := st.apply(ev)
	if err != nil {
		t.Fatal(err)
	}
	enc := st2.marshal()
	dec, err := unmarshalState(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec.marshal(), enc) || dec.seq != 1 || dec.levels[secure.User].Previous == nil ||
		dec.levels[secure.User].Next.Key != ev.key || dec.levels[secure.User].Current != st.levels[secure.User].Next {
		t.Fatal("state does not round-trip")
	}
	for i := range len(enc) {
		if _, err := unmarshalState(enc[:i]); !errors.Is(err, errKeyFormat) {
			t.Fatalf("truncated state (%d bytes) accepted: %v", i, err)
		}
	}
	if _, err := unmarshalState(append(enc, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	evEnc := ev.marshal()
	ev2, err := unmarshalEvent(evEnc)
	if err != nil || ev2.key != ev.key || ev2.level != ev.level || ev2.gen != 2 || ev2.seq != 1 {
		t.Fatalf("event does not round-trip: %v", err)
	}
	for i := range len(evEnc) {
		if _, err := unmarshalEvent(evEnc[:i]); err == nil {
			t.Fatalf("truncated event (%d bytes) accepted", i)
		}
	}
	ep := &keyEvent{seq: 2, kind: eventEpoch, epoch: 7, groupID: st.groupID}
	if e, err := unmarshalEvent(ep.marshal()); err != nil || e.epoch != 7 {
		t.Fatalf("epoch event: %v", err)
	}
	// Out-of-order and wrong-generation events are refused.
	if _, err := st.apply(ep); err == nil {
		t.Fatal("event 2 applied to state 0")
	}
	bad := *ev
	bad.gen = 3
	if _, err := st.apply(&bad); err == nil {
		t.Fatal("wrong generation applied")
	}
	// Nothing prints keys.
	key := fmt.Sprintf("%x", st.levels[0].Current.Key[:4])
	for _, s := range []string{fmt.Sprint(st), fmt.Sprintf("%+v", st), fmt.Sprint(ev), fmt.Sprintf("%v", st2)} {
		if strings.Contains(s, key) {
			t.Fatalf("key material printed: %s", s)
		}
	}
}

func fsEntries(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, err
}

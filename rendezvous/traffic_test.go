package rendezvous

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealring/sealring/secure"
)

// TestRotationUnderTraffic joins 4 members through a real TLS store
// server, runs continuous sealed traffic between every pair, and has the
// key controller rotate every level three times interleaved with five
// epoch bumps. No packet may fail to open, traffic must flow before,
// during and after, and after every event each receiver must see every
// sender's packets under the new key generations / epoch.
func TestRotationUnderTraffic(t *testing.T) {
	const n = 4
	ts := startServer(t, ServerConfig{Logger: discardLogger})
	stores := make([]Store, n)
	for r := range stores {
		stores[r] = dialTest(t, ts.addr, issue(t, testCA(t), "rank", r))
	}
	// Rank 2 is slow to apply events: without the controller's
	// acknowledgement gating, the others would run more than one rotation
	// ahead of it and packets would fail with ErrKeyIndex.
	stores[2] = &slowEvents{Store: stores[2], delay: 50 * time.Millisecond}
	ctrl := dialTest(t, ts.addr, issue(t, testCA(t), "launcher", 0))
	ctx := ctxT(t)
	kc, err := NewKeyController(ctx, ctrl, KeyControllerConfig{Size: n, AckTimeout: 10 * time.Second, Settle: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	worlds, errs := joinAll(t, stores, n, allRanks(n), 20*time.Millisecond, 10*time.Second)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	type member struct {
		w      *World
		sealer *secure.Sealer
		opener *secure.Opener
		inbox  chan []byte
		// per sender: packets opened, and the last (epoch, key index) seen
		opened [n]atomic.Int64
		seen   [n]atomic.Uint32
	}
	ms := make([]*member, n)
	for r, w := range worlds {
		m := &member{w: w, inbox: make(chan []byte, 16)}
		if m.sealer, err = secure.NewSealer(w.Group, secure.SealerConfig{ID: w.SenderID()}); err != nil {
			t.Fatal(err)
		}
		cacheCap := 64
		if r == 3 {
			cacheCap = 0 // one receiver in the pure stateless mode
		}
		if m.opener, err = secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{w.Group}, CacheCapacity: cacheCap}); err != nil {
			t.Fatal(err)
		}
		ms[r] = m
	}
	var (
		failures atomic.Int64
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		failures.Add(1)
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	stop := make(chan struct{})
	var senders, receivers sync.WaitGroup
	for r, m := range ms {
		senders.Go(func() {
			var seq uint64
			for {
				for dst := range n {
					if dst == r {
						continue
					}
					seq++
					pkt := make([]byte, m.sealer.HeaderLen(), m.sealer.HeaderLen()+64+secure.TagSize)
					var payload [64]byte
					binary.BigEndian.PutUint32(payload[0:], uint32(r))
					binary.BigEndian.PutUint32(payload[4:], uint32(dst))
					binary.BigEndian.PutUint64(payload[8:], seq)
					pkt = append(pkt, payload[:]...)
					pkt, err := m.sealer.Seal(pkt, 0, 0)
					if err != nil {
						fail(fmt.Errorf("rank %d seal: %w", r, err))
						continue
					}
					select {
					case ms[dst].inbox <- pkt:
					case <-stop:
						return
					}
				}
				time.Sleep(20 * time.Microsecond)
			}
		})
		receivers.Go(func() {
			for pkt := range m.inbox {
				o, err := m.opener.Open(pkt, 0)
				if err != nil {
					fail(fmt.Errorf("rank %d open (epoch %d, index %#x, group epoch %d, index %#x): %w", r,
						o.Header.Epoch, uint8(o.Header.KeyIndex), m.w.Group.Epoch(), uint8(m.w.Group.KeyIndex()), err))
					continue
				}
				src := int(binary.BigEndian.Uint32(o.Payload[0:]))
				if src < 0 || src >= n || binary.BigEndian.Uint32(o.Payload[4:]) != uint32(r) ||
					o.Header.ID != ms[src].w.SenderID() {
					fail(fmt.Errorf("rank %d: misrouted packet from %x", r, o.Header.ID))
					continue
				}
				m.opened[src].Add(1)
				m.seen[src].Store(uint32(o.Header.Epoch)<<8 | uint32(o.Header.KeyIndex))
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			senders.Wait()
			for _, m := range ms {
				close(m.inbox)
			}
			receivers.Wait()
		}
	}()

	total := func() int64 {
		var s int64
		for _, m := range ms {
			for i := range m.opened {
				s += m.opened[i].Load()
			}
		}
		return s
	}
	// waitFlow waits until every ordered pair has delivered at least k more
	// packets than in base, and (if want != nil) the last packet each
	// receiver saw from each sender carries want.
	pairCounts := func() [n][n]int64 {
		var c [n][n]int64
		for r, m := range ms {
			for s := range n {
				c[r][s] = m.opened[s].Load()
			}
		}
		return c
	}
	waitFlow := func(what string, k int64, want *uint32) [n][n]int64 {
		t.Helper()
		base := pairCounts()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok := true
			cur := pairCounts()
			for r, m := range ms {
				for s := range n {
					if s == r {
						continue
					}
					if cur[r][s]-base[r][s] < k || (want != nil && m.seen[s].Load() != *want) {
						ok = false
					}
				}
			}
			if ok {
				return cur
			}
			if f := failures.Load(); f > 0 {
				errMu.Lock()
				defer errMu.Unlock()
				t.Fatalf("%s: %d failures; first: %v", what, f, firstErr)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: traffic did not flow: counts %v (base %v)", what, cur, base)
			}
			time.Sleep(time.Millisecond)
		}
	}

	waitFlow("before", 50, nil)
	before := total()
	type step struct {
		rotate bool
		level  secure.Level
	}
	R, U, T, E := step{true, secure.Region}, step{true, secure.User}, step{true, secure.Task}, step{}
	plan := []step{R, E, U, T, E, R, U, E, T, R, E, U, T, E}
	start := time.Now()
	for i, st := range plan {
		var what string
		if st.rotate {
			what = fmt.Sprintf("event %d: rotate %v", i+1, st.level)
			if err := kc.RotateRootKey(ctx, st.level); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		} else {
			what = fmt.Sprintf("event %d: bump epoch", i+1)
			if _, err := kc.BumpEpoch(ctx); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		want := uint32(kc.Epoch())<<8 | uint32(kc.KeyIndex())
		for _, m := range ms {
			if m.w.KeySeq() != uint64(i+1) || m.w.Group.Epoch() != kc.Epoch() || m.w.Group.KeyIndex() != kc.KeyIndex() {
				t.Fatalf("%s: rank %d at seq %d epoch %d index %v", what, m.w.Rank, m.w.KeySeq(), m.w.Group.Epoch(), m.w.Group.KeyIndex())
			}
		}
		// Every receiver sees every sender under the new keys, and
		// traffic keeps flowing.
		waitFlow(what, 10, &want)
	}
	during := total() - before
	elapsed := time.Since(start)
	waitFlow("after", 50, nil)
	after := total() - before - during

	close(stop)
	senders.Wait()
	for _, m := range ms {
		close(m.inbox)
	}
	receivers.Wait()

	if f := failures.Load(); f != 0 {
		t.Fatalf("%d packets failed; first: %v", f, firstErr)
	}
	if kc.Epoch() != 5 || kc.Seq() != uint64(len(plan)) {
		t.Fatalf("controller at epoch %d seq %d", kc.Epoch(), kc.Seq())
	}
	for l := secure.Region; l <= secure.Task; l++ {
		if g := kc.KeyIndex().Gen(l); g != 3 {
			t.Fatalf("%v generation %d after 3 rotations", l, g)
		}
	}
	for _, w := range worlds {
		if err := w.Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("packets opened: %d before, %d during %d events (%v), %d after; 0 failures", before, during, len(plan), elapsed.Round(time.Millisecond), after)
	if before == 0 || during == 0 || after == 0 {
		t.Fatal("traffic did not flow throughout")
	}
}

// slowEvents delays fetching key events, to play a slow member.
type slowEvents struct {
	Store
	delay time.Duration
}

func (s *slowEvents) keyChannel() (bool, string) { return storeCarriesKeys(s.Store) }

func (s *slowEvents) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, keyEventPrefix) {
		time.Sleep(s.delay)
	}
	return s.Store.Get(ctx, key)
}

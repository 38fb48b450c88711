package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/transport/wire"
)

// snapshot copies buf under ep's lock. A target writes its regions under
// that lock; reading under it orders the test after every placement the
// race detector cannot see through a socket.
func snapshot(ep *Endpoint, buf []byte) []byte {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return bytes.Clone(buf)
}

// shipKey sends a key through its binary form, as a job would.
func shipKey(t *testing.T, k RemoteKey) RemoteKey {
	t.Helper()
	b, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got RemoteKey
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRemoteKeyEncoding(t *testing.T) {
	k := RemoteKey{rank: 7, inc: 3, id: 1 << 40, length: 1 << 30, secret: 0xdeadbeefcafef00d, access: AccessRemoteRead | AccessRemoteWrite}
	b, err := k.MarshalBinary()
	if err != nil || len(b) != RemoteKeySize {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	if b2, _ := k.AppendBinary([]byte("x")); !bytes.Equal(b2[1:], b) || b2[0] != 'x' {
		t.Fatal("AppendBinary differs from MarshalBinary")
	}
	var got RemoteKey
	if err := got.UnmarshalBinary(b); err != nil || got != k {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if got.Rank() != 7 || got.Incarnation() != 3 || got.Len() != 1<<30 || got.Access() != AccessRemoteRead|AccessRemoteWrite {
		t.Fatalf("accessors: %v", got)
	}
	if s := k.String(); bytes.Contains([]byte(s), []byte(fmt.Sprint(k.secret))) || bytes.Contains([]byte(s), []byte(fmt.Sprintf("%x", k.secret))) {
		t.Fatalf("String prints the secret: %s", s)
	}
	mod := func(f func(b []byte)) []byte { c := bytes.Clone(b); f(c); return c }
	bad := map[string]struct {
		b   []byte
		err error
	}{
		"empty":       {nil, errKeySize},
		"short":       {b[:RemoteKeySize-1], errKeySize},
		"long":        {append(bytes.Clone(b), 0), errKeySize},
		"version0":    {mod(func(b []byte) { b[0] = 0 }), errKeyVersion},
		"version2":    {mod(func(b []byte) { b[0] = 2 }), errKeyVersion},
		"reserved2":   {mod(func(b []byte) { b[2] = 1 }), errKeyReserved},
		"reserved12":  {mod(func(b []byte) { b[15] = 1 }), errKeyReserved},
		"noAccess":    {mod(func(b []byte) { b[1] = 0 }), errKeyNoAccess},
		"accessBits":  {mod(func(b []byte) { b[1] = 4 | 1 }), errKeyAccess},
		"zeroID":      {mod(func(b []byte) { clear(b[16:24]) }), errKeyZeroID},
		"hugeLength":  {mod(func(b []byte) { b[24] = 0x40; b[31] = 1 }), errKeyLength},
		"maxUint64Ln": {mod(func(b []byte) { copy(b[24:32], bytes.Repeat([]byte{0xff}, 8)) }), errKeyLength},
	}
	for name, c := range bad {
		before := got
		err := got.UnmarshalBinary(c.b)
		if !errors.Is(err, c.err) || !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
		if got != before {
			t.Errorf("%s: key changed on error", name)
		}
	}
	if _, err := (RemoteKey{}).MarshalBinary(); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("zero key marshalled: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() {
		b, _ = k.AppendBinary(b[:0])
		got.UnmarshalBinary(b)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzRemoteKey(f *testing.F) {
	k := RemoteKey{rank: 1, inc: 2, id: 3, length: 4096, secret: 5, access: AccessRemoteWrite}
	b, _ := k.MarshalBinary()
	f.Add(b)
	f.Add(make([]byte, RemoteKeySize))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var k RemoteKey
		if err := k.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrInvalidKey) || k != (RemoteKey{}) {
				t.Fatalf("error %v, key %v", err, k)
			}
			return
		}
		// What decodes re-encodes to the same bytes, and is usable.
		enc, err := k.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding: %v\n in %x\nout %x", err, b, enc)
		}
		if k.id == 0 || k.access == 0 || k.access&^accessKnown != 0 || k.length > maxRMA {
			t.Fatalf("invalid key accepted: %+v", k)
		}
	})
}

// TestRMASizes: Put and Get of every size class (empty, one byte, around
// the inline and DATA fragment sizes, 1 MiB, 6 MiB; 64 MiB with
// SEALRING_SOAK=1) at an odd offset, over every wire; the key travels in
// its binary form.
func TestRMASizes(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			c := newCluster(t, kind, 2, nil, nil)
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			fp, fd := a.fragPut, a.fragData
			sizes := []int{0, 1, fp - 1, fp, fp + 1, fd - 1, fd + 1, 3*fd + 7, 1 << 20, 6 << 20}
			if soak() {
				sizes = append(sizes, 64<<20)
			}
			const off = 5
			region := pattern(sizes[len(sizes)-1]+off+3, 1, 9, 0)
			initial := bytes.Clone(region)
			r, err := b.Register(region, AccessRemoteRead|AccessRemoteWrite)
			if err != nil {
				t.Fatal(err)
			}
			key := shipKey(t, r.Key())
			for i, n := range sizes {
				// Get what the owner put there.
				dst := make([]byte, n)
				if err := a.Get(ctx, 1, key, off, dst); err != nil {
					t.Fatalf("Get %d: %v", n, err)
				}
				if !bytes.Equal(dst, initial[off:off+n]) {
					t.Fatalf("Get %d: wrong data", n)
				}
				// Put new data, read it back both ways.
				src := pattern(n, 0, 1, i)
				if err := a.Put(ctx, 1, key, off, src); err != nil {
					t.Fatalf("Put %d: %v", n, err)
				}
				got := snapshot(b, region)
				if !bytes.Equal(got[off:off+n], src) {
					t.Fatalf("Put %d: region differs", n)
				}
				if !bytes.Equal(got[:off], initial[:off]) || !bytes.Equal(got[off+n:], initial[off+n:]) {
					t.Fatalf("Put %d: wrote outside [off, off+n)", n)
				}
				copy(initial[off:], src)
				clear(dst)
				if err := a.Get(ctx, 1, key, off, dst); err != nil || !bytes.Equal(dst, src) {
					t.Fatalf("Get back %d: %v", n, err)
				}
			}
			// The last byte of the region, and the empty range at its end.
			if err := a.Put(ctx, 1, key, int64(len(region)-1), []byte{0xAB}); err != nil {
				t.Fatal(err)
			}
			if err := a.Put(ctx, 1, key, int64(len(region)), nil); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(b, region[len(region)-1:]); got[0] != 0xAB {
				t.Fatal("last byte not written")
			}
			s := b.Stats()
			if s.RMAPutsServed != uint64(len(sizes)+2) || s.RMAGetsServed != uint64(2*len(sizes)) {
				t.Fatalf("served %d puts, %d gets", s.RMAPutsServed, s.RMAGetsServed)
			}
			if s.RMANotFound+s.RMADenied+s.RMAOutOfBounds != 0 {
				t.Fatalf("rejections: %+v", s)
			}
		})
	}
}

// TestRMABoundsAndRights: accesses outside a key's bounds or rights fail
// at the initiator without a packet; forged keys that pass that check are
// refused by the target, counted there, and write nothing.
func TestRMABoundsAndRights(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	const n = 256 << 10
	ro, wo := pattern(n, 1, 1, 0), pattern(n, 1, 2, 0)
	roR, err := b.Register(ro, AccessRemoteRead)
	if err != nil {
		t.Fatal(err)
	}
	woR, err := b.Register(wo, AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	roKey, woKey := roR.Key(), woR.Key()
	big := pattern(n, 0, 3, 0)
	one := []byte{1}
	// Warm up (incarnations known), then let the ACKs settle.
	if err := a.Put(ctx, 1, woKey, 0, wo[:10]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)

	local := []struct {
		name string
		err  error
		want error
	}{
		{"put to a read-only region", a.Put(ctx, 1, roKey, 0, one), ErrAccessDenied},
		{"get from a write-only region", a.Get(ctx, 1, woKey, 0, one), ErrAccessDenied},
		{"put across the end", a.Put(ctx, 1, woKey, n-1, []byte{1, 2}), ErrOutOfBounds},
		{"empty put past the end", a.Put(ctx, 1, woKey, n+1, nil), ErrOutOfBounds},
		{"negative offset", a.Get(ctx, 1, roKey, -1, one), ErrOutOfBounds},
		{"longer than the region", a.Get(ctx, 1, roKey, 0, make([]byte, n+1)), ErrOutOfBounds},
		{"offset overflow", a.Put(ctx, 1, woKey, math.MaxInt64, one), ErrOutOfBounds},
		{"key of another rank", a.Put(ctx, 0, woKey, 0, one), ErrInvalidKey},
		{"zero key", a.Get(ctx, 1, RemoteKey{}, 0, nil), ErrInvalidKey},
	}
	sent := a.Stats().PacketsSent
	for _, c := range local {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if s := a.Stats().PacketsSent; s != sent {
		t.Errorf("local rejections sent %d packets", s-sent)
	}
	if s := b.Stats(); s.RMANotFound+s.RMADenied+s.RMAOutOfBounds != 0 {
		t.Errorf("local rejections reached the target: %+v", s)
	}

	// Forged keys: they pass the local check, the target refuses them.
	forge := func(k RemoteKey, f func(*RemoteKey)) RemoteKey { f(&k); return k }
	rw := AccessRemoteRead | AccessRemoteWrite
	roRW := forge(roKey, func(k *RemoteKey) { k.access = rw })
	woRW := forge(woKey, func(k *RemoteKey) { k.access = rw })
	woLong := forge(woKey, func(k *RemoteKey) { k.length = 4 * n })
	roLong := forge(roKey, func(k *RemoteKey) { k.length = 4 * n })
	dst := make([]byte, n)
	remote := []struct {
		name    string
		do      func() error
		want    error
		counter func(Stats) uint64
	}{
		{"small put to read-only", func() error { return a.Put(ctx, 1, roRW, 0, big[:100]) }, ErrAccessDenied, func(s Stats) uint64 { return s.RMADenied }},
		{"large put to read-only", func() error { return a.Put(ctx, 1, roRW, 0, big) }, ErrAccessDenied, func(s Stats) uint64 { return s.RMADenied }},
		{"get from write-only", func() error { return a.Get(ctx, 1, woRW, 0, dst) }, ErrAccessDenied, func(s Stats) uint64 { return s.RMADenied }},
		{"small put past the end", func() error { return a.Put(ctx, 1, woLong, n, big[:10]) }, ErrOutOfBounds, func(s Stats) uint64 { return s.RMAOutOfBounds }},
		{"large put straddling the end", func() error { return a.Put(ctx, 1, woLong, n/2, big) }, ErrOutOfBounds, func(s Stats) uint64 { return s.RMAOutOfBounds }},
		{"one byte past the end", func() error { return a.Put(ctx, 1, woLong, n-1, big[:2]) }, ErrOutOfBounds, func(s Stats) uint64 { return s.RMAOutOfBounds }},
		{"get straddling the end", func() error { return a.Get(ctx, 1, roLong, n-5, dst[:10]) }, ErrOutOfBounds, func(s Stats) uint64 { return s.RMAOutOfBounds }},
		{"empty get past the end", func() error { return a.Get(ctx, 1, roLong, n+1, nil) }, ErrOutOfBounds, func(s Stats) uint64 { return s.RMAOutOfBounds }},
		{"wrong secret", func() error {
			return a.Put(ctx, 1, forge(woKey, func(k *RemoteKey) { k.secret ^= 1 }), 0, big)
		}, ErrRegionNotFound, func(s Stats) uint64 { return s.RMANotFound }},
		{"unknown region", func() error {
			return a.Get(ctx, 1, forge(roKey, func(k *RemoteKey) { k.id = 999 }), 0, dst)
		}, ErrRegionNotFound, func(s Stats) uint64 { return s.RMANotFound }},
	}
	for _, c := range remote {
		before := c.counter(b.Stats())
		err := c.do()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
			continue
		}
		if got := c.counter(b.Stats()); got != before+1 {
			t.Errorf("%s: target counter %d, want %d", c.name, got, before+1)
		}
	}
	// Nothing was written: not the regions, not the Get buffer.
	if !bytes.Equal(snapshot(b, ro), pattern(n, 1, 1, 0)) {
		t.Error("read-only region modified")
	}
	want := pattern(n, 1, 2, 0)
	copy(want, want[:10]) // the warm-up put wrote its own first 10 bytes
	if !bytes.Equal(snapshot(b, wo), want) {
		t.Error("write-only region modified by refused puts")
	}
	if !bytes.Equal(dst, make([]byte, n)) {
		t.Error("refused gets wrote into the buffer")
	}
	// A region with both rights, put to and read by the endpoint itself.
	self := make([]byte, 100)
	sr, err := a.Register(self, rw)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, 0, sr.Key(), 10, []byte("loopback")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	if err := a.Get(ctx, 0, sr.Key(), 10, got); err != nil || string(got) != "loopback" {
		t.Fatalf("self: %v %q", err, got)
	}
	// Register rejects meaningless rights.
	for _, acc := range []Access{0, 4, AccessRemoteRead | 8} {
		if _, err := a.Register(self, acc); !errors.Is(err, ErrConfig) {
			t.Errorf("Register(%v): %v", acc, err)
		}
	}
}

// TestRMADeregister: later accesses fail on both sides with
// ErrRegionNotFound, a region's ID is never reused, and a Deregister
// during a Put or Get ends it: nothing is written or read after it returns.
func TestRMADeregister(t *testing.T) {
	// A small window keeps a 4 MiB transfer in progress long enough.
	c := newCluster(t, "mem", 2, func(cfg *Config) { cfg.Window = 16 }, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	buf := make([]byte, 1<<20)
	r, err := b.Register(buf, AccessRemoteRead|AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	key := r.Key()
	if err := a.Put(ctx, 1, key, 0, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := b.Deregister(r); err != nil {
		t.Fatal(err)
	}
	if err := b.Deregister(r); !errors.Is(err, ErrRegionNotFound) {
		t.Fatalf("second Deregister: %v", err)
	}
	if err := a.Put(ctx, 1, key, 0, []byte("again")); !errors.Is(err, ErrRegionNotFound) {
		t.Fatalf("Put after Deregister: %v", err)
	}
	if err := a.Get(ctx, 1, key, 0, make([]byte, 5)); !errors.Is(err, ErrRegionNotFound) {
		t.Fatalf("Get after Deregister: %v", err)
	}
	if err := a.Put(ctx, 1, key, 0, make([]byte, 100000)); !errors.Is(err, ErrRegionNotFound) {
		t.Fatalf("large Put after Deregister: %v", err)
	}
	if string(buf[:5]) != "hello" {
		t.Fatal("deregistered region modified")
	}
	if s := b.Stats(); s.RMANotFound != 3 {
		t.Fatalf("target counted %d not-found accesses, want 3", s.RMANotFound)
	}
	// A new registration never takes the old ID: the old key stays dead.
	r2, err := b.Register(buf, AccessRemoteRead|AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Key().id == key.id {
		t.Fatal("region ID reused")
	}
	if err := a.Get(ctx, 1, key, 0, make([]byte, 5)); !errors.Is(err, ErrRegionNotFound) {
		t.Fatalf("old key on a new region: %v", err)
	}
	if err := (&Endpoint{}).Deregister(r2); !errors.Is(err, ErrRegionNotFound) {
		t.Fatalf("Deregister on the wrong endpoint: %v", err)
	}

	t.Run("during Put", func(t *testing.T) {
		big := make([]byte, 4<<20)
		r, err := b.Register(big, AccessRemoteWrite)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Put(ctx, 1, r.Key(), 0, pattern(len(big), 0, 1, 0)) }()
		waitFor(t, b, "the put to be placed in part", func() bool {
			for _, s := range b.sinks {
				if s.region == r && s.got > 0 {
					return true
				}
			}
			return false
		})
		if err := b.Deregister(r); err != nil {
			t.Fatal(err)
		}
		after := bytes.Clone(big) // safe: nothing writes it any more
		if err := <-done; !errors.Is(err, ErrRegionNotFound) {
			t.Fatalf("Put during Deregister: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
		if !bytes.Equal(big, after) {
			t.Fatal("region written after Deregister returned")
		}
		if bytes.Equal(after, make([]byte, len(big))) {
			t.Fatal("nothing placed before Deregister")
		}
	})
	t.Run("during Get", func(t *testing.T) {
		big := pattern(4<<20, 1, 1, 0)
		r, err := b.Register(big, AccessRemoteRead)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, len(big))
		done := make(chan error, 1)
		go func() { done <- a.Get(ctx, 1, r.Key(), 0, dst) }()
		waitFor(t, b, "the get to be served in part", func() bool {
			for _, op := range b.peers[0].rmaServe {
				if op.region == r && op.off > 0 && !op.allBuilt {
					return true
				}
			}
			return false
		})
		if err := b.Deregister(r); err != nil {
			t.Fatal(err)
		}
		// The owner has its buffer back: no more reads of it (-race
		// would flag one), and none of these bytes may reach dst.
		for i := range big {
			big[i] = 0xFF
		}
		if err := <-done; !errors.Is(err, ErrRegionNotFound) {
			t.Fatalf("Get during Deregister: %v", err)
		}
		want := pattern(len(big), 1, 1, 0)
		arrived := 0
		for i := range dst {
			switch dst[i] {
			case want[i]:
				arrived++
			case 0:
			default:
				t.Fatalf("Get placed byte %d read after Deregister", i)
			}
		}
		if arrived == 0 {
			t.Fatal("nothing arrived before Deregister")
		}
		b.mu.Lock()
		nServe := len(b.peers[0].rmaServe)
		b.mu.Unlock()
		if nServe != 0 {
			t.Fatalf("%d gets still served", nServe)
		}
	})
}

// TestRMACancel: a cancelled Put returns once the target writes no more of
// it; a cancelled Get once nothing more lands in its buffer; the endpoints
// keep working.
func TestRMACancel(t *testing.T) {
	c := newCluster(t, "mem", 2, func(cfg *Config) { cfg.Window = 16 }, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	region := make([]byte, 4<<20)
	r, err := b.Register(region, AccessRemoteRead|AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	key := r.Key()
	// Already cancelled: nothing happens.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Put(cctx, 1, key, 0, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if r := a.GetAsync(cctx, 1, key, 0, make([]byte, 1)); !errors.Is(r.Err(), context.Canceled) {
		t.Fatal(r.Err())
	}

	t.Run("Put", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Put(cctx, 1, key, 0, pattern(len(region), 0, 1, 0)) }()
		waitFor(t, b, "the put to be placed in part", func() bool {
			for _, s := range b.sinks {
				if s.got > 0 {
					return true
				}
			}
			return false
		})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Put: %v", err)
		}
		// The target has let go: nothing more is written.
		snap := snapshot(b, region)
		b.mu.Lock()
		nSinks := len(b.sinks)
		b.mu.Unlock()
		if nSinks != 0 {
			t.Fatalf("%d sinks left at the target", nSinks)
		}
		time.Sleep(20 * time.Millisecond)
		if !bytes.Equal(snapshot(b, region), snap) {
			t.Fatal("target wrote after the cancelled Put returned")
		}
	})
	t.Run("Get", func(t *testing.T) {
		dst := make([]byte, len(region))
		req := a.GetAsync(ctx, 1, key, 0, dst)
		waitFor(t, a, "the get to arrive in part", func() bool { return req.send.sink.got > 0 })
		req.Cancel(nil)
		if err := req.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Get: %v", err)
		}
		snap := bytes.Clone(dst) // unlocked: -race flags any later write
		waitFor(t, b, "the target to stop serving", func() bool { return len(b.peers[0].rmaServe) == 0 })
		time.Sleep(10 * time.Millisecond)
		if !bytes.Equal(dst, snap) {
			t.Fatal("Get buffer written after cancellation")
		}
	})
	t.Run("PutAsync", func(t *testing.T) {
		req := a.PutAsync(ctx, 1, key, 0, pattern(len(region), 0, 2, 0))
		waitFor(t, b, "the put to be placed in part", func() bool {
			for _, s := range b.sinks {
				if s.got > 0 {
					return true
				}
			}
			return false
		})
		req.Cancel(errors.New("changed my mind"))
		if err := req.Err(); err == nil || err.Error() != "changed my mind" {
			t.Fatalf("cancelled PutAsync: %v", err)
		}
		b.mu.Lock()
		nSinks := len(b.sinks)
		b.mu.Unlock()
		if nSinks != 0 {
			t.Fatalf("%d sinks left at the target after Cancel returned", nSinks)
		}
	})
	// Still works, both ways.
	src := pattern(1<<20, 0, 4, 0)
	if err := a.Put(ctx, 1, key, 7, src); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, len(src))
	if err := a.Get(ctx, 1, key, 7, dst); err != nil || !bytes.Equal(dst, src) {
		t.Fatalf("after cancellations: %v", err)
	}
	a.mu.Lock()
	left := len(a.peers[1].awaitCTS) + len(a.sinks)
	a.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d operations left at the initiator", left)
	}
}

// TestRMAAsync: many concurrent PutAsync and GetAsync to disjoint ranges,
// interleaved with messages, from two initiators.
func TestRMAAsync(t *testing.T) {
	c := newCluster(t, "mem", 3, nil, nil)
	ctx := ctxT(t)
	tgt := c.eps[2]
	const slot = 9000
	const k = 40
	region := make([]byte, 2*k*slot)
	r, err := tgt.Register(region, AccessRemoteRead|AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	key := r.Key()
	var wg sync.WaitGroup
	for src := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep := c.eps[src]
			var reqs []*Request
			for i := range k {
				n := 1 + (i*977)%slot
				off := int64((src*k + i) * slot)
				reqs = append(reqs, ep.PutAsync(ctx, 2, key, off, pattern(n, uint32(src), 0, i)))
				if i%8 == 0 {
					reqs = append(reqs, ep.SendAsync(ctx, 2, uint64(src), []byte("between")))
				}
			}
			for _, r := range reqs {
				if _, err := r.Wait(ctx); err != nil {
					t.Error(err)
					return
				}
			}
			bufs := make([][]byte, k)
			reqs = reqs[:0]
			for i := range k {
				bufs[i] = make([]byte, 1+(i*977)%slot)
				reqs = append(reqs, ep.GetAsync(ctx, 2, key, int64((src*k+i)*slot), bufs[i]))
			}
			for i, r := range reqs {
				if _, err := r.Wait(ctx); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(bufs[i], pattern(len(bufs[i]), uint32(src), 0, i)) {
					t.Errorf("rank %d get %d: wrong data", src, i)
					return
				}
			}
		}()
	}
	for src := range 2 {
		for range (k + 7) / 8 {
			if _, err := tgt.Recv(ctx, uint32(src), uint64(src), ^uint64(0), make([]byte, 10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if s := tgt.Stats(); s.RMAPutsServed != 2*k || s.RMAGetsServed != 2*k {
		t.Fatalf("served %d puts, %d gets", s.RMAPutsServed, s.RMAGetsServed)
	}
}

// TestRMAFaults: Puts and Gets of every size class between three ranks
// over a network that loses 10 %, duplicates 5 %, reorders and corrupts
// 1 % of datagrams: the data is exact, nothing lands outside its range.
func TestRMAFaults(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			fc := faultwire.Config{Seed: 13, Loss: 0.10, Duplicate: 0.05, Reorder: 0.05, Corrupt: 0.01, ReorderDepth: 3}
			const n = 3
			c := newCluster(t, kind, n, nil, faultWrap(fc))
			ctx := ctxT(t)
			fp := c.eps[0].fragPut
			sizes := []int{0, 1, fp - 1, fp + 1, 70000, 1 << 20}
			slot := 0
			for _, s := range sizes {
				slot += s + 3
			}
			regions := make([][]byte, n)
			keys := make([]RemoteKey, n)
			for i, ep := range c.eps {
				regions[i] = make([]byte, n*slot)
				r, err := ep.Register(regions[i], AccessRemoteRead|AccessRemoteWrite)
				if err != nil {
					t.Fatal(err)
				}
				keys[i] = shipKey(t, r.Key())
			}
			var wg sync.WaitGroup
			for src := range n {
				for dst := range n {
					if src == dst {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						ep := c.eps[src]
						off := src*slot + 1
						for i, size := range sizes {
							data := pattern(size, uint32(src), uint64(dst), i)
							if err := ep.Put(ctx, uint32(dst), keys[dst], int64(off), data); err != nil {
								t.Errorf("put %d->%d %d: %v", src, dst, size, err)
								return
							}
							got := make([]byte, size)
							if err := ep.Get(ctx, uint32(dst), keys[dst], int64(off), got); err != nil {
								t.Errorf("get %d<-%d %d: %v", src, dst, size, err)
								return
							}
							if !bytes.Equal(got, data) {
								reg := snapshot(c.eps[dst], regions[dst][off:off+size])
								t.Errorf("get %d<-%d %d: wrong data (first difference at %d; region differs at %d)", src, dst, size, firstDiff(got, data), firstDiff(reg, data))
								return
							}
							off += size + 3
						}
					}()
				}
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			// Every target region holds exactly what was put, zeros between.
			var s Stats
			for dst, ep := range c.eps {
				want := make([]byte, n*slot)
				for src := range n {
					if src == dst {
						continue
					}
					off := src*slot + 1
					for i, size := range sizes {
						fillPattern(want[off:off+size], uint32(src), uint64(dst), i)
						off += size + 3
					}
				}
				if !bytes.Equal(snapshot(ep, regions[dst]), want) {
					t.Fatalf("rank %d: region content wrong", dst)
				}
				st := ep.Stats()
				s.AuthFailures += st.AuthFailures
				s.Retransmits += st.Retransmits
				s.Duplicates += st.Duplicates
				s.RMAPutsServed += st.RMAPutsServed
			}
			t.Logf("auth failures %d, retransmits %d, duplicates %d", s.AuthFailures, s.Retransmits, s.Duplicates)
			if s.AuthFailures == 0 || s.Retransmits == 0 || s.Duplicates == 0 {
				t.Fatalf("faults not seen: %+v", s)
			}
			if s.RMAPutsServed != uint64(n*(n-1)*len(sizes)) {
				t.Fatalf("%d puts served", s.RMAPutsServed)
			}
		})
	}
}

// TestRMAPeerDeath: Puts and Gets toward a peer that dies fail with
// ErrPeerUnreachable within the peer timeout, and new ones fail fast.
func TestRMAPeerDeath(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			const timeout = 500 * time.Millisecond
			c := newCluster(t, kind, 2, func(cfg *Config) { cfg.PeerTimeout = timeout }, nil)
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			region := make([]byte, 64<<20)
			r, err := b.Register(region, AccessRemoteRead|AccessRemoteWrite)
			if err != nil {
				t.Fatal(err)
			}
			key := r.Key()
			if err := a.Put(ctx, 1, key, 0, []byte("warm")); err != nil {
				t.Fatal(err)
			}
			put := a.PutAsync(ctx, 1, key, 0, make([]byte, 32<<20))
			get := a.GetAsync(ctx, 1, key, 32<<20, make([]byte, 32<<20))
			time.Sleep(20 * time.Millisecond) // mid-transfer
			b.Close()
			start := time.Now()
			for _, r := range []*Request{put, get} {
				if _, err := r.Wait(ctx); !errors.Is(err, ErrPeerUnreachable) {
					t.Fatalf("got %v, want ErrPeerUnreachable", err)
				}
			}
			if el := time.Since(start); el > timeout+300*time.Millisecond {
				t.Fatalf("took %v, timeout %v", el, timeout)
			}
			t0 := time.Now()
			if err := a.Get(ctx, 1, key, 0, make([]byte, 4)); !errors.Is(err, ErrPeerUnreachable) {
				t.Fatal(err)
			}
			if time.Since(t0) > 10*time.Millisecond {
				t.Fatal("did not fail fast")
			}
		})
	}
}

// TestRMAClose: Close fails pending Puts and Gets with ErrClosed, and
// leaves no goroutine behind.
func TestRMAClose(t *testing.T) {
	base := runtime.NumGoroutine()
	// Nothing the target sends reaches the initiator once the operations
	// start, so none of them can complete before Close (however fast the
	// machine).
	cut := new(oneWayCut)
	cut.heal()
	c := newCluster(t, "mem", 2, func(cfg *Config) { cfg.Window = 16 }, func(rank int, w wire.Wire) wire.Wire {
		if rank != 1 {
			return w
		}
		return faultwire.New(w, faultwire.Config{Decide: func(_ uint64, m wire.Message) faultwire.Action {
			if cut.allow.Load() == 0 {
				return faultwire.Drop
			}
			return faultwire.Pass
		}})
	})
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	region := make([]byte, 32<<20)
	r, err := b.Register(region, AccessRemoteRead|AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	key := r.Key()
	cut.cutAfter(0)
	put := a.PutAsync(ctx, 1, key, 0, make([]byte, 16<<20))
	get := a.GetAsync(ctx, 1, key, 16<<20, make([]byte, 16<<20))
	errc := make(chan error, 1)
	go func() { errc <- a.Put(ctx, 1, key, 0, make([]byte, 8<<20)) }()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	for _, err := range []error{put.Err(), get.Err(), <-errc} {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	}
	if err := a.Put(ctx, 1, key, 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if _, err := a.Register(make([]byte, 10), AccessRemoteRead); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	b.Close()
	if err := b.Deregister(r); err != nil {
		t.Fatalf("Deregister after Close: %v", err)
	}
	checkNoLeak(t, base)
}

// TestRMAStaleKey: a key from an earlier incarnation of the target never
// reaches the new incarnation's regions, even when IDs and secrets repeat.
func TestRMAStaleKey(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := ctxT(t)
	b.newSecret = func() uint64 { return 42 }
	r, err := b.Register(make([]byte, 100), AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	old := r.Key()
	if err := a.Put(ctx, 1, old, 0, []byte("one")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b2, err := New(Config{Rank: 1, Incarnation: 2, Wire: c.net.listen(t), Group: testGroup(t, 1, 10), MinRTO: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	b2.newSecret = func() uint64 { return 42 }
	buf := make([]byte, 100)
	r2, err := b2.Register(buf, AccessRemoteWrite) // same ID and secret as before
	if err != nil {
		t.Fatal(err)
	}
	if r2.Key().id != old.id {
		t.Fatal("test wants the same region ID")
	}
	a.AddPeer(1, b2.LocalAddr())
	b2.AddPeer(0, a.LocalAddr())
	// Until a learns the new incarnation the Put may fail as a restart;
	// once it has, the key is refused as stale.
	var perr error
	for range 100 {
		if perr = a.Put(ctx, 1, old, 0, []byte("two")); errors.Is(perr, ErrRegionNotFound) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(perr, ErrRegionNotFound) {
		t.Fatalf("stale key: %v", perr)
	}
	if err := a.Put(ctx, 1, r2.Key(), 0, []byte("new")); err != nil {
		t.Fatal(err)
	}
	// A key from an incarnation not heard from yet: the peer restarted.
	newer := r2.Key()
	newer.inc++
	if err := a.Put(ctx, 1, newer, 0, []byte("x")); !errors.Is(err, ErrPeerUnreachable) {
		t.Fatalf("key of a newer incarnation: %v", err)
	}
	if got := snapshot(b2, buf[:3]); string(got) != "new" {
		t.Fatalf("region holds %q", got)
	}
}

// TestRMASteadyStateAllocs: a small Put (and Get) costs no allocation at
// the initiator or the target once pools are warm.
func TestRMASteadyStateAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	c := newCluster(t, "mem", 2, nil, nil)
	a, b := c.eps[0], c.eps[1]
	ctx := context.Background()
	r, err := b.Register(make([]byte, 4096), AccessRemoteRead|AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	key := r.Key()
	src, dst := make([]byte, 64), make([]byte, 64)
	put := func() {
		if err := a.Put(ctx, 1, key, 8, src); err != nil {
			t.Fatal(err)
		}
	}
	get := func() {
		if err := a.Get(ctx, 1, key, 8, dst); err != nil {
			t.Fatal(err)
		}
	}
	for range 5000 {
		put()
		get()
	}
	np := testing.AllocsPerRun(2000, put)
	ng := testing.AllocsPerRun(2000, get)
	t.Logf("%.3f allocations per Put, %.3f per Get", np, ng)
	if np > 0.5 || ng > 0.5 {
		t.Errorf("%.2f allocations per Put, %.2f per Get", np, ng)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// BenchmarkRMA: blocking Put and Get (one at a time: latency-bound for
// small sizes) and 16 PutAsync in flight (bandwidth), rank 0 to rank 1.
func BenchmarkRMA(b *testing.B) {
	for _, kind := range []string{"mem", "udp"} {
		for _, size := range []int{8, 1 << 10, 64 << 10, 1 << 20} {
			for _, op := range []string{"Put", "Get", "PutAsync16"} {
				b.Run(fmt.Sprintf("%s/%s/%d", kind, op, size), func(b *testing.B) {
					c := newCluster(b, kind, 2, nil, nil)
					a, t := c.eps[0], c.eps[1]
					ctx := context.Background()
					r, err := t.Register(make([]byte, 16*size), AccessRemoteRead|AccessRemoteWrite)
					if err != nil {
						b.Fatal(err)
					}
					key := r.Key()
					buf := make([]byte, size)
					const depth = 16
					var reqs [depth]*Request
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						var err error
						switch op {
						case "Put":
							err = a.Put(ctx, 1, key, 0, buf)
						case "Get":
							err = a.Get(ctx, 1, key, 0, buf)
						default:
							if q := reqs[i%depth]; q != nil {
								_, err = q.Wait(ctx)
							}
							reqs[i%depth] = a.PutAsync(ctx, 1, key, int64(i%depth*size), buf)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					for _, q := range reqs {
						if q != nil {
							if _, err := q.Wait(ctx); err != nil {
								b.Fatal(err)
							}
						}
					}
				})
			}
		}
	}
}

// TestRMAFragmentBounds: a DATA fragment that does not fall inside the
// range a target accepted for a Put (a faulty or malicious peer; the
// reliable stream never produces one) is dropped and counted, and the
// region outside the accepted range is never touched.
func TestRMAFragmentBounds(t *testing.T) {
	c := newCluster(t, "mem", 2, nil, nil)
	b := c.eps[1]
	region := pattern(100, 1, 1, 0)
	r, err := b.Register(region, AccessRemoteWrite)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[0]
	s := &rmaSink{p: p, msgID: 1, recvID: 99, buf: region[10:20:20], region: r}
	b.sinks[s.recvID], p.rmaIn[s.msgID] = s, s
	malformed := b.st.malformed.Load()
	for _, f := range []struct {
		off uint64
		n   int
	}{{5, 6}, {10, 1}, {11, 0}, {0, 11}, {1 << 62, 1}, {^uint64(0), 2}} {
		b.onSinkData(p, s, &header{Type: typeData, RecvID: 99, Offset: f.off}, bytes.Repeat([]byte{0xEE}, f.n))
	}
	if got := b.st.malformed.Load() - malformed; got != 6 {
		t.Fatalf("%d fragments counted malformed, want 6", got)
	}
	// A fragment from another peer is ignored.
	b.onSinkData(b.peers[1], s, &header{Type: typeData, RecvID: 99, Offset: 0}, bytes.Repeat([]byte{0xEE}, 10))
	if !bytes.Equal(region, pattern(100, 1, 1, 0)) {
		t.Fatal("region written by refused fragments")
	}
	// The accepted range fills, and completes the Put.
	b.onSinkData(p, s, &header{Type: typeData, RecvID: 99, Offset: 0}, bytes.Repeat([]byte{0xAA}, 10))
	want := pattern(100, 1, 1, 0)
	copy(want[10:20], bytes.Repeat([]byte{0xAA}, 10))
	if !bytes.Equal(region, want) {
		t.Fatal("accepted fragment misplaced")
	}
	if b.sinks[99] != nil || p.rmaIn[1] != nil || b.st.rmaPuts.Load() != 1 {
		t.Fatal("completed Put not finished")
	}
}

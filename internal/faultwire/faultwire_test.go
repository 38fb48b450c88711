package faultwire_test

import (
	"bytes"
	"errors"
	"math"
	"math/bits"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/faultwire"
	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/transport/wire"
)

// setup returns a fault wire a over a Mem endpoint, a plain Mem endpoint b
// and a reader on b. Queues are deep enough that Mem itself never drops.
func setup(t *testing.T, cfg faultwire.Config) (*faultwire.Wire, *wire.Mem, *wiretest.Reader) {
	t.Helper()
	nw := wire.NewMemNetwork()
	nw.MaxPayload, nw.QueueLen = 200, 30000
	ia, err := nw.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := nw.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	a := faultwire.New(ia, cfg)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, wiretest.StartReader(t, b, 256)
}

// send writes n datagrams of size bytes, numbered from 0, in batches.
func send(t *testing.T, w wire.Wire, dst netip.AddrPort, n, size int) []wire.Message {
	t.Helper()
	msgs := wiretest.Msgs(dst, 0, wiretest.Repeat(size, n)...)
	for i := 0; i < n; i += 100 {
		end := min(i+100, n)
		if k, err := w.WriteBatch(msgs[i:end]); k != end-i || err != nil {
			t.Fatalf("WriteBatch = %d, %v", k, err)
		}
	}
	return msgs
}

// expectNoMore fails if anything more arrives at r shortly.
func expectNoMore(t *testing.T, r *wiretest.Reader) {
	t.Helper()
	time.Sleep(20 * time.Millisecond)
	if p := r.Pending(); p != 0 {
		t.Fatalf("%d unexpected extra datagrams", p)
	}
}

// within checks that count is within 5 standard deviations of n*p.
func within(t *testing.T, what string, count uint64, n int, p float64) {
	t.Helper()
	mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	if math.Abs(float64(count)-mean) > 5*sd {
		t.Fatalf("%s: %d of %d, want %.0f ± %.0f (5σ)", what, count, n, mean, 5*sd)
	}
	t.Logf("%s: %d of %d (expected %.0f, σ %.1f)", what, count, n, mean, sd)
}

func TestPassthrough(t *testing.T) {
	t.Run("mem", func(t *testing.T) {
		nw := wire.NewMemNetwork()
		wiretest.Run(t, func(t *testing.T) (wire.Wire, wire.Wire) {
			a, _ := nw.Listen(netip.AddrPort{})
			b, _ := nw.Listen(netip.AddrPort{})
			return faultwire.New(a, faultwire.Config{Seed: 1}), faultwire.New(b, faultwire.Config{Seed: 2})
		})
	})
	t.Run("udp", func(t *testing.T) {
		wiretest.Run(t, func(t *testing.T) (wire.Wire, wire.Wire) {
			lo := netip.MustParseAddrPort("127.0.0.1:0")
			a, err := wire.ListenUDP("udp4", lo, wire.UDPConfig{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := wire.ListenUDP("udp4", lo, wire.UDPConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return faultwire.New(a, faultwire.Config{}), faultwire.New(b, faultwire.Config{})
		})
	})
}

func TestLoss(t *testing.T) {
	const n, p = 10000, 0.1
	a, b, r := setup(t, faultwire.Config{Seed: 7, Loss: p})
	send(t, a, b.LocalAddr(), n, 16)
	s := a.Stats()
	within(t, "dropped", s.Dropped, n, p)
	got := r.Wait(t, n-int(s.Dropped))
	expectNoMore(t, r)
	if s.Sent != uint64(len(got)) {
		t.Fatalf("stats %+v but %d received", s, len(got))
	}
	for _, d := range got {
		if len(d.Buf) != 16 || !bytes.Equal(d.Buf, wiretest.Payload(seqOf(d.Buf), 16)) {
			t.Fatal("a datagram was damaged")
		}
	}
}

func seqOf(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func TestDuplicate(t *testing.T) {
	const n, p = 2000, 0.25
	a, b, r := setup(t, faultwire.Config{Seed: 8, Duplicate: p})
	msgs := send(t, a, b.LocalAddr(), n, 40)
	s := a.Stats()
	within(t, "duplicated", s.Duplicated, n, p)
	got := r.Wait(t, n+int(s.Duplicated))
	expectNoMore(t, r)
	count := make(map[uint32]int)
	for _, d := range got {
		seq := seqOf(d.Buf)
		if int(seq) >= n || !bytes.Equal(d.Buf, msgs[seq].Buf) {
			t.Fatalf("datagram %d is not an exact copy", seq)
		}
		count[seq]++
	}
	twice := 0
	for seq := 0; seq < n; seq++ {
		switch count[uint32(seq)] {
		case 1:
		case 2:
			twice++
		default:
			t.Fatalf("datagram %d arrived %d times", seq, count[uint32(seq)])
		}
	}
	if twice != int(s.Duplicated) {
		t.Fatalf("%d datagrams arrived twice, stats say %d", twice, s.Duplicated)
	}
}

func TestCorrupt(t *testing.T) {
	const n, p = 2000, 0.3
	a, b, r := setup(t, faultwire.Config{Seed: 9, Corrupt: p})
	msgs := send(t, a, b.LocalAddr(), n, 100)
	s := a.Stats()
	within(t, "corrupted", s.Corrupted, n, p)
	got := r.Wait(t, n)
	expectNoMore(t, r)
	flipped := 0
	for i, d := range got { // Mem keeps order and loses nothing here
		if !bytes.Equal(msgs[i].Buf, wiretest.Payload(uint32(i), 100)) {
			t.Fatalf("the caller's buffer %d was modified", i)
		}
		diff := 0
		for j := range d.Buf {
			diff += bits.OnesCount8(d.Buf[j] ^ msgs[i].Buf[j])
		}
		switch diff {
		case 0:
		case 1:
			flipped++
		default:
			t.Fatalf("datagram %d has %d bits flipped, want 0 or 1", i, diff)
		}
	}
	if flipped != int(s.Corrupted) {
		t.Fatalf("%d datagrams have a flipped bit, stats say %d", flipped, s.Corrupted)
	}
}

func TestReorder(t *testing.T) {
	const n, p = 1000, 0.2
	a, b, r := setup(t, faultwire.Config{Seed: 10, Reorder: p, ReorderDepth: 3})
	send(t, a, b.LocalAddr(), n, 30)
	got := r.Wait(t, n) // stragglers go out after ReorderTimeout
	expectNoMore(t, r)
	s := a.Stats()
	within(t, "reordered", s.Reordered, n, p)
	seen := make([]bool, n)
	inversions := 0
	maxSeq := -1
	for _, d := range got {
		seq := int(seqOf(d.Buf))
		if seen[seq] {
			t.Fatalf("datagram %d arrived twice", seq)
		}
		seen[seq] = true
		if seq < maxSeq {
			inversions++
		}
		maxSeq = max(maxSeq, seq)
	}
	if inversions == 0 {
		t.Fatal("nothing was reordered")
	}
	if s.Sent != n || s.Dropped != 0 {
		t.Fatalf("stats %+v: want all %d sent", s, n)
	}
	t.Logf("%d datagrams arrived after a later one", inversions)
}

func TestDelay(t *testing.T) {
	const delay, jitter = 40 * time.Millisecond, 20 * time.Millisecond
	a, b, r := setup(t, faultwire.Config{Seed: 11, Delay: delay, Jitter: jitter})
	start := time.Now()
	send(t, a, b.LocalAddr(), 50, 20)
	time.Sleep(delay / 2)
	if p := r.Pending(); p != 0 {
		t.Fatalf("%d datagrams arrived before the delay", p)
	}
	r.Wait(t, 50)
	if el := time.Since(start); el < delay {
		t.Fatalf("all datagrams arrived after %v, before the delay %v", el, delay)
	}
	if s := a.Stats(); s.Delayed != 50 || s.Sent != 50 {
		t.Fatalf("stats %+v: want 50 delayed and sent", s)
	}
}

func TestCutHeal(t *testing.T) {
	a, b, rb := setup(t, faultwire.Config{Seed: 12})
	ra := wiretest.StartReader(t, a, 16)
	marker := func(w wire.Wire, to netip.AddrPort, r *wiretest.Reader, seq uint32) {
		t.Helper()
		if n, err := w.WriteBatch(wiretest.Msgs(to, seq, 8)); n != 1 || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		if d := r.Wait(t, 1)[0]; seqOf(d.Buf) != seq {
			t.Fatalf("received datagram %d, want the marker %d: a cut one got through", seqOf(d.Buf), seq)
		}
	}
	waitCut := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(wiretest.Timeout)
		for a.Stats().Cut != want {
			if time.Now().After(deadline) {
				t.Fatalf("cut count %d, want %d", a.Stats().Cut, want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	for _, cut := range []struct {
		name      string
		cut, heal func()
	}{
		{"Cut", func() { a.Cut(b.LocalAddr()) }, func() { a.Heal(b.LocalAddr()) }},
		{"CutAll", a.CutAll, a.HealAll},
	} {
		t.Run(cut.name, func(t *testing.T) {
			before := a.Stats().Cut
			cut.cut()
			send(t, a, b.LocalAddr(), 5, 8) // a -> b: dropped on send
			if n, err := b.WriteBatch(wiretest.Msgs(a.LocalAddr(), 0, 8, 8, 8)); n != 3 || err != nil {
				t.Fatal(n, err) // b -> a: dropped on receive
			}
			waitCut(before + 8)
			cut.heal()
			marker(a, b.LocalAddr(), rb, 1000)
			marker(b, a.LocalAddr(), ra, 2000)
		})
	}
	// Heal of one address leaves CutAll in force.
	a.CutAll()
	a.Heal(b.LocalAddr())
	before := a.Stats().Cut
	send(t, a, b.LocalAddr(), 2, 8)
	waitCut(before + 2)
	a.HealAll()
	marker(a, b.LocalAddr(), rb, 3000)
	// Cutting another peer leaves b alone.
	a.Cut(netip.MustParseAddrPort("127.200.0.1:1"))
	marker(a, b.LocalAddr(), rb, 4000)
	marker(b, a.LocalAddr(), ra, 5000)
}

func TestDecide(t *testing.T) {
	var calls []uint64
	a, b, r := setup(t, faultwire.Config{Decide: func(seq uint64, m wire.Message) faultwire.Action {
		calls = append(calls, seq)
		return []faultwire.Action{faultwire.Pass, faultwire.Drop, faultwire.Duplicate, faultwire.Corrupt, faultwire.Pass}[seq%5]
	}})
	const n = 100
	msgs := send(t, a, b.LocalAddr(), n, 50)
	var want [][]byte
	for i := 0; i < n; i++ {
		switch i % 5 {
		case 1:
		case 2:
			want = append(want, msgs[i].Buf, msgs[i].Buf)
		default:
			want = append(want, msgs[i].Buf)
		}
	}
	got := r.Wait(t, len(want))
	expectNoMore(t, r)
	for i, d := range got {
		diff := 0
		for j := range d.Buf {
			diff += bits.OnesCount8(d.Buf[j] ^ want[i][j])
		}
		// want[i] is the clean original; a Corrupt decision flips one bit.
		wantDiff := 0
		if seqOf(want[i])%5 == 3 {
			wantDiff = 1
		}
		if diff != wantDiff {
			t.Fatalf("received %d (datagram %d): %d bits differ, want %d", i, seqOf(want[i]), diff, wantDiff)
		}
	}
	if len(calls) != n || calls[0] != 0 || calls[n-1] != n-1 {
		t.Fatalf("Decide called %d times (first %d), want %d in sequence", len(calls), calls[0], n)
	}
	s := a.Stats()
	if s.Dropped != 20 || s.Duplicated != 20 || s.Corrupted != 20 || s.Sent != uint64(len(want)) {
		t.Fatalf("stats %+v", s)
	}
}

func TestDecideReorderDelay(t *testing.T) {
	a, b, r := setup(t, faultwire.Config{Delay: 30 * time.Millisecond, Decide: func(seq uint64, _ wire.Message) faultwire.Action {
		switch seq {
		case 0:
			return faultwire.Reorder
		case 3:
			return faultwire.Delay
		}
		return faultwire.Pass
	}})
	send(t, a, b.LocalAddr(), 6, 10)
	got := r.Wait(t, 6)
	var order []uint32
	for _, d := range got {
		order = append(order, seqOf(d.Buf))
	}
	if want := []uint32{1, 0, 2, 4, 5, 3}; !equal(order, want) {
		t.Fatalf("arrival order %v, want %v", order, want)
	}
	if s := a.Stats(); s.Reordered != 1 || s.Delayed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// run sends the same sequence through a fresh injector and returns what
// arrived and the stats.
func run(t *testing.T, seed int64) ([][]byte, faultwire.Stats) {
	a, b, r := setup(t, faultwire.Config{Seed: seed, Loss: 0.1, Duplicate: 0.1, Corrupt: 0.1})
	send(t, a, b.LocalAddr(), 3000, 24)
	s := a.Stats()
	got := r.Wait(t, int(s.Sent))
	out := make([][]byte, len(got))
	for i := range got {
		out[i] = got[i].Buf
	}
	return out, s
}

func TestReproducible(t *testing.T) {
	g1, s1 := run(t, 42)
	g2, s2 := run(t, 42)
	g3, s3 := run(t, 43)
	if s1 != s2 || len(g1) != len(g2) {
		t.Fatalf("same seed, different results: %+v vs %+v", s1, s2)
	}
	for i := range g1 {
		if !bytes.Equal(g1[i], g2[i]) {
			t.Fatalf("same seed, datagram %d differs", i)
		}
	}
	same := len(g1) == len(g3)
	for i := 0; same && i < len(g1); i++ {
		same = bytes.Equal(g1[i], g3[i])
	}
	if same || s1 == s3 {
		t.Fatalf("seeds 42 and 43 gave identical results (%+v, %+v)", s1, s3)
	}
}

func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	nw := wire.NewMemNetwork()
	inner, _ := nw.Listen(netip.AddrPort{})
	a := faultwire.New(inner, faultwire.Config{Delay: time.Hour, ReorderTimeout: time.Hour,
		Decide: func(seq uint64, _ wire.Message) faultwire.Action {
			if seq == 2 {
				return faultwire.Reorder // held: nothing comes after it
			}
			return faultwire.Delay
		}})
	if n, err := a.WriteBatch(wiretest.Msgs(inner.LocalAddr(), 0, 10, 10, 10)); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wiretest.CheckGoroutines(t, before)
	if _, err := inner.ReadBatch(make([]wire.Message, 1)); !errors.Is(err, wire.ErrClosed) {
		t.Fatalf("inner wire still open after Close: %v", err)
	}
	if _, err := a.WriteBatch(wiretest.Msgs(inner.LocalAddr(), 0, 10)); !errors.Is(err, wire.ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v", err)
	}
	if s := a.Stats(); s.Sent != 0 || s.Delayed != 2 || s.Reordered != 1 {
		t.Fatalf("stats %+v: want 2 delayed and 1 held, none sent", s)
	}
}

// Package wiretest is the behavioural test every wire.Wire implementation
// must pass: call Run from the implementation's tests with a constructor of
// connected pairs.
package wiretest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/transport/wire"
)

// Timeout bounds every wait in the suite.
const Timeout = 5 * time.Second

// Run checks the behaviour of the Wire implementation behind newPair, which
// returns two fresh wires that can reach each other's LocalAddr (and their
// own). Run closes them at the end of each subtest; newPair may also
// register its own cleanup, as Close is idempotent.
func Run(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	t.Run("Basic", func(t *testing.T) { testBasic(t, newPair) })
	t.Run("Sizes", func(t *testing.T) { testSizes(t, newPair) })
	t.Run("Interleaved", func(t *testing.T) { testInterleaved(t, newPair) })
	t.Run("SmallReadBatches", func(t *testing.T) { testSmallReads(t, newPair) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, newPair) })
	t.Run("TooLarge", func(t *testing.T) { testTooLarge(t, newPair) })
	t.Run("CloseUnblocksRead", func(t *testing.T) { testCloseUnblocksRead(t, newPair) })
	t.Run("AfterClose", func(t *testing.T) { testAfterClose(t, newPair) })
	t.Run("NoGoroutineLeak", func(t *testing.T) { testNoLeak(t, newPair) })
}

// Payload returns the test datagram number seq of the given size: the
// sequence number big-endian in the first 4 bytes (when they fit) and a
// pattern derived from seq after it, so that any corruption shows.
func Payload(seq uint32, size int) []byte {
	b := make([]byte, size)
	FillPayload(b, seq)
	return b
}

// FillPayload writes Payload(seq, len(b)) into b.
func FillPayload(b []byte, seq uint32) {
	for i := range b {
		b[i] = byte(seq*131 + uint32(i)*7 + seq>>8)
	}
	if len(b) >= 4 {
		binary.BigEndian.PutUint32(b, seq)
	}
}

// Datagram is a received datagram copied out of the wire's buffer.
type Datagram struct {
	Buf  []byte
	Addr netip.AddrPort
}

// Reader reads a wire in its own goroutine and keeps copies of what
// arrives, so tests can wait for datagrams with a timeout.
type Reader struct {
	w      wire.Wire
	mu     sync.Mutex
	got    []Datagram
	err    error
	notify chan struct{}
	done   chan struct{}
}

// StartReader starts reading w with batches of batch messages. The
// goroutine ends when w is closed; Stop closes w and waits for it.
func StartReader(t testing.TB, w wire.Wire, batch int) *Reader {
	r := &Reader{w: w, notify: make(chan struct{}, 1), done: make(chan struct{})}
	go r.loop(t, batch)
	t.Cleanup(r.Stop)
	return r
}

func (r *Reader) loop(t testing.TB, batch int) {
	defer close(r.done)
	msgs := make([]wire.Message, batch)
	for {
		n, err := r.w.ReadBatch(msgs)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
			}
			r.signal()
			return
		}
		if n < 1 || n > len(msgs) {
			r.mu.Lock()
			r.err = fmt.Errorf("ReadBatch returned n=%d for %d msgs and no error", n, len(msgs))
			r.mu.Unlock()
			r.signal()
			return
		}
		r.mu.Lock()
		for _, m := range msgs[:n] {
			if cap(m.Buf) != len(m.Buf) && r.err == nil {
				r.err = fmt.Errorf("received Buf has cap %d > len %d: appending would overwrite the next datagram", cap(m.Buf), len(m.Buf))
			}
			r.got = append(r.got, Datagram{Buf: bytes.Clone(m.Buf), Addr: m.Addr})
		}
		r.mu.Unlock()
		r.signal()
	}
}

func (r *Reader) signal() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Wait returns the next k datagrams, failing the test if they do not
// arrive within Timeout or if the reader saw an error.
func (r *Reader) Wait(t testing.TB, k int) []Datagram {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		err, have := r.err, len(r.got)
		if err == nil && have >= k {
			out := slices.Clone(r.got[:k])
			r.got = slices.Delete(r.got, 0, k)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		if err != nil {
			t.Fatalf("reader: %v", err)
		}
		select {
		case <-r.notify:
		case <-r.done:
			r.mu.Lock()
			have = len(r.got)
			r.mu.Unlock()
			if have < k {
				t.Fatalf("reader stopped after %d of %d datagrams", have, k)
			}
		case <-deadline.C:
			t.Fatalf("received %d of %d datagrams in %v", have, k, Timeout)
		}
	}
}

// Pending returns how many datagrams arrived but were not yet waited for.
func (r *Reader) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// Stop closes the wire and waits for the reading goroutine to end.
func (r *Reader) Stop() {
	r.w.Close()
	<-r.done
}

// Exchange sends msgs from src in order and checks that exactly the same
// datagrams arrive at their destinations' readers with src's address. It
// keeps at most 64 KiB (or one datagram) in flight, so that a receiver with
// a small socket buffer loses nothing, and it checks the multiset of
// payloads, not their order, since Wire does not promise order.
func Exchange(t testing.TB, src wire.Wire, readers map[netip.AddrPort]*Reader, msgs []wire.Message) {
	t.Helper()
	const inflight = 64 << 10
	for start := 0; start < len(msgs); {
		end, size := start, 0
		for end < len(msgs) && end-start < src.BatchSize() && (end == start || size+len(msgs[end].Buf) <= inflight) {
			size += len(msgs[end].Buf)
			end++
		}
		chunk := msgs[start:end]
		n, err := src.WriteBatch(chunk)
		if err != nil || n != len(chunk) {
			t.Fatalf("WriteBatch(%d msgs) = %d, %v", len(chunk), n, err)
		}
		want := map[netip.AddrPort][]string{}
		for _, m := range chunk {
			want[m.Addr] = append(want[m.Addr], string(m.Buf))
		}
		for dst, payloads := range want {
			r := readers[dst]
			if r == nil {
				t.Fatalf("no reader for destination %v", dst)
			}
			got := r.Wait(t, len(payloads))
			var gotp []string
			for _, d := range got {
				if d.Addr != src.LocalAddr() {
					t.Fatalf("datagram at %v has source %v, want %v", dst, d.Addr, src.LocalAddr())
				}
				gotp = append(gotp, string(d.Buf))
			}
			slices.Sort(payloads)
			slices.Sort(gotp)
			if !slices.Equal(payloads, gotp) {
				t.Fatalf("datagrams at %v differ from those sent (%d datagrams, sizes sent %v, received %v)",
					dst, len(payloads), sizes(payloads), sizes(gotp))
			}
		}
		start = end
	}
}

func sizes(p []string) []int {
	s := make([]int, len(p))
	for i := range p {
		s[i] = len(p[i])
	}
	return s
}

// Msgs builds len(sizes) messages to dst with payloads numbered from seq.
func Msgs(dst netip.AddrPort, seq uint32, sizes ...int) []wire.Message {
	msgs := make([]wire.Message, len(sizes))
	for i, n := range sizes {
		msgs[i] = wire.Message{Buf: Payload(seq+uint32(i), n), Addr: dst}
	}
	return msgs
}

// Repeat returns count copies of size.
func Repeat(size, count int) []int {
	s := make([]int, count)
	for i := range s {
		s[i] = size
	}
	return s
}

func pair(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) (a, b wire.Wire) {
	a, b = newPair(t)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func testBasic(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	a, b := pair(t, newPair)
	if a.MaxPayload() < 1 || a.BatchSize() < 1 {
		t.Fatalf("MaxPayload %d, BatchSize %d: want positive", a.MaxPayload(), a.BatchSize())
	}
	if !a.LocalAddr().IsValid() || a.LocalAddr() == b.LocalAddr() {
		t.Fatalf("LocalAddr a=%v b=%v: want two distinct valid addresses", a.LocalAddr(), b.LocalAddr())
	}
	ra := StartReader(t, a, a.BatchSize())
	rb := StartReader(t, b, b.BatchSize())
	readers := map[netip.AddrPort]*Reader{a.LocalAddr(): ra, b.LocalAddr(): rb}
	Exchange(t, a, readers, Msgs(b.LocalAddr(), 1, 100))
	Exchange(t, b, readers, Msgs(a.LocalAddr(), 2, 200))
	Exchange(t, a, readers, Msgs(a.LocalAddr(), 3, 300)) // to itself
	if n, err := a.WriteBatch(nil); n != 0 || err != nil {
		t.Fatalf("WriteBatch(nil) = %d, %v", n, err)
	}
}

func testSizes(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	a, b := pair(t, newPair)
	rb := StartReader(t, b, b.BatchSize())
	readers := map[netip.AddrPort]*Reader{b.LocalAddr(): rb}
	max := a.MaxPayload()
	rng := rand.New(rand.NewPCG(1, 2))
	mixed := make([]int, 3*a.BatchSize()+5)
	for i := range mixed {
		switch rng.IntN(4) {
		case 0:
			mixed[i] = rng.IntN(max + 1)
		case 1:
			mixed[i] = min(1400, max)
		default:
			mixed[i] = min(1+rng.IntN(1400), max)
		}
	}
	cases := []struct {
		name  string
		sizes []int
	}{
		{"one/1", []int{1}},
		{"one/0", []int{0}},
		{"one/max", []int{max}},
		{"1400x1", Repeat(min(1400, max), 1)},
		{"1400x7", Repeat(min(1400, max), 7)},
		{"1400xBatch", Repeat(min(1400, max), a.BatchSize())},
		{"1400x3Batch+1", Repeat(min(1400, max), 3*a.BatchSize()+1)},
		{"maxx20", Repeat(max, 20)},
		{"equal-then-short", append(Repeat(min(1000, max), 10), 17, min(1000, max), 3)},
		{"mixed", mixed},
	}
	seq := uint32(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			Exchange(t, a, readers, Msgs(b.LocalAddr(), seq, c.sizes...))
			seq += uint32(len(c.sizes))
		})
	}
}

func testInterleaved(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	a, b := pair(t, newPair)
	ra := StartReader(t, a, a.BatchSize())
	rb := StartReader(t, b, b.BatchSize())
	readers := map[netip.AddrPort]*Reader{a.LocalAddr(): ra, b.LocalAddr(): rb}
	size := min(1200, a.MaxPayload())
	dsts := []netip.AddrPort{b.LocalAddr(), a.LocalAddr()}
	var msgs []wire.Message
	// Alternating destinations, then runs of three, then a long run each.
	for i := 0; i < 40; i++ {
		msgs = append(msgs, wire.Message{Buf: Payload(uint32(len(msgs)), size), Addr: dsts[i%2]})
	}
	for i := 0; i < 42; i++ {
		msgs = append(msgs, wire.Message{Buf: Payload(uint32(len(msgs)), size), Addr: dsts[(i/3)%2]})
	}
	for i := 0; i < 60; i++ {
		msgs = append(msgs, wire.Message{Buf: Payload(uint32(len(msgs)), size-i%2), Addr: dsts[i/30]})
	}
	Exchange(t, a, readers, msgs)
}

func testSmallReads(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	for _, batch := range []int{1, 3} {
		t.Run(fmt.Sprint(batch), func(t *testing.T) {
			a, b := pair(t, newPair)
			rb := StartReader(t, b, batch)
			readers := map[netip.AddrPort]*Reader{b.LocalAddr(): rb}
			size := min(1300, a.MaxPayload())
			Exchange(t, a, readers, Msgs(b.LocalAddr(), 0, Repeat(size, 45)...))
			Exchange(t, a, readers, Msgs(b.LocalAddr(), 45, 5, 6, 7, 8, 9, 10, 11))
		})
	}
}

func testConcurrentWriters(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	a, b := pair(t, newPair)
	rb := StartReader(t, b, b.BatchSize())
	const writers, perWriter, batch = 4, 64, 8
	size := min(64, a.MaxPayload())
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i += batch {
				msgs := Msgs(b.LocalAddr(), uint32(w*perWriter+i), Repeat(size, batch)...)
				if n, err := a.WriteBatch(msgs); n != batch || err != nil {
					errs <- fmt.Errorf("writer %d: WriteBatch = %d, %v", w, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := rb.Wait(t, writers*perWriter)
	seen := make(map[uint32]bool)
	for _, d := range got {
		seq := binary.BigEndian.Uint32(d.Buf)
		if seen[seq] || !bytes.Equal(d.Buf, Payload(seq, size)) || d.Addr != a.LocalAddr() {
			t.Fatalf("datagram %d duplicated, corrupted or from %v", seq, d.Addr)
		}
		seen[seq] = true
	}
}

func testTooLarge(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	a, b := pair(t, newPair)
	rb := StartReader(t, b, b.BatchSize())
	max := a.MaxPayload()
	// A run of equal sizes (which a GSO wire coalesces) cut by the
	// oversized datagram.
	msgs := Msgs(b.LocalAddr(), 0, 20, 20, 20, max+1, 20)
	n, err := a.WriteBatch(msgs)
	if n != 3 || !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("WriteBatch with a datagram of MaxPayload+1 = %d, %v; want 3, ErrTooLarge", n, err)
	}
	if n, err := a.WriteBatch(msgs[3:4]); n != 0 || !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("WriteBatch(MaxPayload+1) = %d, %v; want 0, ErrTooLarge", n, err)
	}
	// Exactly the three before it arrive: a marker sent afterwards is next.
	marker := Msgs(b.LocalAddr(), 99, 13)
	if n, err := a.WriteBatch(marker); n != 1 || err != nil {
		t.Fatalf("WriteBatch(marker) = %d, %v", n, err)
	}
	got := rb.Wait(t, 4)
	var gotSizes []int
	for _, d := range got {
		gotSizes = append(gotSizes, len(d.Buf))
	}
	slices.Sort(gotSizes)
	if !slices.Equal(gotSizes, []int{13, 20, 20, 20}) {
		t.Fatalf("received sizes %v, want [13 20 20 20]", gotSizes)
	}
}

func testCloseUnblocksRead(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	_, b := pair(t, newPair)
	res := make(chan error, 1)
	go func() {
		msgs := make([]wire.Message, b.BatchSize())
		n, err := b.ReadBatch(msgs)
		if err == nil {
			err = fmt.Errorf("ReadBatch returned %d datagrams on an idle wire", n)
		}
		res <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it block
	select {
	case err := <-res:
		t.Fatalf("ReadBatch returned before Close: %v", err)
	default:
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, wire.ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v; want ErrClosed (and net.ErrClosed)", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("ReadBatch took %v to return after Close", d)
		}
	case <-time.After(Timeout):
		t.Fatal("Close did not unblock ReadBatch")
	}
}

func testAfterClose(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	a, b := pair(t, newPair)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n, err := a.WriteBatch(Msgs(b.LocalAddr(), 0, 10)); n != 0 || !errors.Is(err, wire.ErrClosed) {
		t.Fatalf("WriteBatch after Close = %d, %v; want 0, ErrClosed", n, err)
	}
	if n, err := a.ReadBatch(make([]wire.Message, 4)); n != 0 || !errors.Is(err, wire.ErrClosed) {
		t.Fatalf("ReadBatch after Close = %d, %v; want 0, ErrClosed", n, err)
	}
	// The open side still sends to the closed one without error, as UDP does.
	if n, err := b.WriteBatch(Msgs(a.LocalAddr(), 0, 10)); n != 1 || err != nil {
		t.Fatalf("WriteBatch to a closed peer = %d, %v; want 1, nil", n, err)
	}
}

func testNoLeak(t *testing.T, newPair func(t *testing.T) (a, b wire.Wire)) {
	before := runtime.NumGoroutine()
	func() {
		a, b := newPair(t)
		ra := StartReader(t, a, a.BatchSize())
		rb := StartReader(t, b, b.BatchSize())
		readers := map[netip.AddrPort]*Reader{a.LocalAddr(): ra, b.LocalAddr(): rb}
		Exchange(t, a, readers, Msgs(b.LocalAddr(), 0, Repeat(min(500, a.MaxPayload()), 50)...))
		Exchange(t, b, readers, Msgs(a.LocalAddr(), 0, Repeat(min(500, a.MaxPayload()), 50)...))
		ra.Stop()
		rb.Stop()
	}()
	CheckGoroutines(t, before)
}

// CheckGoroutines fails the test unless the goroutine count falls back to
// at most before within Timeout.
func CheckGoroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

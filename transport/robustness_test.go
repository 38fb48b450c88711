package transport

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport/wire"
)

// flakySealer wraps a real Sealer: once armed it reports an exhausted
// counter until BumpEpoch, or (fatal) fails every seal.
type flakySealer struct {
	*secure.Sealer
	exhausted atomic.Bool
	fatal     atomic.Bool
	fatalFrom atomic.Bool // fail SealFrom only (rendezvous DATA)
	bumps     atomic.Int32
}

func (f *flakySealer) Seal(pkt []byte, hdrOff, clearLen int) ([]byte, error) {
	if f.fatal.Load() {
		return pkt, secure.ErrEpochExhausted
	}
	if f.exhausted.Load() {
		return pkt, secure.ErrCounterExhausted
	}
	return f.Sealer.Seal(pkt, hdrOff, clearLen)
}

func (f *flakySealer) SealFrom(pkt []byte, hdrOff, clearLen int, payload []byte) ([]byte, error) {
	if f.fatal.Load() || f.fatalFrom.Load() {
		return pkt, secure.ErrEpochExhausted
	}
	if f.exhausted.Load() {
		return pkt, secure.ErrCounterExhausted
	}
	return f.Sealer.SealFrom(pkt, hdrOff, clearLen, payload)
}

func (f *flakySealer) BumpEpoch() error {
	f.bumps.Add(1)
	err := f.Sealer.BumpEpoch()
	f.exhausted.Store(false)
	return err
}

// recordingWire keeps a copy of every datagram sent.
type recordingWire struct {
	wire.Wire
	mu   sync.Mutex
	sent [][]byte
}

func (r *recordingWire) WriteBatch(msgs []wire.Message) (int, error) {
	r.mu.Lock()
	for _, m := range msgs {
		r.sent = append(r.sent, bytes.Clone(m.Buf))
	}
	r.mu.Unlock()
	return r.Wire.WriteBatch(msgs)
}

func flakyPair(t *testing.T) (a, b *Endpoint, fs *flakySealer, rec *recordingWire) {
	nw := newNet(t, "mem")
	rec = &recordingWire{Wire: nw.listen(t)}
	var err error
	a, err = New(Config{Rank: 0, Incarnation: 1, Wire: rec, Group: testGroup(t, 1, 10), PeerTimeout: 2e9})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	fs = &flakySealer{Sealer: a.codec.sealer.(*secure.Sealer)}
	a.codec.sealer = fs // before any peer exists, so nothing seals concurrently
	b, err = New(Config{Rank: 1, Incarnation: 1, Wire: nw.listen(t), Group: testGroup(t, 1, 10), PeerTimeout: 2e9})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for _, x := range []*Endpoint{a, b} {
		for _, y := range []*Endpoint{a, b} {
			if err := x.AddPeer(y.rank, y.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return a, b, fs, rec
}

// TestCounterExhaustionBumpsEpoch: an exhausted counter moves the sender to
// the next epoch exactly once, even with concurrent senders, and traffic
// continues.
func TestCounterExhaustionBumpsEpoch(t *testing.T) {
	a, b, fs, _ := flakyPair(t)
	ctx := ctxT(t)
	if err := a.Send(ctx, 1, 1, []byte("before")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := b.Recv(ctx, 0, 1, ^uint64(0), buf); err != nil {
		t.Fatal(err)
	}
	epoch := fs.Epoch()
	fs.exhausted.Store(true)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Send(ctx, 1, uint64(10+i), []byte("after")); err != nil {
				t.Error(err)
			}
		}()
	}
	for i := range 8 {
		st, err := b.Recv(ctx, 0, uint64(10+i), ^uint64(0), buf)
		if err != nil || string(buf[:st.Len]) != "after" {
			t.Fatalf("recv %d: %v", i, err)
		}
	}
	wg.Wait()
	if n := fs.bumps.Load(); n != 1 {
		t.Fatalf("%d epoch bumps, want 1", n)
	}
	if fs.Epoch() != epoch+1 {
		t.Fatalf("epoch %d, want %d", fs.Epoch(), epoch+1)
	}
	if s := a.Stats(); s.SealFailures != 0 {
		t.Fatalf("seal failures: %d", s.SealFailures)
	}
}

// TestSealFailureNeverSendsPlaintext: when sealing fails for good, the
// Send fails with ErrSeal and the plaintext never appears on the wire.
func TestSealFailureNeverSendsPlaintext(t *testing.T) {
	a, _, fs, rec := flakyPair(t)
	ctx := ctxT(t)
	secret := bytes.Repeat([]byte("TOP-SECRET-GRADIENTS!"), 200) // 4200 B: several packets
	if err := a.Send(ctx, 1, 1, []byte("warm-up")); err != nil {
		t.Fatal(err)
	}
	fs.fatal.Store(true)
	err := a.Send(ctx, 1, 2, secret)
	if !errors.Is(err, ErrSeal) || !errors.Is(err, secure.ErrEpochExhausted) {
		t.Fatalf("Send: %v, want ErrSeal wrapping ErrEpochExhausted", err)
	}
	if a.Stats().SealFailures == 0 {
		t.Fatal("seal failures not counted")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, d := range rec.sent {
		if bytes.Contains(d, []byte("TOP-SECRET")) {
			t.Fatalf("datagram %d carries plaintext", i)
		}
	}
}

// TestSealFromFailureNeverSendsPlaintext: the same for rendezvous DATA,
// sealed straight from the caller's buffer: RTS and CTS go through, every
// DATA seal fails; the Send fails with ErrSeal, nothing of the buffer
// reaches the wire, and the buffer is the caller's again (-race checks
// that nothing reads it after Send returns).
func TestSealFromFailureNeverSendsPlaintext(t *testing.T) {
	a, b, fs, rec := flakyPair(t)
	ctx := ctxT(t)
	secret := bytes.Repeat([]byte("TOP-SECRET-GRADIENTS!"), 20000) // 420 kB: rendezvous
	rq := b.RecvAsync(ctx, 0, 2, ^uint64(0), make([]byte, len(secret)))
	fs.fatalFrom.Store(true)
	err := a.Send(ctx, 1, 2, secret)
	if !errors.Is(err, ErrSeal) || !errors.Is(err, secure.ErrEpochExhausted) {
		t.Fatalf("Send: %v, want ErrSeal wrapping ErrEpochExhausted", err)
	}
	clear(secret) // the caller's again
	rq.Cancel(nil)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, d := range rec.sent {
		if bytes.Contains(d, []byte("TOP-SECRET")) {
			t.Fatalf("datagram %d carries plaintext", i)
		}
	}
}

// slowWire stalls every write while armed, to widen the gap between a
// Recv completing and its ACK reaching the wire.
type slowWire struct {
	wire.Wire
	armed atomic.Bool
}

func (s *slowWire) WriteBatch(msgs []wire.Message) (int, error) {
	if s.armed.Load() {
		time.Sleep(100 * time.Millisecond)
	}
	return s.Wire.WriteBatch(msgs)
}

// TestCloseAcksDeliveredMessages: a receiver that closes right after its
// Recv completes still acknowledges the message, so the sender's Send
// succeeds at once instead of waiting out its peer timeout.
func TestCloseAcksDeliveredMessages(t *testing.T) {
	for i := range 3 {
		var slow *slowWire
		c := newCluster(t, "mem", 2, func(cfg *Config) { cfg.PeerTimeout = 5e9 }, func(rank int, w wire.Wire) wire.Wire {
			if rank == 0 {
				slow = &slowWire{Wire: w}
				return slow
			}
			return w
		})
		ctx := ctxT(t)
		// Warm up so both sides know each other's incarnation.
		if err := c.eps[1].Send(ctx, 0, 1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if _, err := c.eps[0].Recv(ctx, 1, 1, ^uint64(0), buf); err != nil {
			t.Fatal(err)
		}
		slow.armed.Store(true)
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- c.eps[1].Send(ctx, 0, 7, []byte("last message")) }()
		if _, err := c.eps[0].Recv(ctx, 1, 7, ^uint64(0), buf); err != nil {
			t.Fatal(err)
		}
		c.eps[0].Close()
		if err := <-done; err != nil {
			t.Fatalf("round %d: Send after the receiver closed: %v (after %v)", i, err, time.Since(start))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("round %d: Send took %v: the receiver closed without acknowledging", i, d)
		}
		c.close()
	}
}

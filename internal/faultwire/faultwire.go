// Package faultwire wraps a wire.Wire and injects the faults of a real
// network on the send side: loss, duplication, reordering, corruption and
// delay, plus cuts that isolate peers in both directions. Decisions are a
// pure function of (Config.Seed, datagram sequence number), so a given
// sequence of WriteBatch calls sees the same faults on every run.
//
//	fw := faultwire.New(inner, faultwire.Config{Seed: 1, Loss: 0.01, Reorder: 0.05})
//	defer fw.Close() // also closes inner
package faultwire

import (
	"container/heap"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealring/sealring/transport/wire"
)

// Action is what happens to one datagram.
type Action uint8

const (
	Pass      Action = iota // send unchanged
	Drop                    // lose it
	Duplicate               // send it twice
	Corrupt                 // send a copy with one random bit flipped
	Delay                   // send it after Config.Delay (+ up to Jitter), or DefaultDelay
	Reorder                 // hold it back until later datagrams went out
)

var actionNames = [...]string{"Pass", "Drop", "Duplicate", "Corrupt", "Delay", "Reorder"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "Action(?)"
}

// Defaults for the timing knobs.
const (
	// DefaultDelay is the delay of a Delay action when Config.Delay and
	// Config.Jitter are zero.
	DefaultDelay = time.Millisecond
	// DefaultReorderDepth is how many later datagrams overtake a reordered one.
	DefaultReorderDepth = 1
	// DefaultReorderTimeout bounds how long a reordered datagram waits for
	// later ones before it is sent anyway.
	DefaultReorderTimeout = 5 * time.Millisecond
)

// Config sets the faults. Probabilities apply to each datagram written.
type Config struct {
	Seed int64

	Loss      float64 // probability a datagram is dropped
	Duplicate float64 // probability it is sent twice (two identical copies)
	Reorder   float64 // probability it is held back (see ReorderDepth)
	Corrupt   float64 // probability one random bit of a copy is flipped

	// Delay and Jitter delay every datagram by Delay plus a uniform random
	// part of Jitter (so Jitter alone also reorders).
	Delay, Jitter time.Duration

	// A reordered datagram goes out after up to ReorderDepth later
	// datagrams (at least 1, chosen at random), or after ReorderTimeout if
	// none come. Zero means DefaultReorderDepth and DefaultReorderTimeout.
	ReorderDepth   int
	ReorderTimeout time.Duration

	// Decide, if set, replaces the probabilities: it is called for every
	// datagram not cut, with its sequence number (0, 1, 2, ... in the order
	// WriteBatch sees datagrams), and its Action is applied. Calls are
	// serialized. Decide must not call the Wire, nor keep m.Buf.
	Decide func(seq uint64, m wire.Message) Action
}

// Stats counts what the injector did.
type Stats struct {
	Sent       uint64 // datagrams handed to the inner wire (copies included), counted before delivery
	Dropped    uint64 // lost by Loss or a Drop decision
	Cut        uint64 // dropped by a cut, sending or receiving
	Duplicated uint64 // extra copies sent
	Reordered  uint64 // held back
	Corrupted  uint64 // sent with one bit flipped
	Delayed    uint64 // sent late by Delay/Jitter or a Delay decision
}

// Wire is a wire.Wire with faults. Create it with New.
type Wire struct {
	inner wire.Wire
	cfg   Config
	seq   atomic.Uint64

	decideMu sync.Mutex

	cutMu  sync.RWMutex
	anyCut atomic.Bool
	cutAll bool
	cuts   map[netip.AddrPort]bool

	mu      sync.Mutex // pending and held
	pending pendingHeap
	held    []*pendingMsg // reordered, also in pending for their timeout
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}

	closeOnce sync.Once
	closeErr  error

	sent, dropped, cut, duplicated, reordered, corrupted, delayed atomic.Uint64
}

var _ wire.Wire = (*Wire)(nil)

// New wraps inner. The Wire owns inner from now on: Close closes it.
func New(inner wire.Wire, cfg Config) *Wire {
	if cfg.ReorderDepth < 1 {
		cfg.ReorderDepth = DefaultReorderDepth
	}
	if cfg.ReorderTimeout <= 0 {
		cfg.ReorderTimeout = DefaultReorderTimeout
	}
	w := &Wire{
		inner:   inner,
		cfg:     cfg,
		cuts:    make(map[netip.AddrPort]bool),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go w.releaser()
	return w
}

// Inner returns the wrapped wire.
func (w *Wire) Inner() wire.Wire { return w.inner }

func (w *Wire) LocalAddr() netip.AddrPort { return w.inner.LocalAddr() }
func (w *Wire) MaxPayload() int           { return w.inner.MaxPayload() }
func (w *Wire) BatchSize() int            { return w.inner.BatchSize() }

// Stats returns the counters.
func (w *Wire) Stats() Stats {
	return Stats{
		Sent:       w.sent.Load(),
		Dropped:    w.dropped.Load(),
		Cut:        w.cut.Load(),
		Duplicated: w.duplicated.Load(),
		Reordered:  w.reordered.Load(),
		Corrupted:  w.corrupted.Load(),
		Delayed:    w.delayed.Load(),
	}
}

// Cut drops every datagram to and from addr until Heal(addr) or HealAll.
func (w *Wire) Cut(addr netip.AddrPort) {
	w.cutMu.Lock()
	w.cuts[addr] = true
	w.anyCut.Store(true)
	w.cutMu.Unlock()
}

// Heal undoes Cut(addr). It does not undo CutAll.
func (w *Wire) Heal(addr netip.AddrPort) {
	w.cutMu.Lock()
	delete(w.cuts, addr)
	w.anyCut.Store(w.cutAll || len(w.cuts) > 0)
	w.cutMu.Unlock()
}

// CutAll drops every datagram to and from every peer until HealAll.
func (w *Wire) CutAll() {
	w.cutMu.Lock()
	w.cutAll = true
	w.anyCut.Store(true)
	w.cutMu.Unlock()
}

// HealAll undoes CutAll and every Cut.
func (w *Wire) HealAll() {
	w.cutMu.Lock()
	w.cutAll = false
	clear(w.cuts)
	w.anyCut.Store(false)
	w.cutMu.Unlock()
}

func (w *Wire) isCut(a netip.AddrPort) bool {
	if !w.anyCut.Load() {
		return false
	}
	w.cutMu.RLock()
	c := w.cutAll || w.cuts[a]
	w.cutMu.RUnlock()
	return c
}

func (w *Wire) closed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// decision is what happens to one datagram.
type decision struct {
	drop, dup, corrupt, reorder, delay bool
	bit                                uint64        // which bit to flip, modulo the length
	wait                               time.Duration // delay
	depth                              uint64        // reorder depth
}

// Random draws for datagram seq: each is a pure function of (Seed, seq, k).
const (
	drawLoss = iota
	drawDup
	drawReorder
	drawCorrupt
	drawBit
	drawJitter
	drawDepth
)

func (w *Wire) draw(seq, k uint64) uint64 {
	return mix64(mix64(uint64(w.cfg.Seed)^seq*0x9e3779b97f4a7c15) + (k+1)*0xd1b54a32d192ed03)
}

func (w *Wire) prob(seq, k uint64) float64 {
	return float64(w.draw(seq, k)>>11) / (1 << 53)
}

// mix64 is the SplitMix64 finalizer.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (w *Wire) decide(seq uint64, m wire.Message) decision {
	c := &w.cfg
	d := decision{
		bit:   w.draw(seq, drawBit),
		depth: 1 + w.draw(seq, drawDepth)%uint64(c.ReorderDepth),
	}
	d.wait = c.Delay
	if c.Jitter > 0 {
		d.wait += time.Duration(w.draw(seq, drawJitter) % uint64(c.Jitter))
	}
	if c.Decide != nil {
		w.decideMu.Lock()
		a := c.Decide(seq, m)
		w.decideMu.Unlock()
		switch a {
		case Drop:
			d.drop = true
		case Duplicate:
			d.dup = true
		case Corrupt:
			d.corrupt = true
		case Reorder:
			d.reorder = true
		case Delay:
			d.delay = true
			if d.wait == 0 {
				d.wait = DefaultDelay
			}
		}
		return d
	}
	d.drop = w.prob(seq, drawLoss) < c.Loss
	d.dup = w.prob(seq, drawDup) < c.Duplicate
	d.reorder = w.prob(seq, drawReorder) < c.Reorder
	d.corrupt = w.prob(seq, drawCorrupt) < c.Corrupt
	d.delay = d.wait > 0
	return d
}

// WriteBatch applies the faults to each datagram and sends what survives.
// Dropped and cut datagrams count as sent, as on a lossy network.
func (w *Wire) WriteBatch(msgs []wire.Message) (int, error) {
	if w.closed() {
		return 0, wire.ErrClosed
	}
	var (
		out    []wire.Message
		origin []int // index in msgs of each out entry
		tooBig = -1
		now    = time.Now()
	)
	emit := func(m wire.Message, i int) {
		out = append(out, m)
		origin = append(origin, i)
	}
	for i, m := range msgs {
		if len(m.Buf) > w.inner.MaxPayload() {
			tooBig = i
			break
		}
		seq := w.seq.Add(1) - 1
		if w.isCut(m.Addr) {
			w.cut.Add(1)
			continue
		}
		d := w.decide(seq, m)
		if d.drop {
			w.dropped.Add(1)
			continue
		}
		if d.corrupt && len(m.Buf) > 0 {
			b := append([]byte(nil), m.Buf...)
			bit := d.bit % uint64(len(b)*8)
			b[bit/8] ^= 1 << (bit % 8)
			m.Buf = b
			w.corrupted.Add(1)
		}
		copies := 1
		if d.dup {
			copies = 2
			w.duplicated.Add(1)
		}
		switch {
		case d.reorder:
			w.reordered.Add(uint64(copies))
			for range copies {
				w.hold(m, seq+d.depth, now.Add(w.cfg.ReorderTimeout))
			}
		case d.delay:
			w.delayed.Add(uint64(copies))
			for range copies {
				w.schedule(m, now.Add(d.wait))
			}
		default:
			for range copies {
				emit(m, i)
			}
		}
		for _, h := range w.releaseHeld(seq) {
			emit(h, i)
		}
	}
	sent := len(msgs)
	if tooBig >= 0 {
		sent = tooBig
	}
	if len(out) > 0 {
		n, err := w.inner.WriteBatch(out)
		w.sent.Add(uint64(n))
		if err != nil {
			if n < len(origin) {
				sent = origin[n]
			}
			return sent, mapErr(err)
		}
	}
	if tooBig >= 0 {
		return sent, wire.ErrTooLarge
	}
	return sent, nil
}

// ReadBatch reads from the inner wire and drops datagrams from cut peers.
func (w *Wire) ReadBatch(msgs []wire.Message) (int, error) {
	for {
		n, err := w.inner.ReadBatch(msgs)
		if err != nil {
			return 0, mapErr(err)
		}
		k := 0
		for i := 0; i < n; i++ {
			if w.isCut(msgs[i].Addr) {
				w.cut.Add(1)
				continue
			}
			msgs[k] = msgs[i]
			k++
		}
		if k > 0 {
			return k, nil
		}
	}
}

// Close stops the release goroutine, discards datagrams still held or
// delayed, and closes the inner wire.
func (w *Wire) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		w.closeErr = w.inner.Close() // unblocks a release in progress
		<-w.stopped
	})
	return w.closeErr
}

// mapErr reports any closed-wire error as wire.ErrClosed.
func mapErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return wire.ErrClosed
	}
	return err
}

// ---- held and delayed datagrams ----

type pendingMsg struct {
	msg      wire.Message // Buf is the injector's copy
	due      time.Time
	after    uint64 // reorder: release once datagram seq >= after went out
	released bool
	index    int // in pendingHeap
}

type pendingHeap []*pendingMsg

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h pendingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *pendingHeap) Push(x any) {
	p := x.(*pendingMsg)
	p.index = len(*h)
	*h = append(*h, p)
}
func (h *pendingHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

func copyMsg(m wire.Message) wire.Message {
	return wire.Message{Buf: append([]byte(nil), m.Buf...), Addr: m.Addr}
}

// schedule sends a copy of m at due from the release goroutine.
func (w *Wire) schedule(m wire.Message, due time.Time) {
	w.add(&pendingMsg{msg: copyMsg(m), due: due}, false)
}

// hold keeps a copy of m until datagram after went out, or until timeout.
func (w *Wire) hold(m wire.Message, after uint64, timeout time.Time) {
	w.add(&pendingMsg{msg: copyMsg(m), due: timeout, after: after}, true)
}

func (w *Wire) add(p *pendingMsg, held bool) {
	w.mu.Lock()
	heap.Push(&w.pending, p)
	if held {
		w.held = append(w.held, p)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// releaseHeld returns the held datagrams whose turn came at seq.
func (w *Wire) releaseHeld(seq uint64) []wire.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.held) == 0 {
		return nil
	}
	var out []wire.Message
	keep := w.held[:0]
	for _, p := range w.held {
		switch {
		case p.released:
		case seq >= p.after:
			p.released = true
			heap.Remove(&w.pending, p.index)
			out = append(out, p.msg)
		default:
			keep = append(keep, p)
		}
	}
	clear(w.held[len(keep):])
	w.held = keep
	return out
}

// releaser sends delayed and timed-out held datagrams when they are due.
func (w *Wire) releaser() {
	defer close(w.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var due []wire.Message
	for {
		due = due[:0]
		w.mu.Lock()
		now := time.Now()
		for len(w.pending) > 0 && !w.pending[0].due.After(now) {
			p := heap.Pop(&w.pending).(*pendingMsg)
			p.released = true
			due = append(due, p.msg)
		}
		var next time.Duration = -1
		if len(w.pending) > 0 {
			next = w.pending[0].due.Sub(now)
		}
		w.mu.Unlock()
		if len(due) > 0 {
			// Count before handing over, so that a reader who has received a
			// datagram always sees it counted; take back what the wire refused.
			// A late datagram that fails is lost, as on a network.
			w.sent.Add(uint64(len(due)))
			if n, _ := w.inner.WriteBatch(due); n < len(due) {
				w.sent.Add(^uint64(len(due) - n - 1))
			}
		}
		if next >= 0 {
			timer.Reset(next)
		}
		select {
		case <-w.done:
			return
		case <-w.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

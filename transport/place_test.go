package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport/wire"
)

// forgingWire sends, before each rendezvous DATA or eager MORE packet
// (clear transport header), forgeries of it: packets with the layout and
// the sender's ID but that do not authenticate, naming (a) the same PSN
// and range, (b) the next PSN and the range of the packet before it
// (already delivered), and (c) the next PSN and the next range (not yet
// arrived). It also counts the packets it saw with a clear part and how
// many of them were not DATA or MORE.
type forgingWire struct {
	wire.Wire
	pre        int
	mu         sync.Mutex
	prev       map[uint64]uint64 // RecvID (DATA), 1<<63 | MsgID (MORE) -> offset of the previous packet
	forged     int
	clear      map[pktType]int // packets seen with a clear transport header, by type
	clearOther int             // of those, neither DATA nor MORE (or unparseable)
	countOnly  bool            // count, do not forge
}

func (f *forgingWire) WriteBatch(msgs []wire.Message) (int, error) {
	var out []wire.Message
	for _, m := range msgs {
		out = append(out, f.forge(m)...)
		out = append(out, m)
	}
	n, err := f.Wire.WriteBatch(out)
	// Report progress in the caller's messages.
	return min(n, len(msgs)), err
}

func (f *forgingWire) forge(m wire.Message) []wire.Message {
	sh, hl, err := secure.ParseHeader(m.Buf)
	if err != nil || sh.COffset == 0 {
		return nil
	}
	end := hl + int(sh.COffset)*4
	var h header
	_, err = h.parse(m.Buf[hl:end])
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || h.Type != typeData && h.Type != typeMore {
		f.clearOther++
		return nil
	}
	if f.clear == nil {
		f.clear = map[pktType]int{}
	}
	f.clear[h.Type]++
	if f.countOnly {
		return nil
	}
	n := uint64(len(m.Buf) - end - secure.TagSize)
	key := h.RecvID
	if h.Type == typeMore {
		key = 1<<63 | h.MsgID
	}
	prev, hasPrev := f.prev[key]
	f.prev[key] = h.Offset
	build := func(psn uint32, off uint64) wire.Message {
		g := h
		g.PSN, g.Offset = psn, off
		b := append([]byte(nil), m.Buf[:hl]...)
		b = g.AppendTo(b)
		b = append(b, m.Buf[end:]...)
		b[len(b)-1] ^= 0x80 // a different tag (the same one fails too: the header changed)
		f.forged++
		return wire.Message{Buf: b, Addr: m.Addr}
	}
	out := []wire.Message{build(h.PSN, h.Offset), build(h.PSN+1, h.Offset+n)}
	if hasPrev {
		out = append(out, build(h.PSN+1, prev))
	}
	return out
}

// checkForgeries checks receiver r's counters after a transfer with or
// without forgeries: on the memory wire every forged packet that was not
// dropped (a full queue drops, counted) is an authentication failure, at
// least one is on any wire, and a clean run has neither failures nor
// malformed packets.
func checkForgeries(t *testing.T, r *Endpoint, forge bool, forged int, rs Stats) {
	t.Helper()
	if forge {
		if m, ok := r.w.(*wire.Mem); ok {
			// Forgeries sent ahead of a retransmission (a spurious
			// timeout) may arrive after the transfer completed: wait.
			for end := time.Now().Add(testTimeout); rs.AuthFailures+m.Stats().Dropped < uint64(forged) && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
				rs = r.Stats()
			}
			dropped := m.Stats().Dropped
			if rs.AuthFailures > uint64(forged) || rs.AuthFailures+dropped < uint64(forged) {
				t.Fatalf("%d forged packets sent, %d authentication failures counted (%d datagrams dropped)", forged, rs.AuthFailures, dropped)
			}
		}
		if rs.AuthFailures == 0 {
			t.Fatal("no forged packet was counted")
		}
	} else if rs.AuthFailures != 0 || rs.Malformed != 0 {
		t.Fatalf("stats %+v", rs)
	}
}

// TestPlacedData: rendezvous DATA is decrypted straight into the receive
// buffer (Stats.Placed), the message arrives intact, and forged DATA
// packets aimed at delivered or pending ranges of it, arriving before the
// genuine ones, are counted as authentication failures and change nothing
// that is delivered.
func TestPlacedData(t *testing.T) {
	for _, kind := range []string{"mem", "udp"} {
		for _, forge := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/forged=%v", kind, forge), func(t *testing.T) {
				var fw *forgingWire
				c := newCluster(t, kind, 2, nil, func(rank int, w wire.Wire) wire.Wire {
					if rank == 0 && forge {
						fw = &forgingWire{Wire: w, prev: map[uint64]uint64{}}
						return fw
					}
					return w
				})
				s, r := c.eps[0], c.eps[1]
				ctx := ctxT(t)
				for i, size := range []int{DefaultEagerLimit + 1, 1 << 20, 3<<20 + 7} {
					msg := pattern(size, 0, uint64(i), i)
					buf := make([]byte, size)
					rq := r.RecvAsync(ctx, 0, uint64(i), ^uint64(0), buf)
					if err := s.Send(ctx, 1, uint64(i), msg); err != nil {
						t.Fatal(err)
					}
					st, err := rq.Wait(ctx)
					if err != nil || st.Len != size {
						t.Fatalf("%d bytes: Recv = %+v, %v", size, st, err)
					}
					if !bytes.Equal(buf, msg) {
						t.Fatalf("%d bytes: received data differs", size)
					}
				}
				rs := r.Stats()
				if rs.Placed == 0 {
					t.Fatal("no DATA packet was placed in the receive buffer")
				}
				t.Logf("placed %d, auth failures %d, malformed %d", rs.Placed, rs.AuthFailures, rs.Malformed)
				forged := 0
				if fw != nil {
					fw.mu.Lock()
					forged = fw.forged
					fw.mu.Unlock()
				}
				checkForgeries(t, r, forge, forged, rs)
			})
		}
	}
}

// TestPlacedDataAllocs: a rendezvous transfer placed in the receive
// buffer allocates nothing per packet (on UDP: the mem wire allocates a
// copy of each datagram).
func TestPlacedDataAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	c := newCluster(t, "udp", 2, nil, nil)
	s, r := c.eps[0], c.eps[1]
	ctx := context.Background()
	msg := pattern(1<<20, 0, 1, 0)
	buf := make([]byte, len(msg))
	run := func() {
		rq := r.RecvAsync(ctx, 0, 1, ^uint64(0), buf)
		if err := s.Send(ctx, 1, 1, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := rq.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	run()
	allocs := testing.AllocsPerRun(20, run)
	pkts := len(msg) / s.fragData
	if allocs > 4 { // RecvAsync: request and channel
		t.Fatalf("%.1f allocations per 1 MiB transfer (%d packets)", allocs, pkts)
	}
	t.Logf("%.1f allocations per 1 MiB transfer (%d DATA packets)", allocs, pkts)
}

// TestPlacedGet: a Get's answer (DATA from the target's region) is placed
// straight into the initiator's buffer, with the same guarantee against
// forged DATA as a Recv.
func TestPlacedGet(t *testing.T) {
	for _, forge := range []bool{false, true} {
		t.Run(fmt.Sprintf("forged=%v", forge), func(t *testing.T) {
			var fw *forgingWire
			c := newCluster(t, "mem", 2, nil, func(rank int, w wire.Wire) wire.Wire {
				if rank == 1 && forge {
					fw = &forgingWire{Wire: w, prev: map[uint64]uint64{}}
					return fw
				}
				return w
			})
			a, b := c.eps[0], c.eps[1]
			ctx := ctxT(t)
			region := pattern(3<<20+5, 1, 7, 0)
			reg, err := b.Register(region, AccessRemoteRead)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{100 << 10, len(region)} {
				buf := make([]byte, n)
				if err := a.Get(ctx, 1, reg.Key(), 0, buf); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, region[:n]) {
					t.Fatalf("Get of %d bytes: data differs", n)
				}
			}
			st := a.Stats()
			if st.Placed == 0 {
				t.Fatal("no Get answer was placed in the initiator's buffer")
			}
			if forge && st.AuthFailures == 0 {
				t.Fatal("no forged packet was counted")
			}
			t.Logf("placed %d, auth failures %d", st.Placed, st.AuthFailures)
		})
	}
}

// TestPlacedEager: the fragments after the first of an eager message (MORE,
// header in clear) are decrypted straight into the posted receive buffer,
// the shadow copy of a truncating receive, or the unexpected message's
// buffer (Stats.Placed); the first fragment, which carries the tag and the
// length, is never in clear; messages arrive intact; forged MORE packets
// aimed at delivered or pending ranges, arriving before the genuine ones,
// are counted as authentication failures and change nothing delivered.
func TestPlacedEager(t *testing.T) {
	for _, kind := range []string{"mem", "udp"} {
		for _, forge := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/forged=%v", kind, forge), func(t *testing.T) {
				var fw *forgingWire
				c := newCluster(t, kind, 2, nil, func(rank int, w wire.Wire) wire.Wire {
					if rank == 0 {
						fw = &forgingWire{Wire: w, prev: map[uint64]uint64{}, countOnly: !forge}
						return fw
					}
					return w
				})
				s, r := c.eps[0], c.eps[1]
				ctx := ctxT(t)
				frag := s.EagerFragment()
				sizes := []int{frag + 1, 3*frag + 7, 1 << 16, DefaultEagerLimit}
				for i, size := range sizes {
					for _, mode := range []string{"posted", "truncating", "unexpected"} {
						tag := uint64(10*i) + map[string]uint64{"posted": 0, "truncating": 1, "unexpected": 2}[mode]
						msg := pattern(size, 0, tag, i)
						want := size
						buf := make([]byte, size)
						if mode == "truncating" {
							want, buf = size-frag/2, make([]byte, size-frag/2)
						}
						var rq *Request
						if mode != "unexpected" {
							rq = r.RecvAsync(ctx, 0, tag, ^uint64(0), buf)
						}
						if err := s.Send(ctx, 1, tag, msg); err != nil {
							t.Fatal(err)
						}
						if mode == "unexpected" {
							rq = r.RecvAsync(ctx, 0, tag, ^uint64(0), buf)
						}
						st, err := rq.Wait(ctx)
						if mode == "truncating" {
							if !errors.Is(err, ErrTruncated) || st.Len != size {
								t.Fatalf("%d bytes, %s: Recv = %+v, %v", size, mode, st, err)
							}
						} else if err != nil || st.Len != size {
							t.Fatalf("%d bytes, %s: Recv = %+v, %v", size, mode, st, err)
						}
						if !bytes.Equal(buf, msg[:want]) {
							t.Fatalf("%d bytes, %s: received data differs", size, mode)
						}
					}
				}
				rs := r.Stats()
				fw.mu.Lock()
				clearMore, clearOther, forged := fw.clear[typeMore], fw.clearOther, fw.forged
				fw.mu.Unlock()
				t.Logf("placed %d, MORE sent %d, auth failures %d, malformed %d", rs.Placed, clearMore, rs.AuthFailures, rs.Malformed)
				if clearMore == 0 || clearOther != 0 {
					t.Fatalf("clear packets sent: MORE %d, other %d", clearMore, clearOther)
				}
				if retx := s.Stats().Retransmits; kind == "mem" && (rs.Placed > uint64(clearMore) || rs.Placed+retx < uint64(clearMore)) {
					// In order and nothing lost on the memory wire: every
					// MORE sent once lands in place (a retransmission, after
					// a spurious timeout, arrives as a duplicate and is not).
					t.Fatalf("%d MORE packets sent (%d retransmissions in all), %d placed", clearMore, retx, rs.Placed)
				}
				if rs.Placed == 0 {
					t.Fatal("no MORE packet was placed")
				}
				checkForgeries(t, r, forge, forged, rs)
			})
		}
	}
}

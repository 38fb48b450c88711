//go:build linux

package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/transport/wire"
)

// TestUDPFeatures asserts that this Linux kernel gives us sendmmsg/recvmmsg,
// GSO and GRO, that they are really used (coalesced sends and receives are
// counted), and that the Disable switches turn them off.
func TestUDPFeatures(t *testing.T) {
	eachFamily(t, func(t *testing.T, network string, addr netip.AddrPort) {
		tx := listen(t, network, addr, wire.UDPConfig{})
		rx := listen(t, network, addr, wire.UDPConfig{})
		f := tx.Features()
		t.Logf("features: %+v", f)
		if !f.MMsg || !f.GSO || !f.GRO {
			t.Fatalf("features %+v: want MMsg, GSO and GRO on this kernel", f)
		}
		if f.RecvBuffer < wire.DefaultSocketBuffer || f.SendBuffer < wire.DefaultSocketBuffer {
			t.Logf("socket buffers below %d (no CAP_NET_ADMIN?): %+v", wire.DefaultSocketBuffer, f)
		}
		r := wiretest.StartReader(t, rx, rx.BatchSize())
		msgs := wiretest.Msgs(rx.LocalAddr(), 0, wiretest.Repeat(1400, 128)...)
		sendInOrder(t, tx, r, msgs)
		ts, rs := tx.Stats(), rx.Stats()
		t.Logf("sender %+v receiver %+v", ts, rs)
		// 128 x 1400 bytes: 46 segments fit 65507 bytes, so three GSO
		// messages in one sendmmsg.
		if ts.GSOSends != 3 || ts.SendSyscalls != 1 {
			t.Errorf("sender stats %+v: want 3 GSO sends in 1 syscall", ts)
		}
		if rs.GROReceives == 0 || rs.RecvSyscalls >= 128 {
			t.Errorf("receiver stats %+v: want coalesced (GRO) receives", rs)
		}
	})
	for _, c := range []struct {
		cfg  wire.UDPConfig
		want wire.Features
	}{
		{wire.UDPConfig{DisableGSO: true}, wire.Features{MMsg: true, GRO: true}},
		{wire.UDPConfig{DisableGRO: true}, wire.Features{MMsg: true, GSO: true}},
		{wire.UDPConfig{DisableMMsg: true}, wire.Features{}},
	} {
		u := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), c.cfg)
		f := u.Features()
		if f.MMsg != c.want.MMsg || f.GSO != c.want.GSO || f.GRO != c.want.GRO {
			t.Errorf("%+v: features %+v, want %+v", c.cfg, f, c.want)
		}
	}
}

// sendInOrder sends msgs in one WriteBatch and checks that r receives
// them all, in order and intact.
func sendInOrder(t *testing.T, tx *wire.UDP, r *wiretest.Reader, msgs []wire.Message) {
	t.Helper()
	if n, err := tx.WriteBatch(msgs); n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := r.Wait(t, len(msgs))
	for i := range got {
		if !bytes.Equal(got[i].Buf, msgs[i].Buf) {
			t.Fatalf("datagram %d differs", i)
		}
	}
}

// TestUDPGSORuntimeFallback makes the kernel refuse GSO sends (SO_NO_CHECK
// gives EINVAL) and checks that the wire switches GSO off and still
// delivers every datagram.
func TestUDPGSORuntimeFallback(t *testing.T) {
	tx := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
	rx := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
	if err := wire.SetNoCheck(tx); err != nil {
		t.Fatalf("SO_NO_CHECK: %v", err)
	}
	r := wiretest.StartReader(t, rx, rx.BatchSize())
	msgs := wiretest.Msgs(rx.LocalAddr(), 0, wiretest.Repeat(1000, 100)...)
	sendInOrder(t, tx, r, msgs)
	f := tx.Features()
	if f.GSO || f.GSOError == nil {
		t.Fatalf("features after a refused GSO send: %+v; want GSO off with its error", f)
	}
	t.Logf("GSO switched off: %v", f.GSOError)
	if s := tx.Stats(); s.GSOSends != 0 {
		t.Fatalf("stats %+v: no GSO send should have succeeded", s)
	}
}

// TestUDPCloseUnblocksWrite parks writers in the netpoller as if the socket
// buffer were full (loopback never fills it: its skbs are orphaned on
// transmit) and checks that Close releases them with ErrClosed.
func TestUDPCloseUnblocksWrite(t *testing.T) {
	for _, c := range udpConfigs[:2] {
		t.Run(c.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			tx, err := wire.ListenUDP("udp4", netip.MustParseAddrPort("127.0.0.1:0"), c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			msgs := wiretest.Msgs(netip.MustParseAddrPort("127.0.0.1:9"), 0, wiretest.Repeat(100, 10)...)
			wire.ForceSendEAGAIN(tx, true)
			const writers = 3
			res := make(chan error, writers)
			var wg sync.WaitGroup
			for i := 0; i < writers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := tx.WriteBatch(msgs)
					if err == nil || n != 0 {
						err = errors.Join(err, errors.New("WriteBatch returned without ErrClosed"))
					}
					res <- err
				}()
			}
			time.Sleep(50 * time.Millisecond)
			select {
			case err := <-res:
				t.Fatalf("WriteBatch returned while blocked: %v", err)
			default:
			}
			start := time.Now()
			tx.Close()
			for i := 0; i < writers; i++ {
				select {
				case err := <-res:
					if !errors.Is(err, wire.ErrClosed) || !errors.Is(err, net.ErrClosed) {
						t.Fatalf("blocked WriteBatch after Close: %v", err)
					}
				case <-time.After(wiretest.Timeout):
					t.Fatal("Close did not unblock WriteBatch")
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("writers took %v to return after Close", d)
			}
			wg.Wait()
			wiretest.CheckGoroutines(t, before)
		})
	}
}

// TestUDPBusyPoll: with BusyPoll a reader polls while traffic is sparse
// (one small datagram per read), never after a streaming batch, still
// receives what arrives, and Close ends a polling read at once; with and
// without BusyPollYield.
func TestUDPBusyPoll(t *testing.T) {
	for _, yield := range []bool{false, true} {
		t.Run(fmt.Sprintf("yield=%v", yield), func(t *testing.T) { testUDPBusyPoll(t, yield) })
	}
}

func testUDPBusyPoll(t *testing.T, yield bool) {
	before := runtime.NumGoroutine()
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	tx, err := wire.ListenUDP("udp4", lo, wire.UDPConfig{MaxPayload: 8192})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := wire.ListenUDP("udp4", lo, wire.UDPConfig{MaxPayload: 8192, BusyPoll: time.Hour, BusyPollYield: yield})
	if err != nil {
		t.Fatal(err)
	}
	send := func(sizes ...int) {
		t.Helper()
		msgs := wiretest.Msgs(rx.LocalAddr(), 0, sizes...)
		if n, err := tx.WriteBatch(msgs); n != len(msgs) || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	}
	type result struct {
		n   int
		err error
	}
	buf := make([]wire.Message, rx.BatchSize())
	read := func() chan result {
		ch := make(chan result, 1)
		go func() {
			n, err := rx.ReadBatch(buf)
			ch <- result{n, err}
		}()
		return ch
	}
	// Streaming: a batch of datagrams larger than a sparse read's total,
	// then an empty socket: no polling.
	send(wiretest.Repeat(5000, 16)...)
	got := 0
	for got < 16 {
		r := <-read()
		if r.err != nil {
			t.Fatal(r.err)
		}
		got += r.n
	}
	ch := read()
	time.Sleep(30 * time.Millisecond)
	if p := rx.Stats().BusyPolls; p != 0 {
		t.Fatalf("polled %d times after streaming traffic", p)
	}
	send(8) // sparse: this read returns it, the next one polls
	if r := <-ch; r.err != nil || r.n != 1 || len(buf[0].Buf) != 8 {
		t.Fatalf("read %+v", r)
	}
	ch = read()
	deadline := time.Now().Add(wiretest.Timeout)
	for rx.Stats().BusyPolls < 100 {
		if time.Now().After(deadline) {
			t.Fatal("no busy polling after sparse traffic")
		}
		time.Sleep(time.Millisecond)
	}
	send(16) // found by the poller
	if r := <-ch; r.err != nil || r.n != 1 || len(buf[0].Buf) != 16 {
		t.Fatalf("read while polling %+v", r)
	}
	ch = read()
	for p := rx.Stats().BusyPolls; rx.Stats().BusyPolls == p; {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	rx.Close()
	select {
	case r := <-ch:
		if !errors.Is(r.err, wire.ErrClosed) {
			t.Fatalf("polling read after Close: %+v", r)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("Close did not end a polling read")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("polling read took %v to end after Close", d)
	}
	tx.Close()
	wiretest.CheckGoroutines(t, before)
}

// TestUDPAllowBusyPoll: AllowBusyPoll(false) stops a reader's polling
// (the read then sleeps in the netpoller and still receives), true lets it
// poll again; with BusyPollBulk the hint is ignored.
func TestUDPAllowBusyPoll(t *testing.T) {
	for _, bulk := range []bool{false, true} {
		lo := netip.MustParseAddrPort("127.0.0.1:0")
		tx, err := wire.ListenUDP("udp4", lo, wire.UDPConfig{MaxPayload: 8192})
		if err != nil {
			t.Fatal(err)
		}
		rx, err := wire.ListenUDP("udp4", lo, wire.UDPConfig{MaxPayload: 8192, BusyPoll: time.Hour, BusyPollBulk: bulk})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]wire.Message, rx.BatchSize())
		read := func() chan error {
			ch := make(chan error, 1)
			go func() { _, err := rx.ReadBatch(buf); ch <- err }()
			return ch
		}
		send := func() {
			if n, err := tx.WriteBatch(wiretest.Msgs(rx.LocalAddr(), 0, 8)); n != 1 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
		}
		rx.AllowBusyPoll(false)
		ch := read()
		send() // sparse
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
		ch = read()
		time.Sleep(20 * time.Millisecond)
		polls := rx.Stats().BusyPolls
		if bulk && polls == 0 {
			t.Fatal("BusyPollBulk: the hint stopped the polling")
		}
		if !bulk && polls != 0 {
			t.Fatalf("polled %d times while told not to", polls)
		}
		send() // still received, by the sleeping (or polling) reader
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
		rx.AllowBusyPoll(true)
		ch = read()
		deadline := time.Now().Add(wiretest.Timeout)
		for rx.Stats().BusyPolls <= polls {
			if time.Now().After(deadline) {
				t.Fatal("no polling after AllowBusyPoll(true)")
			}
			time.Sleep(time.Millisecond)
		}
		rx.Close()
		<-ch
		tx.Close()
	}
}

// TestUDPInputPending: InputPending says whether a datagram waits on the
// socket, without consuming it, for the mmsg path and the plain one.
func TestUDPInputPending(t *testing.T) {
	for _, cfg := range []wire.UDPConfig{{MaxPayload: 8192}, {MaxPayload: 8192, DisableMMsg: true}} {
		lo := netip.MustParseAddrPort("127.0.0.1:0")
		tx, err := wire.ListenUDP("udp4", lo, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rx, err := wire.ListenUDP("udp4", lo, cfg)
		if err != nil {
			tx.Close()
			t.Fatal(err)
		}
		var p wire.InputPender = rx
		if p.InputPending() {
			t.Fatal("InputPending on an empty socket")
		}
		msgs := wiretest.Msgs(rx.LocalAddr(), 0, 100, 200)
		if n, err := tx.WriteBatch(msgs); n != len(msgs) || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !p.InputPending() {
			if time.Now().After(deadline) {
				t.Fatal("InputPending false with two datagrams sent")
			}
			time.Sleep(time.Millisecond)
		}
		buf := make([]wire.Message, rx.BatchSize())
		got := 0
		for got < len(msgs) {
			n, err := rx.ReadBatch(buf)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
		if got != len(msgs) {
			t.Fatalf("read %d datagrams, want %d (InputPending consumed some?)", got, len(msgs))
		}
		if p.InputPending() {
			t.Fatal("InputPending after every datagram was read")
		}
		tx.Close()
		rx.Close()
	}
}

// TestUDPSendOne: a batch of one datagram goes out with sendto (one system
// call, no GSO), arrives intact from the sender's address at every size
// from 0 to MaxPayload on both families, a kernel error is reported under
// sendto's name, and a single datagram waiting for a writable socket is
// released by Close.
func TestUDPSendOne(t *testing.T) {
	eachFamily(t, func(t *testing.T, network string, addr netip.AddrPort) {
		tx := listen(t, network, addr, wire.UDPConfig{})
		rx := listen(t, network, addr, wire.UDPConfig{})
		r := wiretest.StartReader(t, rx, rx.BatchSize())
		for i, size := range []int{0, 1, 8, 1400, tx.MaxPayload()} {
			before := tx.Stats()
			msgs := wiretest.Msgs(rx.LocalAddr(), uint32(i), size)
			if n, err := tx.WriteBatch(msgs); n != 1 || err != nil {
				t.Fatalf("size %d: WriteBatch = %d, %v", size, n, err)
			}
			after := tx.Stats()
			if d := after.SendSyscalls - before.SendSyscalls; d != 1 {
				t.Fatalf("size %d: %d send calls, want 1", size, d)
			}
			if after.GSOSends != before.GSOSends {
				t.Fatalf("size %d: a single datagram was counted as a GSO send", size)
			}
			got := r.Wait(t, 1)[0]
			if got.Addr != tx.LocalAddr() || !bytes.Equal(got.Buf, msgs[0].Buf) {
				t.Fatalf("size %d: got %d bytes from %v, want %d from %v", size, len(got.Buf), got.Addr, size, tx.LocalAddr())
			}
		}
	})

	t.Run("error", func(t *testing.T) {
		// Port 0: the kernel refuses the destination (EINVAL).
		tx := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
		port0 := netip.MustParseAddrPort("127.0.0.1:0")
		n, err := tx.WriteBatch(wiretest.Msgs(port0, 0, 10))
		var se *os.SyscallError
		if n != 0 || !errors.As(err, &se) || se.Syscall != "sendto" || se.Err != syscall.EINVAL {
			t.Fatalf("WriteBatch to port 0 = %d, %v; want 0 and sendto's EINVAL", n, err)
		}
		// Two datagrams (of different lengths: no GSO) go through sendmmsg.
		if n, err := tx.WriteBatch(wiretest.Msgs(port0, 0, 10, 20)); n != 0 || !errors.As(err, &se) || se.Syscall != "sendmmsg" {
			t.Fatalf("WriteBatch of two to port 0 = %d, %v; want 0 and a sendmmsg error", n, err)
		}
	})

	t.Run("close", func(t *testing.T) {
		tx := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
		wire.ForceSendEAGAIN(tx, true)
		res := make(chan error, 1)
		go func() {
			_, err := tx.WriteBatch(wiretest.Msgs(netip.MustParseAddrPort("127.0.0.1:9"), 0, 10))
			res <- err
		}()
		select {
		case err := <-res:
			t.Fatalf("WriteBatch returned while the socket was not writable: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		tx.Close()
		select {
		case err := <-res:
			if !errors.Is(err, wire.ErrClosed) {
				t.Fatalf("WriteBatch after Close: %v, want ErrClosed", err)
			}
		case <-time.After(wiretest.Timeout):
			t.Fatal("Close did not release a single-datagram WriteBatch")
		}
	})
}

// TestUDPReadOne: once a read returns a single small datagram the wire
// reads one datagram per recvmmsg (latency-bound traffic: each slot it
// cannot fill costs kernel time), and returns to batch reads after a large
// datagram, or after OneProbe single reads found data already waiting (a
// backlog), without losing or reordering anything.
func TestUDPReadOne(t *testing.T) {
	eachFamily(t, func(t *testing.T, network string, addr netip.AddrPort) {
		cfg := wire.UDPConfig{MaxPayload: 8192} // room for a datagram that is not small
		tx := listen(t, network, addr, cfg)
		rx := listen(t, network, addr, cfg)
		msgs := make([]wire.Message, rx.BatchSize())
		seq := uint32(0)
		// send sends datagrams of these sizes (distinct lengths: no GSO,
		// no GRO coalescing) and returns what was sent.
		send := func(sizes ...int) []wire.Message {
			t.Helper()
			out := wiretest.Msgs(rx.LocalAddr(), seq, sizes...)
			seq++
			if n, err := tx.WriteBatch(out); n != len(out) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			return out
		}
		// read reads once (the datagrams are already queued: loopback
		// delivers within sendto) and checks the result against want.
		read := func(want []wire.Message) int {
			t.Helper()
			n, err := rx.ReadBatch(msgs)
			if err != nil || n == 0 || n > len(want) {
				t.Fatalf("ReadBatch = %d, %v; %d datagrams queued", n, err, len(want))
			}
			for i := range n {
				if !bytes.Equal(msgs[i].Buf, want[i].Buf) {
					t.Fatalf("datagram %d of %d differs", i, n)
				}
			}
			return n
		}

		read(send(8)) // a batch read returning a single small datagram
		slots := wire.ReadSlots(rx)
		if slots <= 1 {
			t.Fatalf("first read asked for %d slots, want a batch", slots)
		}
		for range 3 {
			read(send(8))
			if s := wire.ReadSlots(rx); s != 1 {
				t.Fatalf("read after a single small datagram asked for %d slots, want 1", s)
			}
		}

		// A backlog: single reads for at most OneProbe datagrams in all
		// (3 found data waiting above), then batches again.
		sizes := make([]int, 40)
		for i := range sizes {
			sizes[i] = 100 + i
		}
		backlog := send(sizes...)
		reads, singles := 0, 0
		for len(backlog) > 0 {
			n := read(backlog)
			backlog = backlog[n:]
			reads++
			if wire.ReadSlots(rx) == 1 {
				singles++
			}
		}
		if singles > wire.OneProbe-3 {
			t.Fatalf("%d single-datagram reads of a backlog, want at most %d", singles, wire.OneProbe-3)
		}
		if max := singles + (40-singles+slots-1)/slots; reads > max {
			t.Fatalf("a 40-datagram backlog took %d reads, want at most %d", reads, max)
		}

		// A large datagram ends single reads at once.
		read(send(8))
		read(send(8))
		if s := wire.ReadSlots(rx); s != 1 {
			t.Fatalf("after single small datagrams: %d slots, want 1", s)
		}
		read(send(tx.MaxPayload()))
		read(send(8))
		if s := wire.ReadSlots(rx); s <= 1 {
			t.Fatalf("read after a large datagram asked for %d slots, want a batch", s)
		}
	})
}

package wire_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/sealring/sealring/internal/wiretest"
	"github.com/sealring/sealring/transport/wire"
)

// udpConfigs are the paths a UDP wire can take; on other systems every
// one is the single-datagram path.
var udpConfigs = []struct {
	name string
	cfg  wire.UDPConfig
}{
	{"gso+gro", wire.UDPConfig{}},
	{"nogso", wire.UDPConfig{DisableGSO: true}},
	{"nogro", wire.UDPConfig{DisableGRO: true}},
	{"nogso+nogro", wire.UDPConfig{DisableGSO: true, DisableGRO: true}},
	{"nommsg", wire.UDPConfig{DisableMMsg: true}},
	{"jumbo", wire.UDPConfig{MaxPayload: wire.MaxUDPPayload}},
	{"batch7", wire.UDPConfig{BatchSize: 7, MaxPayload: 9000}},
}

var families = []struct {
	network string
	addr    netip.AddrPort
}{
	{"udp4", netip.MustParseAddrPort("127.0.0.1:0")},
	{"udp6", netip.MustParseAddrPort("[::1]:0")},
}

// ipv6Loopback reports whether ::1 can be bound.
func ipv6Loopback() bool {
	u, err := wire.ListenUDP("udp6", netip.MustParseAddrPort("[::1]:0"), wire.UDPConfig{})
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// eachFamily runs f as a subtest per address family, skipping IPv6 where
// ::1 cannot be bound.
func eachFamily(t *testing.T, f func(t *testing.T, network string, addr netip.AddrPort)) {
	for _, fam := range families {
		t.Run(fam.network, func(t *testing.T) {
			if fam.network == "udp6" && !ipv6Loopback() {
				t.Skip("::1 is not available here")
			}
			f(t, fam.network, fam.addr)
		})
	}
}

func listen(t testing.TB, network string, addr netip.AddrPort, cfg wire.UDPConfig) *wire.UDP {
	t.Helper()
	u, err := wire.ListenUDP(network, addr, cfg)
	if err != nil {
		t.Fatalf("ListenUDP(%s, %v): %v", network, addr, err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func TestUDPWire(t *testing.T) {
	eachFamily(t, func(t *testing.T, network string, addr netip.AddrPort) {
		for _, c := range udpConfigs {
			t.Run(c.name, func(t *testing.T) {
				wiretest.Run(t, func(t *testing.T) (wire.Wire, wire.Wire) {
					return listen(t, network, addr, c.cfg), listen(t, network, addr, c.cfg)
				})
			})
		}
	})
}

// TestUDPDualStack sends between an IPv6 "udp" socket bound to every
// address and an IPv4 socket: IPv4 peers appear unmapped.
func TestUDPDualStack(t *testing.T) {
	if !ipv6Loopback() {
		t.Skip("no IPv6 here")
	}
	ds := listen(t, "udp", netip.AddrPort{}, wire.UDPConfig{})
	v4 := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
	rds := wiretest.StartReader(t, ds, ds.BatchSize())
	rv4 := wiretest.StartReader(t, v4, v4.BatchSize())
	dsAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ds.LocalAddr().Port())
	msgs := wiretest.Msgs(dsAddr, 0, wiretest.Repeat(1400, 100)...)
	if n, err := v4.WriteBatch(msgs); n != len(msgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := rds.Wait(t, len(msgs))
	for i, d := range got {
		if d.Addr != v4.LocalAddr() || !bytes.Equal(d.Buf, msgs[i].Buf) {
			t.Fatalf("datagram %d from %v differs (want from %v)", i, d.Addr, v4.LocalAddr())
		}
	}
	// Reply to the unmapped IPv4 source from the IPv6 socket.
	reply := wiretest.Msgs(got[0].Addr, 500, wiretest.Repeat(1000, 70)...)
	if n, err := ds.WriteBatch(reply); n != len(reply) || err != nil {
		t.Fatalf("reply WriteBatch = %d, %v", n, err)
	}
	back := rv4.Wait(t, len(reply))
	for i, d := range back {
		if d.Addr.Port() != ds.LocalAddr().Port() || !bytes.Equal(d.Buf, reply[i].Buf) {
			t.Fatalf("reply %d from %v differs", i, d.Addr)
		}
	}
}

// TestUDPManyDestinations interleaves one sender's batch over several
// receivers in runs of varying length and checks each receiver's stream,
// in order (loopback keeps a single flow's order).
func TestUDPManyDestinations(t *testing.T) {
	for _, c := range udpConfigs {
		t.Run(c.name, func(t *testing.T) {
			tx := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), c.cfg)
			var rx []*wire.UDP
			var readers []*wiretest.Reader
			for i := 0; i < 4; i++ {
				u := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), c.cfg)
				rx = append(rx, u)
				readers = append(readers, wiretest.StartReader(t, u, u.BatchSize()))
			}
			var msgs []wire.Message
			want := make([][][]byte, len(rx))
			run := 0
			for len(msgs) < 300 {
				d := run % len(rx)
				for k := 0; k < 1+run%5; k++ {
					size := 1 + (run*37)%min(1400, tx.MaxPayload())
					if k == 4 {
						size /= 2
					}
					m := wire.Message{Buf: wiretest.Payload(uint32(len(msgs)), size), Addr: rx[d].LocalAddr()}
					msgs = append(msgs, m)
					want[d] = append(want[d], m.Buf)
				}
				run++
			}
			if n, err := tx.WriteBatch(msgs); n != len(msgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			for d, r := range readers {
				got := r.Wait(t, len(want[d]))
				for i := range got {
					if got[i].Addr != tx.LocalAddr() || !bytes.Equal(got[i].Buf, want[d][i]) {
						t.Fatalf("receiver %d datagram %d: got %d bytes from %v, want %d bytes from %v",
							d, i, len(got[i].Buf), got[i].Addr, len(want[d][i]), tx.LocalAddr())
					}
				}
			}
		})
	}
}

func TestUDPConfigErrors(t *testing.T) {
	for _, c := range []struct {
		network string
		cfg     wire.UDPConfig
	}{
		{"tcp", wire.UDPConfig{}},
		{"udp4", wire.UDPConfig{MaxPayload: wire.MaxUDPPayload + 1}},
		{"udp4", wire.UDPConfig{MaxPayload: -1}},
		{"udp4", wire.UDPConfig{BatchSize: -1}},
	} {
		if u, err := wire.ListenUDP(c.network, netip.MustParseAddrPort("127.0.0.1:0"), c.cfg); err == nil {
			u.Close()
			t.Errorf("ListenUDP(%q, %+v) succeeded", c.network, c.cfg)
		}
	}
	u := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
	if u.MaxPayload() != wire.DefaultMaxPayload || u.BatchSize() != wire.DefaultBatchSize {
		t.Errorf("defaults: MaxPayload %d BatchSize %d", u.MaxPayload(), u.BatchSize())
	}
	for _, dst := range []netip.AddrPort{
		{},
		netip.MustParseAddrPort("[::1]:9"),
		netip.MustParseAddrPort("[fe80::1%1]:9"),
	} {
		msgs := []wire.Message{{Buf: []byte("x"), Addr: u.LocalAddr()}, {Buf: []byte("y"), Addr: dst}}
		if n, err := u.WriteBatch(msgs); n != 1 || err == nil {
			t.Errorf("WriteBatch to %v = %d, %v; want 1 and an error", dst, n, err)
		}
	}
}

// TestUDPAllocs checks that steady-state WriteBatch and ReadBatch do not
// allocate, on every path.
func TestUDPAllocs(t *testing.T) {
	for _, c := range udpConfigs {
		t.Run(c.name, func(t *testing.T) {
			tx := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), c.cfg)
			rx := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), c.cfg)
			const count = 32
			size := min(1400, tx.MaxPayload())
			msgs := wiretest.Msgs(rx.LocalAddr(), 0, wiretest.Repeat(size, count)...)
			in := make([]wire.Message, rx.BatchSize())
			var got int
			roundTrip := func() {
				if n, err := tx.WriteBatch(msgs); n != count || err != nil {
					t.Fatalf("WriteBatch = %d, %v", n, err)
				}
				for got = 0; got < count; {
					n, err := rx.ReadBatch(in)
					if err != nil {
						t.Fatalf("ReadBatch: %v", err)
					}
					got += n
				}
			}
			roundTrip() // warm up
			if a := testing.AllocsPerRun(200, roundTrip); a != 0 {
				t.Fatalf("WriteBatch+ReadBatch of %d datagrams: %v allocations per run, want 0", count, a)
			}
			if got != count {
				t.Fatalf("received %d of %d", got, count)
			}
		})
	}
}

package transport

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/sealring/sealring/secure"
	"github.com/sealring/sealring/transport/wire"
)

// FuzzEndpoint feeds arbitrary packets from an authenticated peer (rank 1)
// to a live endpoint (rank 0) with operations pending, then closes it: no
// panic, no hang. The input is a sequence of (2-byte length, transport
// packet) records; each packet is sealed with the group's keys (or given
// the insecure prefix when the first byte is odd), so the fuzzer reaches
// the transport logic rather than the authentication check. With bit 1 of
// the first byte set, DATA and MORE packets are sealed with their header
// in clear (protocol.md §8.4.1, so they may be placed straight into a
// receive buffer), and with bit 2 every sealed packet is then damaged (it fails
// authentication after any placement).
func FuzzEndpoint(f *testing.F) {
	rec := func(pkts ...[]byte) []byte {
		out := []byte{0}
		for _, p := range pkts {
			out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
			out = append(out, p...)
		}
		return out
	}
	h := func(h header, payload string) []byte { return append(h.AppendTo(nil), payload...) }
	f.Add(rec(h(header{Type: typePing}, "")))
	f.Add(rec(
		h(header{Type: typeEager, DstInc: 1, PSN: 0, MsgID: 1, Tag: 5, Total: 6, Offset: 0}, "abc"),
		h(header{Type: typeEager, DstInc: 1, PSN: 1, MsgID: 1, Tag: 5, Total: 6, Offset: 3}, "def"),
		h(header{Type: typeEager, DstInc: 1, PSN: 6, MsgID: 3, Tag: 5, Total: 9, Offset: 0}, "abc"),
		h(header{Type: typeMore, DstInc: 1, PSN: 7, MsgID: 3, Offset: 3}, "def"),
		h(header{Type: typeMore, DstInc: 1, PSN: 8, MsgID: 3, Offset: 6}, "ghi"),
		h(header{Type: typeRTS, DstInc: 1, PSN: 2, MsgID: 2, Tag: 5, Total: 100000}, ""),
		h(header{Type: typeData, DstInc: 1, PSN: 4, RecvID: 1, Offset: 0}, "xyz"),
		h(header{Type: typeCTS, DstInc: 1, PSN: 3, MsgID: 1, RecvID: 1, Accept: 10}, ""),
		h(header{Type: typeAck, DstInc: 1, CumAck: 1, Wnd: 0}, ""),
		h(header{Type: typeCancel, DstInc: 1, PSN: 5, MsgID: 2}, ""),
	))
	// One-sided accesses (the endpoint has incarnation 0 and region 1,
	// secret 0; it has a Put (MsgID 2) and a Get (MsgID 3, RecvID 1) of its
	// own toward rank 1).
	f.Add(rec(
		h(header{Type: typePut, PSN: 0, MsgID: 1, Region: 1, Offset: 10, Length: 3}, "abc"),
		h(header{Type: typeGet, PSN: 1, MsgID: 2, RecvID: 5, Region: 1, Offset: 0, Length: 5000}, ""),
		h(header{Type: typePut, PSN: 2, MsgID: 3, Region: 1, Offset: 100, Length: 3000}, ""),
		h(header{Type: typeData, PSN: 3, RecvID: 2, Offset: 1000}, "xyz"),
		h(header{Type: typeCTS, PSN: 4, MsgID: 2, RecvID: 7, Accept: 100000}, ""),
		h(header{Type: typeData, PSN: 5, RecvID: 1, Offset: 0}, "data"),
		h(header{Type: typeNak, PSN: 6, MsgID: 3, Code: nakDenied}, ""),
		h(header{Type: typeFin, PSN: 7, MsgID: 2}, ""),
		h(header{Type: typeCancel, PSN: 8, MsgID: 3}, ""),
		h(header{Type: typeGet, PSN: 9, MsgID: 9, RecvID: 5, Region: 1, Secret: 7, Offset: 4090, Length: 10}, ""),
	))
	// Clear-header DATA into a rendezvous receive (the RTS matches the
	// wildcard receive r2, which gets RecvID 2; the Get has RecvID 1),
	// intact and damaged.
	clearSeed := func(first byte) []byte {
		b := rec(
			h(header{Type: typeRTS, PSN: 0, MsgID: 9, Tag: 0, Total: 20000}, ""),
			h(header{Type: typeData, PSN: 1, RecvID: 2, Offset: 0}, string(make([]byte, 1000))),
			h(header{Type: typeData, PSN: 2, RecvID: 2, Offset: 1000}, string(make([]byte, 1000))),
			h(header{Type: typeData, Flags: flagPiggyAck, PSN: 3, RecvID: 2, Offset: 500}, string(make([]byte, 700))),
			h(header{Type: typeData, PSN: 4, RecvID: 1, Offset: 0}, string(make([]byte, 3000))),
		)
		b[0] = first
		return b
	}
	f.Add(clearSeed(2))
	f.Add(clearSeed(6))
	// Clear-header MORE fragments: into the truncating receive r1 (a
	// shadow copy), the wildcard receive r2, an unexpected message, and
	// out of order.
	moreSeed := func(first byte) []byte {
		b := rec(
			h(header{Type: typeEager, PSN: 0, MsgID: 1, Tag: 5, Total: 2000}, string(make([]byte, 1000))),
			h(header{Type: typeMore, PSN: 1, MsgID: 1, Offset: 1000}, string(make([]byte, 1000))),
			h(header{Type: typeEager, PSN: 2, MsgID: 2, Tag: 9, Total: 2500}, string(make([]byte, 1000))),
			h(header{Type: typeMore, Flags: flagPiggyAck, PSN: 3, MsgID: 2, Offset: 1000}, string(make([]byte, 1000))),
			h(header{Type: typeMore, PSN: 4, MsgID: 2, Offset: 2000}, string(make([]byte, 500))),
			h(header{Type: typeEager, PSN: 5, MsgID: 3, Tag: 9, Total: 3000}, string(make([]byte, 1000))),
			h(header{Type: typeMore, PSN: 7, MsgID: 3, Offset: 2000}, string(make([]byte, 1000))),
			h(header{Type: typeMore, PSN: 6, MsgID: 3, Offset: 1000}, string(make([]byte, 1000))),
		)
		b[0] = first
		return b
	}
	f.Add(moreSeed(2))
	f.Add(moreSeed(6))
	g := testGroup(f, 1, 10)
	sealer, err := secure.NewSealer(g, secure.SealerConfig{ID: secure.SenderID(1, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzEndpointOnce(t, g, sealer, data) })
}

func fuzzEndpointOnce(t *testing.T, g *secure.Group, sealer *secure.Sealer, data []byte) {
	{
		if len(data) < 1 {
			return
		}
		insecure := data[0]&1 == 1
		nw := wire.NewMemNetwork()
		w, _ := nw.Listen(netip.AddrPort{})
		atk, _ := nw.Listen(netip.AddrPort{})
		defer atk.Close()
		ep, err := New(Config{Wire: w, Group: g, Insecure: insecure, Window: 64, PeerTimeout: time.Second, MinRTO: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ep.AddPeer(1, atk.LocalAddr())
		ep.newSecret = func() uint64 { return 0 } // so that the fuzzer can name the region
		region, err := ep.Register(make([]byte, 4096), AccessRemoteRead|AccessRemoteWrite)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		r1 := ep.RecvAsync(ctx, 1, 5, ^uint64(0), make([]byte, 4))
		r2 := ep.RecvAsync(ctx, AnySource, 0, 0, make([]byte, 1<<17))
		s1 := ep.SendAsync(ctx, 1, 7, make([]byte, 100000))
		remote := RemoteKey{rank: 1, inc: 1, id: 1, length: 1 << 20, access: AccessRemoteRead | AccessRemoteWrite}
		p1 := ep.PutAsync(ctx, 1, remote, 0, make([]byte, 100000))
		g1 := ep.GetAsync(ctx, 1, remote, 0, make([]byte, 3000))
		var msgs []wire.Message
		for rest := data[1:]; len(rest) >= 2; {
			n := int(binary.BigEndian.Uint16(rest))
			rest = rest[2:]
			if n > len(rest) {
				n = len(rest)
			}
			pt := rest[:n]
			rest = rest[n:]
			var pkt []byte
			if insecure {
				pkt = binary.BigEndian.AppendUint64(nil, secure.SenderID(1, 1))
				pkt = append(pkt, pt...)
			} else {
				clearLen := 0
				if data[0]&2 != 0 && len(pt) >= 2 && (pktType(pt[0]) == typeData || pktType(pt[0]) == typeMore) {
					clearLen = dataHdrLen // = moreHdrLen
					if pt[1]&flagPiggyAck != 0 {
						clearLen += piggyLen
					}
					clearLen = min(clearLen, len(pt)) &^ 3
				}
				pkt = make([]byte, sealer.HeaderLen(), sealer.Overhead()+len(pt))
				pkt, _ = sealer.Seal(append(pkt, pt...), 0, clearLen)
				if data[0]&4 != 0 && len(pkt) > 0 {
					pkt[len(pkt)-1] ^= 1
				}
			}
			if len(pkt) <= w.MaxPayload() {
				msgs = append(msgs, wire.Message{Buf: pkt, Addr: w.LocalAddr()})
			}
		}
		atk.WriteBatch(msgs)
		time.Sleep(time.Millisecond)
		for _, r := range []*Request{r1, r2, s1, p1, g1} {
			r.Wait(ctx)
		}
		if len(data)%3 == 0 {
			ep.Deregister(region) // with whatever the fuzzer left in progress
		}
		done := make(chan struct{})
		go func() { ep.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close hangs")
		}
		for _, r := range []*Request{r1, r2, s1, p1, g1} {
			select {
			case <-r.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("request not completed after Close")
			}
		}
	}
}

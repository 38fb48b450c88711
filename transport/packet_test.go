package transport

import (
	"bytes"
	"errors"
	"testing"
)

func samplePackets() []header {
	ack := header{Type: typeAck, DstRank: 3, DstInc: 9, CumAck: 100, Wnd: 1024, NSACK: 2}
	ack.SACK[0] = sackRange{102, 105}
	ack.SACK[1] = sackRange{0xfffffff0, 3} // wraps
	return []header{
		ack,
		{Type: typeAck, DstRank: 1, CumAck: 7},
		{Type: typePing, DstRank: 1, DstInc: 0},
		{Type: typeEager, Flags: flagAckNow, DstRank: 1, DstInc: 2, PSN: 5, MsgID: 77, Tag: 1 << 60, Total: 3000, Offset: 1400},
		{Type: typeRTS, DstRank: 1, DstInc: 2, PSN: 6, MsgID: 78, Tag: 5, Total: 1 << 40},
		{Type: typeCTS, DstRank: 1, DstInc: 2, PSN: 7, MsgID: 78, RecvID: 4, Accept: 1 << 39},
		{Type: typeData, DstRank: 1, DstInc: 2, PSN: 8, RecvID: 4, Offset: 1 << 35},
		{Type: typeCancel, DstRank: 1, DstInc: 2, PSN: 9, MsgID: 78},
		{Type: typeRevoke, DstRank: 1, DstInc: 2, PSN: 10, MsgID: 78},
		{Type: typeFin, DstRank: 1, DstInc: 2, PSN: 11, MsgID: 78},
		{Type: typeEager, Flags: flagAckNow | flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 12, CumAck: 40, Wnd: 1024, MsgID: 79, Tag: 3, Total: 3, Offset: 0},
		{Type: typeData, Flags: flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 13, CumAck: 0xfffffffe, Wnd: 0, RecvID: 4, Offset: 1 << 20},
		{Type: typeCTS, Flags: flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 14, CumAck: 41, Wnd: 7, MsgID: 78, RecvID: 4, Accept: 9},
		{Type: typeFin, Flags: flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 15, CumAck: 42, Wnd: 8, MsgID: 78},
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range samplePackets() {
		b := h.AppendTo(nil)
		if len(b) != h.Len() {
			t.Fatalf("%v: encoded %d bytes, Len %d", h.Type, len(b), h.Len())
		}
		var payload []byte
		if h.Type == typeEager || h.Type == typeData {
			payload = []byte("abc")
			b = append(b, payload...)
		}
		var g header
		p, err := g.parse(b)
		if err != nil {
			t.Fatalf("%v: %v", h.Type, err)
		}
		if g != h || !bytes.Equal(p, payload) {
			t.Fatalf("%v: round trip\n got %+v\nwant %+v", h.Type, g, h)
		}
		// Every truncation fails cleanly; so does a trailing byte on a
		// fixed-length packet.
		for n := range len(b) - len(payload) {
			if _, err := g.parse(b[:n]); err == nil {
				t.Fatalf("%v: truncated to %d parsed", h.Type, n)
			}
		}
		if payload == nil {
			if _, err := g.parse(append(b, 0)); !errors.Is(err, errMalformed) {
				t.Fatalf("%v: trailing byte: %v", h.Type, err)
			}
		}
	}
}

func TestHeaderRejects(t *testing.T) {
	good := (&header{Type: typeFin, DstRank: 1, PSN: 1, MsgID: 2}).AppendTo(nil)
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	eager := (&header{Type: typeEager, DstRank: 1, Total: 2, Offset: 1}).AppendTo(nil)
	ack := (&header{Type: typeAck, NSACK: 1, SACK: [maxSACK]sackRange{{5, 6}}}).AppendTo(nil)
	cases := map[string]struct {
		b   []byte
		err error
	}{
		"empty":        {nil, errShort},
		"type0":        {mod(func(b []byte) { b[0] = 0 }), errType},
		"type99":       {mod(func(b []byte) { b[0] = 99 }), errType},
		"flags":        {mod(func(b []byte) { b[1] = 0x80 }), errFlags},
		"piggyOnAck":   {func() []byte { b := bytes.Clone(ack); b[1] = flagPiggyAck; return b }(), errFlags},
		"piggyShort":   {mod(func(b []byte) { b[1] = flagPiggyAck }), errShort},
		"reserved":     {mod(func(b []byte) { b[3] = 1 }), errReserved},
		"fragmentOver": {append(eager, 1, 2), errFragment},
		"sackEmpty":    {func() []byte { b := bytes.Clone(ack); b[len(b)-1] = 5; return b }(), errSACKRange},
		"sackCount":    {func() []byte { b := bytes.Clone(ack); b[20] = 17; return b }(), errSACKCount},
		"sackLen":      {func() []byte { b := bytes.Clone(ack); b[20] = 2; return b }(), errLength},
	}
	for name, c := range cases {
		var h header
		if _, err := h.parse(c.b); !errors.Is(err, c.err) {
			t.Errorf("%s: got %v, want %v", name, err, c.err)
		}
	}
}

func TestHeaderNoAlloc(t *testing.T) {
	pkts := samplePackets()
	buf := make([]byte, 0, 256)
	n := testing.AllocsPerRun(100, func() {
		for i := range pkts {
			b := pkts[i].AppendTo(buf[:0])
			var h header
			h.parse(b)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzHeader(f *testing.F) {
	for _, h := range samplePackets() {
		f.Add(h.AppendTo(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h header
		payload, err := h.parse(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		enc := h.AppendTo(nil)
		enc = append(enc, payload...)
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc)
		}
	})
}

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
		{Type: typeAck, Flags: flagDup, DstRank: 1, CumAck: 8, Wnd: 3},
		{Type: typeAck, Flags: flagEcho, DstRank: 1, CumAck: 9, Wnd: 3, Echo: 1<<63 | 5},
		{Type: typeAck, Flags: flagEcho | flagDup, DstRank: 1, CumAck: 9, Echo: 6, DupPSN: 0xfffffff0, NSACK: 2, SACK: [maxSACK]sackRange{{11, 12}, {14, 20}}},
		{Type: typePing, DstRank: 1, DstInc: 3, Echo: 0xfeedface},
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
		{Type: typeEager, Flags: flagAckLazy | flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 12, CumAck: 40, Wnd: 1024, MsgID: 79, Tag: 3, Total: 3, Offset: 0},
		{Type: typeEager, Flags: flagAckLazy, DstRank: 1, DstInc: 2, PSN: 12, MsgID: 79, Tag: 3, Total: 3, Offset: 0},
		{Type: typeCTS, Flags: flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 14, CumAck: 41, Wnd: 7, MsgID: 78, RecvID: 4, Accept: 9},
		{Type: typeFin, Flags: flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 15, CumAck: 42, Wnd: 8, MsgID: 78},
		{Type: typePut, DstRank: 1, DstInc: 2, PSN: 16, MsgID: 80, Region: 3, Secret: 0xfeedface, Offset: 1 << 40, Length: 3},
		{Type: typePut, Flags: flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 17, CumAck: 43, Wnd: 9, MsgID: 81, Region: 3, Secret: 1, Offset: 5, Length: 1 << 30},
		{Type: typePut, DstRank: 1, DstInc: 2, PSN: 18, MsgID: 82, Region: 1, Offset: maxRMA, Length: 0},
		{Type: typeGet, DstRank: 1, DstInc: 2, PSN: 19, MsgID: 83, RecvID: 9, Region: 4, Secret: 2, Offset: 7, Length: maxRMA},
		{Type: typeNak, Flags: flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 20, CumAck: 44, Wnd: 10, MsgID: 84, Code: nakBounds},
		{Type: typeNak, DstRank: 1, DstInc: 2, PSN: 21, MsgID: 85, Code: nakMax},
		{Type: typeMore, DstRank: 1, DstInc: 2, PSN: 22, MsgID: 79, Offset: 1400},
		{Type: typeMore, Flags: flagAckLazy | flagPiggyAck, DstRank: 1, DstInc: 2, PSN: 23, CumAck: 45, Wnd: 11, MsgID: 79, Offset: MaxEagerLimit - 3},
		{Type: typeMore, Flags: flagAckNow, DstRank: 1, DstInc: 2, PSN: 24, MsgID: 79, Offset: 1},
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range samplePackets() {
		b := h.AppendTo(nil)
		if len(b) != h.Len() {
			t.Fatalf("%v: encoded %d bytes, Len %d", h.Type, len(b), h.Len())
		}
		var payload []byte
		if h.Type == typeEager || h.Type == typeMore || h.Type == typeData || h.Type == typePut && h.Length == 3 {
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
	put := (&header{Type: typePut, DstRank: 1, MsgID: 1, Region: 1, Length: 3}).AppendTo(nil)
	get := (&header{Type: typeGet, DstRank: 1, MsgID: 1, Region: 1, Length: 3}).AppendTo(nil)
	nak := (&header{Type: typeNak, DstRank: 1, MsgID: 1, Code: nakDenied}).AppendTo(nil)
	more := func(off uint64, payload int) []byte {
		return append((&header{Type: typeMore, DstRank: 1, MsgID: 1, Offset: off}).AppendTo(nil), make([]byte, payload)...)
	}
	with := func(b []byte, f func(b []byte)) []byte { b = bytes.Clone(b); f(b); return b }
	cases := map[string]struct {
		b   []byte
		err error
	}{
		"empty":        {nil, errShort},
		"type0":        {mod(func(b []byte) { b[0] = 0 }), errType},
		"type99":       {mod(func(b []byte) { b[0] = 99 }), errType},
		"flags":        {mod(func(b []byte) { b[1] = 0x80 }), errFlags},
		"piggyOnAck":   {func() []byte { b := bytes.Clone(ack); b[1] = flagPiggyAck; return b }(), errFlags},
		"dupOnPing":    {(&header{Type: typePing, Flags: flagDup, DstRank: 1}).AppendTo(nil), errFlags},
		"echoOnPing":   {(&header{Type: typePing, Flags: flagEcho, DstRank: 1}).AppendTo(nil), errFlags},
		"lazyOnAck":    {func() []byte { b := bytes.Clone(ack); b[1] = flagAckLazy; return b }(), errFlags},
		"lazyOnPing":   {(&header{Type: typePing, Flags: flagAckLazy, DstRank: 1}).AppendTo(nil), errFlags},
		"lazyAndNow":   {mod(func(b []byte) { b[1] = flagAckLazy | flagAckNow }), errFlags},
		"dupShort":     {(&header{Type: typeAck, Flags: flagDup, DstRank: 1}).AppendTo(nil)[:ackFixedLen+4], errShort},
		"dupReserved":  {with((&header{Type: typeAck, Flags: flagDup, DstRank: 1}).AppendTo(nil), func(b []byte) { b[ackFixedLen+7] = 1 }), errReserved},
		"echoShort":    {(&header{Type: typeAck, Flags: flagEcho, DstRank: 1}).AppendTo(nil)[:ackFixedLen+4], errShort},
		"pingShort":    {(&header{Type: typePing, DstRank: 1}).AppendTo(nil)[:commonLen], errShort},
		"dupOnData":    {mod(func(b []byte) { b[1] = flagDup }), errFlags},
		"piggyShort":   {mod(func(b []byte) { b[1] = flagPiggyAck }), errShort},
		"reserved":     {mod(func(b []byte) { b[3] = 1 }), errReserved},
		"fragmentOver": {append(eager, 1, 2), errFragment},
		"eagerTotal":   {(&header{Type: typeEager, DstRank: 1, MsgID: 1, Total: MaxEagerLimit + 1}).AppendTo(nil), errEagerTotal},
		"sackEmpty":    {func() []byte { b := bytes.Clone(ack); b[len(b)-1] = 5; return b }(), errSACKRange},
		"sackCount":    {func() []byte { b := bytes.Clone(ack); b[20] = 17; return b }(), errSACKCount},
		"sackLen":      {func() []byte { b := bytes.Clone(ack); b[20] = 2; return b }(), errLength},
		"putPartial":   {append(bytes.Clone(put), 1, 2), errInline},
		"putLonger":    {append(bytes.Clone(put), 1, 2, 3, 4), errInline},
		"putOffset":    {with(put, func(b []byte) { b[40] = 0x40; b[47] = 1 }), errRMALength},
		"putLength":    {with(put, func(b []byte) { b[48] = 0x80 }), errRMALength},
		"getLength":    {with(get, func(b []byte) { b[56] = 0x41 }), errRMALength},
		"getTrailing":  {append(bytes.Clone(get), 0), errLength},
		"getShort":     {get[:len(get)-1], errShort},
		"nakCode0":     {with(nak, func(b []byte) { b[27] = 0 }), errNakCode},
		"nakCodeBig":   {with(nak, func(b []byte) { b[27] = nakMax + 1 }), errNakCode},
		"nakCodeHigh":  {with(nak, func(b []byte) { b[24] = 1 }), errNakCode},
		"moreAt0":      {more(0, 3), errFragment},
		"moreOver":     {more(MaxEagerLimit-2, 3), errFragment},
		"moreAtLimit":  {more(MaxEagerLimit, 1), errFragment},
		"moreHuge":     {more(1<<63, 1), errFragment},
		"moreShort":    {more(5, 0)[:moreHdrLen-1], errShort},
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

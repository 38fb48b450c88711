package rendezvous

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// The TCP store protocol, version 1. Every message is one frame:
//
//	length  uint32   bytes that follow this field (6 .. max frame size)
//	version uint8    protocolVersion
//	kind    uint8    frameKind
//	id      uint32   request ID chosen by the client; responses echo it
//	body             kind-specific, below; nothing may follow it
//
// All integers are big-endian. str16 is a uint16 length then that many
// bytes; bytes32 is a uint32 length then that many bytes. Bodies:
//
//	hello    (server→client, id 0)  maxKey uint32, maxValue uint32
//	set      key str16, value bytes32
//	get      key str16
//	add      key str16, delta int64
//	cas      key str16, hasOld uint8 (0|1), [old bytes32 if hasOld], new bytes32
//	wait     timeoutMillis int64 (>= 0; 0 = none), n uint32, n × key str16
//	delete   key str16
//	cancel   (empty) — cancels the pending request whose id this frame carries
//	ping     (empty)
//	response status uint8, flags uint8 (bit 0 value present, bit 1 swapped,
//	         other bits zero), [value bytes32], int int64, msg str16,
//	         n uint32, n × key str16 (the missing keys of a failed wait)
//
// Parsing is strict: an unknown version or kind, a length that disagrees
// with the body, a boolean other than 0 or 1, a reserved bit set, or
// trailing bytes make the frame malformed, and the server drops the
// connection. A well-formed frame therefore has exactly one encoding.

const protocolVersion = 1

// frameHeaderLen is the size of length, version, kind and id.
const frameHeaderLen = 4 + 1 + 1 + 4

// minFrameLen is the smallest value of the length field.
const minFrameLen = frameHeaderLen - 4

type frameKind uint8

const (
	kindHello    frameKind = 1
	kindSet      frameKind = 2
	kindGet      frameKind = 3
	kindAdd      frameKind = 4
	kindCAS      frameKind = 5
	kindWait     frameKind = 6
	kindDelete   frameKind = 7
	kindCancel   frameKind = 8
	kindPing     frameKind = 9
	kindResponse frameKind = 0x80
)

func (k frameKind) String() string {
	switch k {
	case kindHello:
		return "hello"
	case kindSet:
		return "set"
	case kindGet:
		return "get"
	case kindAdd:
		return "add"
	case kindCAS:
		return "compare-and-set"
	case kindWait:
		return "wait"
	case kindDelete:
		return "delete"
	case kindCancel:
		return "cancel"
	case kindPing:
		return "ping"
	case kindResponse:
		return "response"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// status is a response's result code.
type status uint8

const (
	statusOK          status = 0
	statusNotFound    status = 1
	statusTimeout     status = 2
	statusTooLarge    status = 3
	statusInvalidKey  status = 4
	statusNotCounter  status = 5
	statusOverflow    status = 6
	statusCanceled    status = 7
	statusUnavailable status = 8 // server shutting down or backend closed
	statusBadRequest  status = 9 // well-formed frame the server will not serve
	statusInternal    status = 10
	statusBusy        status = 11 // too many pending waits on this connection
	maxStatus                = statusBusy
)

const (
	flagHasValue = 1 << 0
	flagSwapped  = 1 << 1
	flagsKnown   = flagHasValue | flagSwapped
)

// frame is the decoded form of every message. Fields not used by a kind are
// zero. Decoded byte slices alias the input buffer.
type frame struct {
	Kind frameKind
	ID   uint32

	Key      string   // set, get, add, cas, delete
	Keys     []string // wait: keys; response: missing keys
	Value    []byte   // set: value; cas: new; response: value if HasValue
	HasValue bool     // response
	Old      []byte   // cas, if HasOld
	HasOld   bool     // cas
	Int      int64    // add: delta; wait: timeout ms; response: counter
	Status   status   // response
	Swapped  bool     // response
	Msg      string   // response

	MaxKey, MaxValue uint32 // hello
}

// frameError describes a malformed frame; it wraps ErrProtocol.
type frameError struct {
	field string
	msg   string
}

func (e *frameError) Error() string {
	return "rendezvous: malformed frame: " + e.field + ": " + e.msg
}

func (e *frameError) Unwrap() error { return ErrProtocol }

func badFrame(field, format string, args ...any) error {
	return &frameError{field: field, msg: fmt.Sprintf(format, args...)}
}

// appendFrame appends the encoding of f to b.
func appendFrame(b []byte, f *frame) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, protocolVersion, byte(f.Kind))
	b = binary.BigEndian.AppendUint32(b, f.ID)
	var err error
	switch f.Kind {
	case kindHello:
		b = binary.BigEndian.AppendUint32(b, f.MaxKey)
		b = binary.BigEndian.AppendUint32(b, f.MaxValue)
	case kindSet:
		if b, err = appendStr16(b, "key", f.Key); err == nil {
			b, err = appendBytes32(b, "value", f.Value)
		}
	case kindGet, kindDelete:
		b, err = appendStr16(b, "key", f.Key)
	case kindAdd:
		b, err = appendStr16(b, "key", f.Key)
		b = binary.BigEndian.AppendUint64(b, uint64(f.Int))
	case kindCAS:
		if b, err = appendStr16(b, "key", f.Key); err != nil {
			break
		}
		if f.HasOld {
			b = append(b, 1)
			if b, err = appendBytes32(b, "old", f.Old); err != nil {
				break
			}
		} else {
			b = append(b, 0)
		}
		b, err = appendBytes32(b, "new", f.Value)
	case kindWait:
		if f.Int < 0 {
			return b[:start], badFrame("timeout", "negative (%d)", f.Int)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(f.Int))
		b, err = appendKeys(b, f.Keys)
	case kindCancel, kindPing:
	case kindResponse:
		if f.Status > maxStatus {
			return b[:start], badFrame("status", "unknown (%d)", f.Status)
		}
		var flags byte
		if f.HasValue {
			flags |= flagHasValue
		}
		if f.Swapped {
			flags |= flagSwapped
		}
		b = append(b, byte(f.Status), flags)
		if f.HasValue {
			if b, err = appendBytes32(b, "value", f.Value); err != nil {
				break
			}
		}
		b = binary.BigEndian.AppendUint64(b, uint64(f.Int))
		if b, err = appendStr16(b, "msg", f.Msg); err != nil {
			break
		}
		b, err = appendKeys(b, f.Keys)
	default:
		return b[:start], badFrame("kind", "unknown (%d)", uint8(f.Kind))
	}
	if err != nil {
		return b[:start], err
	}
	n := len(b) - start - 4
	if uint64(n) > math.MaxUint32 {
		return b[:start], badFrame("length", "frame of %d bytes", n)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	return b, nil
}

func appendStr16(b []byte, field, s string) ([]byte, error) {
	if len(s) > math.MaxUint16 {
		return b, badFrame(field, "%d bytes do not fit a 16-bit length", len(s))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

func appendBytes32(b []byte, field string, v []byte) ([]byte, error) {
	if uint64(len(v)) > math.MaxUint32 {
		return b, badFrame(field, "%d bytes do not fit a 32-bit length", len(v))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...), nil
}

func appendKeys(b []byte, keys []string) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	var err error
	for _, k := range keys {
		if b, err = appendStr16(b, "keys", k); err != nil {
			return b, err
		}
	}
	return b, nil
}

// decoder reads a frame body, checking every length before it reads.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = badFrame(field, "needs %d bytes, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8(field string) uint8 {
	if v := d.take(field, 1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if v := d.take(field, 2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if v := d.take(field, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) i64(field string) int64 {
	if v := d.take(field, 8); v != nil {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func (d *decoder) str16(field string) string {
	n := d.u16(field)
	return string(d.take(field, int(n)))
}

func (d *decoder) bytes32(field string) []byte {
	n := d.u32(field)
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = badFrame(field, "length %d exceeds the %d bytes left", n, len(d.b))
		return nil
	}
	v := d.take(field, int(n))
	if v == nil {
		v = []byte{}
	}
	return v
}

func (d *decoder) bool(field string) bool {
	switch v := d.u8(field); v {
	case 0:
		return false
	case 1:
		return true
	default:
		if d.err == nil {
			d.err = badFrame(field, "boolean is %d, want 0 or 1", v)
		}
		return false
	}
}

func (d *decoder) keys() []string {
	n := d.u32("keys")
	if d.err != nil {
		return nil
	}
	// Each key takes at least its 2-byte length: bound n before allocating.
	if uint64(n)*2 > uint64(len(d.b)) {
		d.err = badFrame("keys", "count %d cannot fit in %d bytes", n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	keys := make([]string, 0, n)
	for range n {
		keys = append(keys, d.str16("keys"))
		if d.err != nil {
			return nil
		}
	}
	return keys
}

// decodeFrame parses one complete frame, length field included. It never
// panics, whatever b holds.
func decodeFrame(b []byte) (frame, error) {
	var f frame
	if len(b) < frameHeaderLen {
		return f, badFrame("header", "%d bytes, want at least %d", len(b), frameHeaderLen)
	}
	if n := binary.BigEndian.Uint32(b); uint64(n) != uint64(len(b)-4) {
		return f, badFrame("length", "field says %d, frame has %d", n, len(b)-4)
	}
	if b[4] != protocolVersion {
		return f, badFrame("version", "%d, this implementation speaks %d", b[4], protocolVersion)
	}
	f.Kind = frameKind(b[5])
	f.ID = binary.BigEndian.Uint32(b[6:])
	d := decoder{b: b[frameHeaderLen:]}
	switch f.Kind {
	case kindHello:
		f.MaxKey = d.u32("maxKey")
		f.MaxValue = d.u32("maxValue")
	case kindSet:
		f.Key = d.str16("key")
		f.Value = d.bytes32("value")
	case kindGet, kindDelete:
		f.Key = d.str16("key")
	case kindAdd:
		f.Key = d.str16("key")
		f.Int = d.i64("delta")
	case kindCAS:
		f.Key = d.str16("key")
		if f.HasOld = d.bool("hasOld"); f.HasOld {
			f.Old = d.bytes32("old")
		}
		f.Value = d.bytes32("new")
	case kindWait:
		f.Int = d.i64("timeout")
		if d.err == nil && f.Int < 0 {
			d.err = badFrame("timeout", "negative (%d)", f.Int)
		}
		f.Keys = d.keys()
	case kindCancel, kindPing:
	case kindResponse:
		f.Status = status(d.u8("status"))
		if d.err == nil && f.Status > maxStatus {
			d.err = badFrame("status", "unknown (%d)", f.Status)
		}
		flags := d.u8("flags")
		if d.err == nil && flags&^flagsKnown != 0 {
			d.err = badFrame("flags", "reserved bits set (%#x)", flags)
		}
		f.HasValue = flags&flagHasValue != 0
		f.Swapped = flags&flagSwapped != 0
		if f.HasValue {
			f.Value = d.bytes32("value")
		}
		f.Int = d.i64("int")
		f.Msg = d.str16("msg")
		f.Keys = d.keys()
	default:
		return frame{}, badFrame("kind", "unknown (%d)", b[5])
	}
	if d.err != nil {
		return frame{}, d.err
	}
	if len(d.b) != 0 {
		return frame{}, badFrame(f.Kind.String(), "%d trailing bytes", len(d.b))
	}
	return f, nil
}

// readChunk is the step in which readFrame grows its buffer.
const readChunk = 64 << 10

// errFrameTooLarge is returned by readFrame for a length over the maximum.
var errFrameTooLarge = errors.New("frame too large")

// readFrame reads one frame of at most maxLen bytes (after the length
// field) from r. The returned frame owns a fresh buffer. onStart, if not
// nil, is called once the first byte of the frame has arrived; the server
// uses it to switch from the idle deadline to the frame deadline.
func readFrame(r *bufio.Reader, maxLen int, onStart func()) (frame, error) {
	if _, err := r.Peek(1); err != nil {
		return frame{}, err
	}
	if onStart != nil {
		onStart()
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, noEOF(err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < minFrameLen {
		return frame{}, badFrame("length", "%d is below the minimum %d", n, minFrameLen)
	}
	if uint64(n) > uint64(maxLen) {
		return frame{}, fmt.Errorf("%w: %w: length %d exceeds the %d-byte limit", ErrProtocol, errFrameTooLarge, n, maxLen)
	}
	// Grow the buffer as bytes arrive, so that a peer announcing a large
	// frame and sending little pins little memory.
	total := 4 + int(n)
	buf := make([]byte, 4, min(total, 4+readChunk))
	copy(buf, hdr[:])
	for len(buf) < total {
		need := min(total-len(buf), readChunk)
		buf = slices.Grow(buf, need)
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+need])
		buf = buf[:len(buf)+m]
		if err != nil {
			return frame{}, noEOF(err)
		}
	}
	return decodeFrame(buf)
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// maxFrameLen is the largest frame that requests within lim can need: a
// compare-and-set carries a key and two values.
func maxFrameLen(lim Limits) int {
	return minFrameLen + 2 + lim.MaxKeySize + 1 + 2*(4+lim.MaxValueSize) + 64
}

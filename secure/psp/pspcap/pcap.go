package pspcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Classic pcap (the libpcap file format, not pcapng): a 24-byte file header
// then records of a 16-byte header and the captured bytes. The magic number
// gives the byte order and the timestamp resolution.
const (
	magicMicro = 0xa1b2c3d4
	magicNano  = 0xa1b23c4d

	fileHeaderLen   = 24
	recordHeaderLen = 16

	// LinkTypeEthernet is DLT_EN10MB, the only link type the reference and
	// this package process.
	LinkTypeEthernet = 1
	// ReferenceSnapLen is the snapshot length the reference writes
	// (ETH_JUMBO_MAX_OCTETS).
	ReferenceSnapLen = 9014
	// MaxRecordLen bounds a record's captured length (libpcap's own
	// limit), so a corrupt length cannot make the reader allocate without
	// bound.
	MaxRecordLen = 262144
)

// ErrFormat reports a malformed pcap file.
var ErrFormat = errors.New("pspcap: malformed pcap file")

// FileHeader is a pcap file header.
type FileHeader struct {
	// BigEndian is the byte order of the file's header fields.
	BigEndian bool
	// Nano says timestamps carry nanoseconds (magic 0xa1b23c4d) rather
	// than microseconds.
	Nano         bool
	VersionMajor uint16
	VersionMinor uint16
	ThisZone     int32
	SigFigs      uint32
	SnapLen      uint32
	LinkType     uint32
}

// ReferenceHeader is the header the reference implementation writes:
// little-endian (its x86 host), microseconds, version 2.4, snapshot length
// 9014, Ethernet.
func ReferenceHeader() FileHeader {
	return FileHeader{VersionMajor: 2, VersionMinor: 4, SnapLen: ReferenceSnapLen, LinkType: LinkTypeEthernet}
}

func (h *FileHeader) order() binary.ByteOrder {
	if h.BigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// Record is one captured packet. Data is valid until the next call to
// Reader.Next.
type Record struct {
	Sec uint32
	// Frac is the sub-second part of the timestamp, in microseconds or
	// nanoseconds as the file header says.
	Frac    uint32
	OrigLen uint32
	Data    []byte
}

// Reader reads a classic pcap file. It never panics on malformed input:
// every inconsistency is an error wrapping ErrFormat.
type Reader struct {
	r   io.Reader
	h   FileHeader
	hdr [recordHeaderLen]byte
	buf []byte
	n   int // records read
}

// NewReader reads the file header from r.
func NewReader(r io.Reader) (*Reader, error) {
	var b [fileHeaderLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("%w: file header: %w", ErrFormat, noEOF(err))
	}
	var h FileHeader
	switch {
	case binary.LittleEndian.Uint32(b[:]) == magicMicro:
	case binary.LittleEndian.Uint32(b[:]) == magicNano:
		h.Nano = true
	case binary.BigEndian.Uint32(b[:]) == magicMicro:
		h.BigEndian = true
	case binary.BigEndian.Uint32(b[:]) == magicNano:
		h.BigEndian, h.Nano = true, true
	default:
		return nil, fmt.Errorf("%w: magic %x is not classic pcap (pcapng is not supported)", ErrFormat, b[:4])
	}
	o := h.order()
	h.VersionMajor = o.Uint16(b[4:])
	h.VersionMinor = o.Uint16(b[6:])
	h.ThisZone = int32(o.Uint32(b[8:]))
	h.SigFigs = o.Uint32(b[12:])
	h.SnapLen = o.Uint32(b[16:])
	h.LinkType = o.Uint32(b[20:])
	if h.VersionMajor != 2 {
		return nil, fmt.Errorf("%w: version %d.%d, want 2.x", ErrFormat, h.VersionMajor, h.VersionMinor)
	}
	return &Reader{r: r, h: h}, nil
}

// Header returns the file header.
func (r *Reader) Header() FileHeader { return r.h }

// Next returns the next record, or io.EOF after the last one. A file that
// ends inside a record is an error wrapping ErrFormat.
func (r *Reader) Next() (Record, error) {
	var rec Record
	n, err := io.ReadFull(r.r, r.hdr[:])
	if n == 0 && err == io.EOF {
		return rec, io.EOF
	}
	if err != nil {
		return rec, fmt.Errorf("%w: record %d header: %w", ErrFormat, r.n+1, noEOF(err))
	}
	o := r.h.order()
	rec.Sec = o.Uint32(r.hdr[0:])
	rec.Frac = o.Uint32(r.hdr[4:])
	capLen := o.Uint32(r.hdr[8:])
	rec.OrigLen = o.Uint32(r.hdr[12:])
	limit := uint32(1e6)
	if r.h.Nano {
		limit = 1e9
	}
	if rec.Frac >= limit {
		return rec, fmt.Errorf("%w: record %d: sub-second timestamp %d out of range", ErrFormat, r.n+1, rec.Frac)
	}
	if capLen > MaxRecordLen {
		return rec, fmt.Errorf("%w: record %d: captured length %d over %d", ErrFormat, r.n+1, capLen, MaxRecordLen)
	}
	if rec.OrigLen < capLen {
		return rec, fmt.Errorf("%w: record %d: original length %d under captured length %d", ErrFormat, r.n+1, rec.OrigLen, capLen)
	}
	if cap(r.buf) < int(capLen) {
		r.buf = make([]byte, capLen)
	}
	rec.Data = r.buf[:capLen]
	if _, err := io.ReadFull(r.r, rec.Data); err != nil {
		return Record{}, fmt.Errorf("%w: record %d data: %w", ErrFormat, r.n+1, noEOF(err))
	}
	r.n++
	return rec, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Writer writes a classic pcap file.
type Writer struct {
	w   io.Writer
	h   FileHeader
	buf []byte
}

// NewWriter writes the file header h to w.
func NewWriter(w io.Writer, h FileHeader) (*Writer, error) {
	wr := &Writer{w: w, h: h}
	o := h.order()
	var b [fileHeaderLen]byte
	magic := uint32(magicMicro)
	if h.Nano {
		magic = magicNano
	}
	o.PutUint32(b[0:], magic)
	o.PutUint16(b[4:], h.VersionMajor)
	o.PutUint16(b[6:], h.VersionMinor)
	o.PutUint32(b[8:], uint32(h.ThisZone))
	o.PutUint32(b[12:], h.SigFigs)
	o.PutUint32(b[16:], h.SnapLen)
	o.PutUint32(b[20:], h.LinkType)
	if _, err := w.Write(b[:]); err != nil {
		return nil, fmt.Errorf("pspcap: writing pcap header: %w", err)
	}
	return wr, nil
}

// Write writes one record. rec.OrigLen 0 means len(rec.Data).
func (w *Writer) Write(rec Record) error {
	if len(rec.Data) > MaxRecordLen {
		return fmt.Errorf("%w: record of %d bytes over %d", ErrFormat, len(rec.Data), MaxRecordLen)
	}
	orig := rec.OrigLen
	if orig == 0 {
		orig = uint32(len(rec.Data))
	}
	o := w.h.order()
	var hdr [recordHeaderLen]byte
	o.PutUint32(hdr[0:], rec.Sec)
	o.PutUint32(hdr[4:], rec.Frac)
	o.PutUint32(hdr[8:], uint32(len(rec.Data)))
	o.PutUint32(hdr[12:], orig)
	w.buf = append(append(w.buf[:0], hdr[:]...), rec.Data...)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("pspcap: writing pcap record: %w", err)
	}
	return nil
}

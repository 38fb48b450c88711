package psp

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so callers can test with errors.Is; the wrapping error says which
// field or limit was at fault.
var (
	// ErrTruncated: the packet is shorter than its headers, its crypt
	// offset or its 16-byte ICV.
	ErrTruncated = errors.New("psp: packet truncated")
	// ErrVersion: the PSP header's version is not 0–3, or not the one the
	// security association was created for.
	ErrVersion = errors.New("psp: unsupported PSP version")
	// ErrHeader: a PSP header field is malformed (the always-one bit is
	// clear, Hdr Ext Len disagrees with the V bit).
	ErrHeader = errors.New("psp: malformed PSP header")
	// ErrField: a header field value cannot be encoded (too large for its
	// width).
	ErrField = errors.New("psp: header field out of range")
	// ErrAuth: the ICV did not verify (wrong key, tampered packet).
	ErrAuth = errors.New("psp: message authentication failed")
	// ErrSPI: the packet's SPI is not the security association's.
	ErrSPI = errors.New("psp: SPI does not match the security association")
	// ErrNotPSP: the IP packet is not PSP over UDP to the PSP port.
	ErrNotPSP = errors.New("psp: not a PSP packet")
	// ErrIP: the IP or UDP headers are malformed or inconsistent (lengths,
	// IP version, IPv4 header length).
	ErrIP = errors.New("psp: malformed IP or UDP header")
	// ErrIVExhausted: the sender's 64-bit IV counter is used up; the
	// security association must be replaced.
	ErrIVExhausted = errors.New("psp: IV space exhausted, use a new SPI")
	// ErrSPIExhausted: the current master key has no SPI left; call
	// Server.Rotate.
	ErrSPIExhausted = errors.New("psp: SPI space of the current master key exhausted, rotate")
	// ErrConfig: a configuration or key is invalid.
	ErrConfig = errors.New("psp: invalid configuration")
	// ErrKeySize: a key has the wrong length for its version.
	ErrKeySize = errors.New("psp: invalid key size")
)

// fieldError is a precise, preallocated error that wraps a sentinel, so a
// flood of malformed packets costs no allocations on the receive path.
type fieldError struct {
	msg string
	err error
}

func (e *fieldError) Error() string { return e.msg }
func (e *fieldError) Unwrap() error { return e.err }

func newFieldError(sentinel error, detail string) error {
	return &fieldError{msg: sentinel.Error() + ": " + detail, err: sentinel}
}

var (
	errShortHeader   = newFieldError(ErrTruncated, "fewer than 16 bytes, no PSP header")
	errShortExt      = newFieldError(ErrTruncated, "fewer bytes than the header's Hdr Ext Len")
	errShortICV      = newFieldError(ErrTruncated, "no room for the 16-byte ICV after the header and crypt offset")
	errCryptOffset   = newFieldError(ErrTruncated, "crypt offset points past the end of the payload")
	errAlwaysOne     = newFieldError(ErrHeader, "bit 0 of byte 3 (always 1) is clear")
	errExtLen        = newFieldError(ErrHeader, "Hdr Ext Len must be 1 (no VC) or 2 (V bit set, 8-byte VC)")
	errVersionField  = newFieldError(ErrVersion, "version must be 0 (AES-GCM-128), 1 (AES-GCM-256), 2 (AES-GMAC-128) or 3 (AES-GMAC-256)")
	errVersionSA     = newFieldError(ErrVersion, "packet version differs from the security association's")
	errSPIMismatch   = newFieldError(ErrSPI, "packet SPI differs from the security association's")
	errCryptOffRange = newFieldError(ErrField, "crypt offset over 63 words (6 bits)")
	errReservedRange = newFieldError(ErrField, "reserved bits over 2 bits")
	errAuth          = newFieldError(ErrAuth, "ICV mismatch")
	errNotUDP        = newFieldError(ErrNotPSP, "IP protocol / next header is not UDP")
	errNotPort       = newFieldError(ErrNotPSP, "UDP destination port is not the PSP port")
	errIPVersion     = newFieldError(ErrIP, "IP version is neither 4 nor 6")
	errIPShort       = newFieldError(ErrIP, "packet shorter than its IP header")
	errIPLen         = newFieldError(ErrIP, "IP length field disagrees with the packet length")
	errIHL           = newFieldError(ErrIP, "IPv4 header length under 20 bytes or past the packet")
	errUDPLen        = newFieldError(ErrIP, "UDP length disagrees with the IP payload length")
	errUDPShort      = newFieldError(ErrIP, "IP payload shorter than the UDP header")
	errTooLong       = newFieldError(ErrIP, "encapsulated packet would exceed 65535 bytes")
	errHeadroom      = newFieldError(ErrConfig, "buffer has too little headroom before the IP packet")
	errInnerShort    = newFieldError(ErrIP, "tunnel payload too short for its inner IP header")
	errInnerCryptOff = newFieldError(ErrTruncated, "crypt offset longer than the inner payload")
)

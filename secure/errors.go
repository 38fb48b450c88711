package secure

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so callers can test with errors.Is; the wrapping error says which
// field or limit was at fault.
var (
	// ErrTruncated: the packet is shorter than its header or its tag.
	ErrTruncated = errors.New("secure: packet truncated")
	// ErrVersion: the header's version is not 1.
	ErrVersion = errors.New("secure: unsupported header version")
	// ErrMode: the header's key-context mode V is not defined.
	ErrMode = errors.New("secure: unknown key-context mode")
	// ErrHeaderLen: HL disagrees with the mode and options.
	ErrHeaderLen = errors.New("secure: header length mismatch")
	// ErrOption: an option type or length is not defined, or malformed.
	ErrOption = errors.New("secure: bad master-key option")
	// ErrOffset: COffset or IOffset points outside the packet.
	ErrOffset = errors.New("secure: offset outside packet")
	// ErrField: a header field value cannot be encoded (too large for its width).
	ErrField = errors.New("secure: header field out of range")
	// ErrAuth: authentication failed (wrong key, tampered packet).
	ErrAuth = errors.New("secure: message authentication failed")
	// ErrUnknownGroup: the packet names a trust group this opener does not hold.
	ErrUnknownGroup = errors.New("secure: unknown trust group")
	// ErrKeyIndex: the packet's root-key index names a key generation that is
	// in none of the previous/current/next slots.
	ErrKeyIndex = errors.New("secure: root key not held")
	// ErrEpoch: the packet's epoch is outside the receiver's window.
	ErrEpoch = errors.New("secure: epoch outside window")
	// ErrCounterExhausted: the sender's 48-bit counter is used up for this
	// data key; call Sealer.BumpEpoch (or have the controller bump the
	// group's epoch) before sending again.
	ErrCounterExhausted = errors.New("secure: counter exhausted, bump the epoch")
	// ErrEpochExhausted: the 16-bit epoch cannot advance further; rotate a
	// root key to get fresh master keys.
	ErrEpochExhausted = errors.New("secure: epoch exhausted, rotate a root key")
	// ErrConfig: a configuration or key is invalid.
	ErrConfig = errors.New("secure: invalid configuration")
	// ErrOverlap: OpenTo's destination overlaps the packet.
	ErrOverlap = errors.New("secure: destination overlaps the packet")
	// ErrKeySize: a key has the wrong length.
	ErrKeySize = errors.New("secure: invalid key size")
)

// fieldError is a precise, preallocated error that wraps a sentinel. Parse
// errors are values built once, so a flood of malformed packets costs no
// allocations on the receive path.
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
	errShortWord0    = newFieldError(ErrTruncated, "fewer than 4 bytes, no header word")
	errShortHeader   = newFieldError(ErrTruncated, "fewer bytes than HL*4")
	errShortTag      = newFieldError(ErrTruncated, "no room for the 16-byte tag after the header and COffset")
	errHLSmall       = newFieldError(ErrHeaderLen, "HL smaller than the fixed fields of this mode")
	errOptShort      = newFieldError(ErrHeaderLen, "option space shorter than an option's type and length")
	errOptLenHL      = newFieldError(ErrHeaderLen, "option length disagrees with HL")
	errOptType       = newFieldError(ErrOption, "unknown option type")
	errOptLen        = newFieldError(ErrOption, "option length not 4, 20 or 36")
	errOptIndex      = newFieldError(ErrOption, "root-key index has reserved bits set")
	errCOffset       = newFieldError(ErrOffset, "COffset points past the ciphertext")
	errIOffset       = newFieldError(ErrOffset, "IOffset points before the start of the packet")
	errShortDst      = newFieldError(ErrTruncated, "destination shorter than the payload")
	errDeviceIDRange = newFieldError(ErrField, "sender ID does not fit in 4 bytes (ModeDevice)")
	errCounterRange  = newFieldError(ErrField, "counter does not fit in 48 bits")
	errIOffsetRange  = newFieldError(ErrField, "IOffset over 15 words")
	errGroupIDLen    = newFieldError(ErrField, "group ID must be 16 or 32 bytes")
	errModeField     = newFieldError(ErrMode, "mode must be 1 (sender), 2 (flow) or 3 (device)")
	errIndexField    = newFieldError(ErrField, "root-key index has bits above 6 set")
	errHeaderTooLong = newFieldError(ErrField, "header longer than 60 bytes")
)

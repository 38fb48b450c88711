package collectives

// Tag layout (64 bits), so that collectives never match each other's
// messages and leave the lower half of the tag space to applications that
// share the Conn's endpoint:
//
//	bit  63      1: the collectives' namespace
//	bits 62..32  communicator ID (31 bits; Options.ID, derived by Split)
//	bits 31..16  collective sequence number (16 bits, wraps; 0 = control)
//	bits 15..12  algorithm / collective kind (kind* constants)
//	bits 11..0   step within the collective (wraps at 4096)
//
// Steps that wrap, and segments of one step, reuse a tag: the Conn keeps
// per-(peer, tag) order and both sides post in the same order, so they match
// correctly; the distinct fields only make mismatched calls fail (by size or
// by timeout) instead of pairing wrong messages.
const (
	tagNamespace = uint64(1) << 63
	idShift      = 32
	seqShift     = 16
	kindShift    = 12
	stepMask     = 1<<12 - 1
)

// Kinds: one per algorithm, so ranks that chose different algorithms (which
// happens only if their arguments differ) never pair messages.
const (
	kindControl uint8 = iota
	kindRingAllReduce
	kindRDAllReduce
	kindRabenseifner
	kindBcastTree
	kindBcastChain
	kindReduce
	kindAllGatherRing
	kindAllGatherRD
	kindReduceScatterRing
	kindReduceScatterHalving
	kindBarrier
	kindAllToAll
	kindGather
	kindScatter
	kindSplit
)

// Control steps (seq 0).
const (
	ctrlAbort = 1
)

func makeTag(id uint32, seq uint16, kind uint8, step int) uint64 {
	return tagNamespace | uint64(id&(1<<31-1))<<idShift | uint64(seq)<<seqShift |
		uint64(kind&0xf)<<kindShift | uint64(step&stepMask)
}

package collectives

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// DefaultTimeout bounds each collective whose context has no deadline.
const DefaultTimeout = 60 * time.Second

// AlgoEnvVar is the environment variable that forces the AllReduce
// algorithm: ring, rd, rabenseifner or auto. It is read by New, and it
// overrides Options.Algorithm; an unknown value makes New fail.
const AlgoEnvVar = "SEALRING_ALGO"

// Algorithm is an AllReduce algorithm.
type Algorithm uint8

// The AllReduce algorithms.
const (
	// Auto chooses by message size and rank count (Tuning, ChooseAllReduce).
	Auto Algorithm = iota
	// Ring is reduce-scatter then allgather around a ring, pipelined in
	// segments: 2(n-1) steps, 2(n-1)/n of the buffer sent per rank.
	Ring
	// RecursiveDoubling exchanges the whole buffer with partners at
	// distance 1, 2, 4, ...: ⌈log2 n⌉ steps (+2 when n is not a power of
	// two), the whole buffer sent at each step. For small messages.
	RecursiveDoubling
	// Rabenseifner is reduce-scatter by recursive halving then allgather by
	// recursive doubling: 2·log2 p steps, 2(p-1)/p of the buffer sent, p
	// the largest power of two ≤ n (the others fold in first).
	Rabenseifner
	numAlgorithms
)

var algoNames = [numAlgorithms]string{"auto", "ring", "rd", "rabenseifner"}

// String returns the name SEALRING_ALGO uses (auto, ring, rd, rabenseifner).
func (a Algorithm) String() string {
	if a < numAlgorithms {
		return algoNames[a]
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// ParseAlgorithm parses an algorithm name as SEALRING_ALGO spells it ("" is
// Auto; "recursive-doubling" is accepted for rd).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "ring":
		return Ring, nil
	case "rd", "recursive-doubling", "recursive_doubling":
		return RecursiveDoubling, nil
	case "rabenseifner", "halving-doubling":
		return Rabenseifner, nil
	}
	return Auto, fmt.Errorf("%w: unknown AllReduce algorithm %q (want ring, rd, rabenseifner or auto)", ErrInvalid, s)
}

// Tuning holds the crossover points of the automatic algorithm choices.
// They are guesses for an encrypted UDP transport with per-message costs of
// tens of microseconds, to be re-measured (see NOTES.md); zero fields take
// the DefaultTuning values.
type Tuning struct {
	// AllReduce: messages of at most RDMaxBytes use recursive doubling;
	// on communicators of 2 or 3 ranks the limit is RDMaxBytesFewRanks
	// (there recursive doubling moves as little data as the ring, or
	// nearly, in fewer rounds).
	RDMaxBytes         int
	RDMaxBytesFewRanks int
	// AllReduce: larger messages of at most RabenseifnerMaxBytes use
	// Rabenseifner when the rank count is a power of two, and up to
	// RabenseifnerMaxBytesFolded otherwise (the fold sends the whole buffer
	// twice more on the folded ranks); beyond that, Ring.
	RabenseifnerMaxBytes       int
	RabenseifnerMaxBytesFolded int
	// SegmentBytes is the pipeline segment of Ring and of the Broadcast
	// chain: transfers are cut into segments of about this size so that the
	// reduction (or forwarding) of one overlaps the transfer of the next.
	SegmentBytes int
	// PipelineDepth is how many segment receives Ring keeps posted (in
	// place, each reduce-scatter receive has its own scratch buffer of
	// SegmentBytes; out of place they land in recv): 2 is double
	// buffering.
	PipelineDepth int
	// BcastTreeMaxBytes: broadcasts of at most this use a binomial tree,
	// larger ones a pipelined chain.
	BcastTreeMaxBytes int
	// AllGatherRDMaxBytes: allgathers whose total output is at most this
	// use recursive doubling (Bruck when n is not a power of two), larger
	// ones a ring.
	AllGatherRDMaxBytes int
	// ReduceScatterHalvingMaxBytes: reduce-scatters of at most this many
	// input bytes use recursive halving when n is a power of two, larger
	// ones (and every other n) a ring.
	ReduceScatterHalvingMaxBytes int
	// AllToAllWindow is how many pairwise exchange steps AllToAll keeps in
	// flight.
	AllToAllWindow int
	// ExchangeEagerBytes: the sends of an exchange step (recursive
	// doubling, the halving and doubling steps, Bruck, and the fold's
	// one-way transfers) of at most this many bytes skip the transport's
	// rendezvous handshake when the Conn is an EagerSender: the peer posts
	// its receive at the start of the step and nothing else is in flight
	// to it, so the handshake would only add a round trip. 0 means the
	// default (1 MiB); negative means never (unlike the other fields,
	// where negative also means the default).
	ExchangeEagerBytes int
}

// DefaultTuning returns the values used for the zero fields of Options.Tuning.
func DefaultTuning() Tuning {
	return Tuning{
		RDMaxBytes:                   64 << 10,
		RDMaxBytesFewRanks:           1 << 20,
		RabenseifnerMaxBytes:         4 << 20,
		RabenseifnerMaxBytesFolded:   512 << 10,
		SegmentBytes:                 256 << 10,
		PipelineDepth:                4,
		BcastTreeMaxBytes:            256 << 10,
		AllGatherRDMaxBytes:          64 << 10,
		ReduceScatterHalvingMaxBytes: 1 << 20,
		AllToAllWindow:               4,
		ExchangeEagerBytes:           1 << 20,
	}
}

func (t Tuning) withDefaults() Tuning {
	d := DefaultTuning()
	set := func(p *int, def int) {
		if *p <= 0 {
			*p = def
		}
	}
	set(&t.RDMaxBytes, d.RDMaxBytes)
	set(&t.RDMaxBytesFewRanks, d.RDMaxBytesFewRanks)
	set(&t.RabenseifnerMaxBytes, d.RabenseifnerMaxBytes)
	set(&t.RabenseifnerMaxBytesFolded, d.RabenseifnerMaxBytesFolded)
	set(&t.SegmentBytes, d.SegmentBytes)
	set(&t.PipelineDepth, d.PipelineDepth)
	set(&t.BcastTreeMaxBytes, d.BcastTreeMaxBytes)
	set(&t.AllGatherRDMaxBytes, d.AllGatherRDMaxBytes)
	set(&t.ReduceScatterHalvingMaxBytes, d.ReduceScatterHalvingMaxBytes)
	set(&t.AllToAllWindow, d.AllToAllWindow)
	if t.ExchangeEagerBytes == 0 {
		t.ExchangeEagerBytes = d.ExchangeEagerBytes
	}
	return t
}

// SplitInfo describes a sub-communicator being created by Split; it is
// given to Options.NewConn.
type SplitInfo struct {
	// ParentID and ID are the communicator IDs (the tag namespace) of the
	// parent and of the new communicator.
	ParentID, ID uint32
	// Color and Key are this rank's Split arguments.
	Color, Key int
	// Rank and Size are this rank's rank in, and the size of, the new
	// communicator.
	Rank, Size int
	// ParentRanks[i] is the parent rank of the new communicator's rank i.
	ParentRanks []int
}

// Options configures a Communicator. The zero value is usable.
type Options struct {
	// ID is the communicator's 31-bit ID, which namespaces its tags.
	// Communicators sharing a Conn (for instance two worlds over one
	// endpoint) need different IDs. 0 means 1. Split derives the IDs of
	// sub-communicators.
	ID uint32
	// Timeout bounds each collective whose ctx has no deadline. 0 means
	// DefaultTimeout (60 s); negative means no bound. It is enforced by a
	// timer that cancels the collective's context (the error wraps
	// ErrTimeout and context.DeadlineExceeded); that context's Deadline
	// does not report it.
	Timeout time.Duration
	// Algorithm forces an AllReduce algorithm; Auto (the zero value)
	// chooses by size. The SEALRING_ALGO environment variable overrides it.
	Algorithm Algorithm
	// Tuning adjusts the automatic choices; zero fields keep DefaultTuning.
	Tuning Tuning
	// NewConn, if set, is called by Split on every rank that joins a
	// sub-communicator, to give it its own Conn (for instance an endpoint
	// keyed with the sub-group's own task-group root key). That Conn
	// addresses the sub-communicator's ranks 0..Size-1. If nil (or if it
	// returns a nil Conn), the sub-communicator shares its parent's Conn
	// and tags keep them apart.
	NewConn func(ctx context.Context, info SplitInfo) (Conn, error)
	// NoAbortPropagation turns off the abort messages a failing rank sends
	// to the others (and the receive each communicator posts for them).
	NoAbortPropagation bool
}

// resolve fills defaults and applies the environment.
func (o Options) resolve() (Options, error) {
	if o.ID == 0 {
		o.ID = 1
	}
	if o.ID >= 1<<31 {
		return o, fmt.Errorf("%w: Options.ID %#x does not fit in 31 bits", ErrInvalid, o.ID)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Algorithm >= numAlgorithms {
		return o, fmt.Errorf("%w: Options.Algorithm %d", ErrInvalid, o.Algorithm)
	}
	if v, ok := os.LookupEnv(AlgoEnvVar); ok {
		a, err := ParseAlgorithm(v)
		if err != nil {
			return o, fmt.Errorf("%s: %w", AlgoEnvVar, err)
		}
		if a != Auto || strings.TrimSpace(v) != "" {
			o.Algorithm = a
		}
	}
	o.Tuning = o.Tuning.withDefaults()
	return o, nil
}

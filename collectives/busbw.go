package collectives

// Kind names a collective for the bandwidth helpers.
type Kind uint8

// Collective kinds.
const (
	KindAllReduce Kind = iota
	KindReduceScatter
	KindAllGather
	KindBroadcast
	KindReduce
	KindAllToAll
)

// AlgBandwidth returns bytes/seconds: the "algbw" of nccl-tests. bytes is
// the nccl-tests "size": the buffer for AllReduce, Broadcast and Reduce;
// the whole (n·count) output of AllGather and input of ReduceScatter; the
// whole send buffer of AllToAll.
func AlgBandwidth(bytes int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(bytes) / seconds
}

// BusBandwidth returns the "busbw" of nccl-tests in bytes per second: the
// algorithm bandwidth scaled by the factor that makes it comparable with
// the hardware's link bandwidth, independent of n: AllReduce 2(n-1)/n;
// ReduceScatter, AllGather and AllToAll (n-1)/n; Broadcast and Reduce 1.
func BusBandwidth(kind Kind, bytes int64, seconds float64, n int) float64 {
	return AlgBandwidth(bytes, seconds) * BusFactor(kind, n)
}

// BusFactor is the ratio busbw/algbw for kind on n ranks.
func BusFactor(kind Kind, n int) float64 {
	if n < 1 {
		return 0
	}
	f := float64(n-1) / float64(n)
	switch kind {
	case KindAllReduce:
		return 2 * f
	case KindReduceScatter, KindAllGather, KindAllToAll:
		return f
	}
	return 1
}

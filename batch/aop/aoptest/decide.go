package aoptest

// decider derives the sandbox's random choices from (seed, referenceid,
// attempt, decision name) alone, so they do not depend on the order in which
// concurrent requests happen to be served.
type decider struct {
	seed    int64
	ref     string
	attempt int
}

// hit reports whether the decision called name fires at the given rate.
func (d decider) hit(rate float64, name string) bool {
	if rate <= 0 {
		return false
	}
	if rate >= 1 {
		return true
	}
	return d.roll(name) < rate
}

// roll returns a uniform number in [0, 1) for the decision called name.
func (d decider) roll(name string) float64 {
	h := hashOf(d.seed, d.ref, uint64(d.attempt), name)
	return float64(h>>11) / (1 << 53)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashOf is FNV-1a over the length-prefixed fields, finished with the
// splitmix64 mixer so that nearby inputs give unrelated outputs.
func hashOf(seed int64, ref string, n uint64, name string) uint64 {
	h := uint64(fnvOffset)
	h = fnvUint(h, uint64(seed))
	h = fnvUint(h, uint64(len(ref)))
	h = fnvString(h, ref)
	h = fnvUint(h, n)
	h = fnvString(h, name)
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func fnvUint(h, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return h
}

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// txnID is the provider's transaction id for ref, stable under the seed.
func (s *Server) txnID(ref string) string {
	return "AOP" + hex16(hashOf(s.cfg.Seed, ref, 0, "txnid"))
}

// operatorRef is the operator's reference for a successful transaction.
func (s *Server) operatorRef(ref string) string {
	return "OP" + hex16(hashOf(s.cfg.Seed, ref, 0, "operatorid"))[:12]
}

func hex16(v uint64) string {
	const digits = "0123456789ABCDEF"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

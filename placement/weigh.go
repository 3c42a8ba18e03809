package placement

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// Cinder's CapacityWeigher constants for pools whose capacity is infinite or
// unknown when stacking (see capacityRaw).
const (
	offsetMin  = 10000
	offsetMult = 100
)

// raw is the weigher's value for one passing pool, before normalisation.
func (w *weigher) raw(p *Pool, thick bool, rnd func() float64) float64 {
	switch w.kind {
	case wCapacity:
		return capacityRaw(p, thick, w.mult)
	case wAllocated:
		return p.AllocatedGB
	case wVolumeNumber:
		return float64(p.VolumeCount)
	case wChance:
		return rnd()
	}
	return 0
}

// combine normalises each weigher's raw values to [0, 1] over the passing
// pools (Cinder's base_weight.normalize), multiplies them by the weigher's
// multiplier and adds them up, in weigher order. It reuses raw's memory.
func (e *Engine) combine(raw [][]float64, n int) []float64 {
	if len(raw) == 0 {
		return make([]float64, n)
	}
	for k, w := range e.weighers {
		if w.kind == wCapacity {
			capacityInfinities(raw[k])
		}
		normalize(raw[k])
	}
	total := raw[0]
	m0 := e.weighers[0].mult
	for j, x := range total {
		v := float64(m0 * x)
		if v == 0 {
			v = 0 // Cinder starts from 0.0, so a -0 product sums to +0
		}
		total[j] = v
	}
	for k := 1; k < len(raw); k++ {
		m := e.weighers[k].mult
		for j, x := range raw[k] {
			total[j] += float64(m * x) // float64(): no FMA, same sum everywhere
		}
	}
	return total
}

// capacityRaw is Cinder's CapacityWeigher value for one pool: the virtual free
// capacity. Pools whose free or total capacity is infinite or unknown get
// the lowest weight either way (Cinder bug #1350638 discourages such
// reports): -1 when spreading (multiplier > 0), otherwise +Inf, which
// capacityInfinities then turns into a value that normalises to 1, so that
// the negative multiplier puts it last.
func capacityRaw(p *Pool, thick bool, mult float64) float64 {
	if p.FreeKind != storage.Known || p.TotalKind != storage.Known {
		if mult > 0 {
			return -1
		}
		return math.Inf(1)
	}
	return virtualFree(p, thick)
}

// capacityInfinities is Cinder's CapacityWeigher.weigh_objects: +Inf values
// become the largest finite value plus 100 times the finite range (10000
// when the range is 0).
func capacityInfinities(raw []float64) {
	hasInf := false
	for _, v := range raw {
		if math.IsInf(v, 1) {
			hasInf = true
			break
		}
	}
	if !hasInf {
		return
	}
	lo, hi, ok := finiteRange(raw)
	if !ok {
		// Every pool is infinite: Cinder fails here (max of an empty
		// list); normalize treats them as equal.
		return
	}
	offset := (hi - lo) * offsetMult
	if offset == 0 {
		hi += offsetMin
	} else {
		hi += offset
	}
	for j, v := range raw {
		if math.IsInf(v, 1) {
			raw[j] = hi
		}
	}
}

// finiteRange returns the smallest and largest finite values in v.
func finiteRange(v []float64) (lo, hi float64, ok bool) {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		if !ok {
			lo, hi, ok = x, x, true
			continue
		}
		if x < lo {
			lo = x
		} else if x > hi {
			hi = x
		}
	}
	return lo, hi, ok
}

// normalize maps v in place onto [0, 1] by min-max, as Cinder's
// base_weight.normalize: all-equal values become 0. Non-finite values, which
// only malformed input produces, are clamped so they cannot poison the sum:
// +Inf becomes 1 (0 when every value is +Inf), -Inf and NaN become 0, and
// the range is taken over the finite values.
func normalize(v []float64) {
	lo, hi, ok := finiteRange(v)
	span := hi - lo
	scale := 1.0
	if math.IsInf(span, 0) {
		// The range of two huge finite values overflows; halve everything.
		scale = 0.5
		span = hi*scale - lo*scale
	}
	allInf := true
	for _, x := range v {
		if !math.IsInf(x, 1) {
			allInf = false
			break
		}
	}
	for j, x := range v {
		switch {
		case allInf:
			v[j] = 0
		case math.IsInf(x, 1):
			v[j] = 1
		case math.IsNaN(x) || math.IsInf(x, -1) || !ok || span == 0:
			v[j] = 0
		default:
			v[j] = (x*scale - lo*scale) / span
		}
	}
}

// descKey maps a weight to a key whose unsigned order is descending weight
// order. -0 ranks with +0 and NaN (which only absurd multipliers can produce)
// ranks last.
func descKey(w float64) uint64 {
	if w != w {
		return math.MaxUint64
	}
	if w == 0 {
		w = 0 // -0 and +0 are the same weight
	}
	b := math.Float64bits(w)
	if b>>63 != 0 {
		b = ^b
	} else {
		b |= 1 << 63
	}
	return ^b
}

// sortRanked sorts s by descending weight, then pool name, then input
// position, and returns the input position of the winner.
//
// Each entry becomes one uint64: the weight's key with its low bits replaced
// by the entry's position. An MSD radix sort orders those without a
// comparison (the mispredicted branches of a comparison sort cost more than
// the rest of a decision over thousands of pools). Entries whose keys agree
// above the position bits (equal weights, or weights a few ulps apart) are
// then re-sorted exactly by full key, name and position, and s is permuted
// in place.
func sortRanked(s []Scored) int {
	n := len(s)
	pb := bits.Len(uint(n - 1)) // bits that hold a position
	mask := uint64(1)<<pb - 1
	buf := make([]uint64, 2*n)
	a, tmp := buf[:n:n], buf[n:]
	for j := range a {
		a[j] = descKey(s[j].Weight)&^mask | uint64(j)
	}
	radixSort(a, tmp)
	for i := 1; i < n; i++ {
		if (a[i]^a[i-1])>>pb != 0 {
			continue
		}
		// a[i-1:j] agree above the position bits.
		first := i - 1
		j := i + 1
		for j < n && (a[j]^a[first])>>pb == 0 {
			j++
		}
		i = j
		slices.SortFunc(a[first:j], func(x, y uint64) int {
			px, py := x&mask, y&mask
			if c := cmp.Compare(descKey(s[px].Weight), descKey(s[py].Weight)); c != 0 {
				return c
			}
			if c := strings.Compare(s[px].Pool, s[py].Pool); c != 0 {
				return c
			}
			return cmp.Compare(px, py)
		})
	}
	best := int(a[0] & mask)
	// Position i of the result takes s[a[i]]: follow each cycle of the
	// permutation once, marking placed entries with n.
	for i := range a {
		a[i] &= mask
	}
	done := uint64(n)
	for i := range a {
		if a[i] == done {
			continue
		}
		first := s[i]
		j := i
		for {
			k := int(a[j])
			a[j] = done
			if k == i {
				s[j] = first
				break
			}
			s[j] = s[k]
			j = k
		}
	}
	return best
}

// Radix sort tuning: slices this short are insertion-sorted, and a pass
// uses at most 11 bits (2048 buckets).
const (
	insertionMax = 24
	maxDigitBits = 11
)

// radixSort sorts a in ascending order, using tmp (as long as a) as scratch.
// Each pass buckets on the highest bits that still differ within the slice,
// with about log2(len) bits so that bucket counting stays proportional to
// the slice, then sorts each bucket the same way. Keys from weights spread
// over [0, 1] are mostly placed after two passes.
func radixSort(a, tmp []uint64) {
	n := len(a)
	if n <= insertionMax {
		for i := 1; i < n; i++ {
			for k := i; k > 0 && a[k] < a[k-1]; k-- {
				a[k], a[k-1] = a[k-1], a[k]
			}
		}
		return
	}
	var diff uint64
	for _, k := range a {
		diff |= k ^ a[0]
	}
	if diff == 0 {
		return // all equal
	}
	width := min(bits.Len(uint(n)), maxDigitBits)
	shift := max(bits.Len64(diff)-width, 0)
	digitMask := uint64(1)<<width - 1

	// Bits above the digit are equal across a, so bucket order is key
	// order. ends[d] ends up as the end of bucket d in tmp.
	var small [1<<8 + 1]int32
	var large [1<<maxDigitBits + 1]int32
	var ends []int32
	if width <= 8 {
		ends = small[:1<<width+1]
	} else {
		ends = large[:1<<width+1]
	}
	for _, k := range a {
		ends[(k>>shift)&digitMask+1]++
	}
	for d := 1; d < len(ends); d++ {
		ends[d] += ends[d-1]
	}
	// ends[d] is now where bucket d starts; scattering advances it to
	// where bucket d ends.
	for _, k := range a {
		d := (k >> shift) & digitMask
		tmp[ends[d]] = k
		ends[d]++
	}
	copy(a, tmp)
	if shift == 0 {
		return // the digit covered every differing bit: buckets are uniform
	}
	start := int32(0)
	for _, end := range ends[:len(ends)-1] {
		if end-start > 1 {
			radixSort(a[start:end], tmp[start:end])
		}
		start = end
	}
}

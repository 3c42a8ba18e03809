package placement

import (
	"math"
	"strconv"

	"github.com/kilnstore/kiln/internal/storage"
)

// Cinder's INITIAL_AUTO_MOSR: the "auto" ratio of a pool that holds nothing.
const initialAutoRatio = 20.0

// ThickRequested reports whether extra specs ask for thick provisioning:
// Cinder takes the thin path unless "provisioning:type" is exactly "thick".
func ThickRequested(specs map[string]string) bool {
	return specs["provisioning:type"] == "thick"
}

// CheckCapacity is the Capacity filter on its own, for a request that does
// not ask for thick provisioning. The Raft state machine calls it to re-check
// a fit deterministically; ok=false comes with a short reason.
func CheckCapacity(p Pool, sizeGB int64) (ok bool, reason string) {
	return CheckCapacityFor(p, sizeGB, false)
}

// CheckCapacityFor is CheckCapacity for a request whose volume type does (or
// does not) ask for thick provisioning; see ThickRequested. Thick requests are
// checked against real free space even on thin pools, as in Cinder.
func CheckCapacityFor(p Pool, sizeGB int64, thick bool) (ok bool, reason string) {
	v := capacity(&p, sizeGB, thick)
	if v.code == capFits {
		return true, ""
	}
	return false, string(capReason(nil, v, &p, sizeGB))
}

// reservedGB is Cinder's math.floor(total * reserved_percentage / 100),
// computed in the same order so the float result is bit-identical.
func reservedGB(p *Pool) float64 {
	return math.Floor(p.TotalGB * (float64(p.ReservedPercentage) / 100))
}

// effectiveRatio is Cinder's calculate_max_over_subscription_ratio for the
// pool: 1 when the pool is not thin or its capacity is not a number, the
// configured ratio, or for "auto" 1 + provisioned / (used + 1), and 20 while
// nothing is provisioned.
func effectiveRatio(p *Pool) float64 {
	if !p.ThinProvisioning || p.TotalKind != storage.Known || p.FreeKind != storage.Known {
		return 1
	}
	if !p.OverSubscriptionAuto {
		return p.MaxOverSubscriptionRatio
	}
	if p.AllocatedGB == 0 {
		return initialAutoRatio
	}
	d := (p.TotalGB - p.FreeGB) + 1
	if d == 0 {
		// Cinder raises ZeroDivisionError here (free = total + 1). Report
		// an invalid ratio instead, which rejects thin requests.
		return 0
	}
	return 1 + p.AllocatedGB/d
}

// capVerdict is the outcome of the Capacity filter for one pool: capFits, or
// why not, with the figures the reason quotes.
type capVerdict struct {
	code capCode
	x, y float64 // code-specific figures
}

type capCode uint8

const (
	capFits          capCode = iota
	capBadSize               // negative size
	capNoTotal               // total infinite or unknown with a reserve
	capNaN                   // a figure is NaN
	capZeroTotal             // x: total
	capBadRatio              // x: ratio
	capOverProvision         // x: provisioned ratio, y: max ratio
	capVirtualShort          // x: free after reserve, y: ratio
	capShort                 // x: free after reserve, y: reserve
)

// capacity ports Cinder's CapacityFilter.backend_passes. It only computes;
// capReason formats the reason for the rare pool that does not fit.
func capacity(p *Pool, size int64, thick bool) capVerdict {
	if size == 0 {
		// Cinder: a zero-size request is a manage request and always fits.
		return capVerdict{}
	}
	if size < 0 {
		return capVerdict{code: capBadSize}
	}
	if p.FreeKind != storage.Known {
		// Backends that cannot tell are assumed to fit; a failed create is
		// rescheduled.
		return capVerdict{}
	}
	if p.TotalKind != storage.Known {
		if p.ReservedPercentage == 0 {
			return capVerdict{}
		}
		return capVerdict{code: capNoTotal}
	}
	total := p.TotalGB
	if total != total || p.FreeGB != p.FreeGB || p.AllocatedGB != p.AllocatedGB {
		// Python would let NaN through every comparison; fail closed.
		return capVerdict{code: capNaN}
	}
	if total <= 0 {
		return capVerdict{code: capZeroTotal, x: total}
	}
	reserved := reservedGB(p)
	free := p.FreeGB - reserved
	req := float64(size)
	if !thick && p.ThinProvisioning {
		ratio := effectiveRatio(p)
		if !(ratio >= 1) {
			return capVerdict{code: capBadRatio, x: ratio}
		}
		if provisioned := (p.AllocatedGB + req) / total; provisioned > ratio {
			return capVerdict{code: capOverProvision, x: provisioned, y: ratio}
		}
		// Adjusted free virtual capacity: what is free after the reserve,
		// over-subscribed.
		if float64(free*ratio) >= req {
			return capVerdict{}
		}
		return capVerdict{code: capVirtualShort, x: free, y: ratio}
	}
	if free < req {
		return capVerdict{code: capShort, x: free, y: reserved}
	}
	return capVerdict{}
}

// capReason appends the reason for a verdict other than capFits.
func capReason(buf []byte, v capVerdict, p *Pool, size int64) []byte {
	switch v.code {
	case capBadSize:
		buf = append(buf, "capacity: invalid size "...)
		buf = strconv.AppendInt(buf, size, 10)
		return append(buf, " GiB"...)
	case capNoTotal:
		buf = append(buf, "capacity: total is "...)
		buf = append(buf, p.TotalKind.String()...)
		buf = append(buf, ", cannot reserve "...)
		buf = strconv.AppendInt(buf, int64(p.ReservedPercentage), 10)
		return append(buf, '%')
	case capNaN:
		return append(buf, "capacity: figures are not numbers"...)
	case capZeroTotal:
		buf = append(buf, "capacity: total capacity is "...)
		buf = appendGB(buf, v.x)
		return append(buf, " GiB"...)
	case capBadRatio:
		buf = append(buf, "capacity: invalid max over-subscription ratio "...)
		buf = appendRatio(buf, v.x)
		return append(buf, " (must be >= 1)"...)
	case capOverProvision:
		buf = append(buf, "capacity: provisioned ratio "...)
		buf = appendRatio(buf, v.x)
		buf = append(buf, " > max over-subscription "...)
		return appendRatio(buf, v.y)
	case capVirtualShort:
		buf = append(buf, "capacity: virtual free "...)
		buf = appendGB(buf, float64(v.x*v.y))
		buf = append(buf, " GiB ("...)
		buf = appendGB(buf, v.x)
		buf = append(buf, " GiB free x "...)
		buf = appendRatio(buf, v.y)
		buf = append(buf, ") < "...)
		buf = strconv.AppendInt(buf, size, 10)
		return append(buf, " GiB requested"...)
	case capShort:
		buf = append(buf, "capacity "...)
		buf = appendGB(buf, v.x)
		buf = append(buf, " GiB free < "...)
		buf = strconv.AppendInt(buf, size, 10)
		buf = append(buf, " GiB requested"...)
		if v.y != 0 {
			buf = append(buf, " ("...)
			buf = appendGB(buf, v.y)
			buf = append(buf, " GiB reserved)"...)
		}
	}
	return buf
}

// virtualFree is the raw CapacityWeigher value of a pool with numeric
// capacity: Cinder's calculate_virtual_free_capacity. Thin: total x ratio -
// provisioned - reserved; otherwise free - reserved.
func virtualFree(p *Pool, thick bool) float64 {
	reserved := reservedGB(p)
	if !thick && p.ThinProvisioning {
		// float64() keeps the compiler from fusing into an FMA, so every
		// architecture computes the same value.
		return float64(p.TotalGB*effectiveRatio(p)) - p.AllocatedGB - reserved
	}
	return p.FreeGB - reserved
}

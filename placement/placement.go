package placement

import (
	"errors"
	"fmt"
	"math"

	"github.com/kilnstore/kiln/internal/storage"
)

// Pool is one candidate pool as the leader sees it: the static facts the
// agent registered plus the latest capacity it published.
type Pool struct {
	// Name is the cluster-wide pool name "host@backend#pool"; it must be
	// unique. The part before '#' is the pool's backend for the affinity
	// filters, as Cinder's extract_host(host, 'backend').
	Name string
	// Host is the agent name (the "host" part of Name).
	Host string
	// Backend is the volume_backend_name matched by volume-type extra specs.
	Backend string
	// AvailabilityZone of the agent that owns the pool.
	AvailabilityZone string

	// TotalKind says whether TotalGB is meaningful.
	TotalKind storage.CapacityKind
	// TotalGB is total_capacity_gb.
	TotalGB float64
	// FreeKind says whether FreeGB is meaningful.
	FreeKind storage.CapacityKind
	// FreeGB is free_capacity_gb, as reported by the backend.
	FreeGB float64
	// AllocatedGB is provisioned_capacity_gb: the sum of the sizes of the
	// volumes placed on this pool, in-flight placements included. It also
	// serves as allocated_capacity_gb for AllocatedCapacityWeigher.
	AllocatedGB float64
	// VolumeCount is the number of volumes on the pool (VolumeNumberWeigher).
	VolumeCount int
	// ReservedPercentage of the total capacity is kept free (0-100).
	ReservedPercentage int
	// ThinProvisioning is thin_provisioning_support.
	ThinProvisioning bool
	// ThickProvisioning is thick_provisioning_support.
	ThickProvisioning bool
	// MaxOverSubscriptionRatio is the pool's max_over_subscription_ratio
	// (>= 1), already resolved by the caller from the pool's setting or the
	// cluster default. A value below 1 makes thin requests fail on this pool,
	// as in Cinder. Ignored when OverSubscriptionAuto is set.
	MaxOverSubscriptionRatio float64
	// OverSubscriptionAuto is max_over_subscription_ratio = "auto": the ratio
	// is derived from the pool's usage as Cinder's
	// calculate_max_over_subscription_ratio does.
	OverSubscriptionAuto bool
	// Capabilities are every other capability the pool reports, string
	// valued (storage_protocol, driver_version, QoS_support, custom keys...).
	Capabilities map[string]string
}

// Request is what is being placed.
type Request struct {
	// SizeGB is the volume size in GiB. Zero means "no new space" (Cinder's
	// manage-existing case) and passes the capacity filter.
	SizeGB int64
	// AvailabilityZone requested; "" means any zone.
	AvailabilityZone string
	// ExtraSpecs are the volume type's extra specs.
	ExtraSpecs map[string]string
	// Tried lists pool names already attempted (IgnoreAttemptedHostsFilter).
	Tried []string
	// SameBackendAs lists pool names, resolved by the caller from the
	// same_host hint; the chosen pool must be on the backend ("host@backend")
	// of one of them.
	SameBackendAs []string
	// DifferentBackendFrom lists pool names, resolved by the caller from the
	// different_host hint; the chosen pool must be on none of their backends.
	DifferentBackendFrom []string
}

// Filter and weigher names accepted in Config, as Cinder spells them.
const (
	AvailabilityZoneFilter     = "AvailabilityZoneFilter"
	CapacityFilter             = "CapacityFilter"
	CapabilitiesFilter         = "CapabilitiesFilter"
	IgnoreAttemptedHostsFilter = "IgnoreAttemptedHostsFilter"
	// AffinityFilter applies both SameBackendFilter and DifferentBackendFilter.
	AffinityFilter         = "AffinityFilter"
	SameBackendFilter      = "SameBackendFilter"
	DifferentBackendFilter = "DifferentBackendFilter"

	CapacityWeigher          = "CapacityWeigher"
	AllocatedCapacityWeigher = "AllocatedCapacityWeigher"
	VolumeNumberWeigher      = "VolumeNumberWeigher"
	ChanceWeigher            = "ChanceWeigher"
)

// Config selects the filters and weighers and their multipliers.
//
// New replaces an empty Filters or Weighers list with the defaults. The
// multipliers are taken exactly as given, zero included (a zero multiplier
// silences its weigher, as 0.0 does in Cinder), so start from DefaultConfig
// and change what you need rather than from a zero Config.
type Config struct {
	// Filters run in this order; a pool is rejected by the first that fails.
	// Empty means DefaultConfig().Filters.
	Filters []string
	// Weighers are summed in this order. Empty means
	// DefaultConfig().Weighers.
	Weighers []string
	// CapacityWeightMultiplier: positive spreads (most virtual free space
	// wins), negative stacks. Cinder default +1.0.
	CapacityWeightMultiplier float64
	// AllocatedCapacityWeightMultiplier: negative prefers the least
	// allocated pool. Cinder default -1.0.
	AllocatedCapacityWeightMultiplier float64
	// VolumeNumberWeightMultiplier: negative prefers the pool with the fewest
	// volumes. Cinder default -1.0.
	VolumeNumberWeightMultiplier float64
	// ChanceWeightMultiplier scales the random weight. Default 1.0.
	ChanceWeightMultiplier float64
}

// DefaultConfig returns Cinder's defaults extended with the filters Kiln
// always wants (retries and affinity hints), CapacityWeigher alone, and the
// default multiplier of every weigher.
func DefaultConfig() Config {
	return Config{
		Filters: []string{
			AvailabilityZoneFilter,
			CapacityFilter,
			CapabilitiesFilter,
			IgnoreAttemptedHostsFilter,
			AffinityFilter,
		},
		Weighers:                          []string{CapacityWeigher},
		CapacityWeightMultiplier:          1.0,
		AllocatedCapacityWeightMultiplier: -1.0,
		VolumeNumberWeightMultiplier:      -1.0,
		ChanceWeightMultiplier:            1.0,
	}
}

type filterKind uint8

const (
	fAZ filterKind = iota
	fCapacity
	fCapabilities
	fTried
	fAffinity
	fSame
	fDifferent
)

type weigherKind uint8

const (
	wCapacity weigherKind = iota
	wAllocated
	wVolumeNumber
	wChance
)

type filter struct {
	kind filterKind
	name string
}

type weigher struct {
	kind weigherKind
	name string
	mult float64
}

// Engine filters and weighs pools. It is immutable once built by New and safe
// for concurrent use; every call works only on its arguments.
type Engine struct {
	filters  []filter
	weighers []weigher
	chance   bool
}

// New validates cfg and builds an Engine. Unknown or repeated filter or
// weigher names and non-finite multipliers are errors.
func New(cfg Config) (*Engine, error) {
	def := DefaultConfig()
	names := cfg.Filters
	if len(names) == 0 {
		names = def.Filters
	}
	e := &Engine{}
	for _, n := range names {
		var k filterKind
		switch n {
		case AvailabilityZoneFilter:
			k = fAZ
		case CapacityFilter:
			k = fCapacity
		case CapabilitiesFilter:
			k = fCapabilities
		case IgnoreAttemptedHostsFilter:
			k = fTried
		case AffinityFilter:
			k = fAffinity
		case SameBackendFilter:
			k = fSame
		case DifferentBackendFilter:
			k = fDifferent
		default:
			return nil, fmt.Errorf("placement: unknown filter %q", n)
		}
		for _, f := range e.filters {
			if f.name == n {
				return nil, fmt.Errorf("placement: filter %q listed twice", n)
			}
		}
		e.filters = append(e.filters, filter{kind: k, name: n})
	}
	names = cfg.Weighers
	if len(names) == 0 {
		names = def.Weighers
	}
	for _, n := range names {
		var w weigher
		switch n {
		case CapacityWeigher:
			w = weigher{kind: wCapacity, mult: cfg.CapacityWeightMultiplier}
		case AllocatedCapacityWeigher:
			w = weigher{kind: wAllocated, mult: cfg.AllocatedCapacityWeightMultiplier}
		case VolumeNumberWeigher:
			w = weigher{kind: wVolumeNumber, mult: cfg.VolumeNumberWeightMultiplier}
		case ChanceWeigher:
			w = weigher{kind: wChance, mult: cfg.ChanceWeightMultiplier}
			e.chance = true
		default:
			return nil, fmt.Errorf("placement: unknown weigher %q", n)
		}
		if math.IsNaN(w.mult) || math.IsInf(w.mult, 0) {
			return nil, fmt.Errorf("placement: weigher %q multiplier %v is not a finite number", n, w.mult)
		}
		for _, o := range e.weighers {
			if o.name == n {
				return nil, fmt.Errorf("placement: weigher %q listed twice", n)
			}
		}
		w.name = n
		e.weighers = append(e.weighers, w)
	}
	return e, nil
}

// Decision is the outcome of Place.
type Decision struct {
	// Pool is the winner (a copy of the input pool).
	Pool Pool
	// Ranked lists every pool that passed the filters, best first.
	Ranked []Scored
	// Rejected lists every pool a filter rejected, in input order.
	Rejected []Rejection
}

// Scored is a passing pool and its total weight.
type Scored struct {
	// Pool is the pool's Name.
	Pool string
	// Weight is the sum over weighers of multiplier x normalised value.
	Weight float64
}

// Rejection says which filter rejected a pool and why.
type Rejection struct {
	// Pool is the pool's Name.
	Pool string
	// Filter is the configured name of the first filter that failed.
	Filter string
	// Reason is short and specific, such as "capacity 3 GiB free < 5 GiB
	// requested" or `availability zone "az2" != "nova"`.
	Reason string
}

// Place filters pools for req and weighs the survivors. rnd supplies the
// randomness of ChanceWeigher (for instance rand.New(src).Float64) and is
// called once per passing pool, in input order; it may be nil when
// ChanceWeigher is not configured.
//
// When no pool passes, Place returns a *NoValidPoolError (which wraps
// ErrNoValidPool) together with a Decision whose Rejected field is filled
// (and shared with the error). A negative size is an error wrapping
// storage.ErrInvalid. Place reads pools and req and never modifies them.
func (e *Engine) Place(req Request, pools []Pool, rnd func() float64) (Decision, error) {
	return e.place(req, pools, rnd, true)
}

// PlaceBest is Place for callers that need only the chosen pool (the
// leader's placement): when a pool fits it builds neither the ranked nor the
// rejected list, which are most of a decision's allocations. The choice is
// Place's, tie-break included; when no pool fits the error is Place's.
func (e *Engine) PlaceBest(req Request, pools []Pool, rnd func() float64) (Pool, error) {
	d, err := e.place(req, pools, rnd, false)
	return d.Pool, err
}

func (e *Engine) place(req Request, pools []Pool, rnd func() float64, full bool) (Decision, error) {
	if req.SizeGB < 0 {
		return Decision{}, fmt.Errorf("placement: %w: size %d GiB is negative", storage.ErrInvalid, req.SizeGB)
	}
	if e.chance && rnd == nil {
		return Decision{}, errors.New("placement: ChanceWeigher is configured but rnd is nil")
	}
	if len(pools) > math.MaxInt32 {
		return Decision{}, fmt.Errorf("placement: %d pools is more than one decision handles", len(pools))
	}
	r := e.prepare(&req)

	// One pass over the pools: outcome records the reason (id+1) of each
	// rejected pool, 0 for the others, which alive lists in input order. A
	// pool that passes gets its raw weigher values while it is in cache
	// (ChanceWeigher draws in input order).
	n := len(pools)
	outcome := make([]int32, n)
	alive := make([]int32, 0, n)
	raw := make([][]float64, len(e.weighers))
	if len(e.weighers) > 0 {
		backing := make([]float64, len(e.weighers)*n)
		for k := range raw {
			raw[k] = backing[k*n : (k+1)*n]
		}
	}
	filter := r.filter
	if r.inOrder {
		filter = r.filterInOrder
	}
	for i := range pools {
		p := &pools[i]
		if id := filter(p); id >= 0 {
			outcome[i] = id + 1
			continue
		}
		j := len(alive)
		alive = append(alive, int32(i))
		for k := range e.weighers {
			raw[k][j] = e.weighers[k].raw(p, r.thick, rnd)
		}
	}
	for k := range raw {
		raw[k] = raw[k][:len(alive)]
	}

	var d Decision
	if len(alive) < n && (full || len(alive) == 0) {
		texts := r.finish()
		d.Rejected = make([]Rejection, n-len(alive))
		j := 0
		for i, o := range outcome {
			if o == 0 {
				continue
			}
			rs := &r.reasons[o-1]
			d.Rejected[j] = Rejection{
				Pool:   pools[i].Name,
				Filter: e.filters[rs.filter].name,
				Reason: texts[rs.chunk][rs.start:rs.end],
			}
			j++
		}
	}
	if len(alive) == 0 {
		return d, &NoValidPoolError{SizeGB: req.SizeGB, Pools: n, Rejections: d.Rejected}
	}

	total := e.combine(raw, len(alive))
	if !full {
		d.Pool = pools[alive[bestOf(total, alive, pools)]]
		return d, nil
	}
	d.Ranked = make([]Scored, len(alive))
	for j, i := range alive {
		d.Ranked[j] = Scored{Pool: pools[i].Name, Weight: total[j]}
	}
	d.Pool = pools[alive[sortRanked(d.Ranked)]]
	return d, nil
}

// bestOf returns the index into alive of the pool sortRanked would put
// first: highest weight, then pool name, then input position.
func bestOf(total []float64, alive []int32, pools []Pool) int {
	best := 0
	for j := 1; j < len(alive); j++ {
		kj, kb := descKey(total[j]), descKey(total[best])
		if kj < kb || (kj == kb && pools[alive[j]].Name < pools[alive[best]].Name) {
			best = j
		}
	}
	return best
}

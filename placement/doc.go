// Package placement chooses the pool a new volume goes to. It is a deliberate
// port of OpenStack Cinder's filter scheduler: pure functions over plain
// structs, with no I/O, clock, randomness of its own or package state, so the
// leader can call it on every create and the Raft state machine can re-check
// a fit (CheckCapacity) deterministically on every node.
//
// # Engine
//
// New builds an Engine from a Config (start from DefaultConfig). Place runs
// every pool through the configured filters in order; the first filter that
// fails rejects the pool and records a short reason. The pools that pass are
// weighed: each weigher gives a raw value per pool, the values are min-max
// normalised to [0, 1] over the passing pools (all equal gives 0), multiplied
// by the weigher's multiplier and summed. The highest total wins; ties go to
// the pool name that sorts first (then to input order). When nothing passes,
// Place returns a *NoValidPoolError listing each pool and why it was
// rejected; it wraps ErrNoValidPool. An Engine is immutable and safe for
// concurrent use.
//
// # Cost of a decision
//
// A decision over 10,000 pools must stay well under 2 ms (performance.md,
// target 1), so Place makes one pass over the pools, running all filters on
// a pool before the next and computing its raw weights while it is in cache;
// filters that cannot reject anything for the request (no zone, no hints, no
// specs) are skipped; extra specs are parsed once per request and those
// backed by Pool's fields are checked before the map-backed ones; reasons
// that repeat (the same zone, backend or capability value) are formatted
// once; reason texts share a few large strings; the ranking is a radix sort
// on the weight bits; and the outputs are allocated at their exact sizes.
// BenchmarkPlace10kPools measures it.
//
// # Mapping to Cinder
//
//	Kiln                        Cinder
//	AvailabilityZoneFilter      filters/availability_zone_filter.py
//	CapacityFilter              filters/capacity_filter.py
//	CapabilitiesFilter          filters/capabilities_filter.py + extra_specs_ops.py
//	IgnoreAttemptedHostsFilter  filters/ignore_attempted_hosts_filter.py
//	AffinityFilter              filters/affinity_filter.py (Same+DifferentBackendFilter)
//	CapacityWeigher             weights/capacity.py CapacityWeigher
//	AllocatedCapacityWeigher    weights/capacity.py AllocatedCapacityWeigher
//	VolumeNumberWeigher         weights/volume_number.py
//	ChanceWeigher               weights/chance.py
//	normalize                   scheduler/base_weight.py normalize
//	effective ratio             utils.calculate_max_over_subscription_ratio
//	virtual free capacity       utils.calculate_virtual_free_capacity
//
// Capacity: a zero-size request, infinite or unknown free capacity pass; an
// infinite or unknown total passes only with reserved_percentage 0; a total
// of 0 or less fails. The reserve is floor(total x reserved% / 100). Unless
// the volume type says "provisioning:type": "thick", a thin-capable pool is
// checked thin: the ratio (provisioned + requested) / total must not exceed
// the max over-subscription ratio (which must be >= 1, and for "auto" is
// 1 + provisioned / (total - free + 1), or 20 while nothing is provisioned),
// and (free - reserve) x ratio must cover the request. Otherwise free -
// reserve must cover it.
//
// Capabilities: extra specs without a scope or with the "capabilities:" scope
// are matched against the pool's capabilities, other scopes are ignored, and
// a capability the pool does not report fails. See MatchOp for the operators
// and MatchExtraSpecs for the capability names derived from Pool's fields.
//
// CapacityWeigher weighs the virtual free capacity: thin (total x ratio -
// provisioned - reserve) or thick (free - reserve). As in Cinder, pools with
// infinite or unknown capacity rank lowest whichever the sign of the
// multiplier.
//
// # Deliberate differences
//
//   - Capabilities are strings. Cinder compares typed values, so a plain
//     requirement "True" never equals a boolean capability there; here the
//     booleans are "True"/"False" and such a requirement matches. Numbers
//     derived from Pool's fields compare numerically and spell as Python's
//     str() would. Lists of capability values are not supported.
//   - "capabilities:a:b" looks up the flat key "a:b" rather than walking
//     nested dicts; the bare key "capabilities" names no capability and fails.
//   - Inputs on which Cinder raises an exception fail closed instead: "<or>"
//     with no options matches nothing, an "auto" ratio whose divisor is 0 is
//     invalid, NaN capacity figures are rejected, and when every pool has
//     infinite capacity the capacity weights are all equal. Non-finite raw
//     weights (malformed input only) are clamped so no weight is NaN.
//   - Extra specs are checked in a fixed order (those backed by Pool's fields,
//     then the others, each in key order) where Cinder uses dict order, so
//     the reason given for a pool failing several specs is deterministic.
//   - Python's float() also accepts non-ASCII decimal digits; extra-spec
//     numbers here are ASCII.
//   - AllocatedGB serves as both provisioned_capacity_gb and
//     allocated_capacity_gb, and it includes in-flight placements, which
//     Cinder tracks separately through consume_from_volume.
//   - The capacity weigher uses calculate_virtual_free_capacity from
//     cinder/utils.py (thin: total x ratio - provisioned - reserve; thick:
//     free - reserve), not the calculate_capacity_factors variant some later
//     trees carry (which applies the ratio after the reserve and caps thick
//     free space at total - reserve - provisioned).
//   - Filters run pool by pool rather than filter by filter; the first
//     failing filter in configured order is the one reported, as in Cinder.
package placement

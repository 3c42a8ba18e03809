package placement

import (
	"math"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// thickPool is a pool with numeric capacity and no thin provisioning.
func thickPool(total, free float64) Pool {
	return Pool{
		Name: "h1@lvm#p", Host: "h1", Backend: "lvm", AvailabilityZone: "nova",
		TotalKind: storage.Known, TotalGB: total,
		FreeKind: storage.Known, FreeGB: free,
		ThickProvisioning: true, MaxOverSubscriptionRatio: 1,
	}
}

// thinPool is a thin-only pool with the given over-subscription ratio.
func thinPool(total, free, allocated, ratio float64) Pool {
	p := thickPool(total, free)
	p.ThickProvisioning = false
	p.ThinProvisioning = true
	p.AllocatedGB = allocated
	p.MaxOverSubscriptionRatio = ratio
	return p
}

func with(p Pool, f func(*Pool)) Pool { f(&p); return p }

func TestCheckCapacity(t *testing.T) {
	tests := []struct {
		name   string
		pool   Pool
		size   int64
		thick  bool
		ok     bool
		reason string
	}{
		// Thick path.
		{name: "thick fits exactly", pool: thickPool(100, 50), size: 50, ok: true},
		{name: "thick too small", pool: thickPool(100, 3), size: 5,
			reason: "capacity 3 GiB free < 5 GiB requested"},
		{name: "thick fractional free", pool: thickPool(100, 2.5), size: 5,
			reason: "capacity 2.5 GiB free < 5 GiB requested"},
		{name: "reserved is taken off free", pool: with(thickPool(100, 15), func(p *Pool) { p.ReservedPercentage = 10 }), size: 6,
			reason: "capacity 5 GiB free < 6 GiB requested (10 GiB reserved)"},
		{name: "reserved fits exactly", pool: with(thickPool(100, 15), func(p *Pool) { p.ReservedPercentage = 10 }), size: 5, ok: true},
		// floor(109 * 0.1) = 10, not round(10.9) = 11: 16 - 10 = 6 fits.
		{name: "reserved is floored", pool: with(thickPool(109, 16), func(p *Pool) { p.ReservedPercentage = 10 }), size: 6, ok: true},
		{name: "reserved floored, one more fails", pool: with(thickPool(109, 16), func(p *Pool) { p.ReservedPercentage = 10 }), size: 7,
			reason: "capacity 6 GiB free < 7 GiB requested (10 GiB reserved)"},
		{name: "reserved 100 percent", pool: with(thickPool(100, 100), func(p *Pool) { p.ReservedPercentage = 100 }), size: 1,
			reason: "capacity 0 GiB free < 1 GiB requested (100 GiB reserved)"},

		// Thin path.
		{name: "thin fits", pool: thinPool(100, 10, 500, 20), size: 50, ok: true},
		{name: "thin provisioned ratio exceeded", pool: thinPool(100, 10, 2100, 20), size: 50,
			reason: "capacity: provisioned ratio 21.5 > max over-subscription 20.0"},
		// Cinder rejects only when the ratio is strictly greater.
		{name: "thin provisioned ratio equal passes", pool: thinPool(100, 10, 1950, 20), size: 50, ok: true},
		{name: "thin virtual free too small", pool: thinPool(100, 2, 0, 20), size: 50,
			reason: "capacity: virtual free 40 GiB (2 GiB free x 20.0) < 50 GiB requested"},
		{name: "thin virtual free exactly enough", pool: thinPool(100, 2.5, 0, 20), size: 50, ok: true},
		{name: "thin over-subscribes beyond physical free", pool: thinPool(100, 3, 0, 20), size: 5, ok: true},
		{name: "thin reserved taken off before over-subscription", pool: with(thinPool(100, 12, 0, 20), func(p *Pool) { p.ReservedPercentage = 10 }), size: 50,
			reason: "capacity: virtual free 40 GiB (2 GiB free x 20.0) < 50 GiB requested"},
		{name: "thin no free at all", pool: thinPool(100, 0, 0, 20), size: 1,
			reason: "capacity: virtual free 0 GiB (0 GiB free x 20.0) < 1 GiB requested"},
		{name: "thin ratio 1 is valid", pool: thinPool(100, 60, 40, 1), size: 50, ok: true},
		{name: "thin ratio 1 provisioned over total", pool: thinPool(100, 60, 60, 1), size: 50,
			reason: "capacity: provisioned ratio 1.1 > max over-subscription 1.0"},
		{name: "thin ratio below 1 rejected", pool: thinPool(100, 60, 0, 0.5), size: 1,
			reason: "capacity: invalid max over-subscription ratio 0.5 (must be >= 1)"},
		{name: "thin ratio 0 (unset) rejected", pool: thinPool(100, 60, 0, 0), size: 1,
			reason: "capacity: invalid max over-subscription ratio 0.0 (must be >= 1)"},
		{name: "thin ratio NaN rejected", pool: thinPool(100, 60, 0, math.NaN()), size: 1,
			reason: "capacity: invalid max over-subscription ratio NaN (must be >= 1)"},
		{name: "ratio below 1 ignored on thick-only pool", pool: with(thickPool(100, 60), func(p *Pool) { p.MaxOverSubscriptionRatio = 0.5 }), size: 50, ok: true},

		// provisioning:type thick on a thin pool: real free space only.
		{name: "thick request on thin pool ignores ratio", pool: thinPool(100, 60, 5000, 20), size: 50, thick: true, ok: true},
		{name: "thick request on thin pool needs real free", pool: thinPool(100, 3, 0, 20), size: 5, thick: true,
			reason: "capacity 3 GiB free < 5 GiB requested"},
		{name: "thick request ignores invalid ratio", pool: thinPool(100, 60, 0, 0.5), size: 50, thick: true, ok: true},

		// "auto" over-subscription.
		{name: "auto with nothing provisioned is 20", pool: with(thinPool(100, 1, 0, 0), func(p *Pool) { p.OverSubscriptionAuto = true }), size: 20, ok: true},
		{name: "auto with nothing provisioned, too big", pool: with(thinPool(100, 1, 0, 0), func(p *Pool) { p.OverSubscriptionAuto = true }), size: 21,
			reason: "capacity: virtual free 20 GiB (1 GiB free x 20.0) < 21 GiB requested"},
		// ratio = 1 + 300 / (100 - 40 + 1) = 5.918...
		{name: "auto ratio fits", pool: with(thinPool(100, 40, 300, 0), func(p *Pool) { p.OverSubscriptionAuto = true }), size: 10, ok: true},
		{name: "auto ratio exceeded", pool: with(thinPool(100, 40, 300, 0), func(p *Pool) { p.OverSubscriptionAuto = true }), size: 300,
			reason: "capacity: provisioned ratio 6.0 > max over-subscription 5.92"},
		{name: "auto ignores the configured ratio", pool: with(thinPool(100, 40, 300, 0.5), func(p *Pool) { p.OverSubscriptionAuto = true }), size: 10, ok: true},
		// free = total + 1 makes Cinder divide by zero; we reject.
		{name: "auto divisor zero", pool: with(thinPool(100, 101, 5, 0), func(p *Pool) { p.OverSubscriptionAuto = true }), size: 1,
			reason: "capacity: invalid max over-subscription ratio 0.0 (must be >= 1)"},
		// free > total + 1: 1 + 10 / -49 < 1, invalid as in Cinder.
		{name: "auto negative divisor", pool: with(thinPool(100, 150, 10, 0), func(p *Pool) { p.OverSubscriptionAuto = true }), size: 1,
			reason: "capacity: invalid max over-subscription ratio 0.8 (must be >= 1)"},

		// Infinite and unknown.
		{name: "infinite free passes", pool: with(thickPool(0, 0), func(p *Pool) { p.FreeKind = storage.Infinite; p.ReservedPercentage = 50 }), size: 1 << 20, ok: true},
		{name: "unknown free passes", pool: with(thickPool(0, 0), func(p *Pool) { p.FreeKind = storage.Unknown; p.TotalKind = storage.Unknown }), size: 1 << 20, ok: true},
		{name: "infinite total without reserve passes", pool: with(thickPool(0, 1), func(p *Pool) { p.TotalKind = storage.Infinite }), size: 500, ok: true},
		{name: "infinite total with reserve fails", pool: with(thickPool(0, 1000), func(p *Pool) { p.TotalKind = storage.Infinite; p.ReservedPercentage = 5 }), size: 1,
			reason: "capacity: total is infinite, cannot reserve 5%"},
		{name: "unknown total without reserve passes", pool: with(thickPool(0, 1), func(p *Pool) { p.TotalKind = storage.Unknown }), size: 500, ok: true},
		{name: "unknown total with reserve fails", pool: with(thickPool(0, 1000), func(p *Pool) { p.TotalKind = storage.Unknown; p.ReservedPercentage = 10 }), size: 1,
			reason: "capacity: total is unknown, cannot reserve 10%"},

		// Degenerate figures and sizes.
		{name: "total 0", pool: thickPool(0, 0), size: 1, reason: "capacity: total capacity is 0 GiB"},
		{name: "total 0 even with free", pool: thickPool(0, 50), size: 1, reason: "capacity: total capacity is 0 GiB"},
		{name: "negative total", pool: thickPool(-5, 50), size: 1, reason: "capacity: total capacity is -5 GiB"},
		{name: "size 0 is a manage request", pool: thickPool(0, 0), size: 0, ok: true},
		{name: "negative size", pool: thickPool(100, 100), size: -1, reason: "capacity: invalid size -1 GiB"},
		{name: "NaN free fails closed", pool: thickPool(100, math.NaN()), size: 1, reason: "capacity: figures are not numbers"},
		{name: "NaN allocated fails closed", pool: thinPool(100, 50, math.NaN(), 20), size: 1, reason: "capacity: figures are not numbers"},
		{name: "huge request", pool: thickPool(100, 100), size: storage.MaxVolumeGiB,
			reason: "capacity 100 GiB free < 1048576 GiB requested"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := CheckCapacityFor(tc.pool, tc.size, tc.thick)
			if ok != tc.ok || reason != tc.reason {
				t.Fatalf("CheckCapacityFor = %v, %q; want %v, %q", ok, reason, tc.ok, tc.reason)
			}
			if !tc.thick {
				ok2, reason2 := CheckCapacity(tc.pool, tc.size)
				if ok2 != ok || reason2 != reason {
					t.Fatalf("CheckCapacity = %v, %q; CheckCapacityFor = %v, %q", ok2, reason2, ok, reason)
				}
			}
		})
	}
}

func TestThickRequested(t *testing.T) {
	tests := []struct {
		specs map[string]string
		want  bool
	}{
		{nil, false},
		{map[string]string{"provisioning:type": "thick"}, true},
		{map[string]string{"provisioning:type": "thin"}, false},
		// Cinder compares the raw string: no operators, no case folding.
		{map[string]string{"provisioning:type": "<is> thick"}, false},
		{map[string]string{"provisioning:type": "Thick"}, false},
		{map[string]string{"capabilities:provisioning:type": "thick"}, false},
	}
	for _, tc := range tests {
		if got := ThickRequested(tc.specs); got != tc.want {
			t.Errorf("ThickRequested(%v) = %v, want %v", tc.specs, got, tc.want)
		}
	}
}

func TestEffectiveRatio(t *testing.T) {
	auto := func(p Pool) Pool { p.OverSubscriptionAuto = true; return p }
	tests := []struct {
		name string
		pool Pool
		want float64
	}{
		{"not thin", with(thickPool(100, 50), func(p *Pool) { p.MaxOverSubscriptionRatio = 7 }), 1},
		{"thin configured", thinPool(100, 50, 10, 7.5), 7.5},
		{"thin configured below 1 kept", thinPool(100, 50, 10, 0.5), 0.5},
		{"thin unknown total", with(thinPool(0, 50, 10, 7.5), func(p *Pool) { p.TotalKind = storage.Unknown }), 1},
		{"thin infinite free", with(thinPool(100, 0, 10, 7.5), func(p *Pool) { p.FreeKind = storage.Infinite }), 1},
		{"auto nothing provisioned", auto(thinPool(100, 50, 0, 0)), 20},
		{"auto formula", auto(thinPool(100, 40, 300, 0)), 5.918032786885246}, // Python: 1 + 300/61
		{"auto empty pool", auto(thinPool(100, 100, 50, 0)), 51},
		{"auto divisor zero", auto(thinPool(100, 101, 5, 0)), 0},
		{"auto negative divisor", auto(thinPool(100, 150, 10, 0)), 0.7959183673469388}, // Python: 1 + 10/-49
		{"auto not thin", auto(thickPool(100, 40)), 1},
	}
	for _, tc := range tests {
		if got := effectiveRatio(&tc.pool); got != tc.want {
			t.Errorf("%s: effectiveRatio = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestVirtualFree(t *testing.T) {
	tests := []struct {
		name  string
		pool  Pool
		thick bool
		want  float64
	}{
		{"thick: free", thickPool(100, 50), false, 50},
		{"thick: free minus reserve", with(thickPool(100, 50), func(p *Pool) { p.ReservedPercentage = 10 }), false, 40},
		{"thick: reserve floored", with(thickPool(109, 50), func(p *Pool) { p.ReservedPercentage = 10 }), false, 40},
		{"thin: total x ratio - provisioned - reserve", with(thinPool(100, 10, 500, 20), func(p *Pool) { p.ReservedPercentage = 10 }), false, 2000 - 500 - 10},
		{"thin: can go negative", thinPool(100, 10, 2500, 20), false, -500},
		{"thin pool, thick request: free - reserve", with(thinPool(100, 10, 500, 20), func(p *Pool) { p.ReservedPercentage = 5 }), true, 5},
		{"thin auto", with(thinPool(100, 40, 300, 0), func(p *Pool) { p.OverSubscriptionAuto = true }), false, 291.80327868852464}, // Python: 100*(1+300/61) - 300 - 0
	}
	for _, tc := range tests {
		if got := virtualFree(&tc.pool, tc.thick); got != tc.want {
			t.Errorf("%s: virtualFree = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAppendTrimmed(t *testing.T) {
	tests := []struct {
		v         float64
		gb, ratio string
	}{
		{0, "0", "0.0"},
		{5, "5", "5.0"},
		{2.5, "2.5", "2.5"},
		{2.333333, "2.33", "2.33"},
		{21.456, "21.46", "21.46"},
		{-5, "-5", "-5.0"},
		{-0.001, "0", "0.0"},
		{1e20, "1e+20", "1e+20"},
		{math.Inf(1), "+Inf", "+Inf"},
	}
	for _, tc := range tests {
		if got := string(appendGB(nil, tc.v)); got != tc.gb {
			t.Errorf("appendGB(%v) = %q, want %q", tc.v, got, tc.gb)
		}
		if got := string(appendRatio(nil, tc.v)); got != tc.ratio {
			t.Errorf("appendRatio(%v) = %q, want %q", tc.v, got, tc.ratio)
		}
	}
}

package placement

import (
	"math"
	"slices"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// weighOnly builds an engine whose only filter never rejects, so a test sees
// the weighers alone.
func weighOnly(t testing.TB, weighers []string, mutate func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Filters = []string{IgnoreAttemptedHostsFilter}
	cfg.Weighers = weighers
	if mutate != nil {
		mutate(&cfg)
	}
	return mustEngine(t, cfg)
}

func free(name string, gb float64) Pool {
	return with(named(name), func(p *Pool) { p.FreeGB = gb })
}

func unknownFree(name string) Pool {
	return with(named(name), func(p *Pool) { p.FreeKind = storage.Unknown })
}

func infiniteFree(name string) Pool {
	return with(named(name), func(p *Pool) { p.FreeKind = storage.Infinite; p.TotalKind = storage.Infinite })
}

func TestWeighers(t *testing.T) {
	neg := func(c *Config) { c.CapacityWeightMultiplier = -1 }
	seq := func(v ...float64) func() float64 {
		return func() float64 { x := v[0]; v = v[1:]; return x }
	}
	tests := []struct {
		name     string
		weighers []string
		mutate   func(*Config)
		req      Request
		pools    []Pool
		rnd      func() float64
		want     []Scored
	}{
		{
			name: "capacity spreads with +1", weighers: []string{CapacityWeigher},
			pools: []Pool{free("b", 50), free("a", 100), free("c", 0)},
			want:  []Scored{{"a", 1}, {"b", 0.5}, {"c", 0}},
		},
		{
			name: "capacity stacks with -1", weighers: []string{CapacityWeigher}, mutate: neg,
			pools: []Pool{free("b", 50), free("a", 100), free("c", 0)},
			want:  []Scored{{"c", 0}, {"b", -0.5}, {"a", -1}},
		},
		{
			name: "capacity multiplier scales", weighers: []string{CapacityWeigher},
			mutate: func(c *Config) { c.CapacityWeightMultiplier = 2.5 },
			pools:  []Pool{free("a", 100), free("b", 0)},
			want:   []Scored{{"a", 2.5}, {"b", 0}},
		},
		{
			name: "capacity multiplier zero silences", weighers: []string{CapacityWeigher},
			mutate: func(c *Config) { c.CapacityWeightMultiplier = 0 },
			pools:  []Pool{free("b", 100), free("a", 0)},
			want:   []Scored{{"a", 0}, {"b", 0}},
		},
		{
			name: "all equal normalise to 0, ties by name", weighers: []string{CapacityWeigher},
			pools: []Pool{free("c", 7), free("a", 7), free("b", 7)},
			want:  []Scored{{"a", 0}, {"b", 0}, {"c", 0}},
		},
		{
			name: "single pool weighs 0", weighers: []string{CapacityWeigher},
			pools: []Pool{free("a", 7)},
			want:  []Scored{{"a", 0}},
		},
		{
			name: "reserve counts in capacity weight", weighers: []string{CapacityWeigher},
			// a: 60 - floor(1000*0.5) < b: 100 - 0.
			pools: []Pool{with(free("a", 600), func(p *Pool) { p.ReservedPercentage = 50 }), free("b", 200)},
			want:  []Scored{{"b", 1}, {"a", 0}},
		},
		{
			// thin: 1000*20 - 0 - 0 = 20000 beats thick 500.
			name: "thin weighs virtual free", weighers: []string{CapacityWeigher},
			pools: []Pool{free("thick", 500), with(thinPool(1000, 10, 0, 20), func(p *Pool) { p.Name = "thin" })},
			want:  []Scored{{"thin", 1}, {"thick", 0}},
		},
		{
			// provisioning:type thick: the thin pool weighs its free 10.
			name: "thick request weighs real free", weighers: []string{CapacityWeigher},
			req:   Request{ExtraSpecs: map[string]string{"provisioning:type": "thick"}},
			pools: []Pool{free("thick", 500), with(thinPool(1000, 10, 0, 20), func(p *Pool) { p.Name = "thin" })},
			want:  []Scored{{"thick", 1}, {"thin", 0}},
		},
		{
			// Spreading: unknown and infinite weigh -1, below every pool
			// with room: range [-1, 100].
			name: "unknown and infinite rank lowest when spreading", weighers: []string{CapacityWeigher},
			pools: []Pool{unknownFree("u"), free("a", 100), infiniteFree("i"), free("b", 0)},
			want:  []Scored{{"a", 1}, {"b", 1.0 / 101}, {"i", 0}, {"u", 0}},
		},
		{
			// Stacking: +Inf becomes 100 + 100*100 = 10100, so the finite
			// pools share [0, 100/10100] and the others get -1.
			name: "unknown and infinite rank lowest when stacking", weighers: []string{CapacityWeigher}, mutate: neg,
			pools: []Pool{unknownFree("u"), free("a", 100), infiniteFree("i"), free("b", 0)},
			want:  []Scored{{"b", 0}, {"a", -100.0 / 10100}, {"i", -1}, {"u", -1}},
		},
		{
			// Stacking with equal finite values: +Inf becomes 50 + 10000.
			name: "stacking infinite with equal finite pools", weighers: []string{CapacityWeigher}, mutate: neg,
			pools: []Pool{infiniteFree("i"), free("a", 50), free("b", 50)},
			want:  []Scored{{"a", 0}, {"b", 0}, {"i", -1}},
		},
		{
			name: "all infinite are equal", weighers: []string{CapacityWeigher}, mutate: neg,
			pools: []Pool{infiniteFree("z"), unknownFree("y"), infiniteFree("x")},
			want:  []Scored{{"x", 0}, {"y", 0}, {"z", 0}},
		},
		{
			name: "all unknown are equal when spreading", weighers: []string{CapacityWeigher},
			pools: []Pool{unknownFree("b"), unknownFree("a")},
			want:  []Scored{{"a", 0}, {"b", 0}},
		},
		{
			name: "allocated capacity prefers least allocated", weighers: []string{AllocatedCapacityWeigher},
			pools: []Pool{
				with(named("a"), func(p *Pool) { p.AllocatedGB = 200 }),
				with(named("b"), func(p *Pool) { p.AllocatedGB = 0 }),
				with(named("c"), func(p *Pool) { p.AllocatedGB = 100 }),
			},
			want: []Scored{{"b", 0}, {"c", -0.5}, {"a", -1}},
		},
		{
			name: "allocated capacity +1 stacks", weighers: []string{AllocatedCapacityWeigher},
			mutate: func(c *Config) { c.AllocatedCapacityWeightMultiplier = 1 },
			pools: []Pool{
				with(named("a"), func(p *Pool) { p.AllocatedGB = 0 }),
				with(named("b"), func(p *Pool) { p.AllocatedGB = 10 }),
			},
			want: []Scored{{"b", 1}, {"a", 0}},
		},
		{
			name: "volume number prefers fewest volumes", weighers: []string{VolumeNumberWeigher},
			pools: []Pool{
				with(named("a"), func(p *Pool) { p.VolumeCount = 5 }),
				with(named("b"), func(p *Pool) { p.VolumeCount = 1 }),
				with(named("c"), func(p *Pool) { p.VolumeCount = 3 }),
			},
			want: []Scored{{"b", 0}, {"c", -0.5}, {"a", -1}},
		},
		{
			name: "chance uses rnd in input order", weighers: []string{ChanceWeigher},
			pools: []Pool{named("a"), named("b"), named("c")},
			rnd:   seq(0.2, 0.6, 0.4),
			want:  []Scored{{"b", 1}, {"c", 0.5}, {"a", 0}},
		},
		{
			name: "chance multiplier", weighers: []string{ChanceWeigher},
			mutate: func(c *Config) { c.ChanceWeightMultiplier = -2 },
			pools:  []Pool{named("a"), named("b")},
			rnd:    seq(0.9, 0.1),
			want:   []Scored{{"b", 0}, {"a", -2}},
		},
		{
			name: "chance with equal draws ties by name", weighers: []string{ChanceWeigher},
			pools: []Pool{named("b"), named("a")},
			rnd:   seq(0.5, 0.5),
			want:  []Scored{{"a", 0}, {"b", 0}},
		},
		{
			// capacity: a=1, b=0; allocated (-1): a=-1, b=0; volumes (-1):
			// a=0, b=-1. Sum: a=0, b=-1.
			name:     "weighers add up",
			weighers: []string{CapacityWeigher, AllocatedCapacityWeigher, VolumeNumberWeigher},
			pools: []Pool{
				with(free("a", 100), func(p *Pool) { p.AllocatedGB = 50; p.VolumeCount = 1 }),
				with(free("b", 10), func(p *Pool) { p.AllocatedGB = 0; p.VolumeCount = 9 }),
			},
			want: []Scored{{"a", 0}, {"b", -1}},
		},
		{
			name: "weighers order does not change the ranking", weighers: []string{VolumeNumberWeigher, CapacityWeigher},
			pools: []Pool{
				with(free("a", 100), func(p *Pool) { p.VolumeCount = 1 }),
				with(free("b", 10), func(p *Pool) { p.VolumeCount = 9 }),
			},
			want: []Scored{{"a", 1}, {"b", -1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := weighOnly(t, tc.weighers, tc.mutate)
			req := tc.req
			req.SizeGB = 1
			d, err := e.Place(req, tc.pools, tc.rnd)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Ranked) != len(tc.want) {
				t.Fatalf("ranked = %v, want %v", d.Ranked, tc.want)
			}
			for i := range tc.want {
				g, w := d.Ranked[i], tc.want[i]
				if g.Pool != w.Pool || math.Abs(g.Weight-w.Weight) > 1e-12 {
					t.Fatalf("ranked = %v, want %v", d.Ranked, tc.want)
				}
			}
			if d.Pool.Name != tc.want[0].Pool {
				t.Errorf("Decision.Pool = %q, want %q", d.Pool.Name, tc.want[0].Pool)
			}
		})
	}
}

func TestTieBreakIsDeterministic(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	var pools []Pool
	for _, n := range []string{"n@b#5", "n@b#1", "n@b#3", "n@b#2", "n@b#4"} {
		pools = append(pools, free(n, 100))
	}
	want := []string{"n@b#1", "n@b#2", "n@b#3", "n@b#4", "n@b#5"}
	for range 3 {
		d, err := e.Place(Request{SizeGB: 1}, pools, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := rankedNames(d); !slices.Equal(got, want) {
			t.Fatalf("ranked = %v, want %v", got, want)
		}
		slices.Reverse(pools)
	}
}

func TestChanceSkipsRejectedPools(t *testing.T) {
	e := mustEngine(t, with2(DefaultConfig(), func(c *Config) { c.Weighers = []string{ChanceWeigher} }))
	calls := 0
	rnd := func() float64 { calls++; return float64(calls) }
	pools := []Pool{free("a", 100), free("full", 0), free("b", 100)}
	d, err := e.Place(Request{SizeGB: 10}, pools, rnd)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("rnd called %d times, want once per passing pool (2)", calls)
	}
	if got := rankedNames(d); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("ranked = %v", got)
	}
}

func with2(c Config, f func(*Config)) Config { f(&c); return c }

func TestNormalize(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	tests := []struct {
		name string
		in   []float64
		want []float64
	}{
		{"empty", nil, nil},
		{"one", []float64{5}, []float64{0}},
		{"equal", []float64{3, 3, 3}, []float64{0, 0, 0}},
		{"range", []float64{0, 5, 10}, []float64{0, 0.5, 1}},
		{"negative", []float64{-10, 0, 10}, []float64{0, 0.5, 1}},
		{"plus inf clamps to 1", []float64{inf, 0, 10}, []float64{1, 0, 1}},
		{"minus inf and NaN clamp to 0", []float64{-inf, nan, 0, 10}, []float64{0, 0, 0, 1}},
		{"all plus inf", []float64{inf, inf}, []float64{0, 0}},
		{"no finite value", []float64{nan, -inf, inf}, []float64{0, 0, 1}},
		{"range overflows", []float64{-math.MaxFloat64, 0, math.MaxFloat64}, []float64{0, 0.5, 1}},
	}
	for _, tc := range tests {
		got := slices.Clone(tc.in)
		normalize(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: normalize(%v) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestWeightsStayFinite(t *testing.T) {
	// Malformed figures (which the capacity filter would reject) must not
	// turn weights into NaN when the filter is not configured.
	e := weighOnly(t, []string{CapacityWeigher, AllocatedCapacityWeigher, ChanceWeigher}, nil)
	pools := []Pool{
		with(free("a", math.NaN()), func(p *Pool) { p.AllocatedGB = math.Inf(1) }),
		with(free("b", math.Inf(-1)), func(p *Pool) { p.AllocatedGB = math.NaN() }),
		free("c", 10),
	}
	draws := []float64{math.NaN(), math.Inf(1), 0.5}
	d, err := e.Place(Request{SizeGB: 1}, pools, func() float64 { x := draws[0]; draws = draws[1:]; return x })
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Ranked {
		if math.IsNaN(s.Weight) || math.IsInf(s.Weight, 0) {
			t.Fatalf("weight of %s is %v", s.Pool, s.Weight)
		}
	}
}

func TestNoNegativeZeroWeights(t *testing.T) {
	// -1 x normalised 0 is -0 in IEEE arithmetic; Cinder's sum starts from
	// 0.0 and reports +0, and so do we (JSON would show "-0").
	e := weighOnly(t, []string{CapacityWeigher}, func(c *Config) { c.CapacityWeightMultiplier = -1 })
	d, err := e.Place(Request{SizeGB: 1}, []Pool{free("a", 100), free("b", 0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Ranked {
		if s.Weight == 0 && math.Signbit(s.Weight) {
			t.Errorf("%s has weight -0", s.Pool)
		}
	}
}

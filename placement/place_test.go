package placement

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	wantFilters := []string{"AvailabilityZoneFilter", "CapacityFilter", "CapabilitiesFilter", "IgnoreAttemptedHostsFilter", "AffinityFilter"}
	if !slices.Equal(c.Filters, wantFilters) {
		t.Errorf("Filters = %v", c.Filters)
	}
	if !slices.Equal(c.Weighers, []string{"CapacityWeigher"}) {
		t.Errorf("Weighers = %v", c.Weighers)
	}
	if c.CapacityWeightMultiplier != 1 || c.AllocatedCapacityWeightMultiplier != -1 ||
		c.VolumeNumberWeightMultiplier != -1 || c.ChanceWeightMultiplier != 1 {
		t.Errorf("multipliers = %+v", c)
	}
	// Each call returns fresh slices: changing one config changes no other.
	c.Filters[0] = "changed"
	if DefaultConfig().Filters[0] != AvailabilityZoneFilter {
		t.Error("DefaultConfig shares its slices")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		err      string
		filters  []string
		weighers []string
	}{
		{name: "default", cfg: DefaultConfig(),
			filters:  []string{"AvailabilityZoneFilter", "CapacityFilter", "CapabilitiesFilter", "IgnoreAttemptedHostsFilter", "AffinityFilter"},
			weighers: []string{"CapacityWeigher"}},
		{name: "empty lists get defaults", cfg: Config{Filters: []string{}},
			filters:  []string{"AvailabilityZoneFilter", "CapacityFilter", "CapabilitiesFilter", "IgnoreAttemptedHostsFilter", "AffinityFilter"},
			weighers: []string{"CapacityWeigher"}},
		{name: "every name", cfg: Config{
			Filters:  []string{"CapacityFilter", "SameBackendFilter", "DifferentBackendFilter", "AvailabilityZoneFilter", "CapabilitiesFilter", "IgnoreAttemptedHostsFilter", "AffinityFilter"},
			Weighers: []string{"ChanceWeigher", "VolumeNumberWeigher", "AllocatedCapacityWeigher", "CapacityWeigher"},
		},
			filters:  []string{"CapacityFilter", "SameBackendFilter", "DifferentBackendFilter", "AvailabilityZoneFilter", "CapabilitiesFilter", "IgnoreAttemptedHostsFilter", "AffinityFilter"},
			weighers: []string{"ChanceWeigher", "VolumeNumberWeigher", "AllocatedCapacityWeigher", "CapacityWeigher"}},
		{name: "unknown filter", cfg: Config{Filters: []string{"CapacityFilter", "JsonFilter"}}, err: `placement: unknown filter "JsonFilter"`},
		{name: "filter names are case sensitive", cfg: Config{Filters: []string{"capacityfilter"}}, err: `placement: unknown filter "capacityfilter"`},
		{name: "unknown weigher", cfg: Config{Weighers: []string{"GoodnessWeigher"}}, err: `placement: unknown weigher "GoodnessWeigher"`},
		{name: "duplicate filter", cfg: Config{Filters: []string{"CapacityFilter", "CapacityFilter"}}, err: `placement: filter "CapacityFilter" listed twice`},
		{name: "duplicate weigher", cfg: Config{Weighers: []string{"ChanceWeigher", "ChanceWeigher"}}, err: `placement: weigher "ChanceWeigher" listed twice`},
		{name: "NaN multiplier", cfg: Config{CapacityWeightMultiplier: math.NaN()}, err: `placement: weigher "CapacityWeigher" multiplier NaN is not a finite number`},
		{name: "infinite multiplier", cfg: Config{Weighers: []string{"VolumeNumberWeigher"}, VolumeNumberWeightMultiplier: math.Inf(-1)},
			err: `placement: weigher "VolumeNumberWeigher" multiplier -Inf is not a finite number`},
		{name: "multiplier of an unused weigher is not checked", cfg: Config{ChanceWeightMultiplier: math.NaN()},
			filters:  []string{"AvailabilityZoneFilter", "CapacityFilter", "CapabilitiesFilter", "IgnoreAttemptedHostsFilter", "AffinityFilter"},
			weighers: []string{"CapacityWeigher"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(tc.cfg)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("New error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var fs, ws []string
			for _, f := range e.filters {
				fs = append(fs, f.name)
			}
			for _, w := range e.weighers {
				ws = append(ws, w.name)
			}
			if !slices.Equal(fs, tc.filters) || !slices.Equal(ws, tc.weighers) {
				t.Fatalf("engine filters %v weighers %v; want %v %v", fs, ws, tc.filters, tc.weighers)
			}
		})
	}
}

func TestNewTakesMultipliersAsGiven(t *testing.T) {
	// A zero Config keeps zero multipliers: the capacity weigher is silent
	// and the name decides. DefaultConfig spreads.
	pools := []Pool{free("a", 10), free("b", 100)}
	zero := mustEngine(t, Config{})
	d, err := zero.Place(Request{SizeGB: 1}, pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Pool.Name != "a" {
		t.Errorf("zero Config chose %s, want a (multiplier 0, tie by name)", d.Pool.Name)
	}
	def := mustEngine(t, DefaultConfig())
	if d, _ := def.Place(Request{SizeGB: 1}, pools, nil); d.Pool.Name != "b" {
		t.Errorf("DefaultConfig chose %s, want b (spread)", d.Pool.Name)
	}
}

func TestPlaceErrors(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	_, err := e.Place(Request{SizeGB: -1}, []Pool{free("a", 10)}, nil)
	if !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("negative size: err = %v, want storage.ErrInvalid", err)
	}

	chance := mustEngine(t, with2(DefaultConfig(), func(c *Config) { c.Weighers = []string{ChanceWeigher} }))
	if _, err := chance.Place(Request{SizeGB: 1}, []Pool{free("a", 10)}, nil); err == nil || !strings.Contains(err.Error(), "rnd is nil") {
		t.Errorf("chance without rnd: err = %v", err)
	}

	d, err := e.Place(Request{SizeGB: 1}, nil, nil)
	var nv *NoValidPoolError
	if !errors.As(err, &nv) || !errors.Is(err, ErrNoValidPool) {
		t.Fatalf("no pools: err = %v", err)
	}
	if nv.Pools != 0 || len(d.Ranked) != 0 || len(d.Rejected) != 0 {
		t.Errorf("no pools: %+v %+v", nv, d)
	}
}

func TestPlaceDecision(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	pools := []Pool{
		with(free("h1@lvm#a", 300), func(p *Pool) { p.AvailabilityZone = "az2" }),
		free("h1@lvm#b", 200),
		free("h2@lvm#a", 3),
		free("h2@lvm#b", 400),
		with(free("h3@nfs#a", 900), func(p *Pool) { p.Capabilities = map[string]string{"storage_protocol": "nfs"} }),
		free("h4@lvm#a", 100),
	}
	for i := range pools {
		if pools[i].Capabilities == nil {
			pools[i].Capabilities = map[string]string{"storage_protocol": "iSCSI"}
		}
	}
	req := Request{
		SizeGB:           5,
		AvailabilityZone: "nova",
		ExtraSpecs:       map[string]string{"storage_protocol": "iSCSI", "volume_backend_name": "lvm"},
		Tried:            []string{"h2@lvm#b"},
	}
	d, err := e.Place(req, pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Pool.Name != "h1@lvm#b" || !reflect.DeepEqual(d.Pool, pools[1]) {
		t.Errorf("Decision.Pool = %+v", d.Pool)
	}
	// Free 200 and 100 over the range [100, 200].
	wantRanked := []Scored{{"h1@lvm#b", 1}, {"h4@lvm#a", 0}}
	if !reflect.DeepEqual(d.Ranked, wantRanked) {
		t.Errorf("Ranked = %v, want %v", d.Ranked, wantRanked)
	}
	wantRejected := []string{
		`h1@lvm#a|AvailabilityZoneFilter|availability zone "az2" != "nova"`,
		`h2@lvm#a|CapacityFilter|capacity 3 GiB free < 5 GiB requested`,
		`h2@lvm#b|IgnoreAttemptedHostsFilter|already tried`,
		`h3@nfs#a|CapabilitiesFilter|capabilities: volume_backend_name "nfs" does not match "lvm"`,
	}
	if got := rejections(d); !slices.Equal(got, wantRejected) {
		t.Errorf("Rejected =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantRejected, "\n"))
	}
}

func TestFilterOrderDecidesTheReason(t *testing.T) {
	// This pool fails both the zone and the capacity checks.
	pools := []Pool{with(free("p", 1), func(p *Pool) { p.AvailabilityZone = "az2" })}
	req := Request{SizeGB: 5, AvailabilityZone: "nova"}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{[]string{AvailabilityZoneFilter, CapacityFilter}, `p|AvailabilityZoneFilter|availability zone "az2" != "nova"`},
		{[]string{CapacityFilter, AvailabilityZoneFilter}, `p|CapacityFilter|capacity 1 GiB free < 5 GiB requested`},
	} {
		e := mustEngine(t, with2(DefaultConfig(), func(c *Config) { c.Filters = tc.filters }))
		d, err := e.Place(req, pools, nil)
		if !errors.Is(err, ErrNoValidPool) {
			t.Fatalf("err = %v", err)
		}
		if got := rejections(d); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("filters %v: rejected %q, want %q", tc.filters, got, tc.want)
		}
	}
}

func TestUnconfiguredFiltersDoNotRun(t *testing.T) {
	e := mustEngine(t, with2(DefaultConfig(), func(c *Config) { c.Filters = []string{CapacityFilter} }))
	pools := []Pool{with(free("p", 100), func(p *Pool) { p.AvailabilityZone = "elsewhere" })}
	req := Request{SizeGB: 5, AvailabilityZone: "nova", Tried: []string{"p"}, ExtraSpecs: map[string]string{"x": "y"}, DifferentBackendFrom: []string{"p"}}
	if _, err := e.Place(req, pools, nil); err != nil {
		t.Fatalf("only CapacityFilter configured: %v", err)
	}
}

func TestPlaceDoesNotModifyItsInput(t *testing.T) {
	e := mustEngine(t, with2(DefaultConfig(), func(c *Config) {
		c.Weighers = []string{CapacityWeigher, AllocatedCapacityWeigher, VolumeNumberWeigher, ChanceWeigher}
	}))
	pools := benchPools(200, 1)
	req := benchRequest()
	req.Tried = []string{pools[3].Name}
	req.DifferentBackendFrom = []string{pools[5].Name}
	before := clonePools(pools)
	reqBefore := fmt.Sprintf("%#v", req)
	r := rand.New(rand.NewPCG(1, 2))
	d1, err1 := e.Place(req, pools, r.Float64)
	if !reflect.DeepEqual(pools, before) || fmt.Sprintf("%#v", req) != reqBefore {
		t.Fatal("Place modified its input")
	}
	r = rand.New(rand.NewPCG(1, 2))
	d2, err2 := e.Place(req, pools, r.Float64)
	if !reflect.DeepEqual(d1, d2) || (err1 == nil) != (err2 == nil) {
		t.Fatal("same input and random sequence gave different decisions")
	}
}

func clonePools(pools []Pool) []Pool {
	out := slices.Clone(pools)
	for i := range out {
		if out[i].Capabilities != nil {
			m := make(map[string]string, len(out[i].Capabilities))
			for k, v := range out[i].Capabilities {
				m[k] = v
			}
			out[i].Capabilities = m
		}
	}
	return out
}

func TestPlaceConcurrently(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	pools := benchPools(500, 7)
	req := benchRequest()
	want, err := e.Place(req, pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				got, err := e.Place(req, pools, nil)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Error("concurrent Place gave a different decision")
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestPlaceAgreesWithNaiveReference cross-checks the engine, with its
// memoised reasons, single pass and radix ranking, against a naive
// reference built from the standalone checks, plain loops and a comparison
// sort, over thousands of varied pools.
func TestPlaceAgreesWithNaiveReference(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		req  func(pools []Pool) Request
	}{
		{"defaults", DefaultConfig(), func([]Pool) Request { return benchRequest() }},
		{"all weighers, stacking, hints", with2(DefaultConfig(), func(c *Config) {
			c.Weighers = []string{VolumeNumberWeigher, CapacityWeigher, AllocatedCapacityWeigher, ChanceWeigher}
			c.CapacityWeightMultiplier = -1
			c.ChanceWeightMultiplier = 0.25
		}), func(pools []Pool) Request {
			r := benchRequest()
			r.ExtraSpecs = map[string]string{"capabilities:storage_protocol": "<or> iSCSI <or> nfs", "driver_version": ">= 1.1", "provisioning:type": "thick"}
			r.AvailabilityZone = ""
			r.Tried = []string{pools[0].Name, pools[9].Name}
			r.DifferentBackendFrom = []string{pools[17].Name}
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEngine(t, tc.cfg)
			pools := benchPools(4000, 11)
			req := tc.req(pools)
			draws := make([]float64, len(pools))
			for i := range draws {
				draws[i] = float64(i%13) / 13
			}
			next := 0
			rnd := func() float64 { x := draws[next]; next++; return x }
			d, err := e.Place(req, pools, rnd)
			if err != nil {
				t.Fatal(err)
			}

			// Reference filtering: the first failing filter in order.
			thick := ThickRequested(req.ExtraSpecs)
			var wantRejected []string
			var passing []Pool
			for _, p := range pools {
				reason, filter := "", ""
				for _, f := range tc.cfg.Filters {
					switch f {
					case AvailabilityZoneFilter:
						if req.AvailabilityZone != "" && p.AvailabilityZone != req.AvailabilityZone {
							reason = fmt.Sprintf("availability zone %q != %q", p.AvailabilityZone, req.AvailabilityZone)
						}
					case CapacityFilter:
						if ok, why := CheckCapacityFor(p, req.SizeGB, thick); !ok {
							reason = why
						}
					case CapabilitiesFilter:
						if ok, why := MatchExtraSpecs(p, req.ExtraSpecs); !ok {
							reason = why
						}
					case IgnoreAttemptedHostsFilter:
						if slices.Contains(req.Tried, p.Name) {
							reason = "already tried"
						}
					case AffinityFilter:
						for _, h := range req.DifferentBackendFrom {
							if backendOf(h) == backendOf(p.Name) {
								reason = fmt.Sprintf("affinity: backend %q is excluded by a different-backend hint", backendOf(p.Name))
							}
						}
					}
					if reason != "" {
						filter = f
						break
					}
				}
				if reason != "" {
					wantRejected = append(wantRejected, p.Name+"|"+filter+"|"+reason)
				} else {
					passing = append(passing, p)
				}
			}
			if got := rejections(d); !slices.Equal(got, wantRejected) {
				for i := range min(len(got), len(wantRejected)) {
					if got[i] != wantRejected[i] {
						t.Fatalf("rejection %d:\n got %s\nwant %s", i, got[i], wantRejected[i])
					}
				}
				t.Fatalf("%d rejections, want %d", len(got), len(wantRejected))
			}

			// Reference weighing: Cinder's steps, written out plainly.
			total := make([]float64, len(passing))
			next = 0
			for _, name := range tc.cfg.Weighers {
				raw := make([]float64, len(passing))
				var mult float64
				for j, p := range passing {
					switch name {
					case CapacityWeigher:
						mult = tc.cfg.CapacityWeightMultiplier
						if p.FreeKind != storage.Known || p.TotalKind != storage.Known {
							raw[j] = map[bool]float64{true: -1, false: math.Inf(1)}[mult > 0]
						} else {
							raw[j] = virtualFree(&p, thick)
						}
					case AllocatedCapacityWeigher:
						mult, raw[j] = tc.cfg.AllocatedCapacityWeightMultiplier, p.AllocatedGB
					case VolumeNumberWeigher:
						mult, raw[j] = tc.cfg.VolumeNumberWeightMultiplier, float64(p.VolumeCount)
					case ChanceWeigher:
						mult, raw[j] = tc.cfg.ChanceWeightMultiplier, rnd()
					}
				}
				lo, hi := math.Inf(1), math.Inf(-1)
				for _, x := range raw {
					if !math.IsInf(x, 0) {
						lo, hi = min(lo, x), max(hi, x)
					}
				}
				for j, x := range raw {
					if math.IsInf(x, 1) {
						if off := (hi - lo) * 100; off == 0 {
							raw[j] = hi + 10000
						} else {
							raw[j] = hi + off
						}
					}
				}
				lo, hi = slices.Min(raw), slices.Max(raw)
				for j := range raw {
					if hi != lo {
						total[j] += mult * ((raw[j] - lo) / (hi - lo))
					}
				}
			}
			want := make([]Scored, len(passing))
			for j, p := range passing {
				want[j] = Scored{Pool: p.Name, Weight: total[j]}
			}
			slices.SortStableFunc(want, func(a, b Scored) int {
				if a.Weight != b.Weight {
					return -cmp.Compare(a.Weight, b.Weight)
				}
				return strings.Compare(a.Pool, b.Pool)
			})
			if len(d.Ranked) != len(want) {
				t.Fatalf("%d ranked, want %d", len(d.Ranked), len(want))
			}
			for j := range want {
				if d.Ranked[j].Pool != want[j].Pool || math.Abs(d.Ranked[j].Weight-want[j].Weight) > 1e-9 {
					t.Fatalf("ranked[%d] = %+v, want %+v", j, d.Ranked[j], want[j])
				}
			}
			if d.Pool.Name != want[0].Pool {
				t.Fatalf("winner %s, want %s", d.Pool.Name, want[0].Pool)
			}
		})
	}
}

// TestRankingMatchesCheckCapacity cross-checks the engine against the
// standalone functions on a large varied set: a pool passes Place exactly
// when the standalone checks say so.
func TestPlaceAgreesWithStandaloneChecks(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	pools := benchPools(3000, 3)
	req := benchRequest()
	d, err := e.Place(req, pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	passed := make(map[string]bool)
	for _, s := range d.Ranked {
		passed[s.Pool] = true
	}
	if len(d.Ranked)+len(d.Rejected) != len(pools) {
		t.Fatalf("%d ranked + %d rejected != %d pools", len(d.Ranked), len(d.Rejected), len(pools))
	}
	thick := ThickRequested(req.ExtraSpecs)
	for _, p := range pools {
		azOK := req.AvailabilityZone == "" || p.AvailabilityZone == req.AvailabilityZone
		capOK, _ := CheckCapacityFor(p, req.SizeGB, thick)
		specOK, _ := MatchExtraSpecs(p, req.ExtraSpecs)
		if want := azOK && capOK && specOK; passed[p.Name] != want {
			t.Errorf("%s: passed=%v, standalone checks say %v", p.Name, passed[p.Name], want)
		}
	}
	if !slices.IsSortedFunc(d.Ranked, func(a, b Scored) int {
		if a.Weight != b.Weight {
			if a.Weight > b.Weight {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Pool, b.Pool)
	}) {
		t.Error("Ranked is not sorted by weight, then name")
	}
	if d.Ranked[0].Weight != 1 {
		t.Errorf("best weight %v, want 1 (normalised capacity)", d.Ranked[0].Weight)
	}
}

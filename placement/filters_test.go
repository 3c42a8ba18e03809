package placement

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// named returns a roomy thick pool called name ("host@backend#pool"), with
// Host and Backend taken from the name.
func named(name string) Pool {
	p := thickPool(1000, 500)
	p.Name = name
	host, rest, _ := strings.Cut(name, "@")
	backend, _, _ := strings.Cut(rest, "#")
	p.Host, p.Backend = host, backend
	return p
}

func rankedNames(d Decision) []string {
	out := make([]string, len(d.Ranked))
	for i, s := range d.Ranked {
		out[i] = s.Pool
	}
	return out
}

// rejections renders Decision.Rejected as "pool|filter|reason" lines.
func rejections(d Decision) []string {
	out := make([]string, len(d.Rejected))
	for i, r := range d.Rejected {
		out[i] = r.Pool + "|" + r.Filter + "|" + r.Reason
	}
	return out
}

func mustEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// filterCase runs one filter alone over pools and checks which pass (sorted
// by name, since every pool weighs the same) and what is rejected.
type filterCase struct {
	name     string
	req      Request
	pools    []Pool
	pass     []string
	rejected []string // "pool|filter|reason"
}

func runFilterCases(t *testing.T, filterName string, tests []filterCase) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Filters = []string{filterName}
	e := mustEngine(t, cfg)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			if req.SizeGB == 0 {
				req.SizeGB = 1
			}
			d, err := e.Place(req, tc.pools, nil)
			if len(tc.pass) == 0 {
				if err == nil {
					t.Fatalf("Place passed %v, want no valid pool", rankedNames(d))
				}
			} else if err != nil {
				t.Fatalf("Place: %v", err)
			}
			got := rankedNames(d)
			slices.Sort(got)
			if !slices.Equal(got, tc.pass) {
				t.Errorf("passing = %q, want %q", got, tc.pass)
			}
			if r := rejections(d); !slices.Equal(r, tc.rejected) {
				t.Errorf("rejected = %q, want %q", r, tc.rejected)
			}
		})
	}
}

func TestAvailabilityZoneFilter(t *testing.T) {
	nova := named("h1@lvm#a")
	az2 := with(named("h2@lvm#b"), func(p *Pool) { p.AvailabilityZone = "az2" })
	noAZ := with(named("h3@lvm#c"), func(p *Pool) { p.AvailabilityZone = "" })
	pools := []Pool{nova, az2, noAZ}
	runFilterCases(t, AvailabilityZoneFilter, []filterCase{
		{name: "any zone", pools: pools, pass: []string{"h1@lvm#a", "h2@lvm#b", "h3@lvm#c"}},
		{name: "nova", req: Request{AvailabilityZone: "nova"}, pools: pools, pass: []string{"h1@lvm#a"},
			rejected: []string{
				`h2@lvm#b|AvailabilityZoneFilter|availability zone "az2" != "nova"`,
				`h3@lvm#c|AvailabilityZoneFilter|availability zone "" != "nova"`,
			}},
		{name: "az2", req: Request{AvailabilityZone: "az2"}, pools: pools, pass: []string{"h2@lvm#b"},
			rejected: []string{
				`h1@lvm#a|AvailabilityZoneFilter|availability zone "nova" != "az2"`,
				`h3@lvm#c|AvailabilityZoneFilter|availability zone "" != "az2"`,
			}},
		{name: "case sensitive", req: Request{AvailabilityZone: "Nova"}, pools: []Pool{nova},
			rejected: []string{`h1@lvm#a|AvailabilityZoneFilter|availability zone "nova" != "Nova"`}},
	})
}

func TestIgnoreAttemptedHostsFilter(t *testing.T) {
	pools := []Pool{named("h1@lvm#a"), named("h1@lvm#b"), named("h2@lvm#a")}
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("h9@lvm#p%d", i))
	}
	runFilterCases(t, IgnoreAttemptedHostsFilter, []filterCase{
		{name: "first attempt", pools: pools, pass: []string{"h1@lvm#a", "h1@lvm#b", "h2@lvm#a"}},
		{name: "one tried", req: Request{Tried: []string{"h1@lvm#a"}}, pools: pools,
			pass:     []string{"h1@lvm#b", "h2@lvm#a"},
			rejected: []string{"h1@lvm#a|IgnoreAttemptedHostsFilter|already tried"}},
		// Pools are attempted one by one: a sibling pool on the same
		// backend is still a candidate.
		{name: "pool, not backend", req: Request{Tried: []string{"h1@lvm#b", "h2@lvm#a"}}, pools: pools,
			pass: []string{"h1@lvm#a"},
			rejected: []string{
				"h1@lvm#b|IgnoreAttemptedHostsFilter|already tried",
				"h2@lvm#a|IgnoreAttemptedHostsFilter|already tried",
			}},
		{name: "unknown tried names are harmless", req: Request{Tried: []string{"gone@x#y"}}, pools: pools,
			pass: []string{"h1@lvm#a", "h1@lvm#b", "h2@lvm#a"}},
		{name: "all tried", req: Request{Tried: []string{"h2@lvm#a", "h1@lvm#a", "h1@lvm#b"}}, pools: pools,
			rejected: []string{
				"h1@lvm#a|IgnoreAttemptedHostsFilter|already tried",
				"h1@lvm#b|IgnoreAttemptedHostsFilter|already tried",
				"h2@lvm#a|IgnoreAttemptedHostsFilter|already tried",
			}},
		{name: "long tried list uses a set", req: Request{Tried: append(slices.Clone(many), "h1@lvm#b")}, pools: pools,
			pass:     []string{"h1@lvm#a", "h2@lvm#a"},
			rejected: []string{"h1@lvm#b|IgnoreAttemptedHostsFilter|already tried"}},
	})
}

func TestAffinityFilter(t *testing.T) {
	pools := []Pool{named("h1@lvm#a"), named("h1@lvm#b"), named("h1@nfs#a"), named("h2@lvm#a")}
	all := []string{"h1@lvm#a", "h1@lvm#b", "h1@nfs#a", "h2@lvm#a"}
	runFilterCases(t, AffinityFilter, []filterCase{
		{name: "no hints", pools: pools, pass: all},
		{name: "same backend as one pool", req: Request{SameBackendAs: []string{"h1@lvm#b"}}, pools: pools,
			pass: []string{"h1@lvm#a", "h1@lvm#b"},
			rejected: []string{
				`h1@nfs#a|AffinityFilter|affinity: backend "h1@nfs" is not the backend of any same-backend hint`,
				`h2@lvm#a|AffinityFilter|affinity: backend "h2@lvm" is not the backend of any same-backend hint`,
			}},
		{name: "same backend as any of several", req: Request{SameBackendAs: []string{"h1@nfs#a", "h2@lvm#z"}}, pools: pools,
			pass: []string{"h1@nfs#a", "h2@lvm#a"},
			rejected: []string{
				`h1@lvm#a|AffinityFilter|affinity: backend "h1@lvm" is not the backend of any same-backend hint`,
				`h1@lvm#b|AffinityFilter|affinity: backend "h1@lvm" is not the backend of any same-backend hint`,
			}},
		{name: "hint without pool part", req: Request{SameBackendAs: []string{"h2@lvm"}}, pools: pools,
			pass: []string{"h2@lvm#a"},
			rejected: []string{
				`h1@lvm#a|AffinityFilter|affinity: backend "h1@lvm" is not the backend of any same-backend hint`,
				`h1@lvm#b|AffinityFilter|affinity: backend "h1@lvm" is not the backend of any same-backend hint`,
				`h1@nfs#a|AffinityFilter|affinity: backend "h1@nfs" is not the backend of any same-backend hint`,
			}},
		{name: "different backend", req: Request{DifferentBackendFrom: []string{"h1@lvm#a"}}, pools: pools,
			pass: []string{"h1@nfs#a", "h2@lvm#a"},
			rejected: []string{
				`h1@lvm#a|AffinityFilter|affinity: backend "h1@lvm" is excluded by a different-backend hint`,
				`h1@lvm#b|AffinityFilter|affinity: backend "h1@lvm" is excluded by a different-backend hint`,
			}},
		{name: "different from several", req: Request{DifferentBackendFrom: []string{"h1@lvm#a", "h2@lvm#a", "h1@nfs#a"}}, pools: pools,
			rejected: []string{
				`h1@lvm#a|AffinityFilter|affinity: backend "h1@lvm" is excluded by a different-backend hint`,
				`h1@lvm#b|AffinityFilter|affinity: backend "h1@lvm" is excluded by a different-backend hint`,
				`h1@nfs#a|AffinityFilter|affinity: backend "h1@nfs" is excluded by a different-backend hint`,
				`h2@lvm#a|AffinityFilter|affinity: backend "h2@lvm" is excluded by a different-backend hint`,
			}},
		{name: "same and different together", req: Request{SameBackendAs: []string{"h1@lvm#a"}, DifferentBackendFrom: []string{"h1@lvm#b"}}, pools: pools,
			rejected: []string{
				`h1@lvm#a|AffinityFilter|affinity: backend "h1@lvm" is excluded by a different-backend hint`,
				`h1@lvm#b|AffinityFilter|affinity: backend "h1@lvm" is excluded by a different-backend hint`,
				`h1@nfs#a|AffinityFilter|affinity: backend "h1@nfs" is not the backend of any same-backend hint`,
				`h2@lvm#a|AffinityFilter|affinity: backend "h2@lvm" is not the backend of any same-backend hint`,
			}},
	})
}

func TestSameAndDifferentBackendFiltersAlone(t *testing.T) {
	pools := []Pool{named("h1@lvm#a"), named("h2@lvm#a")}
	req := Request{SameBackendAs: []string{"h1@lvm#a"}, DifferentBackendFrom: []string{"h1@lvm#a"}}
	runFilterCases(t, SameBackendFilter, []filterCase{
		{name: "same only", req: req, pools: pools, pass: []string{"h1@lvm#a"},
			rejected: []string{`h2@lvm#a|SameBackendFilter|affinity: backend "h2@lvm" is not the backend of any same-backend hint`}},
	})
	runFilterCases(t, DifferentBackendFilter, []filterCase{
		{name: "different only", req: req, pools: pools, pass: []string{"h2@lvm#a"},
			rejected: []string{`h1@lvm#a|DifferentBackendFilter|affinity: backend "h1@lvm" is excluded by a different-backend hint`}},
	})
}

func TestCapacityAndCapabilitiesFiltersInEngine(t *testing.T) {
	small := with(named("h1@lvm#small"), func(p *Pool) { p.FreeGB = 3 })
	nfs := with(named("h2@nfs#big"), func(p *Pool) { p.Capabilities = map[string]string{"storage_protocol": "nfs"} })
	iscsi := with(named("h3@lvm#big"), func(p *Pool) { p.Capabilities = map[string]string{"storage_protocol": "iSCSI"} })
	pools := []Pool{small, nfs, iscsi}
	runFilterCases(t, CapacityFilter, []filterCase{
		{name: "capacity", req: Request{SizeGB: 5}, pools: pools, pass: []string{"h2@nfs#big", "h3@lvm#big"},
			rejected: []string{"h1@lvm#small|CapacityFilter|capacity 3 GiB free < 5 GiB requested"}},
		{name: "thick request", req: Request{SizeGB: 5, ExtraSpecs: map[string]string{"provisioning:type": "thick"}}, pools: pools,
			pass: []string{"h2@nfs#big", "h3@lvm#big"}, rejected: []string{"h1@lvm#small|CapacityFilter|capacity 3 GiB free < 5 GiB requested"}},
	})
	runFilterCases(t, CapabilitiesFilter, []filterCase{
		{name: "no specs", pools: pools, pass: []string{"h1@lvm#small", "h2@nfs#big", "h3@lvm#big"}},
		{name: "protocol", req: Request{ExtraSpecs: map[string]string{"capabilities:storage_protocol": "iSCSI"}}, pools: pools,
			pass: []string{"h3@lvm#big"},
			rejected: []string{
				"h1@lvm#small|CapabilitiesFilter|capabilities: storage_protocol is not reported",
				`h2@nfs#big|CapabilitiesFilter|capabilities: storage_protocol "nfs" does not match "iSCSI"`,
			}},
		{name: "backend name", req: Request{ExtraSpecs: map[string]string{"volume_backend_name": "lvm"}}, pools: pools,
			pass:     []string{"h1@lvm#small", "h3@lvm#big"},
			rejected: []string{`h2@nfs#big|CapabilitiesFilter|capabilities: volume_backend_name "nfs" does not match "lvm"`}},
	})
}

func TestBackendOf(t *testing.T) {
	for in, want := range map[string]string{
		"h@b#p":   "h@b",
		"h@b":     "h@b",
		"h":       "h",
		"h@b#p#q": "h@b",
		"#p":      "",
		"":        "",
	} {
		if got := backendOf(in); got != want {
			t.Errorf("backendOf(%q) = %q, want %q", in, got, want)
		}
	}
}

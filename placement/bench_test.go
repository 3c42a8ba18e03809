package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// cinderSchedulingMs is the published cost of Cinder's pure scheduling code
// for one decision with two backends (performance.md, "Cinder scheduler
// study").
const cinderSchedulingMs = 12.64

// benchPools returns n varied pools, the same for the same seed: a quarter on
// NFS, a tenth in another zone, half thin (some "auto"), a few full, a few
// with unknown or infinite capacity, and mixed custom capabilities.
func benchPools(n int, seed uint64) []Pool {
	r := rand.New(rand.NewPCG(seed, 0x6b696c6e))
	pools := make([]Pool, n)
	for i := range pools {
		backend, protocol := "lvm", "iSCSI"
		if r.IntN(4) == 0 {
			backend, protocol = "nfs", "nfs"
		}
		host := fmt.Sprintf("node%04d", i/4)
		total := 500 + r.Float64()*20000
		p := Pool{
			Name:               fmt.Sprintf("%s@%s#pool%d", host, backend, i%4),
			Host:               host,
			Backend:            backend,
			AvailabilityZone:   "nova",
			TotalKind:          storage.Known,
			TotalGB:            total,
			FreeKind:           storage.Known,
			FreeGB:             total * r.Float64(),
			VolumeCount:        r.IntN(500),
			ReservedPercentage: []int{0, 5, 10}[r.IntN(3)],
			ThickProvisioning:  true,
			Capabilities: map[string]string{
				"storage_protocol": protocol,
				"vendor_name":      "Kiln",
				"driver_version":   "1.2",
				"QoS_support":      "True",
			},
		}
		if r.IntN(10) == 0 {
			p.AvailabilityZone = "az2"
		}
		if r.IntN(5) == 0 {
			p.Capabilities["QoS_support"] = "False"
		}
		if r.IntN(30) == 0 {
			p.FreeGB = r.Float64() * 50 // nearly full
		}
		if r.IntN(2) == 0 {
			p.ThinProvisioning = true
			p.ThickProvisioning = false
			p.MaxOverSubscriptionRatio = 20
			p.AllocatedGB = total * r.Float64() * 15
			if r.IntN(10) == 0 {
				p.OverSubscriptionAuto = true
			}
		} else {
			p.AllocatedGB = total - p.FreeGB
		}
		switch r.IntN(100) {
		case 0, 1:
			p.FreeKind = storage.Unknown
		case 2:
			p.FreeKind, p.TotalKind = storage.Infinite, storage.Infinite
		}
		pools[i] = p
	}
	return pools
}

// benchRequest is a 100 GiB volume in zone nova whose type asks for the LVM
// backend and QoS support.
func benchRequest() Request {
	return Request{
		SizeGB:           100,
		AvailabilityZone: "nova",
		ExtraSpecs: map[string]string{
			"volume_backend_name":      "lvm",
			"capabilities:QoS_support": "<is> True",
			"provisioning:type":        "thin",
		},
	}
}

// BenchmarkPlace10kPools measures one decision over 10,000 pools with the
// default filters and weighers (target 1 of performance.md: p99 <= 2 ms).
// Besides ns/op and allocs/op it reports:
//
//	x_cinder_12.64ms  mean time per decision divided by Cinder's 12.64 ms for
//	                  its pure scheduling code with 2 backends (lower is
//	                  better; 0.1 means ten times faster than Cinder on 2
//	                  backends while handling 10,000 pools)
//	p50-ms, p99-ms    median and 99th percentile of single decisions
func BenchmarkPlace10kPools(b *testing.B) {
	benchmarkPlace(b, DefaultConfig(), nil)
}

// BenchmarkPlace10kPoolsAllWeighers is the same with all four weighers.
func BenchmarkPlace10kPoolsAllWeighers(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Weighers = []string{CapacityWeigher, AllocatedCapacityWeigher, VolumeNumberWeigher, ChanceWeigher}
	r := rand.New(rand.NewPCG(1, 2))
	benchmarkPlace(b, cfg, r.Float64)
}

// BenchmarkPlaceBest10kPools is the leader's path: PlaceBest, which builds
// no ranked or rejected lists when a pool fits.
func BenchmarkPlaceBest10kPools(b *testing.B) {
	benchmarkPlaceWith(b, DefaultConfig(), nil, func(e *Engine, req Request, pools []Pool, rnd func() float64) error {
		_, err := e.PlaceBest(req, pools, rnd)
		return err
	})
}

func benchmarkPlace(b *testing.B, cfg Config, rnd func() float64) {
	benchmarkPlaceWith(b, cfg, rnd, func(e *Engine, req Request, pools []Pool, rnd func() float64) error {
		_, err := e.Place(req, pools, rnd)
		return err
	})
}

func benchmarkPlaceWith(b *testing.B, cfg Config, rnd func() float64, place func(*Engine, Request, []Pool, func() float64) error) {
	e := mustEngine(b, cfg)
	pools := benchPools(10000, 42)
	req := benchRequest()
	d, err := e.Place(req, pools, rnd)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("10,000 pools: %d pass, %d rejected", len(d.Ranked), len(d.Rejected))
	var laps []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if err := place(e, req, pools, rnd); err != nil {
			b.Fatal(err)
		}
		laps = append(laps, time.Since(start))
	}
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	ratio := perOp / (cinderSchedulingMs * 1e6)
	slices.Sort(laps)
	p50 := float64(laps[len(laps)/2].Nanoseconds()) / 1e6
	p99 := float64(laps[len(laps)*99/100].Nanoseconds()) / 1e6
	b.ReportMetric(ratio, "x_cinder_12.64ms")
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.Logf("one decision over 10,000 pools: mean %.2f ms, p50 %.2f ms, p99 %.2f ms (target p99 <= 2 ms); "+
		"%.2fx Cinder's %.2f ms of scheduling code for 2 backends", perOp/1e6, p50, p99, ratio, cinderSchedulingMs)
}

func BenchmarkMatchOp(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		MatchOp("1024.5", ">= 1000")
	}
}

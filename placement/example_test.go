package placement_test

import (
	"errors"
	"fmt"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/placement"
)

func ExampleEngine_Place() {
	e, err := placement.New(placement.DefaultConfig())
	if err != nil {
		panic(err)
	}
	pool := func(name, backend string, freeGB float64) placement.Pool {
		return placement.Pool{
			Name: name, Backend: backend, AvailabilityZone: "nova",
			TotalKind: storage.Known, TotalGB: 1000,
			FreeKind: storage.Known, FreeGB: freeGB,
			ThickProvisioning: true, MaxOverSubscriptionRatio: 1,
			Capabilities: map[string]string{"storage_protocol": "iSCSI"},
		}
	}
	pools := []placement.Pool{
		pool("node1@lvm#fast", "lvm", 300),
		pool("node2@lvm#fast", "lvm", 700),
		pool("node3@lvm#fast", "lvm", 4),
		pool("node4@nfs#share", "nfs", 900),
	}
	req := placement.Request{
		SizeGB:     10,
		ExtraSpecs: map[string]string{"volume_backend_name": "lvm", "capabilities:storage_protocol": "<in> iSCSI"},
	}
	d, err := e.Place(req, pools, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("chosen:", d.Pool.Name)
	for _, s := range d.Ranked {
		fmt.Printf("  %s %.2f\n", s.Pool, s.Weight)
	}
	for _, r := range d.Rejected {
		fmt.Printf("  rejected %s by %s: %s\n", r.Pool, r.Filter, r.Reason)
	}

	req.SizeGB = 5000
	_, err = e.Place(req, pools, nil)
	fmt.Println(errors.Is(err, placement.ErrNoValidPool))
	fmt.Println(err)
	// Output:
	// chosen: node2@lvm#fast
	//   node2@lvm#fast 1.00
	//   node1@lvm#fast 0.00
	//   rejected node3@lvm#fast by CapacityFilter: capacity 4 GiB free < 10 GiB requested
	//   rejected node4@nfs#share by CapabilitiesFilter: capabilities: volume_backend_name "nfs" does not match "lvm"
	// true
	// no valid pool for 5000 GiB: pool node1@lvm#fast: capacity 300 GiB free < 5000 GiB requested; pool node2@lvm#fast: capacity 700 GiB free < 5000 GiB requested; pool node3@lvm#fast: capacity 4 GiB free < 5000 GiB requested; pool node4@nfs#share: capacity 900 GiB free < 5000 GiB requested
}

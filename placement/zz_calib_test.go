package placement

import "testing"

func BenchmarkZZCalibScan(b *testing.B) {
	pools := benchPools(10000, 42)
	n := 0
	for b.Loop() {
		for i := range pools {
			p := &pools[i]
			if p.AvailabilityZone == "nova" && p.FreeGB > 100 {
				n++
			}
		}
	}
	_ = n
}

func BenchmarkZZCalibMap(b *testing.B) {
	pools := benchPools(10000, 42)
	n := 0
	for b.Loop() {
		for i := range pools {
			if pools[i].Capabilities["QoS_support"] == "True" {
				n++
			}
		}
	}
	_ = n
}

package placement

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestZZCPU(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	pools := benchPools(10000, 42)
	req := benchRequest()
	for range 20 {
		e.Place(req, pools, nil)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gc0 := ms.NumGC
	const N = 400
	c0, w0 := cpuNow(), time.Now()
	for range N {
		e.Place(req, pools, nil)
	}
	c1, w1 := cpuNow(), time.Now()
	runtime.ReadMemStats(&ms)
	t.Logf("cpu %.3f ms/op, wall %.3f ms/op, GCs %d", float64((c1-c0).Microseconds())/N/1000, float64(w1.Sub(w0).Microseconds())/N/1000, ms.NumGC-gc0)
}

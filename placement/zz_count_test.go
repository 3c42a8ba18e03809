package placement

import (
	"regexp"
	"sort"
	"testing"
)

func TestZZCount(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	d, _ := e.Place(benchRequest(), benchPools(10000, 42), nil)
	re := regexp.MustCompile(`[0-9.]+`)
	c := map[string]int{}
	for _, r := range d.Rejected {
		c[r.Filter+": "+re.ReplaceAllString(r.Reason, "N")]++
	}
	var k []string
	for x := range c {
		k = append(k, x)
	}
	sort.Strings(k)
	for _, x := range k {
		t.Logf("%5d %s", c[x], x)
	}
	t.Logf("pass %d", len(d.Ranked))
}

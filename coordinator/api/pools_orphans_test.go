package api

import (
	"slices"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
)

func TestGetPoolsShowsOrphans(t *testing.T) {
	h := newHarness(t)
	caps := func(i int) map[string]any {
		t.Helper()
		r := h.get("/v3/p1/scheduler-stats/get_pools?detail=true")
		return r.Body["pools"].([]any)[i].(map[string]any)["capabilities"].(map[string]any)
	}
	ids := func(v any) []string {
		var out []string
		for _, x := range v.([]any) {
			out = append(out, x.(string))
		}
		return out
	}
	c := caps(0)
	if c["kiln:orphan_volumes"] != 0.0 || len(ids(c["kiln:orphan_volume_ids"])) != 0 ||
		c["kiln:orphan_snapshots"] != 0.0 || len(ids(c["kiln:orphan_snapshot_ids"])) != 0 {
		t.Fatalf("pool without orphans: %v", c)
	}
	if _, ok := c["kiln:orphans_found_at"]; ok {
		t.Error("kiln:orphans_found_at on a pool without orphans")
	}
	v1, v2 := "0a000000-0000-4000-8000-000000000001", "0a000000-0000-4000-8000-000000000002"
	s1 := "0a000000-0000-4000-8000-000000000003"
	h.mustApply(state.SetPoolOrphans{Pool: testPool, Volumes: 150, VolumeIDs: []string{v1, v2},
		Snapshots: 1, SnapshotIDs: []string{s1}, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	c = caps(0)
	if c["kiln:orphan_volumes"] != 150.0 || !slices.Equal(ids(c["kiln:orphan_volume_ids"]), []string{v1, v2}) ||
		c["kiln:orphan_snapshots"] != 1.0 || !slices.Equal(ids(c["kiln:orphan_snapshot_ids"]), []string{s1}) ||
		c["kiln:orphans_found_at"] != "2026-01-02T03:04:05.000000" {
		t.Fatalf("pool with orphans: %v", c)
	}
	if c2 := caps(1); c2["kiln:orphan_volumes"] != 0.0 {
		t.Errorf("the other pool: %v", c2)
	}
	// A later inventory that finds none clears them.
	h.mustApply(state.SetPoolOrphans{Pool: testPool, At: time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)})
	if c = caps(0); c["kiln:orphan_volumes"] != 0.0 {
		t.Fatalf("cleared orphans still shown: %v", c)
	}
}

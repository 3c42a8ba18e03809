package api

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/storage"
)

func poolNames(t *testing.T, r *response) []string {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	var out []string
	for _, p := range r.Body["pools"].([]any) {
		out = append(out, p.(map[string]any)["name"].(string))
	}
	return out
}

func TestGetPools(t *testing.T) {
	h := newHarness(t)
	r := h.get("/v3/p1/scheduler-stats/get_pools")
	if got := poolNames(t, r); !slices.Equal(got, []string{testPool, testPool2}) {
		t.Fatalf("pools %v", got)
	}
	if p := r.Body["pools"].([]any)[0].(map[string]any); len(p) != 1 {
		t.Errorf("summary pool %v", p)
	}

	id := h.createVolume(map[string]any{"size": 6})["id"].(string)
	h.makeAvailable(id)
	r = h.get("/v3/p1/scheduler-stats/get_pools?detail=true")
	wantStatus(t, r, http.StatusOK)
	pools := r.Body["pools"].([]any)
	caps := pools[0].(map[string]any)["capabilities"].(map[string]any)
	want := map[string]any{
		"pool_name": "local", "volume_backend_name": "nfs", "vendor_name": "Kiln", "driver_version": "1.2.3",
		"storage_protocol": "nfs", "total_capacity_gb": 100.0, "free_capacity_gb": 80.0,
		"allocated_capacity_gb": 6.0, "provisioned_capacity_gb": 12.0, "total_volumes": 1.0,
		"reserved_percentage": 5.0, "max_over_subscription_ratio": 2.0,
		"thin_provisioning_support": true, "thick_provisioning_support": false, "QoS_support": false,
		"custom_flag": "yes", "multiattach": true,
	}
	for k, w := range want {
		if caps[k] != w {
			t.Errorf("%s = %#v, want %#v", k, caps[k], w)
		}
	}
	for _, k := range []string{"timestamp", "updated"} {
		if !wireTimeRE.MatchString(str(caps[k])) {
			t.Errorf("%s %v", k, caps[k])
		}
	}
	// No gossiped capacity: unknown; "auto" ratio kept as a string.
	caps2 := pools[1].(map[string]any)["capabilities"].(map[string]any)
	if caps2["total_capacity_gb"] != "unknown" || caps2["free_capacity_gb"] != "unknown" || caps2["max_over_subscription_ratio"] != "auto" {
		t.Errorf("second pool %v", caps2)
	}
	if caps2["updated"] != "2025-01-02T03:04:05.000000" {
		t.Errorf("unknown capacity timestamp %v", caps2["updated"])
	}
	h.b.caps[testPool2] = gossip.PoolCapacity{TotalKind: storage.Infinite, FreeKind: storage.Infinite}
	caps2 = h.get("/v3/p1/scheduler-stats/get_pools?detail=true").Body["pools"].([]any)[1].(map[string]any)["capabilities"].(map[string]any)
	if caps2["total_capacity_gb"] != "infinite" || caps2["free_capacity_gb"] != "infinite" {
		t.Errorf("infinite pool %v", caps2)
	}
	if got := poolNames(t, h.get("/v3/p1/scheduler-stats/get_pools?name="+url.QueryEscape(testPool2))); !slices.Equal(got, []string{testPool2}) {
		t.Errorf("name filter %v", got)
	}
}

func TestGetPoolsByVolumeType(t *testing.T) {
	h := newHarness(t)
	h.createType(map[string]any{"name": "thin-nfs", "extra_specs": map[string]any{"volume_backend_name": "nfs"}})
	h.createType(map[string]any{"name": "thick", "extra_specs": map[string]any{"thick_provisioning_support": "<is> True"}})
	h.createType(map[string]any{"name": "none", "extra_specs": map[string]any{"volume_backend_name": "ceph"}})
	for _, tc := range []struct {
		query, version string
		want           []string
	}{
		{"volume_type=thin-nfs", "volume 3.35", []string{testPool}},
		{"volume_type=thick", "volume 3.35", []string{testPool2}},
		{"volume_type=none", "volume 3.35", nil},
		{"volume_type=__DEFAULT__", "volume 3.35", []string{testPool, testPool2}},
		{"volume_type=thin-nfs", "volume 3.34", []string{testPool, testPool2}},
		{"volume_type=thin-nfs&name=" + url.QueryEscape(testPool2), "volume 3.70", nil},
	} {
		if got := poolNames(t, h.getV("/v3/p1/scheduler-stats/get_pools?"+tc.query, tc.version)); !slices.Equal(got, tc.want) {
			t.Errorf("%s at %s: %v, want %v", tc.query, tc.version, got, tc.want)
		}
	}
	wantFault(t, h.getV("/v3/p1/scheduler-stats/get_pools?volume_type=gold", "volume 3.35"), http.StatusNotFound, "itemNotFound", "Volume type with name gold could not be found.")
	wantFault(t, h.getV("/v3/p1/scheduler-stats/get_pools?size=1", "volume 3.28"), http.StatusBadRequest, "badRequest", "Invalid filters size are found in query options.")
	wantFault(t, h.get("/v3/p1/scheduler-stats/get_pools?detail=perhaps"), http.StatusBadRequest, "badRequest", "Value 'perhaps' for 'detail' is not a boolean.")
	if got := poolNames(t, h.get("/v3/p1/scheduler-stats/get_pools?size=1")); len(got) != 2 {
		t.Errorf("unknown filter before 3.28: %v", got)
	}
}

func TestServices(t *testing.T) {
	h := newHarness(t)
	at := time.Date(2025, 5, 6, 7, 8, 9, 123456000, time.UTC)
	h.b.services = []ServiceStatus{
		{Binary: "cinder-scheduler", Host: "coord1", Zone: "nova", Up: true, UpdatedAt: at},
		{Binary: "cinder-volume", Host: "agent1", Zone: "nova", Up: true, UpdatedAt: at},
		{Binary: "cinder-volume", Host: "agent2", Zone: "az2", Up: false, Disabled: true, DisabledReason: "maintenance"},
	}
	r := h.getV("/v3/p1/os-services", "volume 3.49")
	wantStatus(t, r, http.StatusOK)
	svcs := r.Body["services"].([]any)
	if len(svcs) != 3 {
		t.Fatalf("services %v", svcs)
	}
	sched := svcs[0].(map[string]any)
	for k, w := range map[string]any{"binary": "cinder-scheduler", "host": "coord1", "zone": "nova", "status": "enabled",
		"state": "up", "updated_at": "2025-05-06T07:08:09.123456", "disabled_reason": nil, "cluster": nil} {
		if v, ok := sched[k]; !ok || v != w {
			t.Errorf("scheduler %s = %v, want %v", k, v, w)
		}
	}
	if _, ok := sched["backend_state"]; ok {
		t.Error("backend_state on a scheduler")
	}
	down := svcs[2].(map[string]any)
	for k, w := range map[string]any{"status": "disabled", "state": "down", "disabled_reason": "maintenance", "updated_at": nil,
		"backend_state": "down", "frozen": false, "replication_status": "disabled", "active_backend_id": nil} {
		if v, ok := down[k]; !ok || v != w {
			t.Errorf("agent2 %s = %v, want %v", k, v, w)
		}
	}
	r = h.get("/v3/p1/os-services?binary=cinder-volume&host=agent1")
	wantStatus(t, r, http.StatusOK)
	svcs = r.Body["services"].([]any)
	if len(svcs) != 1 || svcs[0].(map[string]any)["host"] != "agent1" {
		t.Errorf("filtered %v", svcs)
	}
	if _, ok := svcs[0].(map[string]any)["backend_state"]; ok {
		t.Error("backend_state before 3.49")
	}
	if _, ok := svcs[0].(map[string]any)["cluster"]; ok {
		t.Error("cluster before 3.7")
	}
	if got := h.get("/v3/p1/os-services?binary=cinder-backup").Body["services"].([]any); len(got) != 0 {
		t.Errorf("no backup services expected: %v", got)
	}
}

package api

import (
	"net/http"
	"testing"
)

func quotaSet(t *testing.T, r *response) map[string]any {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	qs, ok := r.Body["quota_set"].(map[string]any)
	if !ok {
		t.Fatalf("no quota_set: %s", r.Raw)
	}
	return qs
}

func TestQuotaShow(t *testing.T) {
	h := newHarness(t)
	h.createType(map[string]any{"name": "gold"})
	qs := quotaSet(t, h.get("/v3/p1/os-quota-sets/p9"))
	want := map[string]any{
		"id": "p9", "volumes": 10.0, "snapshots": 10.0, "gigabytes": 1000.0, "per_volume_gigabytes": -1.0,
		"backups": 10.0, "backup_gigabytes": 1000.0, "groups": 10.0,
		"volumes_gold": -1.0, "gigabytes_gold": -1.0, "snapshots_gold": -1.0, "volumes___DEFAULT__": -1.0,
	}
	for k, w := range want {
		if qs[k] != w {
			t.Errorf("%s = %v, want %v", k, qs[k], w)
		}
	}
	qs = quotaSet(t, h.get("/v3/os-quota-sets/p9/defaults"))
	if qs["id"] != "p9" || qs["volumes"] != 10.0 {
		t.Errorf("defaults %v", qs)
	}

	h.createVolume(map[string]any{"size": 3, "volume_type": "gold"})
	qs = quotaSet(t, h.get("/v3/p1/os-quota-sets/p1?usage=true"))
	if qs["id"] != "p1" {
		t.Errorf("id %v", qs["id"])
	}
	for k, w := range map[string][3]float64{
		"volumes": {10, 0, 1}, "gigabytes": {1000, 0, 3}, "volumes_gold": {-1, 0, 1}, "snapshots": {10, 0, 0},
	} {
		u, ok := qs[k].(map[string]any)
		if !ok || u["limit"] != w[0] || u["in_use"] != w[1] || u["reserved"] != w[2] {
			t.Errorf("%s usage %v, want limit/in_use/reserved %v", k, qs[k], w)
		}
	}
	wantFault(t, h.get("/v3/p1/os-quota-sets/p1?usage=sometimes"), http.StatusBadRequest, "badRequest", "Value 'sometimes' for 'usage' is not a boolean.")
}

func TestQuotaUpdate(t *testing.T) {
	h := newHarness(t)
	h.createType(map[string]any{"name": "gold"})
	r := h.put("/v3/p1/os-quota-sets/p2", map[string]any{"quota_set": map[string]any{
		"volumes": 5, "gigabytes": "50", "volumes_gold": 2, "per_volume_gigabytes": -1, "id": "ignored", "tenant_id": "ignored",
	}})
	qs := quotaSet(t, r)
	if _, ok := qs["id"]; ok {
		t.Error("update answer has an id")
	}
	if qs["volumes"] != 5.0 || qs["gigabytes"] != 50.0 || qs["volumes_gold"] != 2.0 || qs["snapshots"] != 10.0 {
		t.Errorf("update answered %v", qs)
	}
	if l := h.b.st.QuotaLimits("p2"); l["volumes"] != 5 || l["gigabytes"] != 50 || l["volumes_gold"] != 2 {
		t.Errorf("stored %v", l)
	}
	// Delete returns to the defaults.
	r = h.del("/v3/p1/os-quota-sets/p2")
	wantStatus(t, r, http.StatusOK)
	if len(r.Raw) != 0 {
		t.Errorf("delete body %q", r.Raw)
	}
	if l := h.b.st.QuotaLimits("p2"); l["volumes"] != 10 {
		t.Errorf("after delete %v", l)
	}

	h.createVolume(map[string]any{"size": 5})
	h.createVolume(map[string]any{"size": 5})
	for _, tc := range []struct {
		name           string
		body           any
		msg            string
		refusedByState bool
	}{
		{"unknown key", map[string]any{"quota_set": map[string]any{"volumes": 1, "bogus": 1, "force": true}}, "Invalid input received: Bad key(s) in quota set: bogus, force", false},
		{"below -1", map[string]any{"quota_set": map[string]any{"volumes": -2}}, "volumes must be >= -1", false},
		{"too big", map[string]any{"quota_set": map[string]any{"volumes": 2147483648}}, "volumes must be <= 2147483647", false},
		{"not integer", map[string]any{"quota_set": map[string]any{"volumes": "abc"}}, "volumes must be an integer", false},
		{"float", map[string]any{"quota_set": map[string]any{"volumes": 1.5}}, "volumes must be an integer", false},
		{"bool", map[string]any{"quota_set": map[string]any{"gigabytes": true}}, "gigabytes must be an integer", false},
		{"empty set", map[string]any{"quota_set": map[string]any{}}, "does not have enough properties", false},
		{"no quota_set", map[string]any{"volumes": 1}, "('volumes' was unexpected)", false},
		{"not object", map[string]any{"quota_set": []any{}}, "is not of type 'object'", false},
		{"malformed", "{", "Malformed request body", false},
		{"below usage", map[string]any{"quota_set": map[string]any{"volumes": 1}}, "Quota volumes limit must be equal or greater than existing resources. Current usage is 2 and the requested limit is 1.", true},
		{"gigabytes below usage", map[string]any{"quota_set": map[string]any{"gigabytes": 9}}, "Current usage is 10 and the requested limit is 9", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := h.unchanged
			if tc.refusedByState {
				check = h.refused
			}
			check(func() {
				wantFault(t, h.put("/v3/p1/os-quota-sets/p1", tc.body), http.StatusBadRequest, "badRequest", tc.msg)
			})
		})
	}
	// At usage is fine.
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"volumes": 2, "gigabytes": "10"}}), http.StatusOK)
}

func TestLimits(t *testing.T) {
	h := newHarness(t)
	h.createVolume(map[string]any{"size": 4})
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"snapshots": -1, "backups": 3}}), http.StatusOK)
	r := h.get("/v3/p1/limits")
	wantStatus(t, r, http.StatusOK)
	limits := r.Body["limits"].(map[string]any)
	if rate, ok := limits["rate"].([]any); !ok || len(rate) != 0 {
		t.Errorf("rate %v", limits["rate"])
	}
	abs := limits["absolute"].(map[string]any)
	want := map[string]float64{
		"maxTotalVolumes": 10, "maxTotalSnapshots": 2147483647, "maxTotalVolumeGigabytes": 1000,
		"maxTotalBackups": 3, "maxTotalBackupGigabytes": 1000,
		"totalVolumesUsed": 1, "totalGigabytesUsed": 4, "totalSnapshotsUsed": 0, "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0,
	}
	if len(abs) != len(want) {
		t.Errorf("absolute has %d keys: %v", len(abs), abs)
	}
	for k, w := range want {
		if abs[k] != w {
			t.Errorf("%s = %v, want %v", k, abs[k], w)
		}
	}
	for k, v := range abs {
		if v.(float64) < 0 {
			t.Errorf("%s is negative: %v", k, v)
		}
	}
	// Another project's limits from 3.39.
	abs = h.getV("/v3/p1/limits?project_id=p2", "volume 3.39").Body["limits"].(map[string]any)["absolute"].(map[string]any)
	if abs["totalVolumesUsed"] != 0.0 || abs["maxTotalSnapshots"] != 10.0 {
		t.Errorf("p2 limits %v", abs)
	}
}

package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
)

func TestCreateSnapshot(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 3})
	r := h.post("/v3/p1/snapshots", map[string]any{"snapshot": map[string]any{
		"volume_id": volID, "name": "  nightly ", "description": "d", "metadata": map[string]any{"k": "v"},
	}})
	wantStatus(t, r, http.StatusAccepted)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	snap := r.Body["snapshot"].(map[string]any)
	id, _ := snap["id"].(string)
	if !isUUID(id) {
		t.Fatalf("id %q", id)
	}
	want := map[string]any{"name": "nightly", "description": "d", "volume_id": volID, "status": "creating", "size": 3.0}
	for k, w := range want {
		if snap[k] != w {
			t.Errorf("%s = %#v, want %#v", k, snap[k], w)
		}
	}
	if m := snap["metadata"].(map[string]any); len(m) != 1 || m["k"] != "v" {
		t.Errorf("metadata %v", m)
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if !wireTimeRE.MatchString(str(snap[k])) {
			t.Errorf("%s %v not in Cinder's format", k, snap[k])
		}
	}
	// At 3.0 the create answer is the base view: no microversioned keys,
	// and (as Cinder's extension extends show and lists only) no extended
	// attributes.
	for _, k := range []string{"group_snapshot_id", "user_id", "consumes_quota", "os-extended-snapshot-attributes:progress", "kiln:error"} {
		if _, ok := snap[k]; ok {
			t.Errorf("3.0 create answer has %s", k)
		}
	}
	sn := h.b.st.Snapshot(id)
	if sn == nil || sn.ProjectID != "p1" || sn.UserID != "u1" || sn.SizeGB != 3 || sn.Status != state.SnapCreating || sn.Pool != testPool {
		t.Fatalf("stored snapshot %+v", sn)
	}
	if u := h.b.st.QuotaUsage("p1"); u["snapshots"].Reserved != 1 || u["gigabytes"].Reserved != 3 || u["gigabytes"].InUse != 3 {
		t.Errorf("quota usage %+v / %+v", u["snapshots"], u["gigabytes"])
	}

	// Later microversions add their keys.
	r = h.do(req{Method: "POST", Path: "/v3/snapshots", Version: "volume 3.65",
		Body: map[string]any{"snapshot": map[string]any{"volume_id": volID, "display_name": "old", "force": "true"}}})
	wantStatus(t, r, http.StatusAccepted)
	snap = r.Body["snapshot"].(map[string]any)
	if snap["group_snapshot_id"] != nil || snap["user_id"] != "u1" || snap["consumes_quota"] != true || snap["name"] != "old" {
		t.Errorf("3.65 view %v", snap)
	}
	if _, ok := snap["group_snapshot_id"]; !ok {
		t.Error("3.65 view lacks group_snapshot_id")
	}
}

func TestCreateSnapshotRejected(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 1})
	h.do(req{Method: "POST", Path: "/v3/p2/volumes", Token: "u2:p2", Body: map[string]any{"volume": map[string]any{"size": 1}}})
	foreign := h.b.st.Volumes(state.VolumeFilter{ProjectID: "p2"})[0].ID
	long := strings.Repeat("n", 256)
	snap := func(kv ...any) map[string]any {
		m := map[string]any{"volume_id": volID}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"snapshot": m}
	}
	for _, tc := range []struct {
		name    string
		body    any
		version string
		status  int
		fault   string
		msg     string
	}{
		{"malformed", `{"snapshot": {`, "", 400, "badRequest", "Malformed request body"},
		{"empty body", ``, "", 400, "badRequest", "'snapshot' is a required property"},
		{"not an object", `[]`, "", 400, "badRequest", "[] is not of type 'object'"},
		{"snapshot not object", map[string]any{"snapshot": "x"}, "", 400, "badRequest", "'x' is not of type 'object'"},
		{"extra top-level key", map[string]any{"snapshot": map[string]any{"volume_id": volID}, "x": 1}, "", 400, "badRequest", "('x' was unexpected)"},
		{"unknown key", snap("size", 1), "", 400, "badRequest", "('size' was unexpected)"},
		{"display_description not in create", snap("display_description", "d"), "", 400, "badRequest", "('display_description' was unexpected)"},
		{"missing volume_id", map[string]any{"snapshot": map[string]any{"name": "x"}}, "", 400, "badRequest", "'volume_id' is a required property"},
		{"volume_id number", snap("volume_id", 5), "", 400, "badRequest", "5 is not of type 'string', 'null'"},
		{"volume_id null", snap("volume_id", nil), "", 404, "itemNotFound", "Volume None could not be found."},
		{"unknown volume", snap("volume_id", "nope"), "", 404, "itemNotFound", "Volume nope could not be found."},
		{"other project's volume", snap("volume_id", foreign), "", 404, "itemNotFound", "Volume " + foreign + " could not be found."},
		{"name too long", snap("name", long), "", 400, "badRequest", "is too long"},
		{"name number", snap("name", 1), "", 400, "badRequest", "1 is not of type 'string', 'null'"},
		{"description too long", snap("description", long), "", 400, "badRequest", "is too long"},
		{"force maybe", snap("force", "maybe"), "", 400, "badRequest", "'maybe' is not one of"},
		{"force null", snap("force", nil), "", 400, "badRequest", "None is not of type 'boolean', 'string'"},
		{"force false at 3.66", snap("force", false), "volume 3.66", 400, "badRequest", "Since microversion 3.66 the 'force' flag is invalid"},
		{"force 'no' at 3.70", snap("force", "no"), "volume 3.70", 400, "badRequest", "the 'force' flag is invalid"},
		{"metadata bad key", snap("metadata", map[string]any{"k!": "v"}), "", 400, "badRequest", "('k!' was unexpected)"},
		{"metadata value number", snap("metadata", map[string]any{"k": 1}), "", 400, "badRequest", "1 is not of type 'string'"},
		{"metadata list", snap("metadata", []any{}), "", 400, "badRequest", "is not of type 'object', 'null'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.do(req{Method: "POST", Path: "/v3/p1/snapshots", Body: tc.body, Version: tc.version})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
}

// TestCreateSnapshotStatus: an available volume can be snapshotted; an
// in-use one only with force or from 3.66; others not at all.
func TestCreateSnapshotStatus(t *testing.T) {
	h := newHarness(t)
	creating := h.createVolume(map[string]any{"size": 1})["id"].(string)
	h.refused(func() {
		r := h.post("/v3/p1/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": creating}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "current status is: creating")
	})
	inUse := h.availableVolume(map[string]any{"size": 1})
	h.setVolumeStatus(inUse, state.StatusInUse)
	for _, tc := range []struct {
		name, version string
		force         any
		ok            bool
	}{
		{"no force", "", nil, false},
		{"force false", "", "false", false},
		{"no force at 3.65", "volume 3.65", nil, false},
		{"force true", "", true, true},
		{"force 'yes'", "volume 3.20", "yes", true},
		{"no force at 3.66", "volume 3.66", nil, true},
		{"force true at 3.66 (ignored)", "volume 3.66", "True", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"volume_id": inUse}
			if tc.force != nil {
				body["force"] = tc.force
			}
			if !tc.ok {
				h.refused(func() {
					r := h.do(req{Method: "POST", Path: "/v3/p1/snapshots", Version: tc.version, Body: map[string]any{"snapshot": body}})
					wantFault(t, r, http.StatusBadRequest, "badRequest", "Use force to snapshot an in-use volume.")
				})
				return
			}
			r := h.do(req{Method: "POST", Path: "/v3/p1/snapshots", Version: tc.version, Body: map[string]any{"snapshot": body}})
			wantStatus(t, r, http.StatusAccepted)
		})
	}
}

func TestSnapshotLimitExceeded(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 2})
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"snapshots": 1}}), http.StatusOK)
	h.createSnapshot(map[string]any{"volume_id": volID})
	h.refused(func() {
		r := h.post("/v3/p1/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": volID}})
		wantFault(t, r, http.StatusRequestEntityTooLarge, "overLimit",
			"SnapshotLimitExceeded: Maximum number of snapshots allowed (1) exceeded for quota 'snapshots'.")
		if got := r.Header.Get("Retry-After"); got != "0" {
			t.Errorf("Retry-After %q", got)
		}
	})
	// Snapshots count in the gigabytes quota too.
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"snapshots": 10, "gigabytes": 5}}), http.StatusOK)
	h.refused(func() {
		r := h.post("/v3/p1/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": volID}})
		wantFault(t, r, http.StatusRequestEntityTooLarge, "overLimit", "VolumeSizeExceedsAvailableQuota: ")
	})
	// Limits and quota usage report the snapshot.
	abs := h.get("/v3/p1/limits").Body["limits"].(map[string]any)["absolute"].(map[string]any)
	if abs["totalSnapshotsUsed"] != 1.0 || abs["maxTotalSnapshots"] != 10.0 || abs["totalGigabytesUsed"] != 4.0 {
		t.Errorf("limits %v", abs)
	}
	qs := h.get("/v3/p1/os-quota-sets/p1?usage=true").Body["quota_set"].(map[string]any)
	if u := qs["snapshots"].(map[string]any); u["reserved"] != 1.0 || u["in_use"] != 0.0 || u["limit"] != 10.0 {
		t.Errorf("snapshot usage %v", u)
	}
}

func TestShowSnapshot(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 1})
	id := h.createSnapshot(map[string]any{"volume_id": volID, "name": "s"})["id"].(string)
	r := h.get("/v3/p1/snapshots/" + id)
	wantStatus(t, r, http.StatusOK)
	snap := r.Body["snapshot"].(map[string]any)
	if snap["id"] != id || snap["name"] != "s" || snap["os-extended-snapshot-attributes:progress"] != "0%" ||
		snap["os-extended-snapshot-attributes:project_id"] != "p1" {
		t.Errorf("show %v", snap)
	}
	if _, ok := snap["user_id"]; ok {
		t.Error("user_id before 3.41")
	}
	snap = h.getV("/v3/snapshots/"+id, "volume 3.41").Body["snapshot"].(map[string]any)
	if snap["user_id"] != "u1" || snap["group_snapshot_id"] != nil {
		t.Errorf("3.41 show %v", snap)
	}
	h.mustApply(state.SnapshotCreateFailed{ID: id, Reason: "disk on fire", At: now()})
	snap = h.get("/v3/p1/snapshots/" + id).Body["snapshot"].(map[string]any)
	if snap["status"] != "error" || snap["kiln:error"] != "disk on fire" {
		t.Errorf("failed snapshot %v", snap)
	}
	wantFault(t, h.get("/v3/p1/snapshots/nope"), http.StatusNotFound, "itemNotFound", "Snapshot nope could not be found.")
	r = h.do(req{Method: "GET", Path: "/v3/p2/snapshots/" + id, Token: "u:p2"})
	wantFault(t, r, http.StatusNotFound, "itemNotFound", "Snapshot "+id+" could not be found.")
}

func TestUpdateSnapshot(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 1})
	id := h.createSnapshot(map[string]any{"volume_id": volID, "name": "a", "description": "x"})["id"].(string)
	r := h.put("/v3/p1/snapshots/"+id, map[string]any{"snapshot": map[string]any{"name": " b ", "description": "desc"}})
	wantStatus(t, r, http.StatusOK)
	snap := r.Body["snapshot"].(map[string]any)
	if snap["name"] != "b" || snap["description"] != "desc" || snap["id"] != id {
		t.Errorf("updated %v", snap)
	}
	r = h.put("/v3/snapshots/"+id, map[string]any{"snapshot": map[string]any{"display_name": "c", "display_description": nil}})
	wantStatus(t, r, http.StatusOK)
	if sn := h.b.st.Snapshot(id); sn.Name != "c" || sn.Description != "" {
		t.Errorf("stored %+v", sn)
	}
	r = h.put("/v3/p1/snapshots/"+id, map[string]any{"snapshot": map[string]any{"display_name": "old", "name": "new"}})
	wantStatus(t, r, http.StatusOK)
	if sn := h.b.st.Snapshot(id); sn.Name != "new" {
		t.Errorf("name must win over display_name: %q", sn.Name)
	}
	for _, tc := range []struct {
		name, path, token string
		body              any
		status            int
		fault, msg        string
	}{
		{"empty", "/v3/p1/snapshots/" + id, "", map[string]any{"snapshot": map[string]any{}}, 400, "badRequest", "{} is not valid under any of the given schemas"},
		{"unknown key", "/v3/p1/snapshots/" + id, "", map[string]any{"snapshot": map[string]any{"metadata": map[string]any{}}}, 400, "badRequest", "('metadata' was unexpected)"},
		{"missing snapshot", "/v3/p1/snapshots/" + id, "", map[string]any{"name": "x"}, 400, "badRequest", "('name' was unexpected)"},
		{"empty body", "/v3/p1/snapshots/" + id, "", "", 400, "badRequest", "'snapshot' is a required property"},
		{"name too long", "/v3/p1/snapshots/" + id, "", map[string]any{"snapshot": map[string]any{"name": strings.Repeat("x", 256)}}, 400, "badRequest", "is too long"},
		{"description number", "/v3/p1/snapshots/" + id, "", map[string]any{"snapshot": map[string]any{"description": 3}}, 400, "badRequest", "3 is not of type 'string', 'null'"},
		{"unknown snapshot", "/v3/p1/snapshots/nope", "", map[string]any{"snapshot": map[string]any{"name": "z"}}, 404, "itemNotFound", "Snapshot nope could not be found."},
		{"other project", "/v3/p2/snapshots/" + id, "u:p2", map[string]any{"snapshot": map[string]any{"name": "z"}}, 404, "itemNotFound", "could not be found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.do(req{Method: "PUT", Path: tc.path, Body: tc.body, Token: tc.token})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
}

func TestDeleteSnapshot(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 1})
	id := h.createSnapshot(map[string]any{"volume_id": volID})["id"].(string)
	h.refused(func() {
		wantFault(t, h.del("/v3/p1/snapshots/"+id), http.StatusBadRequest, "badRequest", "Snapshot status must be available or error")
	})
	h.unchanged(func() {
		wantFault(t, h.del("/v3/p1/snapshots/nope"), http.StatusNotFound, "itemNotFound", "Snapshot nope could not be found.")
		r := h.do(req{Method: "DELETE", Path: "/v3/p2/snapshots/" + id, Token: "u:p2"})
		wantFault(t, r, http.StatusNotFound, "itemNotFound", "Snapshot "+id+" could not be found.")
	})
	h.mustApply(state.SnapshotCreated{ID: id, At: now()})
	r := h.del("/v3/p1/snapshots/" + id)
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 {
		t.Errorf("delete body %q", r.Raw)
	}
	if sn := h.b.st.Snapshot(id); sn == nil || sn.Status != state.SnapDeleting {
		t.Fatalf("after delete: %+v", sn)
	}
}

func TestSnapshotMetadata(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 1})
	id := h.createSnapshot(map[string]any{"volume_id": volID, "metadata": map[string]any{"a": "1"}})["id"].(string)
	base := "/v3/p1/snapshots/" + id + "/metadata"
	if m := metaOf(t, h.get(base), "metadata"); fmt.Sprint(m) != "map[a:1]" {
		t.Errorf("list %v", m)
	}
	r := h.post(base, map[string]any{"metadata": map[string]any{"b": "2", "a": "one"}})
	wantStatus(t, r, http.StatusOK)
	if m := metaOf(t, r, "metadata"); fmt.Sprint(m) != "map[a:one b:2]" {
		t.Errorf("merge answered %v", m)
	}
	// The snapshot schemas allow other top-level keys (the volume ones do not).
	r = h.put(base, map[string]any{"metadata": map[string]any{"c": "3"}, "extra": true})
	wantStatus(t, r, http.StatusOK)
	if got := h.b.st.Snapshot(id).Metadata; fmt.Sprint(got) != "map[c:3]" {
		t.Errorf("replaced %v", got)
	}
	if m := metaOf(t, h.get(base+"/c"), "meta"); fmt.Sprint(m) != "map[c:3]" {
		t.Errorf("show key %v", m)
	}
	r = h.put("/v3/snapshots/"+id+"/metadata/d", map[string]any{"meta": map[string]any{"d": "4"}})
	wantStatus(t, r, http.StatusOK)
	if m := metaOf(t, r, "meta"); fmt.Sprint(m) != "map[d:4]" {
		t.Errorf("put key %v", m)
	}
	r = h.del(base + "/c")
	wantStatus(t, r, http.StatusOK)
	if got := h.b.st.Snapshot(id).Metadata; fmt.Sprint(got) != "map[d:4]" {
		t.Errorf("after delete %v", got)
	}
	if m := h.get("/v3/p1/snapshots/" + id).Body["snapshot"].(map[string]any)["metadata"]; fmt.Sprint(m) != "map[d:4]" {
		t.Errorf("snapshot view metadata %v", m)
	}

	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		status                    int
		fault, msg                string
	}{
		{"list unknown snapshot", "GET", "/v3/p1/snapshots/nope/metadata", "", nil, 404, "itemNotFound", "Snapshot nope could not be found."},
		{"list other project", "GET", "/v3/p2/snapshots/" + id + "/metadata", "u:p2", nil, 404, "itemNotFound", "could not be found"},
		{"show missing key", "GET", base + "/zz", "", nil, 404, "itemNotFound", "Snapshot " + id + " has no metadata with key zz."},
		{"delete missing key", "DELETE", base + "/zz", "", nil, 404, "itemNotFound", "has no metadata with key zz."},
		{"post slash key", "POST", base, "", map[string]any{"metadata": map[string]any{"a/b": "v"}}, 400, "badRequest", "('a/b' was unexpected)"},
		{"post value number", "POST", base, "", map[string]any{"metadata": map[string]any{"k": 5}}, 400, "badRequest", "5 is not of type 'string'"},
		{"post missing metadata", "POST", base, "", map[string]any{"meta": map[string]any{}}, 400, "badRequest", "'metadata' is a required property"},
		{"put null", "PUT", base, "", map[string]any{"metadata": nil}, 400, "badRequest", "None is not of type 'object'"},
		{"put key mismatch", "PUT", base + "/d", "", map[string]any{"meta": map[string]any{"b": "2"}}, 400, "badRequest", "Request body and URI mismatch"},
		{"put key two items", "PUT", base + "/d", "", map[string]any{"meta": map[string]any{"d": "1", "b": "2"}}, 400, "badRequest", "has too many properties"},
		{"put unknown snapshot", "PUT", "/v3/p1/snapshots/nope/metadata", "", map[string]any{"metadata": map[string]any{}}, 404, "itemNotFound", "Snapshot nope could not be found."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.do(req{Method: tc.method, Path: tc.path, Body: tc.body, Token: tc.token})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
	// Volume metadata keys may hold "/"; extra top-level keys are refused.
	r = h.post("/v3/p1/volumes/"+volID+"/metadata", map[string]any{"metadata": map[string]any{"a/b": "v"}})
	wantStatus(t, r, http.StatusOK)
	h.unchanged(func() {
		r := h.post("/v3/p1/volumes/"+volID+"/metadata", map[string]any{"metadata": map[string]any{}, "extra": 1})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "('extra' was unexpected)")
	})
}

func TestSnapshotActions(t *testing.T) {
	h := newHarness(t)
	volID := h.availableVolume(map[string]any{"size": 1})
	id := h.createSnapshot(map[string]any{"volume_id": volID})["id"].(string)
	path := "/v3/p1/snapshots/" + id + "/action"

	// os-update_snapshot_status: creating -> available, with progress.
	r := h.post(path, map[string]any{"os-update_snapshot_status": map[string]any{"status": "available", "progress": "90%"}})
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 {
		t.Errorf("action body %q", r.Raw)
	}
	if sn := h.b.st.Snapshot(id); sn.Status != "available" || sn.Progress != "90%" {
		t.Fatalf("after update: %+v", sn)
	}
	// os-reset_status: any valid status, case-insensitively.
	wantStatus(t, h.post(path, map[string]any{"os-reset_status": map[string]any{"status": "ERROR"}}), http.StatusAccepted)
	if sn := h.b.st.Snapshot(id); sn.Status != "error" {
		t.Fatalf("after reset: %+v", sn)
	}
	wantStatus(t, h.post(path, map[string]any{"os-reset_status": map[string]any{"status": "creating"}}), http.StatusAccepted)

	for _, tc := range []struct {
		name, path, token string
		body              any
		status            int
		fault, msg        string
	}{
		{"unknown action", path, "", map[string]any{"os-bogus": nil}, 400, "badRequest", "There is no such action: os-bogus. Verify the request body"},
		{"two actions", path, "", map[string]any{"os-reset_status": map[string]any{"status": "error"}, "os-force_delete": nil}, 400, "badRequest", "Malformed request body"},
		{"no action", path, "", map[string]any{}, 400, "badRequest", "Malformed request body"},
		{"not json", path, "", "{", 400, "badRequest", "Malformed request body"},
		{"empty body", path, "", "", 400, "badRequest", "There is no such action: None."},
		{"list of one", path, "", `["os-force_delete"]`, 404, "itemNotFound", msgNotFound},
		{"unmanage", path, "", map[string]any{"os-unmanage": map[string]any{}}, 501, "notImplemented", "The os-unmanage action is not implemented by Kiln yet."},
		{"unmanage unknown snapshot", "/v3/p1/snapshots/nope/action", "", map[string]any{"os-unmanage": nil}, 404, "itemNotFound", "Snapshot nope could not be found."},
		{"reset invalid status", path, "", map[string]any{"os-reset_status": map[string]any{"status": "bogus"}}, 400, "badRequest",
			"Snapshot status: bogus is invalid, valid statuses are: ('error', 'available', 'creating', 'deleting', 'deleted'"},
		{"reset missing status", path, "", map[string]any{"os-reset_status": map[string]any{}}, 400, "badRequest", "'status' is a required property"},
		{"reset status number", path, "", map[string]any{"os-reset_status": map[string]any{"status": 1}}, 400, "badRequest", "1 is not of type 'string'"},
		{"reset extra key", path, "", map[string]any{"os-reset_status": map[string]any{"status": "error", "attach_status": "x"}}, 400, "badRequest", "('attach_status' was unexpected)"},
		{"reset not object", path, "", map[string]any{"os-reset_status": "error"}, 400, "badRequest", "'error' is not of type 'object'"},
		{"reset unknown snapshot", "/v3/p1/snapshots/nope/action", "", map[string]any{"os-reset_status": map[string]any{"status": "error"}}, 404, "itemNotFound", "Snapshot nope could not be found."},
		{"reset other project", "/v3/p2/snapshots/" + id + "/action", "u:p2", map[string]any{"os-reset_status": map[string]any{"status": "error"}}, 404, "itemNotFound", "could not be found"},
		{"update missing status", path, "", map[string]any{"os-update_snapshot_status": map[string]any{"progress": "1%"}}, 400, "badRequest", "'status' is a required property"},
		{"update progress no percent", path, "", map[string]any{"os-update_snapshot_status": map[string]any{"status": "creating", "progress": "50"}}, 400, "badRequest",
			"Invalid input received: progress must be an integer percentage between 0 and 100"},
		{"update progress 101%", path, "", map[string]any{"os-update_snapshot_status": map[string]any{"status": "creating", "progress": "101%"}}, 400, "badRequest", "between 0 and 100"},
		{"update progress text", path, "", map[string]any{"os-update_snapshot_status": map[string]any{"status": "creating", "progress": "half%"}}, 400, "badRequest",
			"progress must be an integer percentage"},
		{"update progress number", path, "", map[string]any{"os-update_snapshot_status": map[string]any{"status": "creating", "progress": 5}}, 400, "badRequest", "progress must be an integer percentage"},
		{"update extra key", path, "", map[string]any{"os-update_snapshot_status": map[string]any{"status": "creating", "x": 1}}, 400, "badRequest", "('x' was unexpected)"},
		{"force delete unknown", "/v3/p1/snapshots/nope/action", "", map[string]any{"os-force_delete": map[string]any{}}, 404, "itemNotFound", "Snapshot nope could not be found."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.do(req{Method: "POST", Path: tc.path, Body: tc.body, Token: tc.token})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
	// Transitions outside Cinder's map are refused by the state machine.
	h.refused(func() {
		r := h.post(path, map[string]any{"os-update_snapshot_status": map[string]any{"status": "deleting"}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "Provided snapshot status deleting not allowed for snapshot with status creating.")
		r = h.post(path, map[string]any{"os-reset_status": map[string]any{"status": "deleted"}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "deleted")
	})
	// Falsy progress leaves the progress alone.
	wantStatus(t, h.post(path, map[string]any{"os-update_snapshot_status": map[string]any{"status": "creating", "progress": nil}}), http.StatusAccepted)
	if sn := h.b.st.Snapshot(id); sn.Progress != "90%" {
		t.Errorf("progress %q", sn.Progress)
	}
	// os-force_delete deletes a creating snapshot (gophercloud sends {}).
	wantStatus(t, h.post(path, map[string]any{"os-force_delete": map[string]any{}}), http.StatusAccepted)
	if sn := h.b.st.Snapshot(id); sn.Status != state.SnapDeleting {
		t.Fatalf("after force delete: %+v", sn)
	}
}

func TestListSnapshots(t *testing.T) {
	h := newHarness(t)
	vol1 := h.availableVolume(map[string]any{"size": 1, "availability_zone": "az2"})
	vol2 := h.availableVolume(map[string]any{"size": 2})
	var ids []string
	for i := range 5 {
		volID := []string{vol1, vol2}[i%2]
		snap := h.createSnapshot(map[string]any{"volume_id": volID, "name": fmt.Sprintf("s%d", i),
			"metadata": map[string]any{"parity": []string{"even", "odd"}[i%2]}})
		ids = append(ids, snap["id"].(string))
		time.Sleep(time.Millisecond) // distinct created_at
	}
	h.mustApply(state.SnapshotCreated{ID: ids[0], At: now()})
	// Another project's snapshot is listed only with all_tenants.
	other := h.do(req{Method: "POST", Path: "/v3/p2/volumes", Token: "u2:p2", Body: map[string]any{"volume": map[string]any{"size": 1}}})
	otherVol := other.Body["volume"].(map[string]any)["id"].(string)
	h.makeAvailable(otherVol)
	r := h.do(req{Method: "POST", Path: "/v3/p2/snapshots", Token: "u2:p2", Body: map[string]any{"snapshot": map[string]any{"volume_id": otherVol}}})
	wantStatus(t, r, http.StatusAccepted)
	otherSnap := r.Body["snapshot"].(map[string]any)["id"].(string)

	listIDs := func(r *response) []string {
		t.Helper()
		wantStatus(t, r, http.StatusOK)
		var out []string
		for _, x := range r.Body["snapshots"].([]any) {
			out = append(out, x.(map[string]any)["id"].(string))
		}
		return out
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)

	// Summary items carry the base view only.
	r = h.getV("/v3/p1/snapshots", "volume 3.65")
	if got := listIDs(r); !slices.Equal(got, newestFirst) {
		t.Errorf("list %v, want %v", got, newestFirst)
	}
	item := r.Body["snapshots"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "created_at", "updated_at", "name", "description", "volume_id", "status", "size", "metadata"} {
		if _, ok := item[k]; !ok {
			t.Errorf("summary item lacks %s", k)
		}
	}
	for _, k := range []string{"user_id", "consumes_quota", "os-extended-snapshot-attributes:progress"} {
		if _, ok := item[k]; ok {
			t.Errorf("summary item has %s", k)
		}
	}
	if _, ok := r.Body["snapshots_links"]; ok {
		t.Error("links on a short page")
	}
	// Detail items carry everything.
	r = h.getV("/v3/p1/snapshots/detail", "volume 3.65")
	item = r.Body["snapshots"].([]any)[0].(map[string]any)
	if item["user_id"] != "u1" || item["consumes_quota"] != true || item["os-extended-snapshot-attributes:project_id"] != "p1" || item["os-extended-snapshot-attributes:progress"] != "0%" {
		t.Errorf("detail item %v", item)
	}

	// Pagination: next links whenever a page is full, absolute, with the
	// query kept and the marker replaced.
	var paged []string
	next := "/v3/p1/snapshots/detail?limit=2&sort=created_at:desc"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := h.get(next)
		paged = append(paged, listIDs(r)...)
		next = ""
		if links, ok := r.Body["snapshots_links"].([]any); ok {
			l := links[0].(map[string]any)
			href := l["href"].(string)
			if l["rel"] != "next" || !strings.HasPrefix(href, testURL+"/v3/p1/snapshots/detail?") || !strings.Contains(href, "limit=2") {
				t.Fatalf("next link %v", l)
			}
			next = strings.TrimPrefix(href, testURL)
		}
	}
	if !slices.Equal(paged, newestFirst) {
		t.Errorf("paged %v, want %v", paged, newestFirst)
	}
	if got := listIDs(h.get("/v3/p1/snapshots?limit=2&marker=" + ids[4])); !slices.Equal(got, []string{ids[3], ids[2]}) {
		t.Errorf("after marker: %v", got)
	}
	if got := listIDs(h.get("/v3/p1/snapshots?offset=3")); !slices.Equal(got, []string{ids[1], ids[0]}) {
		t.Errorf("offset: %v", got)
	}

	for _, tc := range []struct {
		name, path, version string
		want                []string
	}{
		{"name", "/v3/p1/snapshots?name=s2", "", []string{ids[2]}},
		{"status", "/v3/p1/snapshots?status=available", "", []string{ids[0]}},
		{"volume_id", "/v3/p1/snapshots?volume_id=" + vol2 + "&sort=created_at:asc", "", []string{ids[1], ids[3]}},
		{"zone", "/v3/p1/snapshots?availability_zone=az2&sort=created_at:asc", "", []string{ids[0], ids[2], ids[4]}},
		{"metadata", "/v3/p1/snapshots?metadata=%7B%27parity%27%3A%27odd%27%7D&sort=created_at:asc", "volume 3.22", []string{ids[1], ids[3]}},
		{"metadata ignored before 3.22", "/v3/p1/snapshots?metadata=%7B%27parity%27%3A%27odd%27%7D", "volume 3.21", newestFirst},
		{"sort by name at 3.30", "/v3/p1/snapshots?sort=name:asc", "volume 3.30", ids},
		{"sort by size", "/v3/p1/snapshots?sort=volume_size:asc,created_at:asc", "", []string{ids[0], ids[2], ids[4], ids[1], ids[3]}},
		{"all tenants", "/v3/p1/snapshots?all_tenants=true&project_id=p2", "", []string{otherSnap}},
		{"consumes_quota", "/v3/p1/snapshots?consumes_quota=false", "volume 3.65", nil},
		{"unknown filter ignored before 3.31", "/v3/p1/snapshots?color=red", "volume 3.30", newestFirst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := listIDs(h.getV(tc.path, tc.version)); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	r = h.getV("/v3/p1/snapshots?with_count=true&limit=1", "volume 3.45")
	if r.Body["count"] != 5.0 || len(r.Body["snapshots"].([]any)) != 1 {
		t.Errorf("with_count: %s", r.Raw)
	}
	for _, tc := range []struct {
		name, path, version string
		status              int
		fault, msg          string
	}{
		{"unknown filter", "/v3/p1/snapshots?color=red", "volume 3.31", 400, "badRequest", "Invalid filters color are found in query options."},
		{"sort by name before 3.30", "/v3/p1/snapshots?sort=name", "volume 3.29", 400, "badRequest", "Invalid sort key"},
		{"bad limit", "/v3/p1/snapshots?limit=x", "", 400, "badRequest", "limit param must be an integer"},
		{"unknown marker", "/v3/p1/snapshots?marker=nope", "", 404, "itemNotFound", "Snapshot nope could not be found."},
		{"other project's marker", "/v3/p1/snapshots?marker=" + otherSnap, "", 404, "itemNotFound", "could not be found"},
		{"bad all_tenants", "/v3/p1/snapshots/detail?all_tenants=maybe", "", 400, "badRequest", "is not a boolean"},
		{"bad consumes_quota", "/v3/p1/snapshots?consumes_quota=maybe", "volume 3.65", 400, "badRequest", "Invalid input received"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantFault(t, h.getV(tc.path, tc.version), tc.status, tc.fault, tc.msg)
		})
	}
}

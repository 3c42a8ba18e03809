package api

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
)

func TestCreateVolumeFromSnapshot(t *testing.T) {
	h := newHarness(t)
	ty := h.post("/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "fast"}})
	wantStatus(t, ty, http.StatusOK)
	fast := ty.Body["volume_type"].(map[string]any)["id"].(string)
	wantStatus(t, h.post("/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "slow"}}), http.StatusOK)
	volID := h.availableVolume(map[string]any{"size": 4, "volume_type": "fast", "availability_zone": "az2"})
	snapID := h.createSnapshot(map[string]any{"volume_id": volID})["id"].(string)

	// A snapshot still creating is not a valid source.
	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"snapshot_id": snapID}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "Originating snapshot status must be one of 'available' values")
	})
	h.mustApply(state.SnapshotCreated{ID: snapID, At: now()})

	// Size and type omitted: the snapshot's; the zone is the volume's.
	vol := h.createVolume(map[string]any{"snapshot_id": snapID, "name": "restored"})
	if vol["size"] != 4.0 || vol["volume_type"] != "fast" || vol["snapshot_id"] != snapID || vol["source_volid"] != nil || vol["availability_zone"] != "az2" {
		t.Errorf("from snapshot %v", vol)
	}
	v := h.b.st.Volume(vol["id"].(string))
	if v.SnapshotID != snapID || v.SizeGB != 4 || v.TypeID != fast || v.AZ != "az2" {
		t.Errorf("stored %+v", v)
	}
	if p := h.b.st.SourcePool(v); p != testPool {
		t.Errorf("source pool %q", p)
	}
	// A larger size and another type may be asked for.
	vol = h.createVolume(map[string]any{"snapshot_id": snapID, "size": "6", "volume_type": "slow"})
	if vol["size"] != 6.0 || vol["volume_type"] != "slow" {
		t.Errorf("larger from snapshot %v", vol)
	}
	// The show view keeps the source.
	if got := h.get("/v3/p1/volumes/" + vol["id"].(string)).Body["volume"].(map[string]any)["snapshot_id"]; got != snapID {
		t.Errorf("show snapshot_id %v", got)
	}

	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"snapshot_id": snapID, "size": 3}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "not smaller than the snapshot size 4GB")
	})
	h.unchanged(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"snapshot_id": snapID, "availability_zone": "nova"}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "Volume must be in the same availability zone as the snapshot")
		r = h.do(req{Method: "POST", Path: "/v3/p2/volumes", Token: "u:p2", Body: map[string]any{"volume": map[string]any{"snapshot_id": snapID}}})
		wantFault(t, r, http.StatusNotFound, "itemNotFound", "Snapshot "+snapID+" could not be found.")
		r = h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"snapshot_id": snapID, "volume_type": "gold"}})
		wantFault(t, r, http.StatusNotFound, "itemNotFound", "Volume type with name gold could not be found.")
	})
	// Both sources at once are refused by the state machine.
	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"snapshot_id": snapID, "source_volid": volID}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "one source")
	})
}

func TestCloneVolume(t *testing.T) {
	h := newHarness(t)
	creating := h.createVolume(map[string]any{"size": 1})["id"].(string)
	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"source_volid": creating}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "Source volume status must be available or in-use")
	})
	ty := h.post("/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "fast"}})
	fast := ty.Body["volume_type"].(map[string]any)["id"].(string)
	src := h.availableVolume(map[string]any{"size": 5, "volume_type": fast})
	vol := h.createVolume(map[string]any{"source_volid": src})
	if vol["size"] != 5.0 || vol["volume_type"] != "fast" || vol["source_volid"] != src || vol["snapshot_id"] != nil {
		t.Errorf("clone %v", vol)
	}
	if v := h.b.st.Volume(vol["id"].(string)); v.SourceVolID != src || v.TypeID != fast || h.b.st.SourcePool(v) != testPool {
		t.Errorf("stored clone %+v", v)
	}
	// An in-use volume can be cloned too.
	h.setVolumeStatus(src, state.StatusInUse)
	wantStatus(t, h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"source_volid": src, "size": 7}}), http.StatusAccepted)
	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"source_volid": src, "size": 4}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "cannot be smaller than original volume size 5GB")
	})
	// Quota applies to clones.
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"gigabytes": 20}}), http.StatusOK)
	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"source_volid": src}})
		wantFault(t, r, http.StatusRequestEntityTooLarge, "overLimit", "VolumeSizeExceedsAvailableQuota")
	})
}

func TestExtendVolume(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 2})
	path := "/v3/p1/volumes/" + id + "/action"
	ext := func(size any) map[string]any { return map[string]any{"os-extend": map[string]any{"new_size": size}} }
	for _, tc := range []struct {
		name   string
		body   any
		status int
		fault  string
		msg    string
	}{
		{"float", ext(3.5), 400, "badRequest", "3.5 is not of type 'integer', 'string'"},
		{"float integral", `{"os-extend": {"new_size": 3.0}}`, 400, "badRequest", "is not of type 'integer', 'string'"},
		{"text", ext("three"), 400, "badRequest", "'three' does not match '^[0-9]+$'"},
		{"bool", ext(true), 400, "badRequest", "True is not of type 'integer', 'string'"},
		{"null", ext(nil), 400, "badRequest", "None is not of type 'integer', 'string'"},
		{"zero", ext(0), 400, "badRequest", "0 is less than the minimum of 1"},
		{"too big", ext(2147483648), 400, "badRequest", "is greater than the maximum of 2147483647"},
		{"missing", map[string]any{"os-extend": map[string]any{}}, 400, "badRequest", "'new_size' is a required property"},
		{"extra key", map[string]any{"os-extend": map[string]any{"new_size": 3, "x": 1}}, 400, "badRequest", "('x' was unexpected)"},
		{"not object", map[string]any{"os-extend": 3}, 400, "badRequest", "3 is not of type 'object'"},
		{"unknown volume", nil, 404, "itemNotFound", "Volume nope could not be found."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				p, body := path, tc.body
				if body == nil {
					p, body = "/v3/p1/volumes/nope/action", ext(3)
				}
				wantFault(t, h.post(p, body), tc.status, tc.fault, tc.msg)
			})
		})
	}
	for _, size := range []any{2, "1"} {
		h.refused(func() {
			wantFault(t, h.post(path, ext(size)), http.StatusBadRequest, "badRequest", "New size for extend must be greater than current size.")
		})
	}
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"gigabytes": 10}}), http.StatusOK)
	h.refused(func() {
		wantFault(t, h.post(path, ext(11)), http.StatusRequestEntityTooLarge, "overLimit", "VolumeSizeExceedsAvailableQuota: ")
	})
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"per_volume_gigabytes": 5}}), http.StatusOK)
	h.refused(func() {
		wantFault(t, h.post(path, ext(6)), http.StatusRequestEntityTooLarge, "overLimit", "VolumeSizeExceedsLimit: ")
	})
	r := h.post(path, ext("4"))
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 {
		t.Errorf("extend body %q", r.Raw)
	}
	if v := h.b.st.Volume(id); v.Status != state.StatusExtending || v.ExtendToGB != 4 || v.SizeGB != 2 {
		t.Fatalf("after extend: %+v", v)
	}
	if u := h.b.st.QuotaUsage("p1")["gigabytes"]; u.InUse != 2 || u.Reserved != 2 {
		t.Errorf("gigabytes usage %+v", u)
	}
	// Extending again while extending is refused.
	h.refused(func() {
		wantFault(t, h.post(path, ext(5)), http.StatusBadRequest, "badRequest", "current status is: extending")
	})

	// In-use volumes: refused before 3.42, accepted from 3.42.
	inUse := h.availableVolume(map[string]any{"size": 1})
	h.setVolumeStatus(inUse, state.StatusInUse)
	inUsePath := "/v3/p1/volumes/" + inUse + "/action"
	h.refused(func() {
		r := h.do(req{Method: "POST", Path: inUsePath, Body: ext(2), Version: "volume 3.41"})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "current status is: in-use")
	})
	r = h.do(req{Method: "POST", Path: "/v3/volumes/" + inUse + "/action", Body: ext(2), Version: "volume 3.42"})
	wantStatus(t, r, http.StatusAccepted)
	if v := h.b.st.Volume(inUse); v.Status != state.StatusExtending || v.PreviousStatus != state.StatusInUse {
		t.Fatalf("in-use extend: %+v", v)
	}
}

func TestRevertVolume(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 2})
	path := "/v3/p1/volumes/" + id + "/action"
	revert := func(snap any) map[string]any { return map[string]any{"revert": map[string]any{"snapshot_id": snap}} }
	do := func(body any, version string) *response {
		return h.do(req{Method: "POST", Path: path, Body: body, Version: version})
	}
	h.unchanged(func() {
		wantFault(t, do(revert("x"), "volume 3.40"), http.StatusBadRequest, "badRequest", "Volume "+id+" doesn't have any snapshots.")
	})
	old := h.availableSnapshot(id)
	time.Sleep(time.Millisecond)
	latest := h.availableSnapshot(id)
	for _, tc := range []struct {
		name, version string
		body          any
		status        int
		fault, msg    string
	}{
		{"below 3.40", "volume 3.39", revert(latest), 404, "itemNotFound", msgNotFound},
		{"no microversion", "", revert(latest), 404, "itemNotFound", msgNotFound},
		{"not latest", "volume 3.40", revert(old), 400, "badRequest", "Specified snapshot " + old + " is None or not the latest one of volume " + id + "."},
		{"null snapshot", "volume 3.40", revert(nil), 400, "badRequest", "Specified snapshot None is None or not the latest one"},
		{"no snapshot_id", "volume 3.40", map[string]any{"revert": map[string]any{}}, 400, "badRequest", "Specified snapshot None"},
		{"number", "volume 3.40", revert(5), 400, "badRequest", "Specified snapshot 5 is None"},
		{"not object", "volume 3.40", map[string]any{"revert": latest}, 400, "badRequest", "Missing required element 'revert' in request body."},
		{"unknown volume", "volume 3.40", nil, 404, "itemNotFound", "Volume nope could not be found."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				if tc.body == nil {
					r := h.do(req{Method: "POST", Path: "/v3/p1/volumes/nope/action", Body: revert(latest), Version: tc.version})
					wantFault(t, r, tc.status, tc.fault, tc.msg)
					return
				}
				wantFault(t, do(tc.body, tc.version), tc.status, tc.fault, tc.msg)
			})
		})
	}
	// Cinder answers a volume in the wrong status with 409.
	h.setVolumeStatus(id, state.StatusInUse)
	h.refused(func() {
		wantFault(t, do(revert(latest), "volume 3.40"), http.StatusConflict, "conflictingRequest", "status must be available")
	})
	h.setVolumeStatus(id, state.StatusAvailable)
	r := do(revert(latest), "volume 3.70")
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 {
		t.Errorf("revert body %q", r.Raw)
	}
	if v, sn := h.b.st.Volume(id), h.b.st.Snapshot(latest); v.Status != state.StatusReverting || sn.Status != state.SnapRestoring {
		t.Fatalf("after revert: volume %s, snapshot %s", v.Status, sn.Status)
	}
	h.mustApply(state.VolumeReverted{ID: id, At: now()})

	// A volume grown since its snapshot cannot be reverted.
	wantStatus(t, h.post(path, map[string]any{"os-extend": map[string]any{"new_size": 3}}), http.StatusAccepted)
	h.mustApply(state.VolumeExtended{ID: id, At: now()})
	h.unchanged(func() {
		wantFault(t, do(revert(latest), "volume 3.40"), http.StatusBadRequest, "badRequest",
			"Can't revert volume "+id+" to its latest snapshot "+latest+". The volume size must be equal to the snapshot size.")
	})
}

func TestVolumeActionBodies(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 1})
	path := "/v3/p1/volumes/" + id + "/action"
	for _, tc := range []struct {
		name, version string
		path          string
		body          any
		status        int
		fault, msg    string
	}{
		{"malformed", "", path, "{", 400, "badRequest", "Malformed request body"},
		{"empty object", "", path, "{}", 400, "badRequest", "Malformed request body"},
		{"two keys", "", path, map[string]any{"os-extend": map[string]any{"new_size": 2}, "os-reserve": nil}, 400, "badRequest", "Malformed request body"},
		{"whitespace", "", path, "  ", 400, "badRequest", "Malformed request body"},
		{"empty body", "", path, "", 400, "badRequest", "There is no such action: None."},
		{"string of one", "", path, `"a"`, 404, "itemNotFound", msgNotFound},
		{"string", "", path, `"os-extend"`, 400, "badRequest", "Malformed request body"},
		{"list of one", "", path, `[{"os-extend": {"new_size": 2}}]`, 404, "itemNotFound", msgNotFound},
		{"empty list", "", path, `[]`, 400, "badRequest", "Malformed request body"},
		{"number", "", path, `5`, 404, "itemNotFound", msgNotFound},
		{"null", "", path, `null`, 404, "itemNotFound", msgNotFound},
		{"unknown action", "", path, map[string]any{"os-bogus": map[string]any{}}, 400, "badRequest",
			"There is no such action: os-bogus. Verify the request body and Content-Type header and try again."},
		{"reimage before 3.68", "volume 3.67", path, map[string]any{"os-reimage": map[string]any{}}, 404, "itemNotFound", msgNotFound},
		{"reimage at 3.68", "volume 3.68", path, map[string]any{"os-reimage": map[string]any{}}, 501, "notImplemented", "The os-reimage action is not implemented by Kiln yet."},
		{"extend completion above the maximum", "volume 3.70", path, map[string]any{"os-extend_volume_completion": map[string]any{}}, 404, "itemNotFound", msgNotFound},
		{"unimplemented on a missing volume", "", "/v3/p1/volumes/nope/action", map[string]any{"os-retype": map[string]any{}}, 404, "itemNotFound", "Volume nope could not be found."},
		{"other project", "", "/v3/p2/volumes/" + id + "/action", map[string]any{"os-extend": map[string]any{"new_size": 2}}, 400, "badRequest", "Malformed request url"},
		{"media type", "", path, nil, 415, "badMediaType", "Unsupported Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := req{Method: "POST", Path: tc.path, Body: tc.body, Version: tc.version}
				if tc.status == http.StatusUnsupportedMediaType {
					r.Body, r.Header = `{"os-extend": {"new_size": 2}}`, map[string]string{"Content-Type": "text/plain"}
				}
				wantFault(t, h.do(r), tc.status, tc.fault, tc.msg)
			})
		})
	}
	// Every action Cinder has and Kiln does not serve answers 501 with a
	// message naming it, and changes nothing.
	for _, name := range slices.Sorted(maps.Keys(volumeActions)) {
		if a := volumeActions[name]; a.run != nil || a.since.atLeast(apiVersion{3, 68}) {
			continue
		}
		t.Run("unimplemented "+name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.post(path, map[string]any{name: map[string]any{}})
				wantFault(t, r, http.StatusNotImplemented, "notImplemented", "The "+name+" action is not implemented by Kiln yet.")
			})
		})
	}
	for _, name := range []string{"os-volume_upload_image", "os-retype", "os-migrate_volume"} {
		if a, ok := volumeActions[name]; !ok || a.run != nil {
			t.Errorf("%s is not an unimplemented action", name)
		}
	}
}

func TestDeleteVolumeCascade(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 1})
	snaps := []string{h.availableSnapshot(id), h.availableSnapshot(id)}
	h.refused(func() {
		wantFault(t, h.del("/v3/p1/volumes/"+id), http.StatusBadRequest, "badRequest", "still has 2 dependent snapshots")
		wantFault(t, h.del("/v3/p1/volumes/"+id+"?cascade=false"), http.StatusBadRequest, "badRequest", "dependent snapshots")
	})
	wantStatus(t, h.del("/v3/p1/volumes/"+id+"?cascade=true"), http.StatusAccepted)
	if v := h.b.st.Volume(id); v.Status != state.StatusDeleting {
		t.Errorf("volume %s", v.Status)
	}
	for _, sid := range snaps {
		if sn := h.b.st.Snapshot(sid); sn.Status != state.SnapDeleting {
			t.Errorf("snapshot %s", sn.Status)
		}
	}
	// A creating snapshot blocks a cascade without force.
	id2 := h.availableVolume(map[string]any{"size": 1})
	h.createSnapshot(map[string]any{"volume_id": id2})
	h.refused(func() {
		r := h.del("/v3/p1/volumes/" + id2 + "?cascade=yes")
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Raw), "cascade") {
			t.Errorf("cascade over a creating snapshot: %d %s", r.Status, r.Raw)
		}
	})
}

package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/coordinator/state"
)

func TestCreateVolume(t *testing.T) {
	h := newHarness(t)
	r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{
		"size": 10, "name": "  data  ", "description": "d", "metadata": map[string]any{"k": "v"},
	}})
	wantStatus(t, r, http.StatusAccepted)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	vol := r.Body["volume"].(map[string]any)
	id := vol["id"].(string)
	if !isUUID(id) || strings.ToLower(id) != id || len(id) != 36 || id[14] != '4' {
		t.Errorf("id %q is not a lowercase UUIDv4", id)
	}
	want := map[string]any{
		"status": "creating", "size": 10.0, "availability_zone": "nova", "name": "data",
		"description": "d", "volume_type": "__DEFAULT__", "snapshot_id": nil, "source_volid": nil,
		"user_id": "u1", "bootable": "false", "encrypted": false, "replication_status": "disabled",
		"consistencygroup_id": nil, "multiattach": false, "migration_status": nil,
		"os-vol-host-attr:host": nil, "os-vol-tenant-attr:tenant_id": "p1",
		"os-vol-mig-status-attr:migstat": nil, "os-vol-mig-status-attr:name_id": nil,
	}
	for k, w := range want {
		if got, ok := vol[k]; !ok || got != w {
			t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, w)
		}
	}
	if m := vol["metadata"].(map[string]any); len(m) != 1 || m["k"] != "v" {
		t.Errorf("metadata %v", m)
	}
	if a, ok := vol["attachments"].([]any); !ok || len(a) != 0 {
		t.Errorf("attachments %v", vol["attachments"])
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if !wireTimeRE.MatchString(str(vol[k])) {
			t.Errorf("%s %v not in Cinder's format", k, vol[k])
		}
	}
	links := vol["links"].([]any)
	if l := links[0].(map[string]any); l["rel"] != "self" || l["href"] != testURL+"/v3/p1/volumes/"+id {
		t.Errorf("self link %v", l)
	}
	if l := links[1].(map[string]any); l["rel"] != "bookmark" || l["href"] != testURL+"/p1/volumes/"+id {
		t.Errorf("bookmark link %v", l)
	}
	if _, ok := vol["kiln:error"]; ok {
		t.Error("kiln:error on a healthy volume")
	}
	// The state holds what the response said.
	v := h.b.st.Volume(id)
	if v == nil || v.SizeGB != 10 || v.ProjectID != "p1" || v.UserID != "u1" || v.TypeID != state.DefaultTypeID || v.Status != state.StatusCreating {
		t.Fatalf("stored volume %+v", v)
	}
	if u := h.b.st.QuotaUsage("p1"); u["volumes"].Reserved != 1 || u["gigabytes"].Reserved != 10 {
		t.Errorf("quota usage %+v", u)
	}
}

func TestCreateVolumeAccepted(t *testing.T) {
	h := newHarness(t)
	ty := h.post("/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "fast"}})
	wantStatus(t, ty, http.StatusOK)
	typeID := ty.Body["volume_type"].(map[string]any)["id"].(string)
	other := h.createVolume(map[string]any{"size": 1})["id"].(string)
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"volumes": -1, "gigabytes": -1}}), http.StatusOK)
	for _, tc := range []struct {
		name    string
		version string
		vol     map[string]any
		extra   map[string]any
		check   func(t *testing.T, v *state.Volume)
	}{
		{name: "size as digit string", vol: map[string]any{"size": "7"},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.SizeGB, int64(7)) }},
		{name: "max size", vol: map[string]any{"size": 2147483647, "name": nil, "metadata": nil},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.SizeGB, int64(2147483647)) }},
		{name: "type by name", vol: map[string]any{"size": 1, "volume_type": "fast"},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.TypeID, typeID) }},
		{name: "type by id", vol: map[string]any{"size": 1, "volume_type": typeID},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.TypeID, typeID) }},
		{name: "empty type is default", vol: map[string]any{"size": 1, "volume_type": ""},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.TypeID, state.DefaultTypeID) }},
		{name: "registered zone", vol: map[string]any{"size": 1, "availability_zone": "az2"},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.AZ, "az2") }},
		{name: "v1 names", vol: map[string]any{"size": 1, "display_name": "old", "display_description": "od"},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.Name+"/"+v.Description, "old/od") }},
		{name: "v2 names win", vol: map[string]any{"size": 1, "display_name": "old", "name": "new"},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.Name, "new") }},
		{name: "multiattach string", vol: map[string]any{"size": 1, "multiattach": "yes"},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.Multiattach, true) }},
		{name: "unknown key ignored before 3.53", version: "volume 3.52", vol: map[string]any{"size": 1, "color": "red"},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.SizeGB, int64(1)) }},
		{name: "null sources", version: "volume 3.53", vol: map[string]any{"size": 1, "snapshot_id": nil, "source_volid": nil, "imageRef": nil, "backup_id": nil, "group_id": nil},
			check: func(t *testing.T, v *state.Volume) { wantEq(t, v.SizeGB, int64(1)) }},
		{name: "affinity hints", vol: map[string]any{"size": 1},
			extra: map[string]any{schedulerHintsKey: map[string]any{"same_host": other, "different_host": []any{other}, "query": "x"}},
			check: func(t *testing.T, v *state.Volume) {
				wantEq(t, strings.Join(v.Hints.SameHost, ",")+"|"+strings.Join(v.Hints.DifferentHost, ","), other+"|"+other)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"volume": tc.vol}
			for k, v := range tc.extra {
				body[k] = v
			}
			r := h.do(req{Method: "POST", Path: "/v3/p1/volumes", Body: body, Version: tc.version})
			wantStatus(t, r, http.StatusAccepted)
			v := h.b.st.Volume(r.Body["volume"].(map[string]any)["id"].(string))
			if v == nil {
				t.Fatal("volume not stored")
			}
			tc.check(t, v)
		})
	}
}

func wantEq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCreateVolumeRejected(t *testing.T) {
	h := newHarness(t)
	existing := h.createVolume(map[string]any{"size": 1})["id"].(string)
	h.do(req{Method: "POST", Path: "/v3/p2/volumes", Token: "u2:p2", Body: map[string]any{"volume": map[string]any{"size": 1}}})
	foreign := h.b.st.Volumes(state.VolumeFilter{ProjectID: "p2"})[0].ID
	long := strings.Repeat("n", 256)
	uuid := "0a3e1a58-7c0e-4d5c-9b0e-3f2d0c1b2a99"
	for _, tc := range []struct {
		name    string
		body    any
		version string
		status  int
		fault   string
		msg     string
	}{
		{"malformed json", `{"volume": {"size": 1}`, "", 400, "badRequest", "Malformed request body"},
		{"trailing data", `{"volume": {"size": 1}} {}`, "", 400, "badRequest", "Malformed request body"},
		{"invalid utf-8", "{\"volume\": {\"size\": 1, \"name\": \"\xff\"}}", "", 400, "badRequest", "Malformed request body"},
		{"body is a list", `[1]`, "", 400, "badRequest", "[1] is not of type 'object'"},
		{"body is a string", `"volume"`, "", 400, "badRequest", "is not of type 'object'"},
		{"empty body", ``, "", 400, "badRequest", "'volume' is a required property"},
		{"missing volume", map[string]any{"size": 1}, "", 400, "badRequest", "Additional properties are not allowed ('size' was unexpected)"},
		{"volume missing", map[string]any{}, "", 400, "badRequest", "'volume' is a required property"},
		{"volume not object", map[string]any{"volume": 1}, "", 400, "badRequest", "1 is not of type 'object'"},
		{"size abc", vol("size", "abc"), "", 400, "badRequest", "'abc' does not match '^[0-9]+$'"},
		{"size 1.5", vol("size", 1.5), "", 400, "badRequest", "1.5 is not of type 'integer', 'string'"},
		{"size 1.0", `{"volume": {"size": 1.0}}`, "", 400, "badRequest", "is not of type 'integer', 'string'"},
		{"size 1e1", `{"volume": {"size": 1e1}}`, "", 400, "badRequest", "is not of type 'integer', 'string'"},
		{"size bool", vol("size", true), "", 400, "badRequest", "True is not of type 'integer', 'string'"},
		{"size list", vol("size", []any{1}), "", 400, "badRequest", "is not of type 'integer', 'string'"},
		{"size 0", vol("size", 0), "", 400, "badRequest", "0 is less than the minimum of 1"},
		{"size string 0", vol("size", "0"), "", 400, "badRequest", "0 is less than the minimum of 1"},
		{"size negative", vol("size", -1), "", 400, "badRequest", "-1 is less than the minimum of 1"},
		{"size negative string", vol("size", "-1"), "", 400, "badRequest", "does not match"},
		{"size too big", vol("size", 2147483648), "", 400, "badRequest", "2147483648 is greater than the maximum of 2147483647"},
		{"size huge", `{"volume": {"size": 99999999999999999999999999}}`, "", 400, "badRequest", "is greater than the maximum"},
		{"size null", vol("size", nil), "", 400, "badRequest", "Volume size 'None' must be an integer and greater than 0"},
		{"size missing", map[string]any{"volume": map[string]any{"name": "x"}}, "", 400, "badRequest", "Volume size 'None' must be an integer"},
		{"name number", vol("name", 123), "", 400, "badRequest", "123 is not of type 'string', 'null'"},
		{"name too long", vol("name", long), "", 400, "badRequest", "name has 256 characters, more than 255."},
		{"display_name too long", vol("display_name", long), "", 400, "badRequest", "more than 255"},
		{"description too long", vol("description", long), "", 400, "badRequest", "description has 256 characters"},
		{"unknown type name", vol("volume_type", "gold"), "", 404, "itemNotFound", "Volume type with name gold could not be found."},
		{"unknown type id", vol("volume_type", uuid), "", 404, "itemNotFound", "Volume type " + uuid + " could not be found."},
		{"type not string", vol("volume_type", 5), "", 400, "badRequest", "is not of type 'string', 'null'"},
		{"bad zone", vol("availability_zone", "mars"), "", 400, "badRequest", "Availability zone 'mars' is invalid."},
		{"empty zone", vol("availability_zone", ""), "", 400, "badRequest", "'' is too short"},
		{"metadata list", vol("metadata", []any{"a"}), "", 400, "badRequest", "is not of type 'object', 'null'"},
		{"metadata value number", vol("metadata", map[string]any{"k": 1}), "", 400, "badRequest", "Invalid input for field/attribute k. Value: 1. 1 is not of type 'string'"},
		{"metadata value too long", vol("metadata", map[string]any{"k": long}), "", 400, "badRequest", "is too long"},
		{"metadata bad key", vol("metadata", map[string]any{"k!": "v"}), "", 400, "badRequest", "Additional properties are not allowed ('k!' was unexpected)"},
		{"metadata empty key", vol("metadata", map[string]any{"": "v"}), "", 400, "badRequest", "Additional properties are not allowed"},
		{"unknown key at 3.53", vol("color", "red"), "volume 3.53", 400, "badRequest", "Additional properties are not allowed ('color' was unexpected)"},
		{"group id", vol("group_id", "g"), "volume 3.53", 404, "itemNotFound", "Group g could not be found."},
		{"backup source", map[string]any{"volume": map[string]any{"size": 1, "backup_id": uuid}}, "volume 3.70", 400, "badRequest", "from a backup is not supported yet"},
		{"unknown top-level key", map[string]any{"volume": map[string]any{"size": 1}, "extra": 1}, "", 400, "badRequest", "('extra' was unexpected)"},
		{"unknown snapshot", vol("snapshot_id", uuid), "", 404, "itemNotFound", "Snapshot " + uuid + " could not be found."},
		{"snapshot id not uuid", vol("snapshot_id", "nope"), "", 400, "badRequest", "'nope' is not valid under any of the given schemas"},
		{"unknown source volume", vol("source_volid", uuid), "", 404, "itemNotFound", "Volume " + uuid + " could not be found."},
		{"other project's source volume", vol("source_volid", foreign), "", 404, "itemNotFound", "Volume " + foreign + " could not be found."},
		{"source volid not uuid", vol("source_volid", 7), "", 400, "badRequest", "7 is not valid under any of the given schemas"},
		{"image with snapshot", map[string]any{"volume": map[string]any{"imageRef": "cirros", "source_volid": existing}}, "", 400, "badRequest", "from an image is not supported yet"},
		{"image", vol("imageRef", "cirros"), "", 400, "badRequest", "from an image is not supported yet"},
		{"consistency group", vol("consistencygroup_id", uuid), "", 404, "itemNotFound", "Group " + uuid + " could not be found."},
		{"multiattach bad", vol("multiattach", "maybe"), "", 400, "badRequest", "is not valid under any of the given schemas"},
		{"hints not object", map[string]any{"volume": map[string]any{"size": 1}, schedulerHintsKey: "x"}, "", 400, "badRequest", "is not of type 'object', 'null'"},
		{"hint not uuid", map[string]any{"volume": map[string]any{"size": 1}, schedulerHintsKey: map[string]any{"same_host": "x"}}, "", 400, "badRequest", "Invalid input for field/attribute same_host"},
		{"hint duplicates", map[string]any{"volume": map[string]any{"size": 1}, schedulerHintsKey: map[string]any{"different_host": []any{existing, existing}}}, "", 400, "badRequest", "different_host"},
		{"hint unknown volume", map[string]any{"volume": map[string]any{"size": 1}, schedulerHintsKey: map[string]any{"same_host": uuid}}, "", 400, "badRequest", "names volume " + uuid},
		{"hint other project's volume", map[string]any{"volume": map[string]any{"size": 1}, schedulerHintsKey: map[string]any{"different_host": foreign}}, "", 400, "badRequest", "could not be found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.do(req{Method: "POST", Path: "/v3/p1/volumes", Body: tc.body, Version: tc.version})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
}

// vol is the create body of a 1 GiB volume with key set to value (which
// may be size itself).
func vol(key string, value any) map[string]any {
	v := map[string]any{"size": 1}
	v[key] = value
	return map[string]any{"volume": v}
}

func TestCreateVolumeOverQuota(t *testing.T) {
	h := newHarness(t)
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"volumes": 1, "gigabytes": 5}}), http.StatusOK)
	h.createVolume(map[string]any{"size": 1})
	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"size": 1}})
		wantFault(t, r, http.StatusRequestEntityTooLarge, "overLimit",
			"VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded for quota 'volumes'.")
		if got := r.Header.Get("Retry-After"); got != "0" {
			t.Errorf("Retry-After %q", got)
		}
		if got := r.Body["overLimit"].(map[string]any)["retryAfter"]; got != "0" {
			t.Errorf("retryAfter %v", got)
		}
	})
	wantStatus(t, h.put("/v3/p1/os-quota-sets/p1", map[string]any{"quota_set": map[string]any{"volumes": 10}}), http.StatusOK)
	h.refused(func() {
		r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"size": 5}})
		wantFault(t, r, http.StatusRequestEntityTooLarge, "overLimit", "VolumeSizeExceedsAvailableQuota: ")
	})
	// Another project is not affected.
	r := h.do(req{Method: "POST", Path: "/v3/p2/volumes", Token: "u:p2", Body: map[string]any{"volume": map[string]any{"size": 5}}})
	wantStatus(t, r, http.StatusAccepted)
}

func TestShowVolume(t *testing.T) {
	h := newHarness(t)
	id := h.createVolume(map[string]any{"size": 3, "name": "a"})["id"].(string)
	r := h.get("/v3/p1/volumes/" + id)
	wantStatus(t, r, http.StatusOK)
	if v := r.Body["volume"].(map[string]any); v["id"] != id || v["size"] != 3.0 || v["name"] != "a" {
		t.Errorf("show %v", v)
	}
	wantFault(t, h.get("/v3/p1/volumes/nope"), http.StatusNotFound, "itemNotFound", "Volume nope could not be found.")
	other := h.do(req{Method: "GET", Path: "/v3/p2/volumes/" + id, Token: "u2:p2"})
	wantFault(t, other, http.StatusNotFound, "itemNotFound", "Volume "+id+" could not be found.")
}

func TestVolumeErrorReason(t *testing.T) {
	h := newHarness(t)
	id := h.createVolume(map[string]any{"size": 1})["id"].(string)
	h.mustApply(state.ScheduleVolume{ID: id, Pool: testPool, At: now(), FreeGB: 100, TotalGB: 100})
	h.mustApply(state.VolumeCreateFailed{ID: id, Pool: testPool, Reason: "disk on fire", Final: true, At: now()})
	v := h.get("/v3/p1/volumes/" + id).Body["volume"].(map[string]any)
	if v["status"] != "error" || v["kiln:error"] != "disk on fire" {
		t.Errorf("error volume %v / %v", v["status"], v["kiln:error"])
	}
}

func TestUpdateVolume(t *testing.T) {
	h := newHarness(t)
	id := h.createVolume(map[string]any{"size": 1, "name": "a", "metadata": map[string]any{"old": "1"}})["id"].(string)
	r := h.put("/v3/p1/volumes/"+id, map[string]any{"volume": map[string]any{"name": "b", "description": "desc", "metadata": map[string]any{"new": "2"}}})
	wantStatus(t, r, http.StatusOK)
	v := r.Body["volume"].(map[string]any)
	if v["name"] != "b" || v["description"] != "desc" || len(v["metadata"].(map[string]any)) != 1 || v["metadata"].(map[string]any)["new"] != "2" {
		t.Errorf("updated %v", v)
	}
	r = h.put("/v3/volumes/"+id, map[string]any{"volume": map[string]any{"display_name": "c", "display_description": nil}})
	wantStatus(t, r, http.StatusOK)
	if v := h.b.st.Volume(id); v.Name != "c" || v.Description != "" || v.Metadata["new"] != "2" {
		t.Errorf("stored %+v", v)
	}
	// An empty update is accepted before 3.53 and changes nothing but
	// updated_at.
	wantStatus(t, h.put("/v3/p1/volumes/"+id, map[string]any{"volume": map[string]any{}}), http.StatusOK)

	for _, tc := range []struct {
		name, version string
		path          string
		token         string
		body          any
		status        int
		fault, msg    string
	}{
		{"unknown key", "", "/v3/p1/volumes/" + id, "", map[string]any{"volume": map[string]any{"size": 2}}, 400, "badRequest", "('size' was unexpected)"},
		{"empty at 3.53", "volume 3.53", "/v3/p1/volumes/" + id, "", map[string]any{"volume": map[string]any{}}, 400, "badRequest", "is not valid under any of the given schemas"},
		{"name too long", "", "/v3/p1/volumes/" + id, "", map[string]any{"volume": map[string]any{"name": strings.Repeat("x", 300)}}, 400, "badRequest", "more than 255"},
		{"metadata null", "", "/v3/p1/volumes/" + id, "", map[string]any{"volume": map[string]any{"metadata": nil}}, 400, "badRequest", "None is not of type 'object'"},
		{"malformed", "", "/v3/p1/volumes/" + id, "", "{", 400, "badRequest", "Malformed request body"},
		{"missing volume", "", "/v3/p1/volumes/" + id, "", map[string]any{}, 400, "badRequest", "'volume' is a required property"},
		{"unknown volume", "", "/v3/p1/volumes/x", "", map[string]any{"volume": map[string]any{"name": "z"}}, 404, "itemNotFound", "Volume x could not be found."},
		{"other project", "", "/v3/p2/volumes/" + id, "u:p2", map[string]any{"volume": map[string]any{"name": "z"}}, 404, "itemNotFound", "could not be found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.do(req{Method: "PUT", Path: tc.path, Body: tc.body, Version: tc.version, Token: tc.token})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
}

func TestDeleteVolume(t *testing.T) {
	h := newHarness(t)
	id := h.createVolume(map[string]any{"size": 2})["id"].(string)
	// A creating volume is not deletable without force (Cinder's rule).
	h.refused(func() {
		wantFault(t, h.del("/v3/p1/volumes/"+id), http.StatusBadRequest, "badRequest", "Invalid volume")
	})
	h.unchanged(func() {
		wantFault(t, h.del("/v3/p1/volumes/"+id+"?force=true"), http.StatusBadRequest, "badRequest", "requires microversion 3.23")
		r := h.do(req{Method: "DELETE", Path: "/v3/p1/volumes/" + id + "?force=maybe", Version: "volume 3.23"})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "Value 'maybe' for 'force' is not a boolean.")
		wantFault(t, h.del("/v3/p1/volumes/"+id+"?cascade=x"), http.StatusBadRequest, "badRequest", "for 'cascade' is not a boolean")
		r = h.do(req{Method: "DELETE", Path: "/v3/p2/volumes/" + id, Token: "u:p2"})
		wantFault(t, r, http.StatusNotFound, "itemNotFound", "Volume "+id+" could not be found.")
		wantFault(t, h.del("/v3/p1/volumes/nope"), http.StatusNotFound, "itemNotFound", "Volume nope could not be found.")
	})
	h.makeAvailable(id)
	r := h.del("/v3/p1/volumes/" + id + "?cascade=true")
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 {
		t.Errorf("delete body %q", r.Raw)
	}
	if v := h.b.st.Volume(id); v == nil || v.Status != state.StatusDeleting {
		t.Fatalf("after delete: %+v", v)
	}
	// Forced delete of a creating volume at 3.23.
	id2 := h.createVolume(map[string]any{"size": 1})["id"].(string)
	r = h.do(req{Method: "DELETE", Path: "/v3/p1/volumes/" + id2 + "?force=true", Version: "volume 3.23"})
	wantStatus(t, r, http.StatusAccepted)
	if v := h.b.st.Volume(id2); v == nil || v.Status != state.StatusDeleting {
		t.Fatalf("after forced delete: %+v", v)
	}
}

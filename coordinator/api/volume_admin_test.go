package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/storage"
)

func volAction(h *harness, id string, body any) *response {
	return h.post("/v3/p1/volumes/"+id+"/action", body)
}

func TestVolumeResetStatus(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 2})
	path := "/v3/p1/volumes/" + id
	usageBefore := h.b.st.QuotaUsage(testProject)
	poolBefore := h.b.st.PoolUsage(testPool)

	r := volAction(h, id, map[string]any{"os-reset_status": map[string]any{"status": "Error"}})
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 || h.b.st.Volume(id).Status != state.StatusError {
		t.Fatalf("reset: %s %s", r.Raw, h.b.st.Volume(id).Status)
	}
	// Quota and pool accounting are unchanged by a reset between settled statuses.
	if got := h.b.st.QuotaUsage(testProject); !maps.Equal(got, usageBefore) || h.b.st.PoolUsage(testPool) != poolBefore {
		t.Fatalf("usage changed: %v %v", got, h.b.st.PoolUsage(testPool))
	}
	// Attach and migration status; migration shows in the view.
	wantStatus(t, volAction(h, id, map[string]any{"os-reset_status": map[string]any{
		"status": "available", "attach_status": "DETACHED", "migration_status": "migrating"}}), http.StatusAccepted)
	vol := h.get(path).Body["volume"].(map[string]any)
	if vol["status"] != "available" || vol["migration_status"] != "migrating" || vol["os-vol-mig-status-attr:migstat"] != "migrating" {
		t.Fatalf("view after reset %v", vol)
	}
	// gophercloud sends "status": "" with only another field set.
	wantStatus(t, volAction(h, id, map[string]any{"os-reset_status": map[string]any{"status": "", "migration_status": "none"}}), http.StatusAccepted)
	if v := h.b.st.Volume(id); v.MigrationStatus != "" || v.Status != state.StatusAvailable {
		t.Fatalf("after none: %+v", v)
	}

	for _, tc := range []struct {
		name string
		arg  any
		msg  string
	}{
		{"empty", map[string]any{}, "Must specify 'status', 'attach_status' or 'migration_status' for update."},
		{"all null", map[string]any{"status": nil, "attach_status": ""}, "Must specify"},
		{"not an object", "error", "is not of type 'object'"},
		{"null", nil, "is not of type 'object'"},
		{"bad status", map[string]any{"status": "broken"}, "Volume status: broken is invalid, valid statuses are: ('creating', "},
		{"bad attach", map[string]any{"attach_status": "attaching"}, "Volume attach status: attaching is invalid, valid statuses are: ['attached', 'detached']."},
		{"bad migration", map[string]any{"migration_status": "moving"}, "Volume migration status: moving is invalid"},
		{"status type", map[string]any{"status": 5}, "5 is not of type 'string', 'null'"},
		{"extra key", map[string]any{"status": "error", "force": true}, "Additional properties are not allowed ('force' was unexpected)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				wantFault(t, volAction(h, id, map[string]any{"os-reset_status": tc.arg}), http.StatusBadRequest, "badRequest", tc.msg)
			})
		})
	}
	// Refused by the state machine.
	h.refused(func() {
		wantFault(t, volAction(h, id, map[string]any{"os-reset_status": map[string]any{"status": "deleting"}}),
			http.StatusBadRequest, "badRequest", "Cannot reset-state to deleting")
		wantFault(t, volAction(h, id, map[string]any{"os-reset_status": map[string]any{"status": "in-use"}}),
			http.StatusBadRequest, "badRequest", "Cannot reset-state to in-use because volume does not have any attachments.")
	})
	h.unchanged(func() {
		r := h.do(req{Method: "POST", Path: "/v3/p2/volumes/" + id + "/action", Token: "u:p2",
			Body: map[string]any{"os-reset_status": map[string]any{"status": "error"}}})
		wantFault(t, r, http.StatusNotFound, "itemNotFound", "Volume "+id+" could not be found.")
	})
}

func TestVolumeForceDelete(t *testing.T) {
	for _, arg := range []any{map[string]any{}, nil, ""} {
		h := newHarness(t)
		id := h.availableVolume(map[string]any{"size": 1})
		h.setVolumeStatus(id, "error_deleting")
		// A plain DELETE refuses the status; force does not.
		h.refused(func() {
			wantFault(t, h.del("/v3/p1/volumes/"+id), http.StatusBadRequest, "badRequest", "Volume status must be available")
		})
		r := volAction(h, id, map[string]any{"os-force_delete": arg})
		wantStatus(t, r, http.StatusAccepted)
		if len(r.Raw) != 0 || h.b.st.Volume(id).Status != state.StatusDeleting {
			t.Fatalf("force delete %v: %s %s", arg, r.Raw, h.b.st.Volume(id).Status)
		}
	}
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 1})
	h.availableSnapshot(id)
	h.refused(func() {
		wantFault(t, volAction(h, id, map[string]any{"os-force_delete": map[string]any{}}), http.StatusBadRequest, "badRequest", "dependent snapshots")
	})
	h.unchanged(func() {
		wantFault(t, volAction(h, "nope", map[string]any{"os-force_delete": map[string]any{}}), http.StatusNotFound, "itemNotFound", "Volume nope could not be found.")
	})
}

func TestVolumeSetBootableAndReadonly(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 1})
	for _, tc := range []struct {
		val  any
		want string
	}{{true, "true"}, {"off", "false"}, {"YES", "true"}, {false, "false"}} {
		r := volAction(h, id, map[string]any{"os-set_bootable": map[string]any{"bootable": tc.val}})
		wantStatus(t, r, http.StatusOK)
		if len(r.Raw) != 0 {
			t.Fatalf("set_bootable body %s", r.Raw)
		}
		if got := h.get("/v3/p1/volumes/" + id).Body["volume"].(map[string]any)["bootable"]; got != tc.want {
			t.Fatalf("bootable %v: %v", tc.val, got)
		}
	}
	h.unchanged(func() {
		wantFault(t, volAction(h, id, map[string]any{"os-set_bootable": map[string]any{"bootable": "maybe"}}), http.StatusBadRequest, "badRequest", "is not one of")
		wantFault(t, volAction(h, id, map[string]any{"os-set_bootable": map[string]any{}}), http.StatusBadRequest, "badRequest", "'bootable' is a required property")
		wantFault(t, volAction(h, id, map[string]any{"os-set_bootable": map[string]any{"bootable": 1}}), http.StatusBadRequest, "badRequest", "is not of type 'boolean', 'string'")
		wantFault(t, volAction(h, id, map[string]any{"os-set_bootable": map[string]any{"bootable": true, "x": 1}}), http.StatusBadRequest, "badRequest", "Additional properties")
		wantFault(t, volAction(h, id, map[string]any{"os-update_readonly_flag": map[string]any{"readonly": "maybe"}}), http.StatusBadRequest, "badRequest", "is not one of")
		wantFault(t, volAction(h, id, map[string]any{"os-update_readonly_flag": []any{}}), http.StatusBadRequest, "badRequest", "is not of type 'object'")
		wantFault(t, volAction(h, id, map[string]any{"os-update_readonly_flag": map[string]any{}}), http.StatusBadRequest, "badRequest", "'readonly' is a required property")
	})
	r := volAction(h, id, map[string]any{"os-update_readonly_flag": map[string]any{"readonly": "true"}})
	wantStatus(t, r, http.StatusAccepted)
	if len(r.Raw) != 0 || !h.b.st.Volume(id).ReadOnly {
		t.Fatalf("readonly: %s", r.Raw)
	}
	// The readonly flag needs an available volume.
	h.setVolumeStatus(id, "error")
	h.refused(func() {
		wantFault(t, volAction(h, id, map[string]any{"os-update_readonly_flag": map[string]any{"readonly": false}}),
			http.StatusBadRequest, "badRequest", "status must be available to update readonly flag, but current status is: error.")
	})
	// Bootable is refused only in maintenance.
	wantStatus(t, volAction(h, id, map[string]any{"os-set_bootable": map[string]any{"bootable": true}}), http.StatusOK)
	h.setVolumeStatus(id, "maintenance")
	h.refused(func() {
		wantFault(t, volAction(h, id, map[string]any{"os-set_bootable": map[string]any{"bootable": false}}),
			http.StatusBadRequest, "badRequest", "The volume cannot be updated during maintenance.")
	})
}

func TestVolumeImageMetadata(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 1})
	path := "/v3/p1/volumes/" + id
	if _, ok := h.get(path).Body["volume"].(map[string]any)["volume_image_metadata"]; ok {
		t.Fatal("volume_image_metadata shown without any")
	}
	r := volAction(h, id, map[string]any{"os-show_image_metadata": nil})
	wantStatus(t, r, http.StatusOK)
	if m := r.Body["metadata"].(map[string]any); len(m) != 0 {
		t.Fatalf("empty show %s", r.Raw)
	}
	r = volAction(h, id, map[string]any{"os-set_image_metadata": map[string]any{"metadata": map[string]any{"os_distro": "debian", "k": "1"}}})
	wantStatus(t, r, http.StatusOK)
	r = volAction(h, id, map[string]any{"os-set_image_metadata": map[string]any{"metadata": map[string]any{"k": strings.Repeat("x", 300)}}})
	wantStatus(t, r, http.StatusOK)
	want := map[string]any{"os_distro": "debian", "k": strings.Repeat("x", 300)}
	if m := r.Body["metadata"].(map[string]any); !maps.Equal(m, want) {
		t.Fatalf("set answers the whole image metadata: %s", r.Raw)
	}
	if m := volAction(h, id, map[string]any{"os-show_image_metadata": map[string]any{}}).Body["metadata"].(map[string]any); !maps.Equal(m, want) {
		t.Fatalf("show %v", m)
	}
	if m, _ := h.get(path).Body["volume"].(map[string]any)["volume_image_metadata"].(map[string]any); !maps.Equal(m, want) {
		t.Fatalf("detail volume_image_metadata %v", m)
	}
	// The user metadata is separate.
	if m := h.get(path).Body["volume"].(map[string]any)["metadata"].(map[string]any); len(m) != 0 {
		t.Fatalf("user metadata %v", m)
	}
	h.unchanged(func() {
		for _, tc := range []struct {
			arg any
			msg string
		}{
			{map[string]any{}, "'metadata' is a required property"},
			{map[string]any{"metadata": "x"}, "is not of type 'object'"},
			{map[string]any{"metadata": map[string]any{"a": 1}}, "1 is not of type 'string'"},
			{map[string]any{"metadata": map[string]any{"bad?key": "v"}}, "Additional properties are not allowed"},
			{map[string]any{"metadata": map[string]any{}, "x": 1}, "Additional properties"},
		} {
			wantFault(t, volAction(h, id, map[string]any{"os-set_image_metadata": tc.arg}), http.StatusBadRequest, "badRequest", tc.msg)
		}
		wantFault(t, volAction(h, id, map[string]any{"os-unset_image_metadata": map[string]any{}}), http.StatusBadRequest, "badRequest", "'key' is a required property")
		wantFault(t, volAction(h, id, map[string]any{"os-unset_image_metadata": map[string]any{"key": ""}}), http.StatusBadRequest, "badRequest", "is too short")
		wantFault(t, volAction(h, "nope", map[string]any{"os-show_image_metadata": nil}), http.StatusNotFound, "itemNotFound", "Volume nope could not be found.")
	})
	h.refused(func() {
		wantFault(t, volAction(h, id, map[string]any{"os-unset_image_metadata": map[string]any{"key": "nope"}}), http.StatusNotFound, "itemNotFound", "Metadata item was not found.")
	})
	r = volAction(h, id, map[string]any{"os-unset_image_metadata": map[string]any{"key": "k"}})
	wantStatus(t, r, http.StatusOK)
	if len(r.Raw) != 0 || !maps.Equal(h.b.st.Volume(id).ImageMetadata, map[string]string{"os_distro": "debian"}) {
		t.Fatalf("unset: %s %v", r.Raw, h.b.st.Volume(id).ImageMetadata)
	}
}

func TestVolumeSummary(t *testing.T) {
	h := newHarness(t)
	h.createVolume(map[string]any{"size": 2, "metadata": map[string]any{"env": "prod", "team": "a"}})
	h.createVolume(map[string]any{"size": 3, "metadata": map[string]any{"env": "dev"}})
	h.createVolume(map[string]any{"size": 4, "metadata": map[string]any{"env": "prod"}})
	r := h.do(req{Method: "POST", Path: "/v3/p2/volumes", Token: "u:p2", Body: map[string]any{"volume": map[string]any{"size": 10}}})
	wantStatus(t, r, http.StatusAccepted)

	r = h.getV("/v3/p1/volumes/summary", "volume 3.12")
	wantStatus(t, r, http.StatusOK)
	sum := r.Body["volume-summary"].(map[string]any)
	if sum["total_count"] != 3.0 || sum["total_size"] != 9.0 {
		t.Fatalf("summary %s", r.Raw)
	}
	if _, ok := sum["metadata"]; ok {
		t.Fatalf("metadata before 3.36: %s", r.Raw)
	}
	r = h.getV("/v3/volumes/summary", "volume 3.36")
	sum = r.Body["volume-summary"].(map[string]any)
	meta := sum["metadata"].(map[string]any)
	if env := meta["env"].([]any); len(env) != 2 || !slices.Contains(env, any("prod")) || !slices.Contains(env, any("dev")) {
		t.Fatalf("metadata %s", r.Raw)
	}
	if team := meta["team"].([]any); len(team) != 1 || team[0] != "a" {
		t.Fatalf("metadata %s", r.Raw)
	}
	sum = h.getV("/v3/p1/volumes/summary?all_tenants=1", "volume 3.36").Body["volume-summary"].(map[string]any)
	if sum["total_count"] != 4.0 || sum["total_size"] != 19.0 {
		t.Fatalf("all tenants %v", sum)
	}
	sum = h.do(req{Method: "GET", Path: "/v3/p3/volumes/summary", Token: "u:p3", Version: "volume 3.36"}).Body["volume-summary"].(map[string]any)
	if sum["total_count"] != 0.0 || sum["total_size"] != 0.0 || len(sum["metadata"].(map[string]any)) != 0 {
		t.Fatalf("empty project %v", sum)
	}
	// Filters are ignored, as Cinder's summary ignores them.
	if sum = h.getV("/v3/p1/volumes/summary?status=error", "volume 3.12").Body["volume-summary"].(map[string]any); sum["total_count"] != 3.0 {
		t.Fatalf("filtered %v", sum)
	}
	wantFault(t, h.getV("/v3/p1/volumes/summary?all_tenants=maybe", "volume 3.12"), http.StatusBadRequest, "badRequest", "Value 'maybe' for 'all_tenants' is not a boolean.")
	// Below 3.12 there is no summary (and it is not a volume ID either).
	wantFault(t, h.getV("/v3/p1/volumes/summary", "volume 3.11"), http.StatusNotFound, "itemNotFound", msgNotFound)
	wantFault(t, h.get("/v3/p1/volumes/summary"), http.StatusNotFound, "itemNotFound", msgNotFound)
}

func TestVolumeForceDetach(t *testing.T) {
	h := newHarness(t)
	id := h.availableVolume(map[string]any{"size": 1, "multiattach": true})
	other := h.availableVolume(map[string]any{"size": 1})
	act := func(arg any) *response { return volAction(h, id, map[string]any{"os-force_detach": arg}) }
	attach := func(host string) string {
		t.Helper()
		wantStatus(t, volAction(h, id, map[string]any{"os-attach": map[string]any{"host_name": host, "mountpoint": "/mnt"}}), http.StatusAccepted)
		for _, a := range h.b.st.VolumeAttachments(id) {
			if a.HostName == host {
				return a.ID
			}
		}
		t.Fatalf("no attachment for %s", host)
		return ""
	}
	a1, a2 := attach("h1"), attach("h2")
	otherAtt := func() string {
		wantStatus(t, volAction(h, other, map[string]any{"os-attach": map[string]any{"host_name": "h3", "mountpoint": "/mnt"}}), http.StatusAccepted)
		return h.b.st.VolumeAttachments(other)[0].ID
	}()

	for _, tc := range []struct {
		name   string
		arg    any
		status int
		msg    string
	}{
		{"not object", "x", 400, "is not of type 'object'"},
		{"null", nil, 400, "is not of type 'object'"},
		{"list", []any{}, 400, "is not of type 'object'"},
		{"extra key", map[string]any{"x": 1}, 400, "Additional properties"},
		{"bad attachment id", map[string]any{"attachment_id": "abc"}, 400, "is not valid under any of the given schemas"},
		{"numeric attachment id", map[string]any{"attachment_id": 5}, 400, "is not valid under any of the given schemas"},
		{"connector not object", map[string]any{"connector": "h1"}, 400, "is not of type 'object'"},
		{"connector bad host", map[string]any{"connector": map[string]any{"host": 1}}, 400, "is not of type 'string'"},
		{"unknown attachment", map[string]any{"attachment_id": instB}, 404, "Volume attachment could not be found"},
		{"other volume's attachment", map[string]any{"attachment_id": otherAtt}, 404, "Volume attachment could not be found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() { wantFault(t, act(tc.arg), tc.status, faultName(tc.status), tc.msg) })
		})
	}
	h.unchanged(func() {
		wantFault(t, h.post("/v3/p1/volumes/"+instA+"/action", map[string]any{"os-force_detach": map[string]any{}}),
			404, "itemNotFound", "could not be found")
	})
	unexports := len(h.b.unexports)

	// An unreachable agent is a 503, a driver refusal a 500; neither
	// detaches anything.
	h.b.unexportErr = errors.New("agent unreachable")
	h.unchanged(func() { wantFault(t, act(map[string]any{}), 503, "serviceUnavailable", "") })
	h.b.unexportErr = fmt.Errorf("boom: %w", storage.ErrInvalid)
	h.unchanged(func() {
		wantFault(t, act(map[string]any{}), 500, "computeFault", "Unable to terminate volume connection from backend")
	})
	// An export already gone is fine.
	h.b.unexportErr = fmt.Errorf("gone: %w", storage.ErrNotFound)
	h.setVolumeStatus(id, state.StatusDetaching)
	wantStatus(t, act(map[string]any{"attachment_id": a1, "connector": testConnector}), http.StatusAccepted)
	h.b.unexportErr = nil
	if h.b.st.Attachment(a1) != nil || h.b.st.Attachment(a2) == nil {
		t.Fatal("wrong attachment detached")
	}
	h.wantVolumeStatus(id, "in-use", "attached")

	// From error, without an attachment ID: every attachment goes.
	attach("h4")
	h.setVolumeStatus(id, state.StatusError)
	wantStatus(t, act(map[string]any{}), http.StatusAccepted)
	h.wantVolumeStatus(id, "available", "detached")
	if n := len(h.b.st.VolumeAttachments(id)); n != 0 {
		t.Fatalf("%d attachments left", n)
	}
	// From maintenance (refused by os-detach) and with nothing attached.
	h.setVolumeStatus(id, state.StatusMaintenance)
	wantStatus(t, act(map[string]any{"attachment_id": nil, "connector": nil}), http.StatusAccepted)
	h.wantVolumeStatus(id, "available", "detached")
	if got := len(h.b.unexports) - unexports; got != 5 {
		t.Fatalf("%d unexports, want 5", got)
	}
	// The other volume is untouched.
	h.wantVolumeStatus(other, "in-use", "attached")
}

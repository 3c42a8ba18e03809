package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/storage"
)

// Fixed IDs of the sources the fuzz harness holds, so that seeds can name
// them.
const (
	fuzzVolume   = "0a3e1a58-7c0e-4d5c-9b0e-3f2d0c1b2a01"
	fuzzSnapshot = "0a3e1a58-7c0e-4d5c-9b0e-3f2d0c1b2a02"
	fuzzOlder    = "0a3e1a58-7c0e-4d5c-9b0e-3f2d0c1b2a03"
)

// fuzzHarness is a harness with unlimited quota, an available 1 GiB volume
// fuzzVolume and two available snapshots of it, fuzzSnapshot the latest.
func fuzzHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.mustApply(state.SetQuota{ProjectID: testProject, Limits: map[string]int64{"volumes": -1, "gigabytes": -1, "snapshots": -1}})
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	h.mustApply(state.CreateVolume{Volume: state.Volume{ID: fuzzVolume, ProjectID: testProject, UserID: "u1", SizeGB: 1,
		TypeID: state.DefaultTypeID, AZ: "nova", CreatedAt: at, UpdatedAt: at}})
	h.mustApply(state.ScheduleVolume{ID: fuzzVolume, Pool: testPool, At: at,
		TotalKind: storage.Known, TotalGB: 1000, FreeKind: storage.Known, FreeGB: 1000})
	h.mustApply(state.VolumeCreated{ID: fuzzVolume, Pool: testPool, Location: "/x", At: at})
	for i, id := range []string{fuzzOlder, fuzzSnapshot} {
		created := at.Add(time.Duration(i+1) * time.Minute)
		h.mustApply(state.CreateSnapshot{Snapshot: state.Snapshot{ID: id, VolumeID: fuzzVolume, ProjectID: testProject,
			UserID: "u1", CreatedAt: created, UpdatedAt: created}})
		h.mustApply(state.SnapshotCreated{ID: id, Location: "/s", At: created})
	}
	return h
}

// checkFault fails unless a non-2xx answer is a well-formed Cinder fault
// that left the state exactly as before.
func checkFault(t *testing.T, h *harness, r *response, before []byte, input []byte) {
	t.Helper()
	if len(r.Body) != 1 {
		t.Fatalf("status %d with a non-fault body: %s", r.Status, r.Raw)
	}
	for _, inner := range r.Body {
		m, ok := inner.(map[string]any)
		if !ok || m["code"] != float64(r.Status) || m["message"] == "" {
			t.Fatalf("bad fault body: %s", r.Raw)
		}
	}
	if !json.Valid(r.Raw) {
		t.Fatalf("invalid JSON: %s", r.Raw)
	}
	if after := h.snapshot(); !bytes.Equal(before, after) {
		t.Fatalf("status %d changed the state for %q", r.Status, input)
	}
}

// FuzzCreateVolumeBody posts arbitrary bytes as a create body at an
// arbitrary microversion. The API must never answer 5xx or panic, every
// error must be a Cinder fault, and anything but 202 must leave the state
// exactly as it was.
func FuzzCreateVolumeBody(f *testing.F) {
	for _, seed := range []string{
		`{"volume": {"size": 1}}`,
		`{"volume": {"size": "10", "name": "n", "description": null, "metadata": {"k": "v"}, "volume_type": "__DEFAULT__"}}`,
		`{"volume": {"size": 1, "availability_zone": "az2", "multiattach": "true"}, "OS-SCH-HNT:scheduler_hints": {"same_host": []}}`,
		`{"volume": {"size": 1.5}}`,
		`{"volume": {"size": -1}}`,
		`{"volume": {"size": 99999999999999999999999}}`,
		`{"volume": {"size": 1, "snapshot_id": "0a3e1a58-7c0e-4d5c-9b0e-3f2d0c1b2a99"}}`,
		`{"volume": {"snapshot_id": "` + fuzzSnapshot + `"}}`,
		`{"volume": {"snapshot_id": "` + fuzzOlder + `", "size": 3, "volume_type": "__DEFAULT__"}}`,
		`{"volume": {"snapshot_id": "` + fuzzSnapshot + `", "availability_zone": "az2"}}`,
		`{"volume": {"source_volid": "` + fuzzVolume + `"}}`,
		`{"volume": {"source_volid": "` + fuzzVolume + `", "size": "2", "name": "clone"}}`,
		`{"volume": {"source_volid": "` + fuzzVolume + `", "snapshot_id": "` + fuzzSnapshot + `"}}`,
		`{"volume": {"source_volid": "nope"}}`,
		`{"volume": {"size": 1, "volume_type": "nope"}}`,
		`{"volume": {"size": 1, "color": "red"}}`,
		`{"volume": []}`,
		`[]`,
		`{"volume": {"size": 1}`,
		"{\"volume\": {\"name\": \"\xff\"}}",
		`null`,
		``,
	} {
		f.Add(uint8(0), []byte(seed))
		f.Add(uint8(53), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, minor uint8, body []byte) {
		h := fuzzHarness(t)
		before := h.snapshot()
		r := h.do(req{Method: "POST", Path: "/v3/p1/volumes", Body: body,
			Version: fmt.Sprintf("volume 3.%d", int(minor)%(maxVersion.Minor+1))})
		if r.Status >= 500 {
			t.Fatalf("status %d for %q: %s", r.Status, body, r.Raw)
		}
		if r.Status == http.StatusAccepted {
			vol, ok := r.Body["volume"].(map[string]any)
			if !ok || h.b.st.Volume(fmt.Sprint(vol["id"])) == nil {
				t.Fatalf("202 without a stored volume: %s", r.Raw)
			}
			return
		}
		checkFault(t, h, r, before, body)
	})
}

// FuzzVolumeAction posts arbitrary bytes to volumes/{id}/action at an
// arbitrary microversion. Nothing may answer 5xx but the 501 of an action
// Kiln does not serve, every error must be a Cinder fault, and any non-2xx
// answer must leave the state exactly as it was.
func FuzzVolumeAction(f *testing.F) {
	for _, seed := range []string{
		`{"os-extend": {"new_size": 2}}`,
		`{"os-extend": {"new_size": "3"}}`,
		`{"os-extend": {"new_size": 1}}`,
		`{"os-extend": {"new_size": 1.5}}`,
		`{"os-extend": {"new_size": null, "x": 1}}`,
		`{"os-extend": 2}`,
		`{"revert": {"snapshot_id": "` + fuzzSnapshot + `"}}`,
		`{"revert": {"snapshot_id": "` + fuzzOlder + `"}}`,
		`{"revert": {"snapshot_id": null}}`,
		`{"revert": []}`,
		`{"os-attach": {"mountpoint": "/dev/vdb"}}`,
		`{"os-reset_status": {"status": "error"}}`,
		`{"os-force_delete": {}}`,
		`{"os-force_delete": ""}`,
		`{"os-reset_status": {"status": "in-use"}}`,
		`{"os-reset_status": {"status": "", "attach_status": "detached", "migration_status": "none"}}`,
		`{"os-reset_status": {"migration_status": 5}}`,
		`{"os-set_bootable": {"bootable": "yes"}}`,
		`{"os-set_bootable": {"bootable": "maybe"}}`,
		`{"os-update_readonly_flag": {"readonly": true}}`,
		`{"os-set_image_metadata": {"metadata": {"a": "b"}}}`,
		`{"os-set_image_metadata": {"metadata": {"a": 1}}}`,
		`{"os-unset_image_metadata": {"key": "a"}}`,
		`{"os-show_image_metadata": null}`,
		`{"os-reimage": {"image_id": "x"}}`,
		`{"os-bogus": null}`,
		`{"os-extend": {"new_size": 2}, "revert": {}}`,
		`{}`,
		`[1]`,
		`"x"`,
		`5`,
		`null`,
		`{`,
		``,
	} {
		f.Add(uint8(0), []byte(seed))
		f.Add(uint8(42), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, minor uint8, body []byte) {
		h := fuzzHarness(t)
		before := h.snapshot()
		r := h.do(req{Method: "POST", Path: "/v3/p1/volumes/" + fuzzVolume + "/action", Body: body,
			Version: fmt.Sprintf("volume 3.%d", int(minor)%(maxVersion.Minor+1))})
		if r.Status >= 500 && r.Status != http.StatusNotImplemented {
			t.Fatalf("status %d for %q: %s", r.Status, body, r.Raw)
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(body)), "{"), ":")
		name = strings.Trim(strings.TrimSpace(name), `"`)
		if r.Status == http.StatusAccepted {
			if len(r.Raw) != 0 {
				t.Fatalf("202 with a body: %s", r.Raw)
			}
			// Reset and the readonly flag may leave any status; the
			// others start a task.
			v := h.b.st.Volume(fuzzVolume)
			if v != nil && v.Status != state.StatusExtending && v.Status != state.StatusReverting && v.Status != state.StatusDeleting &&
				name != "os-reset_status" && name != "os-update_readonly_flag" {
				t.Fatalf("202 left the volume %s", v.Status)
			}
			return
		}
		if r.Status == http.StatusOK {
			// os-set_bootable, the image metadata actions.
			if len(r.Raw) != 0 && !json.Valid(r.Raw) {
				t.Fatalf("200 with invalid JSON: %s", r.Raw)
			}
			return
		}
		checkFault(t, h, r, before, body)
	})
}

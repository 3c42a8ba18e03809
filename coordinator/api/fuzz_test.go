package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/kilnstore/kiln/coordinator/state"
)

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
		h := newHarness(t)
		h.mustApply(state.SetQuota{ProjectID: testProject, Limits: map[string]int64{"volumes": -1, "gigabytes": -1}})
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
			t.Fatalf("status %d changed the state for %q", r.Status, body)
		}
	})
}

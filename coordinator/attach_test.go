package coordinator_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/testcluster"
)

// post sends a JSON body at a microversion and decodes the answer.
func (a api) post(path, version, body string, want int) map[string]any {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.url(path), bytes.NewBufferString(body))
	req.Header.Set("X-Auth-Token", "u:"+a.project)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("OpenStack-API-Version", "volume "+version)
	resp, err := httpClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		a.t.Fatalf("POST %s %s: status %d, want %d: %s", path, body, resp.StatusCode, want, data)
	}
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 {
		_ = json.Unmarshal(data, &out)
	}
	return out
}

// TestAttachDetachOnCluster attaches a volume through the attachments API
// and through the legacy actions on a real cluster: connection info comes
// from the agent that holds the file, and the statuses follow Cinder.
func TestAttachDetachOnCluster(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 3, Agents: 1})
	a := api{t: t, c: c, project: "att", node: 1}
	vol := id(a.do(http.MethodPost, "/volumes", map[string]any{"volume": map[string]any{"size": 1}}, http.StatusAccepted), "volume")
	a.waitVolume(vol, "available")
	connector := `{"host":"compute1","ip":"127.0.0.1","initiator":"iqn.2026-11.test:compute1"}`

	att := a.post("/attachments", "3.54", `{"attachment":{"volume_uuid":"`+vol+`","instance_uuid":"11111111-2222-4333-8444-555555555555","connector":`+connector+`,"mode":"rw"}}`, http.StatusOK)["attachment"].(map[string]any)
	ci := att["connection_info"].(map[string]any)
	data := ci["data"].(map[string]any)
	if ci["driver_volume_type"] != "local" || data["host"] != "agent0" ||
		data["device_path"] != filepath.Join(c.PoolDir(0), "volume-"+vol) {
		t.Fatalf("connection info %v", ci)
	}
	a.waitVolume(vol, "attaching")
	a.post("/attachments/"+att["id"].(string)+"/action", "3.44", `{"os-complete":null}`, http.StatusNoContent)
	v := a.waitVolume(vol, "in-use")
	if atts := v["attachments"].([]any); len(atts) != 1 {
		t.Fatalf("attachments in the volume view: %v", v["attachments"])
	}
	// An attached volume cannot be deleted; a snapshot needs force.
	a.do(http.MethodDelete, "/volumes/"+vol, nil, http.StatusBadRequest)
	a.do(http.MethodPost, "/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": vol}}, http.StatusBadRequest)
	snap := id(a.do(http.MethodPost, "/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": vol, "force": true}}, http.StatusAccepted), "snapshot")
	a.waitSnapshot(snap, "available")

	req, _ := http.NewRequest(http.MethodDelete, a.url("/attachments/"+att["id"].(string)), nil)
	req.Header.Set("X-Auth-Token", "u:att")
	req.Header.Set("OpenStack-API-Version", "volume 3.44")
	resp, err := httpClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("delete attachment: %v %v", resp, err)
	}
	resp.Body.Close()
	a.waitVolume(vol, "available")

	// The legacy flow Nova used before attachments.
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-reserve":{}}`, http.StatusAccepted)
	a.waitVolume(vol, "attaching")
	out := a.post("/volumes/"+vol+"/action", "3.0", `{"os-initialize_connection":{"connector":`+connector+`}}`, http.StatusOK)
	if !strings.Contains(out["connection_info"].(map[string]any)["data"].(map[string]any)["device_path"].(string), vol) {
		t.Fatalf("initialize_connection: %v", out)
	}
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-attach":{"instance_uuid":"11111111-2222-4333-8444-555555555555","mountpoint":"/dev/vdb","mode":"rw"}}`, http.StatusAccepted)
	v = a.waitVolume(vol, "in-use")
	attID := v["attachments"].([]any)[0].(map[string]any)["attachment_id"].(string)
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-begin_detaching":{}}`, http.StatusAccepted)
	a.waitVolume(vol, "detaching")
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-roll_detaching":{}}`, http.StatusAccepted)
	a.waitVolume(vol, "in-use")
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-terminate_connection":{"connector":`+connector+`}}`, http.StatusAccepted)
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-detach":{"attachment_id":"`+attID+`"}}`, http.StatusAccepted)
	a.waitVolume(vol, "available")

	a.do(http.MethodDelete, "/volumes/"+vol+"?cascade=true", nil, http.StatusAccepted)
	a.waitGone("/volumes/" + vol)
}

func TestAbandonedAttachStatesExpire(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 1, TaskTimeout: 2 * time.Second})
	a := api{t: t, c: c, project: "exp", node: 0}
	vol := id(a.do(http.MethodPost, "/volumes", map[string]any{"volume": map[string]any{"size": 1}}, http.StatusAccepted), "volume")
	a.waitVolume(vol, "available")
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-reserve":{}}`, http.StatusAccepted)
	a.waitVolume(vol, "attaching")
	// Nobody attaches: after task_timeout the leader unreserves it.
	a.waitVolume(vol, "available")

	a.post("/volumes/"+vol+"/action", "3.0", `{"os-attach":{"instance_uuid":"11111111-2222-4333-8444-555555555555","mountpoint":"/dev/vdb"}}`, http.StatusAccepted)
	a.waitVolume(vol, "in-use")
	a.post("/volumes/"+vol+"/action", "3.0", `{"os-begin_detaching":{}}`, http.StatusAccepted)
	a.waitVolume(vol, "detaching")
	a.waitVolume(vol, "in-use") // rolled back
}

package coordinator_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/testcluster"
)

// api is a tiny Cinder client for lifecycle tests.
type api struct {
	t       *testing.T
	c       *testcluster.Cluster
	project string
	node    int
}

func (a api) url(path string) string { return a.c.URL(a.node) + "/v3/" + a.project + path }

func (a api) do(method, path string, body any, want int) map[string]any {
	a.t.Helper()
	code, out := call(a.t, method, a.url(path), a.project, body)
	if code != want {
		a.t.Fatalf("%s %s: status %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

// doWithVersion sends a request with a microversion header.
func (a api) action(path, version string, body string, want int) {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.url(path), bytes.NewBufferString(body))
	req.Header.Set("X-Auth-Token", "u:"+a.project)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("OpenStack-API-Version", "volume "+version)
	resp, err := httpClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		a.t.Fatalf("POST %s %s: status %d, want %d", path, body, resp.StatusCode, want)
	}
}

func (a api) waitVolume(id, status string) map[string]any {
	a.t.Helper()
	var v map[string]any
	a.c.WaitFor(30*time.Second, func() error {
		code, out := call(a.t, http.MethodGet, a.url("/volumes/"+id), a.project, nil)
		if code != http.StatusOK {
			return fmt.Errorf("show %s: %d", id, code)
		}
		v = out["volume"].(map[string]any)
		if v["status"] != status {
			return fmt.Errorf("volume %s is %v (%v), want %s", id, v["status"], v["kiln:error"], status)
		}
		return nil
	})
	return v
}

func (a api) waitSnapshot(id, status string) {
	a.t.Helper()
	a.c.WaitFor(30*time.Second, func() error {
		code, out := call(a.t, http.MethodGet, a.url("/snapshots/"+id), a.project, nil)
		if code != http.StatusOK {
			return fmt.Errorf("show snapshot %s: %d", id, code)
		}
		if s := out["snapshot"].(map[string]any)["status"]; s != status {
			return fmt.Errorf("snapshot %s is %v, want %s", id, s, status)
		}
		return nil
	})
}

func (a api) waitGone(path string) {
	a.t.Helper()
	a.c.WaitFor(30*time.Second, func() error {
		if code, _ := call(a.t, http.MethodGet, a.url(path), a.project, nil); code != http.StatusNotFound {
			return fmt.Errorf("%s still answers %d", path, code)
		}
		return nil
	})
}

func id(m map[string]any, kind string) string { return m[kind].(map[string]any)["id"].(string) }

// fileOf finds a volume's file on any agent's pool.
func fileOf(t *testing.T, c *testcluster.Cluster, volumeID string) string {
	t.Helper()
	for i := range c.Agents {
		p := filepath.Join(c.PoolDir(i), "volume-"+volumeID)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("no file for volume %s", volumeID)
	return ""
}

func writeAt(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLifecycleWithLeaderKill runs snapshot → volume from snapshot → clone
// → extend → attach/complete/detach → revert → deletes on a 3-coordinator cluster, killing the
// leader in the middle, and checks the data on the pool at every step and
// that quota usage returns to zero.
func TestLifecycleWithLeaderKill(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 3, Agents: 2})
	leader := c.WaitLeader(10 * time.Second)
	node := 0
	for i, s := range c.Coordinators {
		if s != leader {
			node = i // talk to a follower that survives the kill
			break
		}
	}
	a := api{t: t, c: c, project: "life", node: node}
	vol := id(a.do(http.MethodPost, "/volumes", map[string]any{"volume": map[string]any{"size": 1, "name": "origin"}}, http.StatusAccepted), "volume")
	a.waitVolume(vol, "available")
	path := fileOf(t, c, vol)
	marker := []byte("kiln-original-data")
	writeAt(t, path, 4096, marker)
	writeAt(t, path, 1<<30-512, marker) // near the end of the sparse file

	snap := id(a.do(http.MethodPost, "/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": vol, "name": "s1"}}, http.StatusAccepted), "snapshot")
	a.waitSnapshot(snap, "available")
	writeAt(t, path, 4096, []byte("kiln-changed-after"))

	// Kill the leader between steps: the rest must carry on.
	for i, s := range c.Coordinators {
		if s == leader {
			c.Kill(i)
		}
	}
	c.WaitLeader(15 * time.Second)

	fromSnap := id(a.do(http.MethodPost, "/volumes", map[string]any{"volume": map[string]any{"snapshot_id": snap, "size": 2}}, http.StatusAccepted), "volume")
	v := a.waitVolume(fromSnap, "available")
	if v["snapshot_id"] != snap || v["size"] != float64(2) {
		t.Fatalf("volume from snapshot: %v", v)
	}
	fp := fileOf(t, c, fromSnap)
	if got := readAt(t, fp, 4096, len(marker)); !bytes.Equal(got, marker) {
		t.Fatalf("volume from snapshot holds %q, want the snapshot's %q", got, marker)
	}
	if got := readAt(t, fp, 1<<30-512, len(marker)); !bytes.Equal(got, marker) {
		t.Fatalf("volume from snapshot lost the data near the end: %q", got)
	}
	if filepath.Dir(fp) != filepath.Dir(path) {
		t.Fatalf("volume from snapshot created on another pool: %s vs %s", fp, path)
	}

	clone := id(a.do(http.MethodPost, "/volumes", map[string]any{"volume": map[string]any{"source_volid": vol}}, http.StatusAccepted), "volume")
	a.waitVolume(clone, "available")
	if got := readAt(t, fileOf(t, c, clone), 4096, 18); string(got) != "kiln-changed-after" {
		t.Fatalf("clone holds %q, want the source's current data", got)
	}

	a.do(http.MethodPost, "/volumes/"+clone+"/action", map[string]any{"os-extend": map[string]any{"new_size": 3}}, http.StatusAccepted)
	if v := a.waitVolume(clone, "available"); v["size"] != float64(3) {
		t.Fatalf("extended clone: %v", v)
	}
	if fi, err := os.Stat(fileOf(t, c, clone)); err != nil || fi.Size() != 3<<30 {
		t.Fatalf("extended file: %v %v", fi, err)
	}

	// Attach the clone through the attachments API, complete, detach.
	att := a.post("/attachments", "3.44", `{"attachment":{"volume_uuid":"`+clone+`","instance_uuid":"11111111-2222-4333-8444-555555555555","connector":{"host":"compute1"}}}`, http.StatusOK)["attachment"].(map[string]any)
	if dp := att["connection_info"].(map[string]any)["data"].(map[string]any)["device_path"]; dp != fileOf(t, c, clone) {
		t.Fatalf("attachment device_path %v, want %s", dp, fileOf(t, c, clone))
	}
	a.post("/attachments/"+att["id"].(string)+"/action", "3.44", `{"os-complete":null}`, http.StatusNoContent)
	a.waitVolume(clone, "in-use")
	a.do(http.MethodDelete, "/volumes/"+clone, nil, http.StatusBadRequest) // attached
	req, _ := http.NewRequest(http.MethodDelete, a.url("/attachments/"+att["id"].(string)), nil)
	req.Header.Set("X-Auth-Token", "u:"+a.project)
	req.Header.Set("OpenStack-API-Version", "volume 3.44")
	if resp, err := httpClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("delete attachment: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	a.waitVolume(clone, "available")

	a.action("/volumes/"+vol+"/action", "3.40", fmt.Sprintf(`{"revert":{"snapshot_id":%q}}`, snap), http.StatusAccepted)
	a.waitVolume(vol, "available")
	if got := readAt(t, path, 4096, len(marker)); !bytes.Equal(got, marker) {
		t.Fatalf("reverted volume holds %q, want %q", got, marker)
	}

	// Deletes: the origin has a snapshot, so it needs cascade.
	a.do(http.MethodDelete, "/volumes/"+vol, nil, http.StatusBadRequest)
	for _, v := range []string{fromSnap, clone} {
		a.do(http.MethodDelete, "/volumes/"+v, nil, http.StatusAccepted)
	}
	a.do(http.MethodDelete, "/volumes/"+vol+"?cascade=true", nil, http.StatusAccepted)
	for _, v := range []string{fromSnap, clone, vol} {
		a.waitGone("/volumes/" + v)
	}
	a.waitGone("/snapshots/" + snap)
	l := c.WaitLeader(10 * time.Second)
	for res, u := range l.State().QuotaUsage("life") {
		if u != (state.Use{}) {
			t.Fatalf("quota usage %s = %+v after deleting everything", res, u)
		}
	}
	for i := range c.Agents {
		if files, _ := filepath.Glob(filepath.Join(c.PoolDir(i), "*")); len(files) != 0 {
			t.Fatalf("pool %d still holds %v", i, files)
		}
	}
}

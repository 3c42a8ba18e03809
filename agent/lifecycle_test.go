package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
	"github.com/kilnstore/kiln/nfs"
)

const (
	gib = storage.GiB
	id2 = "0a1b2c3d-0000-4000-8000-000000000002"
	id3 = "0a1b2c3d-0000-4000-8000-000000000003"
	id4 = "0a1b2c3d-0000-4000-8000-000000000004"
	sn1 = "5a1b2c3d-0000-4000-8000-000000000001"
	sn2 = "5a1b2c3d-0000-4000-8000-000000000002"
)

// startLoggedAgent starts agent "a1" with one thin pool "p1" and returns
// it, the pool directory and the agent's log output.
func startLoggedAgent(t *testing.T) (*agent.Agent, string, *testenv.SyncBuffer) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "p1")
	d, err := nfs.New(nfs.Config{Name: "p1", Dir: dir, CapacityGB: 10})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	a, err := agent.Start(agent.Config{Name: "a1", RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0",
		Timing: "local", Drivers: []agent.Driver{d}, StatsInterval: time.Hour,
		Logger: testLogger(t, logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	return a, dir, logs
}

// writeFileAt writes data into a pool file at off.
func writeFileAt(t *testing.T, path string, off int64, data []byte) {
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

// readFileAt reads n bytes of a pool file at off.
func readFileAt(t *testing.T, path string, off int64, n int) []byte {
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

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestAgentRPCLifecycle(t *testing.T) {
	a, dir, logs := startLoggedAgent(t)
	c := agentrpc.NewClient(10 * time.Second)
	ctx := agentrpc.WithRequestID(context.Background(), "req-lifecycle")
	addr := a.RPCAddr()
	vpath := func(id string) string { return filepath.Join(dir, "volume-"+id) }
	head, tail := []byte("kiln-head-data"), []byte("kiln-tail-data")

	v1, err := c.CreateVolume(ctx, addr, "p1", id1, 2)
	if err != nil {
		t.Fatal(err)
	}
	writeFileAt(t, v1.Location, 4096, head)
	writeFileAt(t, v1.Location, 2*gib-int64(len(tail)), tail)

	// Snapshot, idempotently.
	s1, err := c.CreateSnapshot(ctx, addr, "p1", sn1, id1)
	want := storage.Snapshot{ID: sn1, VolumeID: id1, SizeBytes: 2 * gib, Location: filepath.Join(dir, "snapshot-"+sn1)}
	if err != nil || s1 != want {
		t.Fatalf("CreateSnapshot = %+v, %v; want %+v", s1, err, want)
	}
	if again, err := c.CreateSnapshot(ctx, addr, "p1", sn1, id1); err != nil || again != s1 {
		t.Fatalf("repeated CreateSnapshot = %+v, %v", again, err)
	}
	if got := readFileAt(t, s1.Location, 4096, len(head)); !bytes.Equal(got, head) {
		t.Errorf("snapshot data = %q, want %q", got, head)
	}
	snaps, err := c.ListSnapshots(ctx, addr, "p1")
	if err != nil || len(snaps) != 1 || snaps[0] != s1 {
		t.Fatalf("ListSnapshots = %+v, %v", snaps, err)
	}

	// A larger volume from the snapshot, and a clone, idempotently.
	for range 2 {
		v2, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 3, sn1, "")
		if err != nil || v2.ID != id2 || v2.SizeBytes != 3*gib {
			t.Fatalf("CreateVolumeFrom(snapshot) = %+v, %v", v2, err)
		}
		v3, err := c.CreateVolumeFrom(ctx, addr, "p1", id3, 2, "", id1)
		if err != nil || v3.ID != id3 || v3.SizeBytes != 2*gib {
			t.Fatalf("CreateVolumeFrom(volume) = %+v, %v", v3, err)
		}
	}
	for _, id := range []string{id2, id3} {
		if got := readFileAt(t, vpath(id), 4096, len(head)); !bytes.Equal(got, head) {
			t.Errorf("volume %s: data = %q, want %q", id, got, head)
		}
		if got := readFileAt(t, vpath(id), 2*gib-int64(len(tail)), len(tail)); !bytes.Equal(got, tail) {
			t.Errorf("volume %s: tail = %q, want %q", id, got, tail)
		}
	}

	// Extend, idempotently; then scribble and revert.
	for range 2 {
		if err := c.ExtendVolume(ctx, addr, "p1", id1, 3); err != nil {
			t.Fatalf("ExtendVolume: %v", err)
		}
	}
	if size := fileSize(t, v1.Location); size != 3*gib {
		t.Fatalf("size after extend = %d", size)
	}
	writeFileAt(t, v1.Location, 4096, []byte("overwritten!!!"))
	writeFileAt(t, v1.Location, 2*gib+4096, []byte("beyond the snapshot"))
	if err := c.RevertToSnapshot(ctx, addr, "p1", id1, sn1); err != nil {
		t.Fatal(err)
	}
	if got := readFileAt(t, v1.Location, 4096, len(head)); !bytes.Equal(got, head) {
		t.Errorf("reverted data = %q, want %q", got, head)
	}
	if got := readFileAt(t, v1.Location, 2*gib+4096, 19); !bytes.Equal(got, make([]byte, 19)) {
		t.Errorf("reverted volume beyond the snapshot = %q, want zeros", got)
	}
	if size := fileSize(t, v1.Location); size != 3*gib {
		t.Errorf("size after revert = %d, want the volume's 3 GiB", size)
	}

	// Export: local connection info naming the agent; idempotent.
	conn := storage.Connector{Host: "compute-1", IP: "10.0.0.5", Initiator: "iqn.1993-08.org.debian:01:abc", Platform: "x86_64", OSType: "linux"}
	for range 2 {
		ci, err := c.ExportVolume(ctx, addr, "p1", id1, conn, storage.Credentials{})
		if err != nil {
			t.Fatal(err)
		}
		wantData := map[string]any{"device_path": v1.Location, "host": "a1"}
		if ci.DriverVolumeType != "local" || !mapsEqual(ci.Data, wantData) {
			t.Fatalf("ExportVolume = %+v, want local %v", ci, wantData)
		}
		if !filepath.IsAbs(ci.Data["device_path"].(string)) {
			t.Errorf("device_path %v is not absolute", ci.Data["device_path"])
		}
	}
	for _, cn := range []storage.Connector{conn, {}} {
		if err := c.UnexportVolume(ctx, addr, "p1", id1, cn); err != nil {
			t.Errorf("UnexportVolume(%+v): %v", cn, err)
		}
	}
	if err := c.UnexportVolume(ctx, addr, "p1", id4, conn); err != nil {
		t.Errorf("unexport of a missing volume: %v, want success", err)
	}

	// Capacity is re-published after changes: the thin pool counts the
	// snapshot's and copies' blocks, the provisioned size the volumes'.
	waitFor(t, 5*time.Second, func() error {
		rep, err := c.Report(ctx, addr)
		if err != nil {
			return err
		}
		if st := rep.Pools[0].Stats; st.Volumes != 3 || st.ProvisionedGB != 8 {
			return fmt.Errorf("stats %+v, want 3 volumes, 8 GiB provisioned", st)
		}
		return nil
	})

	// Deletes, idempotently; the volume may go while copies remain.
	for range 2 {
		if err := c.DeleteSnapshot(ctx, addr, "p1", sn1); err != nil {
			t.Fatal(err)
		}
	}
	if snaps, err := c.ListSnapshots(ctx, addr, "p1"); err != nil || snaps == nil || len(snaps) != 0 {
		t.Errorf("ListSnapshots after delete = %#v, %v; want an empty list", snaps, err)
	}
	for _, id := range []string{id1, id2, id3} {
		if err := c.DeleteVolume(ctx, addr, "p1", id); err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("pool directory not empty: %v", files)
	}

	// Every operation was logged with its request and object IDs.
	out := logs.String()
	for _, line := range []string{
		"create snapshot done", "create volume done", "extend volume done", "revert volume done",
		"export volume done", "unexport volume done", "delete snapshot done", "delete volume done",
	} {
		if !logged(out, line, "request_id=req-lifecycle") {
			t.Errorf("no %q log line with the request ID", line)
		}
	}
	for _, attrs := range [][]string{
		{"create snapshot done", "snapshot_id=" + sn1, "volume_id=" + id1},
		{"create volume done", "volume_id=" + id2, "snapshot_id=" + sn1},
		{"create volume done", "volume_id=" + id3, "source_volume_id=" + id1},
		{"revert volume done", "volume_id=" + id1, "snapshot_id=" + sn1},
		{"delete snapshot done", "snapshot_id=" + sn1},
	} {
		if !logged(out, attrs...) {
			t.Errorf("no log line with %q", attrs)
		}
	}
}

// logged reports whether one line of out contains every part.
func logged(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAgentRPCExportWireFormat checks the JSON an export returns, as the
// coordinator and Cinder clients see it.
func TestAgentRPCExportWireFormat(t *testing.T) {
	a, dir, _ := startLoggedAgent(t)
	c := agentrpc.NewClient(5 * time.Second)
	if _, err := c.CreateVolume(context.Background(), a.RPCAddr(), "p1", id1, 1); err != nil {
		t.Fatal(err)
	}
	resp, body := post(t, a.RPCAddr(), "/v1/pools/p1/volumes/"+id1+"/export", `{"connector":{"host":"compute-1","multipath":true}}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"connection_info": map[string]any{
		"driver_volume_type": "local",
		"data":               map[string]any{"device_path": filepath.Join(dir, "volume-"+id1), "host": "a1"},
	}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("export response = %s, want %v", body, want)
	}
}

func post(t *testing.T, addr, path, body string) (*http.Response, []byte) {
	t.Helper()
	return send(t, http.MethodPost, addr, path, body)
}

func send(t *testing.T, method, addr, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestAgentRPCLifecycleRejectsBadInput(t *testing.T) {
	a, dir, _ := startLoggedAgent(t)
	c := agentrpc.NewClient(5 * time.Second)
	ctx := context.Background()
	addr := a.RPCAddr()
	if _, err := c.CreateVolume(ctx, addr, "p1", id1, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, addr, "p1", id4, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, addr, "p1", sn1, id1); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(dir)
	upper := strings.ToUpper(id2)

	// Through the client: each failure is definite and carries its code.
	conn := storage.Connector{Host: "h"}
	for name, tc := range map[string]struct {
		call func() error
		code string
		want error
	}{
		"create: two sources": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 2, sn1, id1); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"create: bad snapshot id": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 2, upper, ""); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"create: bad source id": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 2, "", "../x"); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"create: own source": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 2, "", id2); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"create: smaller than snapshot": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 1, sn1, ""); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"create: smaller than source": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 1, "", id1); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"create: missing snapshot": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 2, sn2, ""); return err },
			agentrpc.CodeSourceNotFound, agentrpc.ErrSourceNotFound},
		"create: missing source": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 2, "", id3); return err },
			agentrpc.CodeSourceNotFound, agentrpc.ErrSourceNotFound},
		"create: zero size with source": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 0, sn1, ""); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"create: unknown pool": {func() error { _, err := c.CreateVolumeFrom(ctx, addr, "nope", id2, 2, sn1, ""); return err },
			agentrpc.CodeNotFound, storage.ErrNotFound},
		"extend: shrink": {func() error { return c.ExtendVolume(ctx, addr, "p1", id1, 1) },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"extend: zero": {func() error { return c.ExtendVolume(ctx, addr, "p1", id1, 0) },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"extend: too big": {func() error { return c.ExtendVolume(ctx, addr, "p1", id1, storage.MaxVolumeGiB+1) },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"extend: missing volume": {func() error { return c.ExtendVolume(ctx, addr, "p1", id3, 3) },
			agentrpc.CodeNotFound, storage.ErrNotFound},
		"extend: bad id": {func() error { return c.ExtendVolume(ctx, addr, "p1", upper, 3) },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"revert: bad snapshot id": {func() error { return c.RevertToSnapshot(ctx, addr, "p1", id1, "") },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"revert: missing snapshot": {func() error { return c.RevertToSnapshot(ctx, addr, "p1", id1, sn2) },
			agentrpc.CodeNotFound, storage.ErrNotFound},
		"revert: missing volume": {func() error { return c.RevertToSnapshot(ctx, addr, "p1", id3, sn1) },
			agentrpc.CodeNotFound, storage.ErrNotFound},
		"revert: another volume's snapshot": {func() error { return c.RevertToSnapshot(ctx, addr, "p1", id4, sn1) },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"export: missing volume": {func() error { _, err := c.ExportVolume(ctx, addr, "p1", id3, conn, storage.Credentials{}); return err },
			agentrpc.CodeNotFound, storage.ErrNotFound},
		"export: bad id": {func() error { _, err := c.ExportVolume(ctx, addr, "p1", "x", conn, storage.Credentials{}); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"unexport: bad id": {func() error { return c.UnexportVolume(ctx, addr, "p1", "x", conn) },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"snapshot: bad volume id": {func() error { _, err := c.CreateSnapshot(ctx, addr, "p1", sn2, upper); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"snapshot: bad snapshot id": {func() error { _, err := c.CreateSnapshot(ctx, addr, "p1", "../x", id1); return err },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"snapshot: missing volume": {func() error { _, err := c.CreateSnapshot(ctx, addr, "p1", sn2, id3); return err },
			agentrpc.CodeSourceNotFound, agentrpc.ErrSourceNotFound},
		"snapshot: id taken by another volume's": {func() error { _, err := c.CreateSnapshot(ctx, addr, "p1", sn1, id4); return err },
			agentrpc.CodeExists, storage.ErrExists},
		"delete snapshot: bad id": {func() error { return c.DeleteSnapshot(ctx, addr, "p1", upper) },
			agentrpc.CodeInvalid, storage.ErrInvalid},
		"list snapshots: unknown pool": {func() error { _, err := c.ListSnapshots(ctx, addr, "nope"); return err },
			agentrpc.CodeNotFound, storage.ErrNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.call()
			var e *agentrpc.Error
			if !errors.As(err, &e) || e.Code != tc.code || !errors.Is(err, tc.want) || !agentrpc.IsDefinite(err) {
				t.Fatalf("err = %v, want code %s wrapping %v", err, tc.code, tc.want)
			}
		})
	}
	// A missing source is still "not found" to callers that only ask that.
	_, err := c.CreateVolumeFrom(ctx, addr, "p1", id2, 2, sn2, "")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing source: %v does not match storage.ErrNotFound", err)
	}

	// Raw bodies the client would never send.
	vol := "/v1/pools/p1/volumes/" + id1
	for _, tc := range []struct {
		method, path, body string
	}{
		{"PUT", "/v1/pools/p1/volumes/" + id2, `{"size_gb":2,"snapshot_id":"` + sn1 + `","extra":1}`},
		{"PUT", "/v1/pools/p1/volumes/" + id2, `{"size_gb":2} {"size_gb":3}`},
		{"PUT", "/v1/pools/p1/volumes/" + id2, `[{"size_gb":2}]`},
		{"PUT", "/v1/pools/p1/volumes/" + id2, `null`},
		{"PUT", "/v1/pools/p1/volumes/" + id2, `{"size_gb":2,"snapshot_id":` + `"` + strings.Repeat("a", 70_000) + `"}`},
		{"POST", vol + "/extend", `{"new_size_gb":3,"size_gb":3}`},
		{"POST", vol + "/extend", `{"new_size_gb":"3"}`},
		{"POST", vol + "/extend", ``},
		{"POST", vol + "/revert", `{}`},
		{"POST", vol + "/revert", `{"snapshot_id":"` + sn1 + `","force":true}`},
		{"POST", vol + "/export", `{}`},
		{"POST", vol + "/export", `{"connector":null}`},
		{"POST", vol + "/export", `{"connector":{"host":"h","wwpns":["x"]}}`},
		{"POST", vol + "/export", `{"connector":{"host":7}}`},
		{"POST", vol + "/unexport", `{"connector":{"nqn":"x"}}`},
		{"POST", vol + "/unexport", `{"force":true}`},
		{"PUT", "/v1/pools/p1/snapshots/" + sn2, `{}`},
		{"PUT", "/v1/pools/p1/snapshots/" + sn2, ``},
		{"PUT", "/v1/pools/p1/snapshots/" + sn2, `{"volume_id":"` + id1 + `","name":"x"}`},
		{"PUT", "/v1/pools/p1/snapshots/" + sn2, `{"volume_id":"` + id1 + `"}x`},
	} {
		resp, body := send(t, tc.method, addr, tc.path, tc.body)
		var eb agentrpc.ErrorBody
		_ = json.Unmarshal(body, &eb)
		if resp.StatusCode != http.StatusBadRequest || eb.Error.Code != agentrpc.CodeInvalid {
			t.Errorf("%s %s %.80s: status %d, body %s; want 400 invalid", tc.method, tc.path, tc.body, resp.StatusCode, body)
		}
	}
	// An unexport without a connector (every export) is fine.
	if resp, body := post(t, addr, vol+"/unexport", `{}`); resp.StatusCode != http.StatusNoContent {
		t.Errorf("unexport without connector: status %d: %s", resp.StatusCode, body)
	}

	after, _ := os.ReadDir(dir)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("bad requests changed the pool: %v, was %v", after, before)
	}
	if size := fileSize(t, filepath.Join(dir, "volume-"+id1)); size != 2*gib {
		t.Errorf("volume size = %d after refused extends", size)
	}
}

// TestAgentRPCConcurrentLifecycle drives overlapping snapshot, clone,
// extend and delete requests at the agent: each must succeed or fail with
// the error its race allows, and the pool must end consistent.
func TestAgentRPCConcurrentLifecycle(t *testing.T) {
	a, dir, _ := startLoggedAgent(t)
	c := agentrpc.NewClient(30 * time.Second)
	ctx := context.Background()
	addr := a.RPCAddr()
	if _, err := c.CreateVolume(ctx, addr, "p1", id1, 1); err != nil {
		t.Fatal(err)
	}
	writeFileAt(t, filepath.Join(dir, "volume-"+id1), 0, []byte("source"))

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch i % 6 {
			case 0:
				_, err = c.CreateSnapshot(ctx, addr, "p1", sn1, id1)
			case 1:
				err = c.DeleteSnapshot(ctx, addr, "p1", sn1)
			case 2:
				_, err = c.CreateVolumeFrom(ctx, addr, "p1", id2, 4, "", id1)
			case 3:
				if _, err = c.CreateVolumeFrom(ctx, addr, "p1", id3, 4, sn1, ""); errors.Is(err, agentrpc.ErrSourceNotFound) {
					err = nil // the snapshot was deleted first
				}
			case 4:
				if err = c.ExtendVolume(ctx, addr, "p1", id1, 2+int64(i%3)); errors.Is(err, storage.ErrInvalid) {
					err = nil // a larger extend came first
				}
			case 5:
				err = c.DeleteVolume(ctx, addr, "p1", id2)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent request: %v", err)
	}
	for _, id := range []string{id2, id3} {
		p := filepath.Join(dir, "volume-"+id)
		if _, err := os.Stat(p); err == nil {
			if got := readFileAt(t, p, 0, 6); string(got) != "source" {
				t.Errorf("volume %s starts with %q, want the source's data", id, got)
			}
		}
	}
	for _, f := range func() []os.DirEntry { e, _ := os.ReadDir(dir); return e }() {
		if strings.HasPrefix(f.Name(), ".") {
			t.Errorf("temp file left: %s", f.Name())
		}
	}
}

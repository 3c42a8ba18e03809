package agentrpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
)

func TestCodesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   string
		status int
	}{
		{fmt.Errorf("x: %w", storage.ErrInvalid), agentrpc.CodeInvalid, http.StatusBadRequest},
		{fmt.Errorf("x: %w", storage.ErrNotFound), agentrpc.CodeNotFound, http.StatusNotFound},
		{fmt.Errorf("%w: x: %w", agentrpc.ErrSourceNotFound, storage.ErrNotFound), agentrpc.CodeSourceNotFound, http.StatusNotFound},
		{fmt.Errorf("x: %w", storage.ErrExists), agentrpc.CodeExists, http.StatusConflict},
		{fmt.Errorf("x: %w", storage.ErrNoSpace), agentrpc.CodeNoSpace, http.StatusInsufficientStorage},
		{errors.New("disk on fire"), agentrpc.CodeInternal, http.StatusInternalServerError},
	} {
		code, status := agentrpc.CodeFor(tc.err)
		if code != tc.code || status != tc.status {
			t.Errorf("CodeFor(%v) = %s, %d; want %s, %d", tc.err, code, status, tc.code, tc.status)
		}
		// What the client rebuilds from the code matches the same sentinels.
		e := &agentrpc.Error{Status: status, Code: code, Message: tc.err.Error()}
		for _, s := range []error{storage.ErrInvalid, storage.ErrNotFound, storage.ErrExists, storage.ErrNoSpace, agentrpc.ErrSourceNotFound} {
			if errors.Is(e, s) != errors.Is(tc.err, s) {
				t.Errorf("code %s: errors.Is(%v) = %v, the driver error says %v", code, s, errors.Is(e, s), errors.Is(tc.err, s))
			}
		}
	}
	if !errors.Is(agentrpc.ErrSourceNotFound, storage.ErrNotFound) {
		t.Error("ErrSourceNotFound does not wrap storage.ErrNotFound")
	}
}

// recorded is one request as the fake agent saw it.
type recorded struct {
	method, path, requestID, body string
}

// fakeAgent answers every request with the status and body of reply and
// records what it received.
func fakeAgent(t *testing.T, reply func(r *http.Request) (int, string)) (string, func() []recorded) {
	t.Helper()
	var mu sync.Mutex
	var got []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, recorded{r.Method, r.URL.EscapedPath(), r.Header.Get(agentrpc.RequestIDHeader), string(b)})
		mu.Unlock()
		status, body := reply(r)
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), got...)
	}
}

func TestClientWireFormat(t *testing.T) {
	const (
		vol  = "0a1b2c3d-0000-4000-8000-000000000001"
		src  = "0a1b2c3d-0000-4000-8000-000000000002"
		snap = "5a1b2c3d-0000-4000-8000-000000000001"
	)
	addr, requests := fakeAgent(t, func(r *http.Request) (int, string) {
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/snapshots/"):
			return 200, `{"snapshot":{"id":"` + snap + `","volume_id":"` + vol + `","size_bytes":1073741824,"location":"/p/snapshot-` + snap + `"}}`
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/snapshots"):
			return 200, `{"snapshots":[{"id":"` + snap + `","volume_id":"` + vol + `","size_bytes":1073741824,"location":"/p/s"}]}`
		case r.Method == http.MethodPut:
			return 200, `{"volume":{"id":"` + vol + `","size_bytes":2147483648,"location":"/p/v"}}`
		case strings.HasSuffix(r.URL.Path, "/export"):
			return 200, `{"connection_info":{"driver_volume_type":"local","data":{"device_path":"/p/v","host":"a1"}}}`
		}
		return 204, ""
	})
	c := agentrpc.NewClient(5 * time.Second)
	ctx := agentrpc.WithRequestID(context.Background(), "req-7")
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	v, err := c.CreateVolume(ctx, addr, "p1", vol, 2)
	check("CreateVolume", err)
	if v.ID != vol || v.SizeBytes != 2*storage.GiB {
		t.Errorf("CreateVolume = %+v", v)
	}
	_, err = c.CreateVolumeFrom(ctx, addr, "p1", vol, 2, snap, "")
	check("CreateVolumeFrom(snapshot)", err)
	_, err = c.CreateVolumeFrom(ctx, addr, "p1", vol, 2, "", src)
	check("CreateVolumeFrom(volume)", err)
	check("ExtendVolume", c.ExtendVolume(ctx, addr, "p1", vol, 3))
	check("RevertToSnapshot", c.RevertToSnapshot(ctx, addr, "p1", vol, snap))
	ci, err := c.ExportVolume(ctx, addr, "p1", vol, storage.Connector{Host: "compute-1", Multipath: true}, storage.Credentials{})
	check("ExportVolume", err)
	if ci.DriverVolumeType != "local" || ci.Data["device_path"] != "/p/v" || ci.Data["host"] != "a1" {
		t.Errorf("ExportVolume = %+v", ci)
	}
	check("UnexportVolume", c.UnexportVolume(ctx, addr, "p1", vol, storage.Connector{Host: "compute-1"}))
	check("UnexportVolume(all)", c.UnexportVolume(ctx, addr, "p1", vol, storage.Connector{}))
	s, err := c.CreateSnapshot(ctx, addr, "p1", snap, vol)
	check("CreateSnapshot", err)
	if s.ID != snap || s.VolumeID != vol || s.SizeBytes != storage.GiB {
		t.Errorf("CreateSnapshot = %+v", s)
	}
	check("DeleteSnapshot", c.DeleteSnapshot(ctx, addr, "p1", snap))
	snaps, err := c.ListSnapshots(ctx, addr, "p1")
	check("ListSnapshots", err)
	if len(snaps) != 1 || snaps[0].ID != snap {
		t.Errorf("ListSnapshots = %+v", snaps)
	}
	// IDs are path-escaped, never interpreted as path segments.
	check("DeleteSnapshot(escaped)", c.DeleteSnapshot(ctx, addr, "p1", "../x"))

	base := "/v1/pools/p1/volumes/" + vol
	want := []recorded{
		{"PUT", base, "req-7", `{"size_gb":2}`},
		{"PUT", base, "req-7", `{"size_gb":2,"snapshot_id":"` + snap + `"}`},
		{"PUT", base, "req-7", `{"size_gb":2,"source_volume_id":"` + src + `"}`},
		{"POST", base + "/extend", "req-7", `{"new_size_gb":3}`},
		{"POST", base + "/revert", "req-7", `{"snapshot_id":"` + snap + `"}`},
		{"POST", base + "/export", "req-7", `{"connector":{"host":"compute-1","multipath":true}}`},
		{"POST", base + "/unexport", "req-7", `{"connector":{"host":"compute-1"}}`},
		{"POST", base + "/unexport", "req-7", `{}`},
		{"PUT", "/v1/pools/p1/snapshots/" + snap, "req-7", `{"volume_id":"` + vol + `"}`},
		{"DELETE", "/v1/pools/p1/snapshots/" + snap, "req-7", ``},
		{"GET", "/v1/pools/p1/snapshots", "req-7", ``},
		{"DELETE", "/v1/pools/p1/snapshots/..%2Fx", "req-7", ``},
	}
	got := requests()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestClientErrors(t *testing.T) {
	addr, _ := fakeAgent(t, func(r *http.Request) (int, string) {
		if strings.HasSuffix(r.URL.Path, "/extend") {
			return http.StatusBadGateway, "upstream exploded"
		}
		return http.StatusNotFound, `{"error":{"code":"source_not_found","message":"snapshot s does not exist"}}`
	})
	c := agentrpc.NewClient(5 * time.Second)
	ctx := context.Background()
	_, err := c.CreateVolumeFrom(ctx, addr, "p1", "v", 1, "s", "")
	var e *agentrpc.Error
	if !errors.As(err, &e) || e.Status != 404 || e.Code != agentrpc.CodeSourceNotFound || e.Message != "snapshot s does not exist" {
		t.Fatalf("err = %#v", err)
	}
	if !errors.Is(err, agentrpc.ErrSourceNotFound) || !errors.Is(err, storage.ErrNotFound) || !agentrpc.IsDefinite(err) {
		t.Errorf("err = %v: want ErrSourceNotFound, storage.ErrNotFound, definite", err)
	}
	err = c.ExtendVolume(ctx, addr, "p1", "v", 2)
	if !errors.As(err, &e) || e.Code != agentrpc.CodeInternal || e.Message != "upstream exploded" || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("non-JSON error = %#v", err)
	}
	// A transport failure is not definite: the operation may have happened.
	err = c.DeleteSnapshot(ctx, "127.0.0.1:1", "p1", "s")
	if err == nil || agentrpc.IsDefinite(err) {
		t.Errorf("unreachable agent: err = %v, want an indefinite error", err)
	}
}

// TestWireTypesDecodeStrictly pins the JSON field names of the request types:
// a strict decoder (as the agent uses) accepts exactly these.
func TestWireTypesDecodeStrictly(t *testing.T) {
	for _, tc := range []struct {
		body string
		into any
	}{
		{`{"size_gb":1,"snapshot_id":"s","source_volume_id":"v"}`, &agentrpc.CreateRequest{}},
		{`{"new_size_gb":2}`, &agentrpc.ExtendRequest{}},
		{`{"snapshot_id":"s"}`, &agentrpc.RevertRequest{}},
		{`{"connector":{"host":"h","ip":"1.2.3.4","initiator":"iqn","multipath":true,"platform":"x86_64","os_type":"linux"}}`, &agentrpc.ConnectorRequest{}},
		{`{"volume_id":"v"}`, &agentrpc.SnapshotRequest{}},
	} {
		dec := json.NewDecoder(strings.NewReader(tc.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(tc.into); err != nil {
			t.Errorf("%s into %T: %v", tc.body, tc.into, err)
		}
		b, err := json.Marshal(tc.into)
		if err != nil || string(b) != tc.body {
			t.Errorf("%T encodes as %s, want %s", tc.into, b, tc.body)
		}
	}
}

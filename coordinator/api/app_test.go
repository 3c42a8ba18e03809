package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func TestVersionsDocument(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		path   string
		token  string
		status int
	}{
		{"/", "-", http.StatusMultipleChoices},
		{"/v3/", "-", http.StatusOK},
		{"/v3", "-", http.StatusOK},
		{"/v3/", "", http.StatusOK},
	} {
		r := h.do(req{Method: "GET", Path: tc.path, Token: tc.token})
		wantStatus(t, r, tc.status)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: content type %q", tc.path, ct)
		}
		versions, _ := r.Body["versions"].([]any)
		if len(versions) != 1 {
			t.Fatalf("%s: versions %v", tc.path, r.Body)
		}
		v := versions[0].(map[string]any)
		if v["id"] != "v3.0" || v["status"] != "CURRENT" || v["min_version"] != "3.0" || v["version"] != "3.70" {
			t.Errorf("%s: version entry %v", tc.path, v)
		}
		if v["updated"] != "2023-08-31T00:00:00Z" {
			t.Errorf("updated %v", v["updated"])
		}
		links := v["links"].([]any)
		self := links[1].(map[string]any)
		if self["rel"] != "self" || self["href"] != testURL+"/v3/" {
			t.Errorf("self link %v", self)
		}
		mt := v["media-types"].([]any)[0].(map[string]any)
		if mt["type"] != "application/vnd.openstack.volume+json;version=3" {
			t.Errorf("media type %v", mt)
		}
	}
}

func TestRequestIDOnEveryResponse(t *testing.T) {
	h := newHarness(t)
	seen := map[string]bool{}
	for _, r := range []*response{
		h.get("/"),
		h.get("/v3/p1/volumes"),
		h.get("/v3/p1/nothing-here"),
		h.do(req{Method: "GET", Path: "/v3/p1/volumes", Token: "-"}),
		postOversized(t, h),
	} {
		id := r.Header.Get("X-Openstack-Request-Id")
		if !strings.HasPrefix(id, "req-") || !isUUID(strings.TrimPrefix(id, "req-")) {
			t.Errorf("status %d: request id %q", r.Status, id)
		}
		if seen[id] {
			t.Errorf("request id %s reused", id)
		}
		seen[id] = true
	}
}

func TestMicroversionNegotiation(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, std, legacy string
		want              string // echoed version; "" = error
		status            int
		fault             string
		msg               string
	}{
		{name: "absent", want: "3.0"},
		{name: "3.0", std: "volume 3.0", want: "3.0"},
		{name: "3.60", std: "volume 3.60", want: "3.60"},
		{name: "latest", std: "volume latest", want: "3.70"},
		{name: "among services", std: "compute 2.1, volume 3.45", want: "3.45"},
		{name: "legacy header", legacy: "3.27", want: "3.27"},
		{name: "4.0", std: "volume 4.0", status: 406, fault: "computeFault",
			msg: "Version 4.0 is not supported by the API. Minimum is 3.0 and maximum is 3.70."},
		{name: "3.71", std: "volume 3.71", status: 406, fault: "computeFault", msg: "Version 3.71 is not supported"},
		{name: "2.0", std: "volume 2.0", status: 406, fault: "computeFault", msg: "Minimum is 3.0"},
		{name: "garbage", std: "volume garbage", status: 400, fault: "badRequest",
			msg: "API Version String garbage is of invalid format. Must be of format MajorNum.MinorNum."},
		{name: "leading zero", std: "volume 3.01", status: 400, fault: "badRequest", msg: "is of invalid format"},
		{name: "other service only", std: "compute 2.1", status: 400, fault: "badRequest", msg: "is not supported on this method"},
		{name: "legacy garbage", legacy: "x", status: 400, fault: "badRequest", msg: "API Version String x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.legacy != "" {
				hdr["X-OpenStack-Volume-API-Version"] = tc.legacy
			}
			r := h.do(req{Method: "GET", Path: "/v3/p1/volumes", Version: tc.std, Header: hdr})
			if tc.want == "" {
				wantFault(t, r, tc.status, tc.fault, tc.msg)
				return
			}
			wantStatus(t, r, http.StatusOK)
			if got := r.Header.Get("OpenStack-API-Version"); got != "volume "+tc.want {
				t.Errorf("echoed %q, want volume %s", got, tc.want)
			}
			if got := r.Header.Get("Vary"); got != "OpenStack-API-Version" {
				t.Errorf("Vary %q", got)
			}
		})
	}
}

func TestMicroversionGatesDetailFields(t *testing.T) {
	h := newHarness(t)
	id := h.createVolume(map[string]any{"size": 1})["id"].(string)
	for _, tc := range []struct {
		version string
		present []string
		absent  []string
	}{
		{"", nil, []string{"group_id", "provider_id", "shared_targets", "service_uuid", "cluster_name", "volume_type_id", "consumes_quota"}},
		{"volume 3.13", []string{"group_id"}, []string{"provider_id", "shared_targets"}},
		{"volume 3.48", []string{"group_id", "provider_id", "shared_targets", "service_uuid"}, []string{"cluster_name", "volume_type_id"}},
		{"volume 3.63", []string{"cluster_name", "volume_type_id"}, []string{"encryption_key_id", "consumes_quota"}},
		{"volume 3.65", []string{"volume_type_id", "encryption_key_id", "consumes_quota"}, nil},
	} {
		r := h.getV("/v3/p1/volumes/"+id, tc.version)
		wantStatus(t, r, http.StatusOK)
		vol := r.Body["volume"].(map[string]any)
		for _, k := range tc.present {
			if _, ok := vol[k]; !ok {
				t.Errorf("%q: %s missing", tc.version, k)
			}
		}
		for _, k := range tc.absent {
			if _, ok := vol[k]; ok {
				t.Errorf("%q: %s present", tc.version, k)
			}
		}
	}
	vol := h.getV("/v3/p1/volumes/"+id, "volume 3.65").Body["volume"].(map[string]any)
	if vol["consumes_quota"] != true || vol["volume_type_id"] != "1c5b2a7e-2f0d-4b8e-9a45-7d1f5c0e3a10" || vol["shared_targets"] != false {
		t.Errorf("3.65 fields: %v", vol)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t)
	r := h.do(req{Method: "GET", Path: "/v3/p1/volumes", Token: "-"})
	wantFault(t, r, http.StatusUnauthorized, "unauthorized", "requires authentication")
	h.unchanged(func() {
		r = h.do(req{Method: "POST", Path: "/v3/p1/volumes", Token: "-", Body: map[string]any{"volume": map[string]any{"size": 1}}})
		wantFault(t, r, http.StatusUnauthorized, "unauthorized", "requires authentication")
		r = h.do(req{Method: "POST", Path: "/v3/p1/volumes", Token: "u1:p2", Body: map[string]any{"volume": map[string]any{"size": 1}}})
		wantFault(t, r, http.StatusBadRequest, "badRequest", "Malformed request url")
	})
	// A token without ':' is both user and project.
	r = h.do(req{Method: "POST", Path: "/v3/solo/volumes", Token: "solo", Body: map[string]any{"volume": map[string]any{"size": 1}}})
	wantStatus(t, r, http.StatusAccepted)
	vol := r.Body["volume"].(map[string]any)
	if vol["user_id"] != "solo" || vol["os-vol-tenant-attr:tenant_id"] != "solo" {
		t.Errorf("user/project %v / %v", vol["user_id"], vol["os-vol-tenant-attr:tenant_id"])
	}
	// Project-less URLs take the project from the token.
	r = h.do(req{Method: "GET", Path: "/v3/volumes/" + vol["id"].(string), Token: "other:solo"})
	wantStatus(t, r, http.StatusOK)
	if r.Body["volume"].(map[string]any)["user_id"] != "solo" {
		t.Errorf("project-less show: %s", r.Raw)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	h := newHarness(t)
	wantFault(t, h.get("/v3/p1/nothing"), http.StatusNotFound, "itemNotFound", "could not be found")
	wantFault(t, h.get("/v3/p1/volumes/x/y/z"), http.StatusNotFound, "itemNotFound", "could not be found")
	wantFault(t, h.get("/nothing"), http.StatusNotFound, "itemNotFound", "could not be found")
	wantFault(t, h.do(req{Method: "GET", Path: "/v3foo", Token: "-"}), http.StatusNotFound, "itemNotFound", "could not be found")
	wantFault(t, h.get("/V3/p1/volumes"), http.StatusNotFound, "itemNotFound", "could not be found")
	r := h.do(req{Method: "PATCH", Path: "/v3/p1/volumes"})
	wantFault(t, r, http.StatusMethodNotAllowed, "badMethod", "not allowed")
	r = h.do(req{Method: "DELETE", Path: "/v3/p1/limits"})
	wantFault(t, r, http.StatusMethodNotAllowed, "badMethod", "not allowed")
}

func TestInternalRoutesNotShadowed(t *testing.T) {
	app := NewApp(nil)
	app.Get("/internal/ping", func(c *fiber.Ctx) error { return c.SendString("pong") })
	Register(app, newTestBackend(t), Options{})
	resp, err := app.Test(mustRequest(t, "GET", "/internal/ping"), -1)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("internal route: %v %v", resp, err)
	}
	resp, err = app.Test(mustRequest(t, "GET", "/internal/other"), -1)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown internal route: %v %v", resp, err)
	}
}

func mustRequest(t *testing.T, method, path string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// postOversized announces a body over BodyLimit to a real listener and
// reads the answer (fasthttp refuses the body after reading the headers,
// before any handler runs; app.Test reports that as an error instead of a
// response, and a client still writing the body sees the connection reset).
func postOversized(t *testing.T, h *harness) *response {
	t.Helper()
	base := h.serve()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v3/p1/volumes HTTP/1.1\r\nHost: kiln\r\nX-Auth-Token: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"volume\":", testToken, BodyLimit+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := &response{Status: resp.StatusCode, Header: resp.Header}
	if out.Raw, err = io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Raw, &out.Body); err != nil {
		t.Fatalf("413 body %q: %v", out.Raw, err)
	}
	return out
}

func TestOversizedBody(t *testing.T) {
	h := newHarness(t)
	h.unchanged(func() {
		r := postOversized(t, h)
		wantFault(t, r, http.StatusRequestEntityTooLarge, "overLimit", "Request is too large.")
	})
	// Just under the limit is read (and then validated).
	r := h.post("/v3/p1/volumes", `{"volume":{"size":1,"description":"`+strings.Repeat("a", BodyLimit-100)+`"}}`)
	wantFault(t, r, http.StatusBadRequest, "badRequest", "more than 255")
}

func TestUnsupportedContentType(t *testing.T) {
	h := newHarness(t)
	h.unchanged(func() {
		r := h.do(req{Method: "POST", Path: "/v3/p1/volumes", Body: `{"volume":{"size":1}}`,
			Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
		wantFault(t, r, http.StatusUnsupportedMediaType, "badMediaType", "Unsupported Content-Type")
	})
	r := h.do(req{Method: "POST", Path: "/v3/p1/volumes", Body: `{"volume":{"size":1}}`,
		Header: map[string]string{"Content-Type": "application/json; charset=utf-8"}})
	wantStatus(t, r, http.StatusAccepted)
}

func TestApplyFailureIs503(t *testing.T) {
	h := newHarness(t)
	h.b.fail = errors.New("no leader")
	before := h.snapshot()
	r := h.post("/v3/p1/volumes", map[string]any{"volume": map[string]any{"size": 1}})
	wantFault(t, r, http.StatusServiceUnavailable, "serviceUnavailable", "unavailable")
	if !bytes.Equal(before, h.snapshot()) {
		t.Fatal("state changed")
	}
}

func TestFaultMapping(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		name   string
	}{
		{badRequest("x"), 400, "badRequest"},
		{&apiError{Status: 406, Msg: "x"}, 406, "computeFault"},
		{errors.New("boom"), 500, "computeFault"},
		{fiber.ErrNotFound, 404, "itemNotFound"},
		{fiber.ErrMethodNotAllowed, 405, "badMethod"},
		{fiber.ErrRequestEntityTooLarge, 413, "overLimit"},
		{&unavailableError{err: errors.New("x")}, 503, "serviceUnavailable"},
	} {
		f := faultFor(tc.err)
		if f.Status != tc.status || faultName(f.Status) != tc.name {
			t.Errorf("%v: %d %s, want %d %s", tc.err, f.Status, faultName(f.Status), tc.status, tc.name)
		}
	}
}

func TestHandlerPanicIs500(t *testing.T) {
	app := NewApp(slog.New(slog.DiscardHandler))
	app.Get("/internal/boom", func(*fiber.Ctx) error { panic("boom") })
	resp, err := app.Test(mustRequest(t, "GET", "/internal/boom"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(raw), `"computeFault"`) {
		t.Fatalf("panic answered %d %s", resp.StatusCode, raw)
	}
}

package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func metaOf(t *testing.T, r *response, key string) map[string]any {
	t.Helper()
	m, ok := r.Body[key].(map[string]any)
	if !ok {
		t.Fatalf("no %q in %s", key, r.Raw)
	}
	return m
}

func TestVolumeMetadata(t *testing.T) {
	h := newHarness(t)
	id := h.createVolume(map[string]any{"size": 1, "metadata": map[string]any{"a": "1"}})["id"].(string)
	base := "/v3/p1/volumes/" + id + "/metadata"

	r := h.get(base)
	wantStatus(t, r, http.StatusOK)
	if m := metaOf(t, r, "metadata"); len(m) != 1 || m["a"] != "1" {
		t.Errorf("list %v", m)
	}
	// POST merges and returns everything.
	r = h.post(base, map[string]any{"metadata": map[string]any{"b": "2", "a": "one"}})
	wantStatus(t, r, http.StatusOK)
	if m := metaOf(t, r, "metadata"); fmt.Sprint(m) != "map[a:one b:2]" {
		t.Errorf("merge answered %v", m)
	}
	// PUT replaces.
	r = h.put(base, map[string]any{"metadata": map[string]any{"c": "3"}})
	wantStatus(t, r, http.StatusOK)
	if m := metaOf(t, r, "metadata"); fmt.Sprint(m) != "map[c:3]" {
		t.Errorf("replace answered %v", m)
	}
	if got := h.b.st.Volume(id).Metadata; fmt.Sprint(got) != "map[c:3]" {
		t.Errorf("stored %v", got)
	}
	// One key.
	r = h.get(base + "/c")
	wantStatus(t, r, http.StatusOK)
	if m := metaOf(t, r, "meta"); fmt.Sprint(m) != "map[c:3]" {
		t.Errorf("show key %v", m)
	}
	r = h.put(base+"/d", map[string]any{"meta": map[string]any{"d": "4"}})
	wantStatus(t, r, http.StatusOK)
	if m := metaOf(t, r, "meta"); fmt.Sprint(m) != "map[d:4]" {
		t.Errorf("put key %v", m)
	}
	r = h.put("/v3/volumes/"+id+"/metadata/key%20with%20space", map[string]any{"meta": map[string]any{"key with space": "5"}})
	wantStatus(t, r, http.StatusOK)
	if got := h.b.st.Volume(id).Metadata["key with space"]; got != "5" {
		t.Errorf("escaped key: %q", got)
	}
	r = h.del(base + "/c")
	wantStatus(t, r, http.StatusOK)
	if len(r.Raw) != 0 {
		t.Errorf("delete key body %q", r.Raw)
	}
	if _, ok := h.b.st.Volume(id).Metadata["c"]; ok {
		t.Error("key c still there")
	}
	// The volume's detail shows the same metadata.
	if m := h.get("/v3/p1/volumes/" + id).Body["volume"].(map[string]any)["metadata"].(map[string]any); fmt.Sprint(m) != "map[d:4 key with space:5]" {
		t.Errorf("volume metadata %v", m)
	}
}

func TestVolumeMetadataRejected(t *testing.T) {
	h := newHarness(t)
	id := h.createVolume(map[string]any{"size": 1, "metadata": map[string]any{"a": "1"}})["id"].(string)
	base := "/v3/p1/volumes/" + id + "/metadata"
	long := strings.Repeat("v", 256)
	for _, tc := range []struct {
		name, method, path string
		token              string
		body               any
		status             int
		fault, msg         string
	}{
		{"list unknown volume", "GET", "/v3/p1/volumes/nope/metadata", "", nil, 404, "itemNotFound", "Volume nope could not be found."},
		{"list other project", "GET", "/v3/p2/volumes/" + id + "/metadata", "u:p2", nil, 404, "itemNotFound", "could not be found"},
		{"show missing key", "GET", base + "/zz", "", nil, 404, "itemNotFound", "Volume " + id + " has no metadata with key zz."},
		{"delete missing key", "DELETE", base + "/zz", "", nil, 404, "itemNotFound", "has no metadata with key zz."},
		{"delete other project", "DELETE", "/v3/p2/volumes/" + id + "/metadata/a", "u:p2", nil, 404, "itemNotFound", "could not be found"},
		{"post malformed", "POST", base, "", "{", 400, "badRequest", "Malformed request body"},
		{"post missing metadata", "POST", base, "", map[string]any{"meta": map[string]any{}}, 400, "badRequest", "('meta' was unexpected)"},
		{"post empty body", "POST", base, "", "", 400, "badRequest", "'metadata' is a required property"},
		{"post value number", "POST", base, "", map[string]any{"metadata": map[string]any{"k": 5}}, 400, "badRequest", "5 is not of type 'string'"},
		{"post value too long", "POST", base, "", map[string]any{"metadata": map[string]any{"k": long}}, 400, "badRequest", "is too long"},
		{"post bad key", "POST", base, "", map[string]any{"metadata": map[string]any{"k*": "v"}}, 400, "badRequest", "('k*' was unexpected)"},
		{"put null", "PUT", base, "", map[string]any{"metadata": nil}, 400, "badRequest", "None is not of type 'object'"},
		{"put unknown volume", "PUT", "/v3/p1/volumes/nope/metadata", "", map[string]any{"metadata": map[string]any{}}, 404, "itemNotFound", "Volume nope could not be found."},
		{"put key mismatch", "PUT", base + "/a", "", map[string]any{"meta": map[string]any{"b": "2"}}, 400, "badRequest", "Request body and URI mismatch"},
		{"put key two items", "PUT", base + "/a", "", map[string]any{"meta": map[string]any{"a": "1", "b": "2"}}, 400, "badRequest", "has too many properties"},
		{"put key empty", "PUT", base + "/a", "", map[string]any{"meta": map[string]any{}}, 400, "badRequest", "does not have enough properties"},
		{"put key wrong body", "PUT", base + "/a", "", map[string]any{"metadata": map[string]any{"a": "1"}}, 400, "badRequest", "was unexpected"},
		{"put key not string", "PUT", base + "/a", "", map[string]any{"meta": map[string]any{"a": true}}, 400, "badRequest", "True is not of type 'string'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.unchanged(func() {
				r := h.do(req{Method: tc.method, Path: tc.path, Body: tc.body, Token: tc.token})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
}

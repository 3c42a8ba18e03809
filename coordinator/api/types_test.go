package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/coordinator/state"
)

// createType creates a volume type through the API and returns its view.
func (h *harness) createType(body map[string]any) map[string]any {
	h.t.Helper()
	r := h.post("/v3/p1/types", map[string]any{"volume_type": body})
	wantStatus(h.t, r, http.StatusOK)
	return r.Body["volume_type"].(map[string]any)
}

func typeNames(t *testing.T, r *response) []string {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	var out []string
	for _, item := range r.Body["volume_types"].([]any) {
		out = append(out, item.(map[string]any)["name"].(string))
	}
	slices.Sort(out)
	return out
}

func TestVolumeTypes(t *testing.T) {
	h := newHarness(t)
	gold := h.createType(map[string]any{"name": "gold", "description": "fast", "extra_specs": map[string]any{"volume_backend_name": "lvm"}})
	want := map[string]any{"name": "gold", "description": "fast", "is_public": true, "qos_specs_id": nil, "os-volume-type-access:is_public": true}
	for k, w := range want {
		if gold[k] != w {
			t.Errorf("%s = %v, want %v", k, gold[k], w)
		}
	}
	if fmt.Sprint(gold["extra_specs"]) != "map[volume_backend_name:lvm]" || !isUUID(gold["id"].(string)) {
		t.Errorf("created %v", gold)
	}
	secret := h.createType(map[string]any{"name": "secret", "os-volume-type-access:is_public": "false"})
	if secret["is_public"] != false {
		t.Errorf("private type %v", secret)
	}

	if got := typeNames(t, h.get("/v3/p1/types")); !slices.Equal(got, []string{"__DEFAULT__", "gold"}) {
		t.Errorf("default list %v", got)
	}
	if got := typeNames(t, h.get("/v3/p1/types?is_public=None")); !slices.Equal(got, []string{"__DEFAULT__", "gold", "secret"}) {
		t.Errorf("is_public=None %v", got)
	}
	if got := typeNames(t, h.get("/v3/p1/types?is_public=false")); !slices.Equal(got, []string{"secret"}) {
		t.Errorf("is_public=false %v", got)
	}
	if got := typeNames(t, h.getV("/v3/p1/types?extra_specs="+"%7B%27volume_backend_name%27%3A%27lvm%27%7D", "volume 3.52")); !slices.Equal(got, []string{"gold"}) {
		t.Errorf("extra_specs filter %v", got)
	}
	wantFault(t, h.get("/v3/p1/types?is_public=maybe"), http.StatusBadRequest, "badRequest", "Invalid is_public filter [maybe]")
	r := h.get("/v3/p1/types?is_public=None&limit=2&sort=name:asc")
	if got := typeNames(t, r); !slices.Equal(got, []string{"__DEFAULT__", "gold"}) {
		t.Errorf("first page %v", got)
	}
	if links, ok := r.Body["volume_type_links"].([]any); !ok || !strings.HasPrefix(links[0].(map[string]any)["href"].(string), testURL+"/v3/p1/types?") {
		t.Errorf("type links %v", r.Body["volume_type_links"])
	}

	r = h.get("/v3/p1/types/" + gold["id"].(string))
	wantStatus(t, r, http.StatusOK)
	if r.Body["volume_type"].(map[string]any)["name"] != "gold" {
		t.Errorf("show %s", r.Raw)
	}
	r = h.get("/v3/types/default")
	wantStatus(t, r, http.StatusOK)
	if d := r.Body["volume_type"].(map[string]any); d["name"] != "__DEFAULT__" || d["id"] != state.DefaultTypeID {
		t.Errorf("default type %v", d)
	}
	wantFault(t, h.get("/v3/p1/types/nope"), http.StatusNotFound, "itemNotFound", "Volume type nope could not be found.")

	// Update.
	r = h.put("/v3/p1/types/"+gold["id"].(string), map[string]any{"volume_type": map[string]any{"name": "platinum", "description": "faster", "is_public": false}})
	wantStatus(t, r, http.StatusOK)
	if u := r.Body["volume_type"].(map[string]any); u["name"] != "platinum" || u["description"] != "faster" || u["is_public"] != false {
		t.Errorf("updated %v", u)
	}
	// Delete.
	r = h.del("/v3/p1/types/" + secret["id"].(string))
	wantStatus(t, r, http.StatusAccepted)
	if h.b.st.Type(secret["id"].(string)) != nil {
		t.Error("type not deleted")
	}
}

func TestVolumeTypesRejected(t *testing.T) {
	h := newHarness(t)
	gold := h.createType(map[string]any{"name": "gold"})["id"].(string)
	used := h.createType(map[string]any{"name": "used", "extra_specs": map[string]any{"k": "v"}})["id"].(string)
	h.createVolume(map[string]any{"size": 1, "volume_type": "used"})
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		fault, msg         string
		refusedByState     bool
	}{
		{"create duplicate", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "gold"}}, 409, "conflictingRequest", "Volume Type gold already exists.", true},
		{"create no name", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"description": "x"}}, 400, "badRequest", "'name' is a required property", false},
		{"create empty name", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": ""}}, 400, "badRequest", "The 'name' can not be None.", false},
		{"create blank name", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "   "}}, 400, "badRequest", "The 'name' can not be empty.", false},
		{"create long name", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": strings.Repeat("n", 256)}}, 400, "badRequest", "is too long", false},
		{"create name number", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": 5}}, 400, "badRequest", "5 is not of type 'string'", false},
		{"create unknown key", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "x", "is_public": true}}, 400, "badRequest", "('is_public' was unexpected)", false},
		{"create bad public", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "x", "os-volume-type-access:is_public": "maybe"}}, 400, "badRequest", "is not one of", false},
		{"create bad specs", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "x", "extra_specs": []any{}}}, 400, "badRequest", "is not of type 'object'", false},
		{"create control chars", "POST", "/v3/p1/types", map[string]any{"volume_type": map[string]any{"name": "x", "description": "a\nb"}}, 400, "badRequest", "printable", false},
		{"create malformed", "POST", "/v3/p1/types", "{x", 400, "badRequest", "Malformed request body", false},
		{"create wrong root", "POST", "/v3/p1/types", map[string]any{"type": map[string]any{"name": "x"}}, 400, "badRequest", "('type' was unexpected)", false},
		{"update nothing", "PUT", "/v3/p1/types/" + gold, map[string]any{"volume_type": map[string]any{}}, 400, "badRequest", "Specify volume type name, description, is_public or a combination thereof.", false},
		{"update blank name", "PUT", "/v3/p1/types/" + gold, map[string]any{"volume_type": map[string]any{"name": "  "}}, 400, "badRequest", "Volume type name can not be empty.", false},
		{"update to existing", "PUT", "/v3/p1/types/" + gold, map[string]any{"volume_type": map[string]any{"name": "used"}}, 409, "conflictingRequest", "already exists", true},
		{"update unknown", "PUT", "/v3/p1/types/nope", map[string]any{"volume_type": map[string]any{"name": "z"}}, 404, "itemNotFound", "Volume type nope could not be found.", false},
		{"update default name", "PUT", "/v3/p1/types/" + state.DefaultTypeID, map[string]any{"volume_type": map[string]any{"name": "z"}}, 400, "badRequest", "cannot be renamed", true},
		{"delete default", "DELETE", "/v3/p1/types/" + state.DefaultTypeID, nil, 400, "badRequest", "Default volume type can not be deleted.", true},
		{"delete in use", "DELETE", "/v3/p1/types/" + used, nil, 400, "badRequest", "Target volume type is still in use.", true},
		{"delete unknown", "DELETE", "/v3/p1/types/nope", nil, 404, "itemNotFound", "Volume type nope could not be found.", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := h.unchanged
			if tc.refusedByState {
				check = h.refused
			}
			check(func() {
				r := h.do(req{Method: tc.method, Path: tc.path, Body: tc.body})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
}

func TestExtraSpecs(t *testing.T) {
	h := newHarness(t)
	id := h.createType(map[string]any{"name": "gold", "extra_specs": map[string]any{"a": "1"}})["id"].(string)
	base := "/v3/p1/types/" + id + "/extra_specs"

	r := h.get(base)
	wantStatus(t, r, http.StatusOK)
	if fmt.Sprint(r.Body["extra_specs"]) != "map[a:1]" {
		t.Errorf("list %s", r.Raw)
	}
	r = h.post(base, map[string]any{"extra_specs": map[string]any{"b": "2", "capabilities:thin": "<is> True"}})
	wantStatus(t, r, http.StatusOK)
	if fmt.Sprint(r.Body["extra_specs"]) != "map[b:2 capabilities:thin:<is> True]" {
		t.Errorf("create echoed %s", r.Raw)
	}
	if got := h.b.st.Type(id).ExtraSpecs; len(got) != 3 || got["a"] != "1" || got["b"] != "2" {
		t.Errorf("stored %v", got)
	}
	r = h.get(base + "/b")
	wantStatus(t, r, http.StatusOK)
	if fmt.Sprint(r.Body) != "map[b:2]" {
		t.Errorf("show %s", r.Raw)
	}
	r = h.put(base+"/b", map[string]any{"b": "3"})
	wantStatus(t, r, http.StatusOK)
	if fmt.Sprint(r.Body) != "map[b:3]" || h.b.st.Type(id).ExtraSpecs["b"] != "3" {
		t.Errorf("update %s", r.Raw)
	}
	r = h.del(base + "/b")
	wantStatus(t, r, http.StatusAccepted)
	if _, ok := h.b.st.Type(id).ExtraSpecs["b"]; ok {
		t.Error("spec b not deleted")
	}

	used := h.createType(map[string]any{"name": "used", "extra_specs": map[string]any{"k": "v"}})["id"].(string)
	h.createVolume(map[string]any{"size": 1, "volume_type": used})
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		fault, msg         string
		refusedByState     bool
	}{
		{"show missing", "GET", base + "/zz", nil, 404, "itemNotFound", "Volume Type " + id + " has no extra specs with key zz.", false},
		{"delete missing", "DELETE", base + "/zz", nil, 404, "itemNotFound", "has no extra specs with key zz.", false},
		{"list unknown type", "GET", "/v3/p1/types/nope/extra_specs", nil, 404, "itemNotFound", "Volume type nope could not be found.", false},
		{"create unknown type", "POST", "/v3/p1/types/nope/extra_specs", map[string]any{"extra_specs": map[string]any{"a": "1"}}, 404, "itemNotFound", "could not be found", false},
		{"create missing key", "POST", base, map[string]any{"specs": map[string]any{}}, 400, "badRequest", "('specs' was unexpected)", false},
		{"create spaced key", "POST", base, map[string]any{"extra_specs": map[string]any{"a b": "1"}}, 400, "badRequest", "('a b' was unexpected)", false},
		{"create number value", "POST", base, map[string]any{"extra_specs": map[string]any{"a": 1}}, 400, "badRequest", "1 is not of type 'string', 'null'", false},
		{"update mismatch", "PUT", base + "/a", map[string]any{"b": "2"}, 400, "badRequest", "Request body and URI mismatch", false},
		{"update two keys", "PUT", base + "/a", map[string]any{"a": "1", "b": "2"}, 400, "badRequest", "has too many properties", false},
		{"update empty", "PUT", base + "/a", map[string]any{}, 400, "badRequest", "does not have enough properties", false},
		{"update not object", "PUT", base + "/a", `"x"`, 400, "badRequest", "'x' is not of type 'object'", false},
		{"in use create", "POST", "/v3/p1/types/" + used + "/extra_specs", map[string]any{"extra_specs": map[string]any{"a": "1"}}, 400, "badRequest", "Volume Type is currently in use.", true},
		{"in use delete", "DELETE", "/v3/p1/types/" + used + "/extra_specs/k", nil, 400, "badRequest", "Volume Type is currently in use.", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := h.unchanged
			if tc.refusedByState {
				check = h.refused
			}
			check(func() {
				r := h.do(req{Method: tc.method, Path: tc.path, Body: tc.body})
				wantFault(t, r, tc.status, tc.fault, tc.msg)
			})
		})
	}
}

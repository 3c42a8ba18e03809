package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
)

var listEpoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// seedVolumes stores five volumes of p1 (v0..v4, created a minute apart,
// sizes 5 1 4 2 3) and two of p2, through the state machine.
func seedVolumes(h *harness) []string {
	h.t.Helper()
	var ids []string
	sizes := []int64{5, 1, 4, 2, 3}
	for i, size := range sizes {
		v := state.Volume{ID: fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i), ProjectID: "p1", UserID: "u1",
			Name: fmt.Sprintf("v%d", i), SizeGB: size, TypeID: state.DefaultTypeID, AZ: "nova",
			Metadata:  map[string]string{"k": []string{"a", "b"}[i%2]},
			CreatedAt: listEpoch.Add(time.Duration(i) * time.Minute)}
		if i == 4 {
			v.AZ = "az2"
		}
		h.mustApply(state.CreateVolume{Volume: v})
		ids = append(ids, v.ID)
	}
	for i := range 2 {
		h.mustApply(state.CreateVolume{Volume: state.Volume{ID: fmt.Sprintf("00000000-0000-4000-8000-0000000000f%d", i),
			ProjectID: "p2", Name: fmt.Sprintf("w%d", i), SizeGB: 1, TypeID: state.DefaultTypeID, AZ: "nova",
			CreatedAt: listEpoch.Add(time.Hour)}})
	}
	return ids
}

// names returns the "name" of every listed volume.
func names(t *testing.T, r *response) []string {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	var out []string
	for _, item := range r.Body["volumes"].([]any) {
		out = append(out, item.(map[string]any)["name"].(string))
	}
	return out
}

func wantNames(t *testing.T, r *response, want ...string) {
	t.Helper()
	if got := names(t, r); !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
}

func TestListVolumesViews(t *testing.T) {
	h := newHarness(t)
	seedVolumes(h)
	r := h.get("/v3/p1/volumes")
	wantNames(t, r, "v4", "v3", "v2", "v1", "v0")
	for _, item := range r.Body["volumes"].([]any) {
		m := item.(map[string]any)
		if len(m) != 3 || m["id"] == nil || m["links"] == nil {
			t.Errorf("summary item %v", m)
		}
	}
	if _, ok := r.Body["volumes_links"]; ok {
		t.Error("next link on a partial page")
	}
	r = h.get("/v3/p1/volumes/detail")
	wantNames(t, r, "v4", "v3", "v2", "v1", "v0")
	first := r.Body["volumes"].([]any)[0].(map[string]any)
	for _, k := range []string{"attachments", "metadata", "status", "os-vol-host-attr:host", "created_at"} {
		if _, ok := first[k]; !ok {
			t.Errorf("detail item lacks %s", k)
		}
	}
	// Project-less URL, same view.
	wantNames(t, h.get("/v3/volumes/detail"), "v4", "v3", "v2", "v1", "v0")
}

func TestListVolumesProjects(t *testing.T) {
	h := newHarness(t)
	seedVolumes(h)
	wantNames(t, h.do(req{Method: "GET", Path: "/v3/p2/volumes", Token: "u:p2"}), "w1", "w0") // same created_at: id descending
	if got := names(t, h.get("/v3/p1/volumes?all_tenants=1")); len(got) != 7 {
		t.Errorf("all_tenants: %v", got)
	}
	if got := names(t, h.get("/v3/p1/volumes?all_tenants=True&project_id=p2")); len(got) != 2 || !strings.HasPrefix(got[0], "w") {
		t.Errorf("all_tenants + project_id: %v", got)
	}
	wantNames(t, h.get("/v3/p1/volumes?project_id=p2"))
	wantFault(t, h.get("/v3/p1/volumes?all_tenants=maybe"), http.StatusBadRequest, "badRequest", "Value 'maybe' for 'all_tenants' is not a boolean.")
}

func TestListVolumesPagination(t *testing.T) {
	h := newHarness(t)
	ids := seedVolumes(h)
	r := h.get("/v3/p1/volumes/detail?limit=2")
	wantNames(t, r, "v4", "v3")
	links := r.Body["volumes_links"].([]any)
	next := links[0].(map[string]any)
	if next["rel"] != "next" {
		t.Fatalf("link %v", next)
	}
	href := next["href"].(string)
	u, err := url.Parse(href)
	if err != nil || u.Scheme != "http" || u.Host != "kiln.test:8776" || u.Path != "/v3/p1/volumes/detail" {
		t.Fatalf("next href %q is not absolute on the public URL", href)
	}
	if q := u.Query(); q.Get("marker") != ids[3] || q.Get("limit") != "2" {
		t.Errorf("next query %v", q)
	}
	// Follow the links to the end.
	var all []string
	path := "/v3/p1/volumes/detail?limit=2"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := h.get(path)
		all = append(all, names(t, r)...)
		path = ""
		if l, ok := r.Body["volumes_links"].([]any); ok {
			u, _ := url.Parse(l[0].(map[string]any)["href"].(string))
			path = u.RequestURI()
		}
	}
	if !slices.Equal(all, []string{"v4", "v3", "v2", "v1", "v0"}) {
		t.Errorf("pages gave %v", all)
	}
	// A page exactly full gets a link; the page after it is empty.
	r = h.get("/v3/p1/volumes?limit=5")
	if _, ok := r.Body["volumes_links"]; !ok {
		t.Error("no next link on a full page")
	}
	wantNames(t, h.get("/v3/p1/volumes?limit=5&marker="+ids[0]))
	// Marker, offset, limit 0.
	wantNames(t, h.get("/v3/p1/volumes?marker="+ids[3]), "v2", "v1", "v0")
	wantNames(t, h.get("/v3/p1/volumes?offset=3"), "v1", "v0")
	wantNames(t, h.get("/v3/p1/volumes?limit=0"))
	// Marker with a sort.
	wantNames(t, h.get("/v3/p1/volumes?sort=size:asc&marker="+ids[3]), "v4", "v2", "v0")
}

func TestListVolumesMaxLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxLimit = 3 })
	seedVolumes(h)
	for _, path := range []string{"/v3/p1/volumes", "/v3/p1/volumes?limit=10"} {
		r := h.get(path)
		wantNames(t, r, "v4", "v3", "v2")
		if _, ok := r.Body["volumes_links"]; !ok {
			t.Errorf("%s: no next link at osapi_max_limit", path)
		}
	}
}

func TestListVolumesSort(t *testing.T) {
	h := newHarness(t)
	seedVolumes(h)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"sort=size:asc", []string{"v1", "v3", "v4", "v2", "v0"}},
		{"sort=size", []string{"v0", "v2", "v4", "v3", "v1"}},
		{"sort=name:desc", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"sort=display_name:asc", []string{"v0", "v1", "v2", "v3", "v4"}},
		{"sort=created_at:asc", []string{"v0", "v1", "v2", "v3", "v4"}},
		// nova sorts after az2: descending puts the nova volumes (by name) first.
		{"sort=availability_zone:desc,name:asc", []string{"v0", "v1", "v2", "v3", "v4"}},
		{"sort=availability_zone:asc,name:desc", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"sort_key=size&sort_dir=asc", []string{"v1", "v3", "v4", "v2", "v0"}},
		{"sort_key=name", []string{"v4", "v3", "v2", "v1", "v0"}},
	} {
		got := names(t, h.get("/v3/p1/volumes?"+tc.query))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, tc := range []struct{ query, msg string }{
		{"sort=bogus", "Invalid input received: Invalid sort key"},
		{"sort=size:up", "Unknown sort direction, must be 'desc' or 'asc'."},
		{"sort=size&sort_key=name", "cannot be used with the 'sort' parameter"},
		{"sort_dir=sideways", "Unknown sort direction"},
		{"limit=abc", "limit param must be an integer"},
		{"limit=-1", "limit param must be positive"},
		{"offset=-1", "offset must be >= 0"},
		{"offset=x", "offset must be an integer"},
	} {
		wantFault(t, h.get("/v3/p1/volumes?"+tc.query), http.StatusBadRequest, "badRequest", tc.msg)
	}
	wantFault(t, h.get("/v3/p1/volumes?marker=nope"), http.StatusNotFound, "itemNotFound", "Volume nope could not be found.")
	wantFault(t, h.get("/v3/p1/volumes?marker=00000000-0000-4000-8000-0000000000f0"), http.StatusNotFound, "itemNotFound", "could not be found")
}

func TestListVolumesFilters(t *testing.T) {
	h := newHarness(t)
	seedVolumes(h)
	for _, tc := range []struct {
		query, version string
		want           []string
	}{
		{"name=v1", "", []string{"v1"}},
		{"status=creating", "", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"status=available", "", nil},
		{"size=4", "", []string{"v2"}},
		{"availability_zone=az2", "", []string{"v4"}},
		{"metadata=" + url.QueryEscape("{'k':'a'}"), "", []string{"v4", "v2", "v0"}},
		{"metadata=" + url.QueryEscape(`{"k": "b"}`), "", []string{"v3", "v1"}},
		{"metadata=" + url.QueryEscape("{'k':'a', 'x':'y'}"), "", nil},
		{"metadata=garbage", "", nil},
		{"name=v1&metadata=" + url.QueryEscape("{'k':'b'}"), "", []string{"v1"}},
		{"bootable=false", "volume 3.2", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"bootable=true", "volume 3.2", nil},
		{"foo=bar", "", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"foo=bar", "volume 3.30", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"created_at=" + url.QueryEscape("gt:2025-03-01T12:02:00"), "volume 3.60", []string{"v4", "v3"}},
		{"created_at=" + url.QueryEscape("gte:2025-03-01T12:02:00Z,lt:2025-03-01T12:04:00Z"), "volume 3.60", []string{"v3", "v2"}},
		{"created_at=" + url.QueryEscape("gt:2025-03-01T12:02:00"), "volume 3.59", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"consumes_quota=true", "volume 3.65", []string{"v4", "v3", "v2", "v1", "v0"}},
		{"group_id=x", "volume 3.31", nil},
	} {
		got := names(t, h.getV("/v3/p1/volumes?"+tc.query, tc.version))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s at %q: %v, want %v", tc.query, tc.version, got, tc.want)
		}
	}
	for _, tc := range []struct{ query, version, msg string }{
		{"foo=bar", "volume 3.31", "Invalid filters foo are found in query options."},
		{"foo=1&bar=2", "volume 3.70", "Invalid filters foo,bar are found in query options."},
		{"bootable=maybe", "volume 3.2", "Invalid input received: 'bootable = maybe'"},
		{"created_at=" + url.QueryEscape("after:2025-03-01T12:02:00"), "volume 3.60", "Invalid after operator"},
		{"created_at=yesterday", "volume 3.60", "Invalid created_at value"},
		{"with_count=perhaps", "volume 3.45", "Value 'perhaps' for 'with_count' is not a boolean."},
	} {
		wantFault(t, h.getV("/v3/p1/volumes?"+tc.query, tc.version), http.StatusBadRequest, "badRequest", tc.msg)
	}
}

func TestListVolumesWithCount(t *testing.T) {
	h := newHarness(t)
	seedVolumes(h)
	r := h.getV("/v3/p1/volumes/detail?with_count=true&limit=2&metadata="+url.QueryEscape("{'k':'a'}"), "volume 3.45")
	wantNames(t, r, "v4", "v2")
	if r.Body["count"] != 3.0 {
		t.Errorf("count %v, want 3", r.Body["count"])
	}
	if _, ok := h.getV("/v3/p1/volumes?with_count=false", "volume 3.45").Body["count"]; ok {
		t.Error("count without with_count")
	}
	if _, ok := h.getV("/v3/p1/volumes?with_count=true", "volume 3.44").Body["count"]; ok {
		t.Error("count before 3.45")
	}
}

func TestParseDictLiteral(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{"{}", map[string]string{}, true},
		{"{'a':'b'}", map[string]string{"a": "b"}, true},
		{`{'a': "b c", 'n': 1, 't': True,}`, map[string]string{"a": "b c", "n": "1", "t": "True"}, true},
		{`{"a": 2.5, "b": false}`, map[string]string{"a": "2.5", "b": "False"}, true},
		{`{'it\'s': 'x'}`, map[string]string{"it's": "x"}, true},
		{"{'a'}", nil, false},
		{"{'a':'b'", nil, false},
		{"{'a':'b'} x", nil, false},
		{"{'a': [1]}", nil, false},
		{"k=v", nil, false},
	} {
		got, ok := parseDictLiteral(tc.in)
		if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestListVolumesMigrationStatus: the filter matches the migration status
// os-reset_status sets; a volume without one matches no value.
func TestListVolumesMigrationStatus(t *testing.T) {
	h := newHarness(t)
	ids := seedVolumes(h)
	h.mustApply(state.ResetVolumeStatus{ID: ids[1], ProjectID: "p1", MigrationStatus: "migrating", At: listEpoch})
	h.mustApply(state.ResetVolumeStatus{ID: ids[3], ProjectID: "p1", MigrationStatus: "error", At: listEpoch})
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"migration_status=migrating", []string{"v1"}},
		{"migration_status=error", []string{"v3"}},
		{"migration_status=success", nil},
		{"migration_status=none", nil},
		{"migration_status=", nil},
		{"migration_status=migrating&name=v1", []string{"v1"}},
		{"migration_status=migrating&name=v2", nil},
	} {
		for _, version := range []string{"", "volume 3.31"} {
			if got := names(t, h.getV("/v3/p1/volumes?"+tc.query, version)); !slices.Equal(got, tc.want) {
				t.Errorf("%s at %q: %v, want %v", tc.query, version, got, tc.want)
			}
		}
	}
	// Clearing it ("none") drops the volume from the match.
	h.mustApply(state.ResetVolumeStatus{ID: ids[1], ProjectID: "p1", MigrationStatus: "none", At: listEpoch})
	wantNames(t, h.get("/v3/p1/volumes?migration_status=migrating"))
}

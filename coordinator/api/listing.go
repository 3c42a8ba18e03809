package api

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Pagination and sorting of collections, as cinder/api/common.py and the
// database layer's process_sort_params do it.

// pageQuery is the pagination part of a list query.
type pageQuery struct {
	Limit  int // effective limit: the given one capped at MaxLimit, or MaxLimit
	Marker string
	// HasMarker is set when a marker parameter was given (even empty).
	HasMarker bool
	Offset    int
	Sort      []sortKey
}

type sortKey struct {
	Key  string
	Desc bool
}

// paginationParams are the query keys pageQuery consumes.
var paginationParams = []string{"limit", "marker", "offset", "sort", "sort_key", "sort_dir"}

// parsePage reads limit, marker, offset and sort. aliases renames API sort
// keys to the model's (Cinder: name -> display_name); valid lists the
// model's keys. created_at and id are appended as tie-breakers in the
// direction of the first key (default created_at:desc).
func (s *server) parsePage(c *fiber.Ctx, valid []string, aliases map[string]string) (pageQuery, error) {
	p := pageQuery{Limit: s.opts.MaxLimit}
	if raw, ok := queryValue(c, "limit"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return p, badRequest("limit param must be an integer")
		}
		if n < 0 {
			return p, badRequest("limit param must be positive")
		}
		p.Limit = min(n, s.opts.MaxLimit)
	}
	p.Marker, p.HasMarker = queryValue(c, "marker")
	if raw, ok := queryValue(c, "offset"); ok {
		n, err := validateInteger(raw, "offset", 0, dbMaxInt)
		if err != nil {
			return p, err
		}
		p.Offset = int(n)
	}
	keys, dirs, err := sortParams(c)
	if err != nil {
		return p, err
	}
	for i, k := range keys {
		if a, ok := aliases[k]; ok {
			keys[i] = a
		}
	}
	for _, d := range dirs {
		if d != "asc" && d != "desc" {
			return p, invalidInput("Unknown sort direction, must be 'desc' or 'asc'.")
		}
	}
	defaultDir := "desc"
	if len(dirs) > 0 {
		defaultDir = dirs[0]
	}
	if len(dirs) > len(keys) {
		return p, invalidInput("Sort direction array size exceeds sort key array size.")
	}
	for len(dirs) < len(keys) {
		dirs = append(dirs, defaultDir)
	}
	for _, k := range []string{"created_at", "id"} {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
			dirs = append(dirs, defaultDir)
		}
	}
	for i, k := range keys {
		if !slices.Contains(valid, k) {
			return p, invalidInput("Invalid sort key")
		}
		p.Sort = append(p.Sort, sortKey{Key: k, Desc: dirs[i] == "desc"})
	}
	return p, nil
}

// sortParams is get_sort_params: "sort=k1[:dir],k2" or the deprecated
// sort_key/sort_dir pair (not both).
func sortParams(c *fiber.Ctx) (keys, dirs []string, err error) {
	sortV, hasSort := queryValue(c, "sort")
	key, hasKey := queryValue(c, "sort_key")
	dir, hasDir := queryValue(c, "sort_dir")
	if hasSort && (hasKey || hasDir) {
		return nil, nil, badRequest("The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.")
	}
	if hasSort {
		for _, part := range strings.Split(strings.TrimSpace(sortV), ",") {
			k, d, _ := strings.Cut(part, ":")
			if d = strings.TrimSpace(d); d == "" {
				d = "desc"
			}
			keys = append(keys, strings.TrimSpace(k))
			dirs = append(dirs, d)
		}
		return keys, dirs, nil
	}
	if !hasKey {
		key = "created_at"
	}
	if !hasDir {
		dir = "desc"
	}
	return []string{strings.TrimSpace(key)}, []string{strings.TrimSpace(dir)}, nil
}

// compareBy orders two records by the sort keys, given a comparison of one
// key.
func compareBy[T any](keys []sortKey, field func(a, b T, key string) int) func(a, b T) int {
	return func(a, b T) int {
		for _, k := range keys {
			if r := field(a, b, k.Key); r != 0 {
				if k.Desc {
					return -r
				}
				return r
			}
		}
		return 0
	}
}

// boolCmp orders false before true, as databases do.
func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

// window sorts items and cuts the page: the items strictly after the
// marker record (if any) in sort order, then offset, then limit. It also
// returns whether Cinder would add a next link (a non-empty page of limit
// items).
func window[T any](items []T, p pageQuery, order func(a, b T) int, marker *T) ([]T, bool) {
	slices.SortFunc(items, order)
	if marker != nil {
		i := 0
		for i < len(items) && order(items[i], *marker) <= 0 {
			i++
		}
		items = items[i:]
	}
	items = items[min(p.Offset, len(items)):]
	if len(items) > p.Limit {
		items = items[:p.Limit]
	}
	return items, len(items) > 0 && len(items) >= p.Limit
}

// nextLink is the absolute URL of the next page: this request's path and
// query with marker set to the last item's ID.
func (s *server) nextLink(c *fiber.Ctx, lastID string) []fiber.Map {
	q := url.Values{}
	c.Context().QueryArgs().VisitAll(func(k, v []byte) {
		q.Add(string(k), string(v))
	})
	q.Set("marker", lastID)
	u := url.URL{Path: c.Path(), RawQuery: q.Encode()}
	return []fiber.Map{{"rel": "next", "href": s.baseURL(c) + u.String()}}
}

func cmpString(a, b string) int { return cmp.Compare(a, b) }

// listQuery is a parsed query of a filtered resource list (volumes,
// snapshots).
type listQuery[T any] struct {
	page pageQuery
	// project restricts to one project ("" = all, with all_tenants).
	project   string
	match     []func(T) bool
	withCount bool
}

// parseListQuery reads with_count, all_tenants and the filters of a list
// query whose page is parsed. Unknown filter keys are a 400 from
// microversion 3.31 (Cinder's reject_invalid_filters) and ignored before
// (remove_invalid_filter_options); filters not yet available at the
// request's microversion are ignored.
func parseListQuery[T any](c *fiber.Ctx, page pageQuery, filterKeys []string,
	available func(key string, v apiVersion) bool,
	matcher func(key, raw string, v apiVersion) (func(T) bool, error),
) (*listQuery[T], error) {
	ri := info(c)
	q := &listQuery[T]{page: page, project: ri.Project}
	var err error
	if ri.Version.atLeast(mvWithCount) {
		if q.withCount, err = boolParam(c, "with_count"); err != nil {
			return nil, err
		}
	}
	allTenants, err := boolParam(c, "all_tenants")
	if err != nil {
		return nil, err
	}
	if allTenants {
		q.project = ""
	}
	var invalid []string
	for _, key := range queryKeys(c) {
		if slices.Contains(paginationParams, key) || key == "with_count" && ri.Version.atLeast(mvWithCount) || key == "all_tenants" {
			continue
		}
		raw, _ := queryValue(c, key)
		if !slices.Contains(filterKeys, key) {
			if ri.Version.atLeast(mvResourceFilter) {
				invalid = append(invalid, key)
			}
			continue
		}
		if !available(key, ri.Version) {
			continue
		}
		m, err := matcher(key, raw, ri.Version)
		if err != nil {
			return nil, err
		}
		q.match = append(q.match, m)
	}
	if len(invalid) > 0 {
		return nil, badRequest("Invalid filters %s are found in query options.", strings.Join(invalid, ","))
	}
	return q, nil
}

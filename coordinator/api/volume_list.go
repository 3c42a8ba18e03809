package api

import (
	"cmp"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Volume sort keys: the model columns Cinder's paginate_query accepts that
// Kiln has ("name" is an alias of display_name).
var volumeSortKeys = []string{
	"id", "display_name", "display_description", "status", "size", "created_at", "updated_at",
	"availability_zone", "bootable", "project_id", "user_id", "volume_type_id", "host",
	"attach_status", "multiattach",
}

var volumeSortAliases = map[string]string{"name": "display_name"}

func volumeField(a, b *state.Volume, key string) int {
	switch key {
	case "id":
		return cmpString(a.ID, b.ID)
	case "display_name":
		return cmpString(a.Name, b.Name)
	case "display_description":
		return cmpString(a.Description, b.Description)
	case "status":
		return cmpString(a.Status, b.Status)
	case "size":
		return cmp.Compare(a.SizeGB, b.SizeGB)
	case "created_at":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "updated_at":
		return a.UpdatedAt.Compare(b.UpdatedAt)
	case "availability_zone":
		return cmpString(a.AZ, b.AZ)
	case "bootable":
		return boolCmp(a.Bootable, b.Bootable)
	case "project_id":
		return cmpString(a.ProjectID, b.ProjectID)
	case "user_id":
		return cmpString(a.UserID, b.UserID)
	case "volume_type_id":
		return cmpString(a.TypeID, b.TypeID)
	case "host":
		return cmpString(a.Pool, b.Pool)
	case "attach_status":
		return cmpString(a.AttachStatus, b.AttachStatus)
	case "multiattach":
		return boolCmp(a.Multiattach, b.Multiattach)
	}
	return 0
}

// volumeFilterKeys are the user-visible volume filters of Cinder's
// resource_filters.json, plus the admin ones.
var volumeFilterKeys = []string{
	"name", "status", "metadata", "bootable", "migration_status", "availability_zone",
	"group_id", "size", "created_at", "updated_at", "consumes_quota", "glance_metadata",
	"all_tenants", "project_id",
}

// volumeQuery is a parsed list query.
type volumeQuery = listQuery[*state.Volume]

// parseVolumeQuery reads a volumes list query (see parseListQuery).
func (s *server) parseVolumeQuery(c *fiber.Ctx) (*volumeQuery, error) {
	page, err := s.parsePage(c, volumeSortKeys, volumeSortAliases)
	if err != nil {
		return nil, err
	}
	return parseListQuery(c, page, volumeFilterKeys, filterAvailable, volumeMatcher)
}

// filterAvailable tells whether a filter exists at the request's
// microversion; older requests ignore it (Cinder's MV_ADDED_FILTERS).
func filterAvailable(key string, v apiVersion) bool {
	switch key {
	case "glance_metadata":
		return v.atLeast(apiVersion{3, 4})
	case "group_id":
		return v.atLeast(apiVersion{3, 10})
	case "created_at", "updated_at":
		return v.atLeast(mvTimeFilter)
	case "consumes_quota":
		return v.atLeast(mvConsumesQuota)
	}
	return true
}

// volumeMatcher builds the predicate of one filter. Values are compared
// the way Cinder's check_volume_filters prepares them.
func volumeMatcher(key, raw string, ver apiVersion) (func(*state.Volume) bool, error) {
	switch key {
	case "name":
		return func(v *state.Volume) bool { return v.Name == raw }, nil
	case "status":
		return func(v *state.Volume) bool { return v.Status == raw }, nil
	case "availability_zone":
		return func(v *state.Volume) bool { return v.AZ == raw }, nil
	case "project_id":
		return func(v *state.Volume) bool { return v.ProjectID == raw }, nil
	case "size":
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return never, nil
		}
		return func(v *state.Volume) bool { return v.SizeGB == n }, nil
	case "metadata":
		want, ok := parseDictLiteral(raw)
		if !ok {
			// Cinder's database layer returns nothing for a metadata
			// filter that is not a dict.
			return never, nil
		}
		return func(v *state.Volume) bool {
			for k, val := range want {
				if got, has := v.Metadata[k]; !has || got != val {
					return false
				}
			}
			return true
		}, nil
	case "bootable", "consumes_quota":
		b, err := boolFilter(key, raw, ver)
		if err != nil {
			return nil, err
		}
		if key == "bootable" {
			return func(v *state.Volume) bool { return v.Bootable == b }, nil
		}
		return func(v *state.Volume) bool { return v.ConsumesQuota == b }, nil
	case "created_at", "updated_at":
		return timeMatcher(key, raw)
	case "migration_status":
		// An exact match on the column os-reset_status sets; a volume
		// without one (NULL in Cinder) matches no value.
		return func(v *state.Volume) bool { return v.MigrationStatus != "" && v.MigrationStatus == raw }, nil
	default:
		// group_id, glance_metadata: no Kiln volume has one, so any value
		// matches nothing.
		return never, nil
	}
}

func never(*state.Volume) bool { return false }

// boolFilter is _check_boolean_filter_value: strict from 3.2, before that
// anything but a "false" spelling is true.
func boolFilter(key, raw string, ver apiVersion) (bool, error) {
	if !ver.atLeast(mvBootableFilter) {
		return raw != "False" && raw != "false" && raw != "FALSE", nil
	}
	b, ok := parseBool(raw)
	if !ok {
		return false, invalidInput("'%s = %s'", key, raw)
	}
	return b, nil
}

// timeMatcher parses a 3.60 time comparison filter: "op:time[,op:time]"
// with op one of gt, gte, eq, neq, lt, lte.
func timeMatcher(key, raw string) (func(*state.Volume) bool, error) {
	type bound struct {
		op string
		t  time.Time
	}
	var bounds []bound
	for _, unit := range strings.Split(raw, ",") {
		op, ts, ok := strings.Cut(unit, ":")
		if !ok {
			return nil, badRequest("Invalid %s value", key)
		}
		switch op {
		case "gt", "gte", "eq", "neq", "lt", "lte":
		default:
			return nil, badRequest("Invalid %s operator", op)
		}
		t, err := parseISOTime(ts)
		if err != nil {
			return nil, badRequest("Invalid %s value", ts)
		}
		bounds = append(bounds, bound{op, t})
	}
	return func(v *state.Volume) bool {
		at := v.CreatedAt
		if key == "updated_at" {
			at = v.UpdatedAt
		}
		for _, b := range bounds {
			c := at.Compare(b.t)
			ok := map[string]bool{"gt": c > 0, "gte": c >= 0, "eq": c == 0, "neq": c != 0, "lt": c < 0, "lte": c <= 0}[b.op]
			if !ok {
				return false
			}
		}
		return true
	}, nil
}

// parseISOTime accepts the ISO 8601 forms oslo's parse_isotime does in
// practice: with or without fraction and zone (no zone is UTC).
func parseISOTime(s string) (time.Time, error) {
	var err error
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05Z0700", "2006-01-02"} {
		var t time.Time
		if t, err = time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}

// parseDictLiteral reads a filter dict given as JSON or as the Python dict
// literal clients send (gophercloud: {'k':'v'}); values become strings.
func parseDictLiteral(raw string) (map[string]string, bool) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(raw), &obj); err == nil {
		out := map[string]string{}
		for k, v := range obj {
			switch t := v.(type) {
			case string:
				out[k] = t
			case float64:
				out[k] = strconv.FormatFloat(t, 'f', -1, 64)
			case bool:
				out[k] = "False"
				if t {
					out[k] = "True"
				}
			default:
				return nil, false
			}
		}
		return out, true
	}
	p := &pyParser{s: raw}
	return p.dict()
}

// pyParser reads a Python dict literal of string keys and scalar values.
type pyParser struct {
	s string
	i int
}

func (p *pyParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pyParser) eat(b byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == b {
		p.i++
		return true
	}
	return false
}

func (p *pyParser) dict() (map[string]string, bool) {
	out := map[string]string{}
	if !p.eat('{') {
		return nil, false
	}
	if p.eat('}') {
		p.space()
		if p.i != len(p.s) {
			return nil, false
		}
		return out, true
	}
	for {
		p.space()
		k, ok := p.str()
		if !ok || !p.eat(':') {
			return nil, false
		}
		p.space()
		v, ok := p.scalar()
		if !ok {
			return nil, false
		}
		out[k] = v
		if p.eat(',') {
			if p.eat('}') {
				break
			}
			continue
		}
		if p.eat('}') {
			break
		}
		return nil, false
	}
	p.space()
	if p.i != len(p.s) {
		return nil, false
	}
	return out, true
}

func (p *pyParser) str() (string, bool) {
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", false
	}
	q := p.s[p.i]
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		ch := p.s[p.i]
		p.i++
		switch {
		case ch == q:
			return b.String(), true
		case ch == '\\' && p.i < len(p.s):
			b.WriteByte(p.s[p.i])
			p.i++
		default:
			b.WriteByte(ch)
		}
	}
	return "", false
}

func (p *pyParser) scalar() (string, bool) {
	if s, ok := p.str(); ok {
		return s, true
	}
	start := p.i
	for p.i < len(p.s) && strings.IndexByte(",} \t\r\n", p.s[p.i]) < 0 {
		p.i++
	}
	tok := p.s[start:p.i]
	switch {
	case tok == "True" || tok == "False" || tok == "None":
		return tok, true
	case tok != "":
		if _, err := strconv.ParseFloat(tok, 64); err == nil {
			return tok, true
		}
	}
	return "", false
}

// listVolumes is GET volumes (summary view).
func (s *server) listVolumes(c *fiber.Ctx) error { return s.volumeList(c, false) }

// listVolumesDetail is GET volumes/detail.
func (s *server) listVolumesDetail(c *fiber.Ctx) error { return s.volumeList(c, true) }

func (s *server) volumeList(c *fiber.Ctx, detail bool) error {
	q, err := s.parseVolumeQuery(c)
	if err != nil {
		return err
	}
	st := s.b.State()
	var marker **state.Volume
	if q.page.HasMarker {
		m := st.Volume(q.page.Marker)
		if m == nil || (q.project != "" && m.ProjectID != q.project) {
			// Cinder looks the marker up as a volume: VolumeNotFound.
			return volumeNotFound(q.page.Marker)
		}
		marker = &m
	}
	matched := keepMatching(st.Volumes(state.VolumeFilter{ProjectID: q.project}), q.match)
	count := len(matched)
	page, full := window(matched, q.page, compareBy(q.page.Sort, volumeField), marker)
	items := make([]fiber.Map, len(page))
	for i, v := range page {
		if detail {
			items[i] = s.volumeDetail(c, st, v)
		} else {
			items[i] = s.volumeSummary(c, v)
		}
	}
	body := fiber.Map{"volumes": items}
	if full {
		body["volumes_links"] = s.nextLink(c, page[len(page)-1].ID)
	}
	if q.withCount {
		body["count"] = count
	}
	return c.JSON(body)
}

// keepMatching filters all in place to the items satisfying every filter
// predicate.
func keepMatching[T any](all []T, preds []func(T) bool) []T {
	matched := all[:0]
	for _, x := range all {
		if matchAll(x, preds) {
			matched = append(matched, x)
		}
	}
	return matched
}

// matchAll reports whether x satisfies every filter predicate.
func matchAll[T any](x T, preds []func(T) bool) bool {
	for _, m := range preds {
		if !m(x) {
			return false
		}
	}
	return true
}

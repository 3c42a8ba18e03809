package api

import (
	"cmp"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Snapshot lists: GET snapshots and snapshots/detail, with the pagination,
// sorting and filter rules of volume lists (listing.go, volume_list.go).

// snapshotSortKeys are the snapshot model columns Kiln has; "name" is an
// alias of display_name from 3.30 (Cinder's SNAPSHOT_SORT).
var snapshotSortKeys = []string{
	"id", "display_name", "display_description", "status", "volume_size", "volume_id",
	"progress", "project_id", "user_id", "created_at", "updated_at",
}

func snapshotField(a, b *state.Snapshot, key string) int {
	switch key {
	case "id":
		return cmpString(a.ID, b.ID)
	case "display_name":
		return cmpString(a.Name, b.Name)
	case "display_description":
		return cmpString(a.Description, b.Description)
	case "status":
		return cmpString(a.Status, b.Status)
	case "volume_size":
		return cmp.Compare(a.SizeGB, b.SizeGB)
	case "volume_id":
		return cmpString(a.VolumeID, b.VolumeID)
	case "progress":
		return cmpString(a.Progress, b.Progress)
	case "project_id":
		return cmpString(a.ProjectID, b.ProjectID)
	case "user_id":
		return cmpString(a.UserID, b.UserID)
	case "created_at":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "updated_at":
		return a.UpdatedAt.Compare(b.UpdatedAt)
	}
	return 0
}

// snapshotFilterKeys are the snapshot filters of Cinder's
// resource_filters.json, plus consumes_quota (3.65) and the admin ones.
var snapshotFilterKeys = []string{
	"name", "status", "volume_id", "metadata", "availability_zone", "consumes_quota",
	"all_tenants", "project_id",
}

// snapshotFilterAvailable tells whether a filter exists at a microversion
// (the v3 controller's MV_ADDED_FILTERS); older requests ignore it.
func snapshotFilterAvailable(key string, v apiVersion) bool {
	switch key {
	case "metadata":
		return v.atLeast(mvSnapshotMetaFilter)
	case "consumes_quota":
		return v.atLeast(mvConsumesQuota)
	}
	return true
}

// snapshotQuery is a parsed snapshot list query.
type snapshotQuery = listQuery[*state.Snapshot]

func (s *server) parseSnapshotQuery(c *fiber.Ctx, st *state.State) (*snapshotQuery, error) {
	ri := info(c)
	var aliases map[string]string
	if ri.Version.atLeast(mvSnapshotSort) {
		aliases = map[string]string{"name": "display_name"}
	}
	page, err := s.parsePage(c, snapshotSortKeys, aliases)
	if err != nil {
		return nil, err
	}
	return parseListQuery(c, page, snapshotFilterKeys, snapshotFilterAvailable,
		func(key, raw string, ver apiVersion) (func(*state.Snapshot) bool, error) {
			return snapshotMatcher(st, key, raw, ver)
		})
}

// snapshotMatcher builds the predicate of one filter.
func snapshotMatcher(st *state.State, key, raw string, ver apiVersion) (func(*state.Snapshot) bool, error) {
	switch key {
	case "name":
		return func(sn *state.Snapshot) bool { return sn.Name == raw }, nil
	case "status":
		return func(sn *state.Snapshot) bool { return sn.Status == raw }, nil
	case "volume_id":
		return func(sn *state.Snapshot) bool { return sn.VolumeID == raw }, nil
	case "project_id":
		return func(sn *state.Snapshot) bool { return sn.ProjectID == raw }, nil
	case "availability_zone":
		// A snapshot is in its volume's zone.
		return func(sn *state.Snapshot) bool {
			v := st.Volume(sn.VolumeID)
			return v != nil && v.AZ == raw
		}, nil
	case "metadata":
		want, ok := parseDictLiteral(raw)
		if !ok {
			return func(*state.Snapshot) bool { return false }, nil
		}
		return func(sn *state.Snapshot) bool {
			for k, val := range want {
				if got, has := sn.Metadata[k]; !has || got != val {
					return false
				}
			}
			return true
		}, nil
	default: // consumes_quota
		b, err := boolFilter(key, raw, ver)
		if err != nil {
			return nil, err
		}
		return func(sn *state.Snapshot) bool { return sn.ConsumesQuota == b }, nil
	}
}

// listSnapshots is GET snapshots (summary view).
func (s *server) listSnapshots(c *fiber.Ctx) error { return s.snapshotList(c, false) }

// listSnapshotsDetail is GET snapshots/detail.
func (s *server) listSnapshotsDetail(c *fiber.Ctx) error { return s.snapshotList(c, true) }

func (s *server) snapshotList(c *fiber.Ctx, detail bool) error {
	st := s.b.State()
	q, err := s.parseSnapshotQuery(c, st)
	if err != nil {
		return err
	}
	var marker **state.Snapshot
	if q.page.HasMarker {
		m := st.Snapshot(q.page.Marker)
		if m == nil || (q.project != "" && m.ProjectID != q.project) {
			// Cinder looks the marker up as a snapshot.
			return snapshotNotFound(q.page.Marker)
		}
		marker = &m
	}
	matched := keepMatching(st.Snapshots(state.SnapshotFilter{ProjectID: q.project}), q.match)
	count := len(matched)
	page, full := window(matched, q.page, compareBy(q.page.Sort, snapshotField), marker)
	items := make([]fiber.Map, len(page))
	for i, sn := range page {
		if detail {
			items[i] = snapshotDetail(c, sn, true)
		} else {
			items[i] = snapshotSummary(sn)
		}
	}
	body := fiber.Map{"snapshots": items}
	if full {
		body["snapshots_links"] = s.nextLink(c, page[len(page)-1].ID)
	}
	if q.withCount {
		body["count"] = count
	}
	return c.JSON(body)
}

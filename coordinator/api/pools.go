package api

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/placement"
)

// Pools (cinder/api/contrib/scheduler_stats.py) and services
// (cinder/api/contrib/services.py).

// poolView is one pool with its capacity as this node knows it.
type poolView struct {
	pool  *state.Pool
	use   state.PoolUse
	cap   gossip.PoolCapacity
	known bool
}

// placementPool is the pool as the placement engine sees it.
func (p poolView) placementPool() placement.Pool {
	c := p.cap
	if !p.known {
		c.TotalKind, c.FreeKind = storage.Unknown, storage.Unknown
	}
	return state.PlacementPool(p.pool, p.use, c.TotalKind, c.TotalGB, c.FreeKind, c.FreeGB)
}

// capacityValue renders a capacity as Cinder does: a number, or the
// strings "infinite" / "unknown".
func capacityValue(known bool, kind storage.CapacityKind, gb float64) any {
	switch {
	case !known || kind == storage.Unknown:
		return "unknown"
	case kind == storage.Infinite:
		return "infinite"
	default:
		return gb
	}
}

// typedCapabilities are capability keys clients decode as non-strings
// (gophercloud's schedulerstats.Capabilities); a pool's string values for
// them are converted.
var typedCapabilities = map[string]string{
	"multiattach": "bool", "sparse_copy_volume": "bool", "QoS_support": "bool", "online_extend_support": "bool",
	"thin_provisioning_support": "bool", "thick_provisioning_support": "bool",
	"total_volumes": "int", "reserved_percentage": "int",
}

func capabilityValue(key, v string) any {
	switch typedCapabilities[key] {
	case "bool":
		if b, ok := parseBool(v); ok {
			return b
		}
	case "int":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

// capabilities is the detail of a pool: its registered capabilities with
// the standard ones (computed here) taking precedence.
func (p poolView) capabilities(at time.Time) fiber.Map {
	caps := fiber.Map{}
	for k, v := range p.pool.Info.Capabilities {
		caps[k] = capabilityValue(k, v)
	}
	pp := p.placementPool()
	var ratio any = pp.MaxOverSubscriptionRatio
	if pp.OverSubscriptionAuto {
		ratio = "auto"
	}
	provisioned := float64(p.use.AllocatedGB)
	if p.known {
		provisioned = max(provisioned, p.cap.ProvisionedGB)
	}
	info := p.pool.Info
	standard := fiber.Map{
		"pool_name":                   info.Name,
		"volume_backend_name":         info.Backend,
		"vendor_name":                 "Kiln",
		"driver_version":              info.DriverVersion,
		"storage_protocol":            info.Protocol,
		"total_capacity_gb":           capacityValue(p.known, p.cap.TotalKind, p.cap.TotalGB),
		"free_capacity_gb":            capacityValue(p.known, p.cap.FreeKind, p.cap.FreeGB),
		"allocated_capacity_gb":       p.use.AllocatedGB,
		"provisioned_capacity_gb":     provisioned,
		"total_volumes":               p.use.Volumes,
		"reserved_percentage":         info.ReservedPercentage,
		"max_over_subscription_ratio": ratio,
		"thin_provisioning_support":   info.ThinProvisioning,
		"thick_provisioning_support":  info.ThickProvisioning,
		"QoS_support":                 false,
		"timestamp":                   formatTime(at),
		"updated":                     formatTime(at),
	}
	maps.Copy(standard, orphanCapabilities(p.pool.Orphans))
	maps.Copy(caps, standard)
	return caps
}

// orphanCapabilities shows what the leader's last inventory of a pool found
// there that Kiln does not place there (never deleted by Kiln): counts and
// up to state.MaxOrphanIDs IDs of each kind.
func orphanCapabilities(o *state.PoolOrphans) fiber.Map {
	m := fiber.Map{
		"kiln:orphan_volumes": 0, "kiln:orphan_volume_ids": []string{},
		"kiln:orphan_snapshots": 0, "kiln:orphan_snapshot_ids": []string{},
	}
	if o == nil {
		return m
	}
	m["kiln:orphan_volumes"], m["kiln:orphan_snapshots"] = o.Volumes, o.Snapshots
	if o.VolumeIDs != nil {
		m["kiln:orphan_volume_ids"] = o.VolumeIDs
	}
	if o.SnapshotIDs != nil {
		m["kiln:orphan_snapshot_ids"] = o.SnapshotIDs
	}
	m["kiln:orphans_found_at"] = formatTime(o.At)
	return m
}

// poolFilterKeys are get_pools' filters (resource_filters.json "pool").
var poolFilterKeys = []string{"name", "volume_type"}

// getPools is GET scheduler-stats/get_pools (?detail, name, volume_type
// from 3.35).
func (s *server) getPools(c *fiber.Ctx) error {
	ver := info(c).Version
	detail, err := boolParam(c, "detail")
	if err != nil {
		return err
	}
	var invalid []string
	for _, k := range queryKeys(c) {
		if k != "detail" && !slices.Contains(poolFilterKeys, k) {
			invalid = append(invalid, k)
		}
	}
	if len(invalid) > 0 && ver.atLeast(mvPoolFilter) {
		return badRequest("Invalid filters %s are found in query options.", strings.Join(invalid, ","))
	}
	st := s.b.State()
	var specs map[string]string
	if ref, ok := queryValue(c, "volume_type"); ok && ver.atLeast(mvPoolTypeFilter) {
		t, err := resolveType(st, ref)
		if err != nil {
			return err
		}
		specs = t.ExtraSpecs
	}
	name, byName := queryValue(c, "name")
	pools := []fiber.Map{}
	for _, p := range st.Pools() {
		if byName && p.Name != name {
			continue
		}
		pv := poolView{pool: p, use: st.PoolUsage(p.Name)}
		pv.cap, pv.known = s.b.PoolCapacity(p.Name)
		if len(specs) > 0 {
			if ok, _ := placement.MatchExtraSpecs(pv.placementPool(), specs); !ok {
				continue
			}
		}
		item := fiber.Map{"name": p.Name}
		if detail {
			at := p.RegisteredAt
			if pv.known {
				// Gossip carries the latest capacity; it is current now.
				at = now()
			}
			item["capabilities"] = pv.capabilities(at)
		}
		pools = append(pools, item)
	}
	return c.JSON(fiber.Map{"pools": pools})
}

// listServices is GET os-services (?binary=, ?host=).
func (s *server) listServices(c *fiber.Ctx) error {
	ver := info(c).Version
	host, _ := queryValue(c, "host")
	binary, _ := queryValue(c, "binary")
	out := []fiber.Map{}
	for _, svc := range s.b.Services() {
		if (host != "" && svc.Host != host) || (binary != "" && svc.Binary != binary) {
			continue
		}
		out = append(out, serviceView(svc, ver))
	}
	return c.JSON(fiber.Map{"services": out})
}

func serviceView(svc ServiceStatus, ver apiVersion) fiber.Map {
	upDown := func(up bool) string {
		if up {
			return "up"
		}
		return "down"
	}
	status := "enabled"
	if svc.Disabled {
		status = "disabled"
	}
	m := fiber.Map{
		"binary":          svc.Binary,
		"host":            svc.Host,
		"zone":            svc.Zone,
		"status":          status,
		"state":           upDown(svc.Up),
		"updated_at":      formatTime(svc.UpdatedAt),
		"disabled_reason": nullable(svc.DisabledReason),
	}
	if ver.atLeast(mvClusterSupport) {
		m["cluster"] = nil
	}
	if svc.Binary == state.BinaryVolume {
		m["replication_status"] = "disabled"
		m["active_backend_id"] = nil
		m["frozen"] = false
		if ver.atLeast(mvBackendState) {
			m["backend_state"] = upDown(svc.Up)
		}
	}
	return m
}

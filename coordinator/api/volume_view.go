package api

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Views of volumes, as cinder/api/v2/views/volumes.py and
// cinder/api/v3/views/volumes.py build them (admin view: every caller is an
// admin under noauth).

// resourceLinks are Cinder's self and bookmark links of a resource. Like
// Cinder, they name the caller's project.
func (s *server) resourceLinks(c *fiber.Ctx, collection, id string) []fiber.Map {
	base, project := s.baseURL(c), info(c).Project
	return []fiber.Map{
		{"rel": "self", "href": base + "/v3/" + project + "/" + collection + "/" + id},
		{"rel": "bookmark", "href": base + "/" + project + "/" + collection + "/" + id},
	}
}

// volumeSummary is an item of GET volumes.
func (s *server) volumeSummary(c *fiber.Ctx, v *state.Volume) fiber.Map {
	return fiber.Map{"id": v.ID, "name": nullable(v.Name), "links": s.resourceLinks(c, "volumes", v.ID)}
}

// volumeDetail is the detail view of a volume at the request's
// microversion.
func (s *server) volumeDetail(c *fiber.Ctx, st *state.State, v *state.Volume) fiber.Map {
	ver := info(c).Version
	typeName := ""
	if t := st.Type(v.TypeID); t != nil {
		typeName = t.Name
	}
	m := fiber.Map{
		"id":                  v.ID,
		"status":              v.Status,
		"size":                v.SizeGB,
		"availability_zone":   v.AZ,
		"created_at":          formatTime(v.CreatedAt),
		"updated_at":          formatTime(v.UpdatedAt),
		"name":                nullable(v.Name),
		"description":         nullable(v.Description),
		"volume_type":         nullable(typeName),
		"snapshot_id":         nullable(v.SnapshotID),
		"source_volid":        nullable(v.SourceVolID),
		"metadata":            cloneMetadata(v.Metadata),
		"links":               s.resourceLinks(c, "volumes", v.ID),
		"user_id":             v.UserID,
		"bootable":            strconv.FormatBool(v.Bootable),
		"encrypted":           false,
		"replication_status":  "disabled",
		"consistencygroup_id": nil,
		"multiattach":         v.Multiattach,
		"attachments":         volumeAttachmentsView(st, v.ID),
		"migration_status":    nil,

		"os-vol-host-attr:host":          nullable(v.Pool),
		"os-vol-tenant-attr:tenant_id":   v.ProjectID,
		"os-vol-mig-status-attr:migstat": nil,
		"os-vol-mig-status-attr:name_id": nil,
	}
	if ver.atLeast(mvGroupVolume) {
		m["group_id"] = nil
	}
	if ver.atLeast(mvProviderID) {
		m["provider_id"] = nil
	}
	if ver.atLeast(mvSharedTargets) {
		// Every Kiln export is a target of its own.
		m["shared_targets"] = false
		m["service_uuid"] = nil
		if p := st.Pool(v.Pool); p != nil {
			m["service_uuid"] = serviceUUID(state.BinaryVolume, p.Agent)
		}
	}
	if ver.atLeast(mvClusterName) {
		m["cluster_name"] = nil
	}
	if ver.atLeast(mvVolumeTypeID) {
		m["volume_type_id"] = v.TypeID
	}
	if ver.atLeast(mvEncryptionKeyID) {
		m["encryption_key_id"] = nil
	}
	if ver.atLeast(mvConsumesQuota) {
		m["consumes_quota"] = v.ConsumesQuota
	}
	if len(v.ImageMetadata) > 0 {
		m["volume_image_metadata"] = imageMetadataView(v)
	}
	if v.MigrationStatus != "" {
		m["migration_status"] = v.MigrationStatus
		m["os-vol-mig-status-attr:migstat"] = v.MigrationStatus
	}
	if v.ErrorMessage != "" {
		// Not Cinder: the reason of the last failure, where clients that
		// look can find it without the messages API.
		m["kiln:error"] = v.ErrorMessage
	}
	return m
}

// serviceUUID derives a stable UUID (version 5 layout) for a service, as
// Cinder gives every service row a uuid that volumes reference.
func serviceUUID(binary, host string) string {
	sum := sha1.Sum([]byte("kiln-service:" + binary + "/" + host))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

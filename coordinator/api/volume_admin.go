package api

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/storage"
)

// Admin and miscellaneous volume actions (cinder/api/contrib/admin_actions.py
// VolumeAdminController, volume_actions.py, volume_image_metadata.py;
// schemas admin_actions.py reset, volume_actions.py,
// volume_image_metadata.py) and GET volumes/summary (cinder/api/v3/volumes.py).

// pyTruthy is Python's truth value of a decoded JSON value.
func pyTruthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case json.Number:
		f, err := t.Float64()
		return err != nil || f != 0
	case []any:
		return len(t) > 0
	case object:
		return len(t) > 0
	}
	return true
}

// pyList renders strings as a Python list's str().
func pyList(items []string) string {
	t := pyTuple(items)
	return "[" + t[1:len(t)-1] + "]"
}

// resetStatusField reads one optional string-or-null field of
// os-reset_status and checks its format (lower-cased against valid).
func resetStatusField(obj object, key, noun, validRepr string, valid []string) (string, error) {
	raw, ok := obj[key]
	if !ok {
		return "", nil
	}
	s, _, err := stringField(key, raw, true, 0, 0)
	if err != nil {
		return "", err
	}
	if s != "" && !slices.Contains(valid, strings.ToLower(s)) {
		return "", badRequest("%s: %s is invalid, valid statuses are: %s.", noun, s, validRepr)
	}
	return strings.ToLower(s), nil
}

// resetVolumeStatus is os-reset_status {status, attach_status,
// migration_status} (admin, 202). The state machine refuses deleting, and
// in-use while the volume has no attachments; attach_status detached
// removes the volume's attachments.
func (s *server) resetVolumeStatus(c *fiber.Ctx, arg any) error {
	obj, ok := arg.(object)
	if !ok {
		return typeError("os-reset_status", arg, "object")
	}
	if !pyTruthy(obj["status"]) && !pyTruthy(obj["attach_status"]) && !pyTruthy(obj["migration_status"]) {
		return badRequest("Must specify 'status', 'attach_status' or 'migration_status' for update.")
	}
	status, err := resetStatusField(obj, "status", "Volume status", pyTuple(state.VolumeStatuses), state.VolumeStatuses)
	if err != nil {
		return err
	}
	attach, err := resetStatusField(obj, "attach_status", "Volume attach status", pyList(state.VolumeAttachStatuses), state.VolumeAttachStatuses)
	if err != nil {
		return err
	}
	migration, err := resetStatusField(obj, "migration_status", "Volume migration status", pyTuple(state.VolumeMigrationStatuses), state.VolumeMigrationStatuses)
	if err != nil {
		return err
	}
	if err := rejectExtra("os-reset_status", obj, "status", "attach_status", "migration_status"); err != nil {
		return err
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	cmd := state.ResetVolumeStatus{ID: v.ID, ProjectID: info(c).Project, Status: status,
		AttachStatus: attach, MigrationStatus: migration, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// forceDeleteVolume is os-force_delete (202): DELETE without the status
// check. Its argument is not read ({}, null and "" are all sent).
func (s *server) forceDeleteVolume(c *fiber.Ctx, _ any) error {
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DeleteVolume{ID: v.ID, ProjectID: info(c).Project, Force: true, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// forceDetachVolume is os-force_detach {attachment_id, connector} (admin,
// 202): Cinder's terminate_connection(force=True) then detach, without the
// status checks of os-detach. The export for the connector (or, without
// one, the named attachment's) is removed, an export already gone being
// fine; then the named attachment, or every attachment of the volume, is
// dropped and the statuses recomputed.
func (s *server) forceDetachVolume(c *fiber.Ctx, arg any) error {
	obj, err := actionObject("os-force_detach", arg, "attachment_id", "connector")
	if err != nil {
		return err
	}
	attachmentID, err := optionalUUIDField("attachment_id", obj["attachment_id"])
	if err != nil {
		return err
	}
	var conn storage.Connector
	haveConn := false
	if raw := obj["connector"]; raw != nil {
		pc, err := parseConnector(raw)
		if err != nil {
			return err
		}
		conn, haveConn = pc.Connector, true
	}
	st, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if attachmentID != "" {
		a := st.Attachment(attachmentID)
		if a == nil || a.VolumeID != v.ID {
			return notFound("Volume attachment could not be found with filter: attachment_id = %s.", attachmentID)
		}
		if !haveConn && a.Connector != nil {
			conn = *a.Connector
		}
	}
	if v.Pool != "" {
		if err := s.b.Unexport(c.UserContext(), v.ID, conn); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return backendError("Unable to terminate volume connection from backend", err)
		}
	}
	cmd := state.ForceDetachVolume{ID: v.ID, ProjectID: info(c).Project, AttachmentID: attachmentID, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// actionBool reads the required parameter_types.boolean key of an action.
func actionBool(name, key string, arg any) (bool, error) {
	obj, err := actionObject(name, arg, key)
	if err != nil {
		return false, err
	}
	raw, ok := obj[key]
	if !ok {
		return false, requiredProperty(key)
	}
	return boolField(key, raw, false)
}

// setBootable is os-set_bootable {bootable} (200, no body).
func (s *server) setBootable(c *fiber.Ctx, arg any) error {
	bootable, err := actionBool("os-set_bootable", "bootable", arg)
	if err != nil {
		return err
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.SetVolumeBootable{ID: v.ID, ProjectID: info(c).Project, Bootable: bootable, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusOK)
}

// updateReadonlyFlag is os-update_readonly_flag {readonly} (202); the
// volume must be available.
func (s *server) updateReadonlyFlag(c *fiber.Ctx, arg any) error {
	readonly, err := actionBool("os-update_readonly_flag", "readonly", arg)
	if err != nil {
		return err
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.SetVolumeReadOnly{ID: v.ID, ProjectID: info(c).Project, ReadOnly: readonly, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// maxMySQLText is the mysql_text format's limit.
const maxMySQLText = 65535

// imageMetadataMap checks parameter_types.image_metadata: keys of the
// metadata pattern, string values of at most 65535 characters.
func imageMetadataMap(v any) (map[string]string, error) {
	obj, ok := v.(object)
	if !ok {
		return nil, typeError("metadata", v, "object")
	}
	var extra []string
	for k := range obj {
		if !metadataKey.MatchString(k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		return nil, additionalProperties("metadata", obj, extra)
	}
	out := make(map[string]string, len(obj))
	for _, k := range sortedKeys(obj) {
		val, isStr := obj[k].(string)
		if !isStr {
			return nil, typeError(k, obj[k], "string")
		}
		if utf8.RuneCountInString(val) > maxMySQLText {
			return nil, fieldError(k, val, pyRepr(val)+" is not a 'mysql_text'")
		}
		out[k] = val
	}
	return out, nil
}

func imageMetadataView(v *state.Volume) map[string]string {
	m := maps.Clone(v.ImageMetadata)
	if m == nil {
		m = map[string]string{}
	}
	return m
}

// setImageMetadata is os-set_image_metadata {metadata} (200): merges the
// keys and answers with the volume's whole image metadata.
func (s *server) setImageMetadata(c *fiber.Ctx, arg any) error {
	obj, err := actionObject("os-set_image_metadata", arg, "metadata")
	if err != nil {
		return err
	}
	raw, ok := obj["metadata"]
	if !ok {
		return requiredProperty("metadata")
	}
	meta, err := imageMetadataMap(raw)
	if err != nil {
		return err
	}
	st, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.SetImageMetadata{ID: v.ID, ProjectID: info(c).Project, Metadata: meta, At: now()}); err != nil {
		return err
	}
	if v = st.Volume(v.ID); v == nil {
		return volumeNotFound(c.Params("id"))
	}
	return c.JSON(fiber.Map{"metadata": imageMetadataView(v)})
}

// unsetImageMetadata is os-unset_image_metadata {key} (200, no body).
func (s *server) unsetImageMetadata(c *fiber.Ctx, arg any) error {
	obj, err := actionObject("os-unset_image_metadata", arg, "key")
	if err != nil {
		return err
	}
	raw, ok := obj["key"]
	if !ok {
		return requiredProperty("key")
	}
	key, _, err := stringField("key", raw, false, 1, 255)
	if err != nil {
		return err
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DeleteImageMetadata{ID: v.ID, ProjectID: info(c).Project, Key: key, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusOK)
}

// showImageMetadata is os-show_image_metadata (200); its argument is not read.
func (s *server) showImageMetadata(c *fiber.Ctx, _ any) error {
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"metadata": imageMetadataView(v)})
}

// mvVolumeSummary and mvSummaryMetadata are the microversions of GET
// volumes/summary and of its metadata.
var (
	mvVolumeSummary   = apiVersion{3, 12}
	mvSummaryMetadata = apiVersion{3, 36}
)

// showVolumeSummary is GET volumes/summary (3.12): count and total size of the
// caller's volumes (every project's with all_tenants), and from 3.36 each
// metadata key with its distinct values. Other query parameters are
// ignored, as Cinder's summary ignores filters.
func (s *server) showVolumeSummary(c *fiber.Ctx) error {
	ri := info(c)
	if !ri.Version.atLeast(mvVolumeSummary) {
		return notFound(msgNotFound)
	}
	allTenants, err := boolParam(c, "all_tenants")
	if err != nil {
		return err
	}
	f := state.VolumeFilter{ProjectID: ri.Project}
	if allTenants {
		f.ProjectID = ""
	}
	var count, size int64
	values := map[string]map[string]bool{}
	for _, v := range s.b.State().Volumes(f) {
		count++
		size += v.SizeGB
		for k, val := range v.Metadata {
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][val] = true
		}
	}
	summary := fiber.Map{"total_count": count, "total_size": size}
	if ri.Version.atLeast(mvSummaryMetadata) {
		meta := make(map[string][]string, len(values))
		for k, set := range values {
			l := make([]string, 0, len(set))
			for val := range set {
				l = append(l, val)
			}
			sort.Strings(l)
			meta[k] = l
		}
		summary["metadata"] = meta
	}
	return c.JSON(fiber.Map{"volume-summary": summary})
}

package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
)

// Attachments API (3.27+, cinder/api/v3/attachments.py, views
// cinder/api/v3/views/attachments.py, schemas attachments.py) and the
// legacy attach actions of volumes (volume_actions.py).

var (
	mvAttachments        = apiVersion{3, 27}
	mvAttachmentComplete = apiVersion{3, 44}
	mvAttachMode         = apiVersion{3, 54}
)

// parsedConnector is a connector body: the fields Kiln's drivers use, and
// enforce_multipath, which Cinder copies into connection_info.
type parsedConnector struct {
	storage.Connector
	EnforceMultipath bool
	// Mode is the connector's "mode", the attach mode clients send before
	// 3.54 (gophercloud documents it).
	Mode string
}

// parseConnector checks a connector object. os-brick connectors carry
// arbitrary keys (wwpns, nqn, uuid, ...): unknown keys are accepted and
// ignored, known ones must have their type.
func parseConnector(v any) (parsedConnector, error) {
	var pc parsedConnector
	obj, ok := v.(object)
	if !ok {
		return pc, typeError("connector", v, "object")
	}
	strs := map[string]*string{"host": &pc.Host, "ip": &pc.IP, "initiator": &pc.Initiator,
		"platform": &pc.Platform, "os_type": &pc.OSType, "mode": &pc.Mode}
	for _, k := range sortedKeys(obj) {
		raw := obj[k]
		if p, ok := strs[k]; ok {
			s, _, err := stringField(k, raw, true, 0, 255)
			if err != nil {
				return pc, err
			}
			if k == "mode" && s != "" && s != state.AttachModeRW && s != state.AttachModeRO {
				return pc, fieldError(k, raw, pyRepr(raw)+" is not one of ['rw', 'ro']")
			}
			*p = s
			continue
		}
		switch k {
		case "multipath", "enforce_multipath":
			b, ok := raw.(bool)
			if !ok && raw != nil {
				return pc, typeError(k, raw, "boolean")
			}
			if k == "multipath" {
				pc.Multipath = b
			} else {
				pc.EnforceMultipath = b
			}
		}
	}
	return pc, nil
}

// backendError renders a failed Export/Unexport: a refusal by the driver is
// Cinder's VolumeBackendAPIException (500); anything else (agent
// unreachable) is infrastructure (503).
func backendError(what string, err error) error {
	// An answer from the agent (its driver refused or failed) is Cinder's
	// VolumeBackendAPIException, with the reason; only an agent that did
	// not answer is "unavailable".
	if agentrpc.IsDefinite(err) {
		return &apiError{Status: http.StatusInternalServerError,
			Msg: fmt.Sprintf("Bad or unexpected response from the storage volume backend API: %s: %v", what, err)}
	}
	for _, sentinel := range []error{storage.ErrNotFound, storage.ErrExists, storage.ErrNoSpace, storage.ErrInvalid} {
		if errors.Is(err, sentinel) {
			return &apiError{Status: http.StatusInternalServerError,
				Msg: fmt.Sprintf("Bad or unexpected response from the storage volume backend API: %s: %v", what, err)}
		}
	}
	return &unavailableError{err: fmt.Errorf("%s: %w", what, err)}
}

// connectionInfo is Cinder's connection_info for a volume: the driver's
// answer plus access_mode and, for front-end QoS, qos_specs.
func connectionInfo(st *state.State, v *state.Volume, ci storage.ConnectionInfo, mode string) fiber.Map {
	data := maps.Clone(ci.Data)
	if data == nil {
		data = map[string]any{}
	}
	access := state.AttachModeRW
	if v.ReadOnly || mode == state.AttachModeRO {
		access = state.AttachModeRO
	}
	data["access_mode"] = access
	if t := st.Type(v.TypeID); t != nil && t.QoSSpecsID != "" {
		if q := st.QoSSpec(t.QoSSpecsID); q != nil && (q.Consumer == state.QoSFrontEnd || q.Consumer == state.QoSBoth) {
			data["qos_specs"] = maps.Clone(q.Specs)
		}
	}
	out := fiber.Map{"driver_volume_type": ci.DriverVolumeType, "data": data}
	if ci.MountPointBase != "" {
		out["mount_point_base"] = ci.MountPointBase
	}
	return out
}

// export asks the backend for a volume's connection info.
func (s *server) export(c *fiber.Ctx, v *state.Volume, conn storage.Connector) (storage.ConnectionInfo, error) {
	if v.Pool == "" {
		return storage.ConnectionInfo{}, badRequest("Invalid volume: Volume %s has no host.", v.ID)
	}
	ci, err := s.b.Export(c.UserContext(), v.ID, conn)
	if err != nil {
		return ci, backendError("Unable to fetch connection information from backend", err)
	}
	return ci, nil
}

func (s *server) unexport(c *fiber.Ctx, v *state.Volume, conn storage.Connector) error {
	if v.Pool == "" {
		return nil // nothing was ever exported
	}
	if err := s.b.Unexport(c.UserContext(), v.ID, conn); err != nil {
		return backendError("Unable to terminate volume connection", err)
	}
	return nil
}

// ---- views ----

// attachTime is the attachments view's _normalize: "" when unset.
func attachTime(t any) any {
	if t == nil {
		return ""
	}
	return t
}

func attachmentSummary(a *state.Attachment) fiber.Map {
	return fiber.Map{"id": a.ID, "status": a.AttachStatus, "instance": nullable(a.InstanceUUID), "volume_id": a.VolumeID}
}

func attachmentDetail(a *state.Attachment) fiber.Map {
	m := attachmentSummary(a)
	m["attached_at"] = attachTime(formatTime(a.AttachedAt))
	m["detached_at"] = attachTime(formatTime(a.DetachedAt))
	m["attach_mode"] = a.AttachMode
	var ci any
	if a.ConnectionInfo != "" {
		var parsed map[string]any
		if json.Unmarshal([]byte(a.ConnectionInfo), &parsed) == nil {
			ci = parsed
		}
	}
	m["connection_info"] = ci
	return m
}

// volumeAttachmentsView is the volume view's attachments: the attached
// ones, as cinder/api/v2/views/volumes.py _get_attachments lists them.
func volumeAttachmentsView(st *state.State, volumeID string) []fiber.Map {
	out := []fiber.Map{}
	for _, a := range st.VolumeAttachments(volumeID) {
		if a.AttachStatus != state.AttachAttached {
			continue
		}
		out = append(out, fiber.Map{
			"id": a.VolumeID, "attachment_id": a.ID, "volume_id": a.VolumeID,
			"server_id": nullable(a.InstanceUUID), "host_name": nullable(a.HostName),
			"device": nullable(a.Mountpoint), "attached_at": formatTime(a.AttachedAt),
		})
	}
	return out
}

// ---- routes ----

func requireAttachments(c *fiber.Ctx) error {
	if !info(c).Version.atLeast(mvAttachments) {
		return notFound(msgNotFound)
	}
	return nil
}

// findAttachment returns the caller's attachment or 404.
func (s *server) findAttachment(c *fiber.Ctx) (*state.State, *state.Attachment, error) {
	if err := requireAttachments(c); err != nil {
		return nil, nil, err
	}
	st := s.b.State()
	id := c.Params("id")
	a := st.Attachment(id)
	if a == nil || a.ProjectID != info(c).Project {
		return nil, nil, notFound("Volume attachment could not be found with filter: attachment_id = %s.", id)
	}
	return st, a, nil
}

func (s *server) respondAttachment(c *fiber.Ctx, st *state.State, id string) error {
	a := st.Attachment(id)
	if a == nil {
		return notFound("Volume attachment could not be found with filter: attachment_id = %s.", id)
	}
	return c.JSON(fiber.Map{"attachment": attachmentDetail(a)})
}

// encodeConnectionInfo renders connection info for the attachment record.
func encodeConnectionInfo(ci fiber.Map) string {
	b, _ := json.Marshal(ci) // plain JSON values: cannot fail
	return string(b)
}

// createAttachment is POST attachments (200). The volume is reserved
// first; with a connector the backend exports it and the attachment is
// updated with the connection info, as Cinder's attachment_create does.
func (s *server) createAttachment(c *fiber.Ctx) error {
	if err := requireAttachments(c); err != nil {
		return err
	}
	ri := info(c)
	att, err := decodeWrapped(c, "attachment")
	if err != nil {
		return err
	}
	allowed := []string{"volume_uuid", "instance_uuid", "connector"}
	if ri.Version.atLeast(mvAttachMode) {
		allowed = append(allowed, "mode")
	}
	if err := rejectExtra("attachment", att, allowed...); err != nil {
		return err
	}
	rawVol, ok := att["volume_uuid"]
	if !ok {
		return requiredProperty("volume_uuid")
	}
	volID, isStr := rawVol.(string)
	if !isStr {
		return typeError("volume_uuid", rawVol, "string")
	}
	if !isUUID(volID) {
		return fieldError("volume_uuid", rawVol, pyRepr(rawVol)+" is not a 'uuid'")
	}
	instance := ""
	if rawInst, ok := att["instance_uuid"]; ok && rawInst != nil && rawInst != "" {
		s, isStr := rawInst.(string)
		if !isStr {
			return typeError("instance_uuid", rawInst, "string")
		}
		if !isUUID(s) {
			return fieldError("instance_uuid", rawInst, pyRepr(rawInst)+" is not a 'uuid'")
		}
		instance = s
	}
	var conn *parsedConnector
	if rawConn, ok := att["connector"]; ok && rawConn != nil {
		pc, err := parseConnector(rawConn)
		if err != nil {
			return err
		}
		conn = &pc
	}
	mode := ""
	if rawMode, ok := att["mode"]; ok {
		m, isStr := rawMode.(string)
		if !isStr {
			return typeError("mode", rawMode, "string")
		}
		if m != state.AttachModeRW && m != state.AttachModeRO {
			return fieldError("mode", rawMode, pyRepr(rawMode)+" is not one of ['rw', 'ro']")
		}
		mode = m
	}
	if mode == "" && conn != nil {
		mode = conn.Mode
	}
	st := s.b.State()
	v := visibleVolume(st, volID, ri.Project)
	if v == nil {
		return volumeNotFound(volID)
	}
	id := newUUID()
	a := state.Attachment{ID: id, VolumeID: v.ID, ProjectID: ri.Project, InstanceUUID: instance,
		AttachMode: mode, CreatedAt: now()}
	if err := s.apply(c, state.CreateAttachment{Attachment: a}); err != nil {
		return err
	}
	if conn != nil {
		if err := s.connectAttachment(c, st, id, *conn); err != nil {
			// Undo the reservation: the attachment never reached a consumer.
			if derr := s.apply(c, state.DeleteAttachment{ID: id, ProjectID: ri.Project, At: now()}); derr != nil {
				s.log.Warn("attachment rollback failed", "attachment_id", id, "err", derr)
			}
			return err
		}
	}
	return s.respondAttachment(c, st, id)
}

// connectAttachment exports the attachment's volume for conn and records
// the connector and connection info.
func (s *server) connectAttachment(c *fiber.Ctx, st *state.State, id string, conn parsedConnector) error {
	a := st.Attachment(id)
	if a == nil {
		return notFound("Volume attachment could not be found with filter: attachment_id = %s.", id)
	}
	v := st.Volume(a.VolumeID)
	if v == nil {
		return volumeNotFound(a.VolumeID)
	}
	if strings.Contains(v.Status, "error") {
		return &apiError{Status: http.StatusConflict,
			Msg: fmt.Sprintf("Unable to update the attachment: volume %s is in %s status.", v.ID, v.Status)}
	}
	ci, err := s.export(c, v, conn.Connector)
	if err != nil {
		return err
	}
	mode := a.AttachMode
	if mode == state.AttachModeNull {
		mode = ""
	}
	view := connectionInfo(st, v, ci, mode)
	view["attachment_id"] = a.ID
	view["enforce_multipath"] = conn.EnforceMultipath
	return s.apply(c, state.UpdateAttachment{ID: id, ProjectID: a.ProjectID, Connector: conn.Connector,
		ConnectionInfo: encodeConnectionInfo(view), At: now()})
}

// showAttachment is GET attachments/{id}.
func (s *server) showAttachment(c *fiber.Ctx) error {
	_, a, err := s.findAttachment(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"attachment": attachmentDetail(a)})
}

// updateAttachment is PUT attachments/{id} {"attachment":{"connector":{}}}.
func (s *server) updateAttachment(c *fiber.Ctx) error {
	st, a, err := s.findAttachment(c)
	if err != nil {
		return err
	}
	att, err := decodeWrapped(c, "attachment")
	if err != nil {
		return err
	}
	if err := rejectExtra("attachment", att, "connector"); err != nil {
		return err
	}
	rawConn, ok := att["connector"]
	if !ok {
		return requiredProperty("connector")
	}
	conn, err := parseConnector(rawConn)
	if err != nil {
		return err
	}
	if err := s.connectAttachment(c, st, a.ID, conn); err != nil {
		return err
	}
	return s.respondAttachment(c, st, a.ID)
}

// deleteAttachment is DELETE attachments/{id} (200): the export is removed
// and the volume's remaining attachments are returned.
func (s *server) deleteAttachment(c *fiber.Ctx) error {
	st, a, err := s.findAttachment(c)
	if err != nil {
		return err
	}
	if v := st.Volume(a.VolumeID); v != nil && a.Connector != nil {
		if err := s.unexport(c, v, *a.Connector); err != nil {
			return err
		}
	}
	if err := s.apply(c, state.DeleteAttachment{ID: a.ID, ProjectID: a.ProjectID, At: now()}); err != nil {
		return err
	}
	items := []fiber.Map{}
	for _, o := range st.VolumeAttachments(a.VolumeID) {
		items = append(items, attachmentSummary(o))
	}
	return c.JSON(fiber.Map{"attachments": items})
}

var attachmentActions = map[string]action{
	"os-complete": {since: mvAttachmentComplete, run: (*server).completeAttachment},
}

// attachmentAction is POST attachments/{id}/action.
func (s *server) attachmentAction(c *fiber.Ctx) error {
	if err := requireAttachments(c); err != nil {
		return err
	}
	return s.dispatchAction(c, attachmentActions, func(c *fiber.Ctx) error {
		_, _, err := s.findAttachment(c)
		return err
	})
}

// completeAttachment is os-complete (3.44, 204).
func (s *server) completeAttachment(c *fiber.Ctx, _ any) error {
	_, a, err := s.findAttachment(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.CompleteAttachment{ID: a.ID, ProjectID: a.ProjectID, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusNoContent)
}

// attachment list sort keys (the model's).
var attachmentSortKeys = []string{"id", "created_at", "updated_at", "volume_id", "attach_status", "instance_uuid"}

func attachmentField(a, b *state.Attachment, key string) int {
	switch key {
	case "id":
		return cmpString(a.ID, b.ID)
	case "created_at":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "updated_at":
		return a.UpdatedAt.Compare(b.UpdatedAt)
	case "volume_id":
		return cmpString(a.VolumeID, b.VolumeID)
	case "attach_status":
		return cmpString(a.AttachStatus, b.AttachStatus)
	case "instance_uuid":
		return cmpString(a.InstanceUUID, b.InstanceUUID)
	}
	return 0
}

func (s *server) listAttachments(c *fiber.Ctx) error       { return s.attachmentList(c, false) }
func (s *server) listAttachmentsDetail(c *fiber.Ctx) error { return s.attachmentList(c, true) }

// attachmentList is GET attachments[/detail]: filters volume_id, status
// (or attach_status) and instance_id; pagination like volumes.
func (s *server) attachmentList(c *fiber.Ctx, detail bool) error {
	if err := requireAttachments(c); err != nil {
		return err
	}
	st := s.b.State()
	project := info(c).Project
	page, err := s.parsePage(c, attachmentSortKeys, map[string]string{"status": "attach_status", "instance_id": "instance_uuid"})
	if err != nil {
		return err
	}
	f := state.AttachmentFilter{ProjectID: project}
	f.VolumeID, _ = queryValue(c, "volume_id")
	f.Status, _ = queryValue(c, "status")
	if as, ok := queryValue(c, "attach_status"); ok {
		f.Status = as
	}
	f.InstanceUUID, _ = queryValue(c, "instance_id")
	var marker **state.Attachment
	if page.HasMarker {
		m := st.Attachment(page.Marker)
		if m == nil || m.ProjectID != project {
			return notFound("Volume attachment could not be found with filter: attachment_id = %s.", page.Marker)
		}
		marker = &m
	}
	items, full := window(st.Attachments(f), page, compareBy(page.Sort, attachmentField), marker)
	out := make([]fiber.Map, len(items))
	for i, a := range items {
		if detail {
			out[i] = attachmentDetail(a)
		} else {
			out[i] = attachmentSummary(a)
		}
	}
	res := fiber.Map{"attachments": out}
	if full {
		res["attachments_links"] = s.nextLink(c, items[len(items)-1].ID)
	}
	return c.JSON(res)
}

// ---- legacy volume actions ----

// simpleVolumeAction runs a command built from the caller's volume and
// answers 202; the argument is not read, as Cinder does not read it.
func (s *server) simpleVolumeAction(build func(id, project string) state.Command) func(*server, *fiber.Ctx, any) error {
	return func(s *server, c *fiber.Ctx, _ any) error {
		_, v, err := s.findVolume(c)
		if err != nil {
			return err
		}
		if err := s.apply(c, build(v.ID, info(c).Project)); err != nil {
			return err
		}
		return emptyResponse(c, http.StatusAccepted)
	}
}

func reserveVolume(s *server, c *fiber.Ctx, arg any) error {
	return s.simpleVolumeAction(func(id, p string) state.Command {
		return state.ReserveVolume{ID: id, ProjectID: p, At: now()}
	})(s, c, arg)
}

func unreserveVolume(s *server, c *fiber.Ctx, arg any) error {
	return s.simpleVolumeAction(func(id, p string) state.Command {
		return state.UnreserveVolume{ID: id, ProjectID: p, At: now()}
	})(s, c, arg)
}

func beginDetaching(s *server, c *fiber.Ctx, arg any) error {
	return s.simpleVolumeAction(func(id, p string) state.Command {
		return state.BeginDetaching{ID: id, ProjectID: p, At: now()}
	})(s, c, arg)
}

func rollDetaching(s *server, c *fiber.Ctx, arg any) error {
	return s.simpleVolumeAction(func(id, p string) state.Command {
		return state.RollDetaching{ID: id, ProjectID: p, At: now()}
	})(s, c, arg)
}

// attachVolume is os-attach {instance_uuid | host_name, mountpoint, mode}.
func attachVolume(s *server, c *fiber.Ctx, arg any) error {
	obj, err := actionObject("os-attach", arg, "instance_uuid", "host_name", "mountpoint", "mode")
	if err != nil {
		return err
	}
	rawMount, ok := obj["mountpoint"]
	if !ok {
		return requiredProperty("mountpoint")
	}
	mount, _, err := stringField("mountpoint", rawMount, false, 0, 255)
	if err != nil {
		return err
	}
	instance := ""
	if raw, ok := obj["instance_uuid"]; ok && raw != nil {
		s, isStr := raw.(string)
		if !isStr {
			return typeError("instance_uuid", raw, "string")
		}
		if !isUUID(s) {
			return fieldError("instance_uuid", raw, pyRepr(raw)+" is not a 'uuid'")
		}
		instance = s
	}
	host := ""
	if raw, ok := obj["host_name"]; ok {
		if host, _, err = stringField("host_name", raw, true, 0, 255); err != nil {
			return err
		}
	}
	mode := state.AttachModeRW
	if raw, ok := obj["mode"]; ok {
		m, isStr := raw.(string)
		if !isStr {
			return typeError("mode", raw, "string")
		}
		if m != state.AttachModeRW && m != state.AttachModeRO {
			return fieldError("mode", raw, pyRepr(raw)+" is not one of ['rw', 'ro']")
		}
		mode = m
	}
	if instance != "" && host != "" {
		return badRequest("Invalid request to attach volume to an instance %s and a host %s simultaneously", instance, host)
	}
	if instance == "" && host == "" {
		return badRequest("Invalid request to attach volume to an invalid target")
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	cmd := state.AttachVolume{ID: v.ID, ProjectID: info(c).Project, AttachmentID: newUUID(),
		InstanceUUID: instance, HostName: host, Mountpoint: mount, Mode: mode, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// detachVolume is os-detach {attachment_id}.
func detachVolume(s *server, c *fiber.Ctx, arg any) error {
	attachmentID := ""
	if arg != nil {
		obj, err := actionObject("os-detach", arg, "attachment_id")
		if err != nil {
			return err
		}
		if raw, ok := obj["attachment_id"]; ok {
			if attachmentID, err = optionalUUIDField("attachment_id", raw); err != nil {
				return err
			}
		}
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DetachVolume{ID: v.ID, ProjectID: info(c).Project, AttachmentID: attachmentID, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// connectorArg reads {"connector": {...}} of the connection actions.
func connectorArg(name string, arg any) (parsedConnector, error) {
	obj, err := actionObject(name, arg, "connector")
	if err != nil {
		return parsedConnector{}, err
	}
	raw, ok := obj["connector"]
	if !ok {
		return parsedConnector{}, requiredProperty("connector")
	}
	return parseConnector(raw)
}

// initializeConnection is os-initialize_connection {connector} (200).
func initializeConnection(s *server, c *fiber.Ctx, arg any) error {
	conn, err := connectorArg("os-initialize_connection", arg)
	if err != nil {
		return err
	}
	st, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if v.Status == state.StatusMaintenance {
		return badRequest("Invalid volume: The volume connection cannot be initialized in maintenance mode.")
	}
	ci, err := s.export(c, v, conn.Connector)
	if err != nil {
		return err
	}
	view := connectionInfo(st, v, ci, "")
	view["enforce_multipath"] = conn.EnforceMultipath
	return c.JSON(fiber.Map{"connection_info": view})
}

// terminateConnection is os-terminate_connection {connector} (202): the
// export is removed, then the volume is unreserved.
func terminateConnection(s *server, c *fiber.Ctx, arg any) error {
	conn, err := connectorArg("os-terminate_connection", arg)
	if err != nil {
		return err
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.unexport(c, v, conn.Connector); err != nil {
		return err
	}
	if err := s.apply(c, state.UnreserveVolume{ID: v.ID, ProjectID: info(c).Project, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

package api

import (
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Snapshots (cinder/api/v3/snapshots.py, views cinder/api/views/snapshots.py
// and cinder/api/v3/views/snapshots.py, the extended_snapshot_attributes
// extension; schemas snapshots.py).

func snapshotNotFound(id string) error { return notFound("Snapshot %s could not be found.", id) }

// visibleSnapshot returns the snapshot if project may see it.
func visibleSnapshot(st *state.State, id, project string) *state.Snapshot {
	sn := st.Snapshot(id)
	if sn == nil || sn.ProjectID != project {
		return nil
	}
	return sn
}

// findSnapshot returns the caller's snapshot named by the :id parameter or
// Cinder's SnapshotNotFound.
func (s *server) findSnapshot(c *fiber.Ctx) (*state.State, *state.Snapshot, error) {
	st := s.b.State()
	id := c.Params("id")
	sn := visibleSnapshot(st, id, info(c).Project)
	if sn == nil {
		return nil, nil, snapshotNotFound(id)
	}
	return st, sn, nil
}

// snapshotSummary is an item of GET snapshots: Cinder's base view, which
// the v3 view builder and the extension leave alone.
func snapshotSummary(sn *state.Snapshot) fiber.Map {
	return fiber.Map{
		"id":          sn.ID,
		"created_at":  formatTime(sn.CreatedAt),
		"updated_at":  formatTime(sn.UpdatedAt),
		"name":        nullable(sn.Name),
		"description": nullable(sn.Description),
		"volume_id":   sn.VolumeID,
		"status":      sn.Status,
		"size":        sn.SizeGB,
		"metadata":    cloneMetadata(sn.Metadata),
	}
}

// snapshotDetail is the v3 detail view at the request's microversion. The
// extended attributes (progress, project) are added by Cinder's extension
// to show and detail lists only, not to create and update answers; extended
// says whether to add them.
func snapshotDetail(c *fiber.Ctx, sn *state.Snapshot, extended bool) fiber.Map {
	ver := info(c).Version
	m := snapshotSummary(sn)
	if ver.atLeast(mvGroupSnapshotID) {
		m["group_snapshot_id"] = nil
	}
	if ver.atLeast(mvSnapshotUserID) {
		m["user_id"] = sn.UserID
	}
	if ver.atLeast(mvConsumesQuota) {
		m["consumes_quota"] = sn.ConsumesQuota
	}
	if extended {
		m["os-extended-snapshot-attributes:progress"] = sn.Progress
		m["os-extended-snapshot-attributes:project_id"] = sn.ProjectID
	}
	if sn.ErrorMessage != "" {
		// Not Cinder: the reason of the last failure, as for volumes.
		m["kiln:error"] = sn.ErrorMessage
	}
	return m
}

// respondSnapshot answers with the detail view of a snapshot as stored now
// (without the extended attributes: create and update).
func respondSnapshot(c *fiber.Ctx, st *state.State, id string, status int) error {
	sn := st.Snapshot(id)
	if sn == nil {
		// Deleted between the write and this read.
		return snapshotNotFound(id)
	}
	return c.Status(status).JSON(fiber.Map{"snapshot": snapshotDetail(c, sn, false)})
}

// snapshotText reads an optional name or description of the snapshot
// schemas (string or null, at most 255 characters); surrounding whitespace
// is stripped as Cinder's clean_name_and_description does.
func snapshotText(obj object, key string) (string, bool, error) {
	v, ok := obj[key]
	if !ok {
		return "", false, nil
	}
	s, _, err := stringField(key, v, true, 0, 255)
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(s), true, nil
}

// snapshotBody returns the "snapshot" object of a create or update body.
func snapshotBody(c *fiber.Ctx) (object, error) {
	return decodeWrapped(c, "snapshot")
}

// createSnapshotRequest is a validated POST snapshots body.
type createSnapshotRequest struct {
	VolumeID          string
	Name, Description string
	Metadata          map[string]string
	// Force is the force flag; HasForce tells whether it was given.
	Force, HasForce bool
}

// snapshotInUseForceMsg is Cinder's refusal of force=false from 3.66.
const snapshotInUseForceMsg = "Since microversion 3.66 the 'force' flag is invalid for this request.  " +
	"For backward compatability, however, when the 'force' flag is passed with a value evaluating " +
	"to True, it is silently ignored."

// parseCreateSnapshot validates a create body (schemas/snapshots.py create).
func parseCreateSnapshot(snap object) (*createSnapshotRequest, error) {
	if err := rejectExtra("snapshot", snap, "name", "display_name", "description", "volume_id", "force", "metadata"); err != nil {
		return nil, err
	}
	raw, ok := snap["volume_id"]
	if !ok {
		return nil, requiredProperty("volume_id")
	}
	r := &createSnapshotRequest{}
	var err error
	if r.VolumeID, _, err = stringField("volume_id", raw, true, 0, 0); err != nil {
		return nil, err
	}
	if raw == nil {
		// Cinder looks up None and fails to find it.
		r.VolumeID = "None"
	}
	// name wins over display_name, as in Cinder's controller.
	for _, key := range []string{"display_name", "name"} {
		if s, ok, err := snapshotText(snap, key); err != nil {
			return nil, err
		} else if ok {
			r.Name = s
		}
	}
	if s, ok, err := snapshotText(snap, "description"); err != nil {
		return nil, err
	} else if ok {
		r.Description = s
	}
	if v, ok := snap["force"]; ok {
		if r.Force, err = boolField("force", v, false); err != nil {
			return nil, err
		}
		r.HasForce = true
	}
	if v, ok := snap["metadata"]; ok {
		if r.Metadata, err = stringMap("metadata", v, true, false, metadataKey); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// createSnapshot is POST snapshots.
func (s *server) createSnapshot(c *fiber.Ctx) error {
	ri := info(c)
	snap, err := snapshotBody(c)
	if err != nil {
		return err
	}
	req, err := parseCreateSnapshot(snap)
	if err != nil {
		return err
	}
	st := s.b.State()
	v := visibleVolume(st, req.VolumeID, ri.Project)
	if v == nil {
		return volumeNotFound(req.VolumeID)
	}
	if req.HasForce && !req.Force && ri.Version.atLeast(mvSnapshotInUse) {
		return badRequest("%s", snapshotInUseForceMsg)
	}
	t := now()
	sn := state.Snapshot{
		ID: newUUID(), VolumeID: v.ID, ProjectID: ri.Project, UserID: ri.User,
		Name: req.Name, Description: req.Description, Metadata: req.Metadata,
		CreatedAt: t, UpdatedAt: t,
	}
	cmd := state.CreateSnapshot{Snapshot: sn, AllowInUse: req.Force || ri.Version.atLeast(mvSnapshotInUse)}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return respondSnapshot(c, st, sn.ID, http.StatusAccepted)
}

// showSnapshot is GET snapshots/{id}.
func (s *server) showSnapshot(c *fiber.Ctx) error {
	_, sn, err := s.findSnapshot(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"snapshot": snapshotDetail(c, sn, true)})
}

// parseUpdateSnapshot validates a PUT snapshots/{id} body
// (schemas/snapshots.py update: at least one of the four keys).
func parseUpdateSnapshot(snap object, cmd state.UpdateSnapshot) (state.UpdateSnapshot, error) {
	keys := []string{"name", "description", "display_name", "display_description"}
	if err := rejectExtra("snapshot", snap, keys...); err != nil {
		return cmd, err
	}
	if len(snap) == 0 {
		return cmd, fieldError("snapshot", snap, "{} is not valid under any of the given schemas")
	}
	// The v2 names win over the display_ aliases, as in Cinder.
	for _, f := range []struct {
		key string
		dst **string
	}{
		{"display_name", &cmd.Name}, {"display_description", &cmd.Description},
		{"name", &cmd.Name}, {"description", &cmd.Description},
	} {
		s, ok, err := snapshotText(snap, f.key)
		if err != nil {
			return cmd, err
		}
		if ok {
			*f.dst = &s
		}
	}
	return cmd, nil
}

// updateSnapshot is PUT snapshots/{id}.
func (s *server) updateSnapshot(c *fiber.Ctx) error {
	snap, err := snapshotBody(c)
	if err != nil {
		return err
	}
	ri := info(c)
	cmd, err := parseUpdateSnapshot(snap, state.UpdateSnapshot{ID: c.Params("id"), ProjectID: ri.Project, At: now()})
	if err != nil {
		return err
	}
	st, sn, err := s.findSnapshot(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return respondSnapshot(c, st, sn.ID, http.StatusOK)
}

// deleteSnapshot is DELETE snapshots/{id} (202, no body).
func (s *server) deleteSnapshot(c *fiber.Ctx) error {
	return s.removeSnapshot(c, false)
}

func (s *server) removeSnapshot(c *fiber.Ctx, force bool) error {
	_, sn, err := s.findSnapshot(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.DeleteSnapshot{ID: sn.ID, ProjectID: info(c).Project, Force: force, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

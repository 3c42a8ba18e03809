package api

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// visibleVolume returns the volume if project may see it.
func visibleVolume(st *state.State, id, project string) *state.Volume {
	v := st.Volume(id)
	if v == nil || v.ProjectID != project {
		return nil
	}
	return v
}

func volumeNotFound(id string) error { return notFound("Volume %s could not be found.", id) }

// findVolume returns the caller's volume or Cinder's VolumeNotFound.
func (s *server) findVolume(c *fiber.Ctx) (*state.State, *state.Volume, error) {
	st := s.b.State()
	id := c.Params("id")
	v := visibleVolume(st, id, info(c).Project)
	if v == nil {
		return nil, nil, volumeNotFound(id)
	}
	return st, v, nil
}

// respondVolume answers with the detail view of a volume as stored now.
func (s *server) respondVolume(c *fiber.Ctx, st *state.State, id string, status int) error {
	v := st.Volume(id)
	if v == nil {
		// Deleted between the write and this read.
		return volumeNotFound(id)
	}
	return c.Status(status).JSON(fiber.Map{"volume": s.volumeDetail(c, st, v)})
}

// showVolume is GET volumes/{id}.
func (s *server) showVolume(c *fiber.Ctx) error {
	st, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"volume": s.volumeDetail(c, st, v)})
}

// parseUpdateVolume validates a PUT volumes/{id} body (schemas/volumes.py
// update: no unknown keys at any microversion; from 3.53 at least one key).
func parseUpdateVolume(body any, ver apiVersion, cmd state.UpdateVolume) (state.UpdateVolume, error) {
	vol, err := unwrapObject(body, "volume")
	if err != nil {
		return cmd, err
	}
	if err := rejectExtra("volume", vol, "name", "description", "display_name", "display_description", "metadata"); err != nil {
		return cmd, err
	}
	if ver.atLeast(mvStrictSchema) && len(vol) == 0 {
		return cmd, fieldError("volume", vol, "{} is not valid under any of the given schemas")
	}
	for _, f := range []struct {
		key string
		dst **string
	}{
		{"display_name", &cmd.Name}, {"display_description", &cmd.Description},
		{"name", &cmd.Name}, {"description", &cmd.Description},
	} {
		if v, ok := vol[f.key]; ok {
			s, err := nameField(f.key, v)
			if err != nil {
				return cmd, err
			}
			*f.dst = &s
		}
	}
	if v, ok := vol["metadata"]; ok {
		meta, err := stringMap("metadata", v, false, false, metadataKey)
		if err != nil {
			return cmd, err
		}
		cmd.MetaMode, cmd.Metadata = state.MetaReplace, meta
	}
	return cmd, nil
}

// updateVolume is PUT volumes/{id}.
func (s *server) updateVolume(c *fiber.Ctx) error {
	body, err := decodeBody(c)
	if err != nil {
		return err
	}
	ri := info(c)
	cmd, err := parseUpdateVolume(body, ri.Version, state.UpdateVolume{ID: c.Params("id"), ProjectID: ri.Project, At: now()})
	if err != nil {
		return err
	}
	st, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return s.respondVolume(c, st, v.ID, http.StatusOK)
}

// deleteVolume is DELETE volumes/{id} (?cascade also deletes the volume's
// snapshots; ?force from 3.23).
func (s *server) deleteVolume(c *fiber.Ctx) error {
	ri := info(c)
	cascade, err := boolParam(c, "cascade")
	if err != nil {
		return err
	}
	force := false
	if _, given := queryValue(c, "force"); given {
		if !ri.Version.atLeast(mvDeleteForce) {
			return badRequest("The 'force' parameter requires microversion %s or later.", mvDeleteForce)
		}
		if force, err = boolParam(c, "force"); err != nil {
			return err
		}
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	cmd := state.DeleteVolume{ID: v.ID, ProjectID: ri.Project, Force: force, Cascade: cascade, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

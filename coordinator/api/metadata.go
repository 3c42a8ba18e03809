package api

import (
	"maps"
	"net/http"
	"regexp"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Metadata of volumes and snapshots (cinder/api/v3/volume_metadata.py,
// cinder/api/v3/snapshot_metadata.py; schemas volume_metadata.py and
// snapshot_metadata.py). Both resources share one implementation that a
// metadataResource parameterizes.

// metadataResource is what the metadata routes need to know about the
// resource that owns the metadata.
type metadataResource struct {
	// noun names the resource in messages ("Volume", "Snapshot").
	noun string
	// keyPattern is the schema's key pattern.
	keyPattern *regexp.Regexp
	// extraTopKeys tells whether the body may hold keys besides
	// "metadata"/"meta" (the snapshot schemas allow them).
	extraTopKeys bool
	// find returns the caller's record's ID and metadata, or the
	// resource's not-found error.
	find func(s *server, c *fiber.Ctx) (id string, meta map[string]string, err error)
	// command builds the update: mode is a state.Meta* mode.
	command func(id, project, mode string, meta map[string]string, deleteKey string, at time.Time) state.Command
}

var volumeMetadata = &metadataResource{
	noun:       "Volume",
	keyPattern: metadataKey,
	find: func(s *server, c *fiber.Ctx) (string, map[string]string, error) {
		_, v, err := s.findVolume(c)
		if err != nil {
			return "", nil, err
		}
		return v.ID, v.Metadata, nil
	},
	command: func(id, project, mode string, meta map[string]string, deleteKey string, at time.Time) state.Command {
		return state.UpdateVolume{ID: id, ProjectID: project, MetaMode: mode, Metadata: meta, DeleteKey: deleteKey, At: at}
	},
}

// snapshotMetadataKey is the key pattern of schemas/snapshot_metadata.py
// (no "/", unlike volume metadata).
var snapshotMetadataKey = regexp.MustCompile(`^[a-zA-Z0-9\-_:. ]{1,255}$`)

var snapshotMetadata = &metadataResource{
	noun:         "Snapshot",
	keyPattern:   snapshotMetadataKey,
	extraTopKeys: true,
	find: func(s *server, c *fiber.Ctx) (string, map[string]string, error) {
		_, sn, err := s.findSnapshot(c)
		if err != nil {
			return "", nil, err
		}
		return sn.ID, sn.Metadata, nil
	},
	command: func(id, project, mode string, meta map[string]string, deleteKey string, at time.Time) state.Command {
		return state.UpdateSnapshot{ID: id, ProjectID: project, MetaMode: mode, Metadata: meta, DeleteKey: deleteKey, At: at}
	},
}

// metadataRoutes mounts the six metadata routes of a resource under
// collection ("/volumes", "/snapshots").
func (s *server) metadataRoutes(collection string, r *metadataResource) {
	base := collection + "/:id/metadata"
	s.handle(fiber.MethodGet, base, func(c *fiber.Ctx) error { return s.listMetadata(c, r) })
	s.handle(fiber.MethodPost, base, func(c *fiber.Ctx) error { return s.setMetadata(c, r, state.MetaMerge) })
	s.handle(fiber.MethodPut, base, func(c *fiber.Ctx) error { return s.setMetadata(c, r, state.MetaReplace) })
	s.handle(fiber.MethodGet, base+"/:key", func(c *fiber.Ctx) error { return s.showMetadataKey(c, r) })
	s.handle(fiber.MethodPut, base+"/:key", func(c *fiber.Ctx) error { return s.updateMetadataKey(c, r) })
	s.handle(fiber.MethodDelete, base+"/:key", func(c *fiber.Ctx) error { return s.deleteMetadataKey(c, r) })
}

// cloneMetadata returns a copy of metadata, never nil.
func cloneMetadata(m map[string]string) map[string]string {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	return out
}

// listMetadata is GET .../{id}/metadata.
func (s *server) listMetadata(c *fiber.Ctx, r *metadataResource) error {
	_, meta, err := r.find(s, c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"metadata": cloneMetadata(meta)})
}

// metadataBody validates a body holding one metadata object under key
// ("metadata" or "meta").
func (r *metadataResource) metadataBody(c *fiber.Ctx, key string) (map[string]string, any, error) {
	top, err := decodeObject(c)
	if err != nil {
		return nil, nil, err
	}
	if !r.extraTopKeys {
		if err := rejectExtra("", top, key); err != nil {
			return nil, nil, err
		}
	}
	raw, ok := top[key]
	if !ok {
		return nil, nil, requiredProperty(key)
	}
	meta, err := stringMap(key, raw, false, false, r.keyPattern)
	return meta, raw, err
}

// setMetadata applies a metadata change (POST merges, PUT replaces) and
// answers with the resulting metadata, as Cinder's create and update_all do.
func (s *server) setMetadata(c *fiber.Ctx, r *metadataResource, mode string) error {
	meta, _, err := r.metadataBody(c, "metadata")
	if err != nil {
		return err
	}
	id, _, err := r.find(s, c)
	if err != nil {
		return err
	}
	if err := s.apply(c, r.command(id, info(c).Project, mode, meta, "", now())); err != nil {
		return err
	}
	_, after, err := r.find(s, c)
	if err != nil {
		// Deleted between the write and this read.
		return err
	}
	return c.JSON(fiber.Map{"metadata": cloneMetadata(after)})
}

func (r *metadataResource) keyNotFound(id, key string) error {
	return notFound("%s %s has no metadata with key %s.", r.noun, id, key)
}

// showMetadataKey is GET .../{id}/metadata/{key}.
func (s *server) showMetadataKey(c *fiber.Ctx, r *metadataResource) error {
	id, meta, err := r.find(s, c)
	if err != nil {
		return err
	}
	key := c.Params("key")
	val, ok := meta[key]
	if !ok {
		return r.keyNotFound(id, key)
	}
	return c.JSON(fiber.Map{"meta": fiber.Map{key: val}})
}

// updateMetadataKey is PUT .../{id}/metadata/{key} with {"meta": {key: value}}.
func (s *server) updateMetadataKey(c *fiber.Ctx, r *metadataResource) error {
	meta, raw, err := r.metadataBody(c, "meta")
	if err != nil {
		return err
	}
	switch {
	case len(meta) == 0:
		return fieldError("meta", raw, "{} does not have enough properties")
	case len(meta) > 1:
		return fieldError("meta", raw, pyRepr(raw)+" has too many properties")
	}
	key := c.Params("key")
	if _, ok := meta[key]; !ok {
		return badRequest("Request body and URI mismatch")
	}
	id, _, err := r.find(s, c)
	if err != nil {
		return err
	}
	if err := s.apply(c, r.command(id, info(c).Project, state.MetaMerge, meta, "", now())); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"meta": meta})
}

// deleteMetadataKey is DELETE .../{id}/metadata/{key} (200, no body).
func (s *server) deleteMetadataKey(c *fiber.Ctx, r *metadataResource) error {
	id, meta, err := r.find(s, c)
	if err != nil {
		return err
	}
	key := c.Params("key")
	if _, ok := meta[key]; !ok {
		return r.keyNotFound(id, key)
	}
	if err := s.apply(c, r.command(id, info(c).Project, state.MetaDelete, nil, key, now())); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusOK)
}

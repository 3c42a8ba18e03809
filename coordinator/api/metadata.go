package api

import (
	"maps"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Volume metadata (cinder/api/v3/volume_metadata.py and the v2 controller
// it extends; schemas/volume_metadata.py).

// metadataOf returns a volume's metadata, never nil.
func metadataOf(v *state.Volume) map[string]string {
	m := maps.Clone(v.Metadata)
	if m == nil {
		m = map[string]string{}
	}
	return m
}

// listMetadata is GET volumes/{id}/metadata.
func (s *server) listMetadata(c *fiber.Ctx) error {
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"metadata": metadataOf(v)})
}

// parseMetadataBody validates {"metadata": {...}}.
func parseMetadataBody(c *fiber.Ctx) (map[string]string, error) {
	body, err := decodeBody(c)
	if err != nil {
		return nil, err
	}
	top, err := requireObject(body)
	if err != nil {
		return nil, err
	}
	if err := rejectExtra("", top, "metadata"); err != nil {
		return nil, err
	}
	raw, ok := top["metadata"]
	if !ok {
		return nil, requiredProperty("metadata")
	}
	return stringMap("metadata", raw, false, false, metadataKey)
}

// setMetadata applies a metadata change and answers with the resulting
// metadata, as Cinder's create and update_all do.
func (s *server) setMetadata(c *fiber.Ctx, mode string) error {
	meta, err := parseMetadataBody(c)
	if err != nil {
		return err
	}
	st, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	cmd := state.UpdateVolume{ID: v.ID, ProjectID: info(c).Project, MetaMode: mode, Metadata: meta, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	nv := st.Volume(v.ID)
	if nv == nil {
		return volumeNotFound(v.ID)
	}
	return c.JSON(fiber.Map{"metadata": metadataOf(nv)})
}

// mergeMetadata is POST volumes/{id}/metadata: adds or overwrites keys.
func (s *server) mergeMetadata(c *fiber.Ctx) error { return s.setMetadata(c, state.MetaMerge) }

// replaceMetadata is PUT volumes/{id}/metadata: replaces all metadata.
func (s *server) replaceMetadata(c *fiber.Ctx) error { return s.setMetadata(c, state.MetaReplace) }

func metadataKeyNotFound(volumeID, key string) error {
	return notFound("Volume %s has no metadata with key %s.", volumeID, key)
}

// showMetadataKey is GET volumes/{id}/metadata/{key}.
func (s *server) showMetadataKey(c *fiber.Ctx) error {
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	key := c.Params("key")
	val, ok := v.Metadata[key]
	if !ok {
		return metadataKeyNotFound(v.ID, key)
	}
	return c.JSON(fiber.Map{"meta": fiber.Map{key: val}})
}

// updateMetadataKey is PUT volumes/{id}/metadata/{key} with
// {"meta": {key: value}}.
func (s *server) updateMetadataKey(c *fiber.Ctx) error {
	body, err := decodeBody(c)
	if err != nil {
		return err
	}
	top, err := requireObject(body)
	if err != nil {
		return err
	}
	if err := rejectExtra("", top, "meta"); err != nil {
		return err
	}
	raw, ok := top["meta"]
	if !ok {
		return requiredProperty("meta")
	}
	meta, err := stringMap("meta", raw, false, false, metadataKey)
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
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	cmd := state.UpdateVolume{ID: v.ID, ProjectID: info(c).Project, MetaMode: state.MetaMerge, Metadata: meta, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"meta": meta})
}

// deleteMetadataKey is DELETE volumes/{id}/metadata/{key} (200, no body).
func (s *server) deleteMetadataKey(c *fiber.Ctx) error {
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	key := c.Params("key")
	if _, ok := v.Metadata[key]; !ok {
		return metadataKeyNotFound(v.ID, key)
	}
	cmd := state.UpdateVolume{ID: v.ID, ProjectID: info(c).Project, MetaMode: state.MetaDelete, DeleteKey: key, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusOK)
}

package api

import (
	"cmp"
	"net/http"
	"slices"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// createVolumeRequest is a validated POST volumes body.
type createVolumeRequest struct {
	Name, Description string
	Size              int64
	HasSize           bool
	TypeRef           string
	AZ                string
	Metadata          map[string]string
	Multiattach       bool
	// SnapshotID / SourceVolID name a snapshot or volume to create from.
	SnapshotID, SourceVolID string
	// SourceKey names a source Kiln does not support yet ("imageRef",
	// "backup_id", ...) and Source its value.
	Source, SourceKey string
	GroupID           string
	SameHost          []string
	DifferentHost     []string
}

// Keys of the "volume" object of cinder/api/schemas/volumes.py create.
var createVolumeKeys = []string{
	"name", "description", "display_name", "display_description", "volume_type",
	"metadata", "snapshot_id", "source_volid", "consistencygroup_id", "size",
	"availability_zone", "multiattach", "image_id", "imageRef",
}

const schedulerHintsKey = "OS-SCH-HNT:scheduler_hints"

// parseCreateVolume validates a create body as Cinder's schemas do at
// microversion ver. Unknown keys inside "volume" are refused from 3.53 on
// and ignored before, as in Cinder.
func parseCreateVolume(body any, ver apiVersion) (*createVolumeRequest, error) {
	top, err := requireObject(body)
	if err != nil {
		return nil, err
	}
	if err := rejectExtra("", top, "volume", schedulerHintsKey); err != nil {
		return nil, err
	}
	raw, ok := top["volume"]
	if !ok {
		return nil, requiredProperty("volume")
	}
	vol, ok := raw.(object)
	if !ok {
		return nil, typeError("volume", raw, "object")
	}
	allowed := slices.Clone(createVolumeKeys)
	if ver.atLeast(mvGroupVolume) {
		allowed = append(allowed, "group_id")
	}
	if ver.atLeast(mvCreateFromBackup) {
		allowed = append(allowed, "backup_id")
	}
	if ver.atLeast(mvStrictSchema) {
		if err := rejectExtra("volume", vol, allowed...); err != nil {
			return nil, err
		}
	}
	r := &createVolumeRequest{}
	if err := r.names(vol); err != nil {
		return nil, err
	}
	if v, ok := vol["volume_type"]; ok {
		if r.TypeRef, _, err = stringField("volume_type", v, true, 0, 255); err != nil {
			return nil, err
		}
	}
	if v, ok := vol["metadata"]; ok {
		if r.Metadata, err = stringMap("metadata", v, true, false, metadataKey); err != nil {
			return nil, err
		}
	}
	if err := r.sources(vol, ver); err != nil {
		return nil, err
	}
	if v, ok := vol["size"]; ok && v != nil {
		if r.Size, err = sizeField("size", v); err != nil {
			return nil, err
		}
		r.HasSize = true
	}
	if v, ok := vol["availability_zone"]; ok {
		if r.AZ, _, err = stringField("availability_zone", v, true, 1, 255); err != nil {
			return nil, err
		}
	}
	if v, ok := vol["multiattach"]; ok {
		if r.Multiattach, err = boolField("multiattach", v, true); err != nil {
			return nil, err
		}
	}
	if err := r.hints(top[schedulerHintsKey]); err != nil {
		return nil, err
	}
	return r, nil
}

// names reads name/description and their v1 aliases; the v2 names win, as
// in Cinder's controller.
func (r *createVolumeRequest) names(vol object) error {
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"display_name", &r.Name}, {"display_description", &r.Description},
		{"name", &r.Name}, {"description", &r.Description},
	} {
		if v, ok := vol[f.key]; ok {
			s, err := nameField(f.key, v)
			if err != nil {
				return err
			}
			*f.dst = s
		}
	}
	return nil
}

// sources validates the keys that name a source to create from. Images
// and backups are not supported yet; the handler refuses them after
// validation.
func (r *createVolumeRequest) sources(vol object, ver apiVersion) error {
	for _, key := range []string{"snapshot_id", "source_volid", "consistencygroup_id", "backup_id"} {
		v, ok := vol[key]
		if !ok {
			continue
		}
		if key == "backup_id" && !ver.atLeast(mvCreateFromBackup) {
			// Not in the schema before 3.47, but Cinder's controller
			// still reads it.
			if s, isStr := v.(string); isStr && s != "" {
				r.Source, r.SourceKey = s, key
			}
			continue
		}
		id, err := optionalUUIDField(key, v)
		if err != nil {
			return err
		}
		switch {
		case id == "":
		case key == "consistencygroup_id":
			r.GroupID = id
		case key == "snapshot_id":
			r.SnapshotID = id
		case key == "source_volid":
			r.SourceVolID = id
		default:
			r.Source, r.SourceKey = id, key
		}
	}
	for _, key := range []string{"image_id", "imageRef"} {
		if v, ok := vol[key]; ok {
			s, _, err := stringField(key, v, true, 0, 255)
			if err != nil {
				return err
			}
			if s != "" {
				r.Source, r.SourceKey = s, key
			}
		}
	}
	if v, ok := vol["group_id"]; ok {
		if ver.atLeast(mvGroupVolume) {
			s, _, err := stringField("group_id", v, true, 0, 255)
			if err != nil {
				return err
			}
			if s != "" {
				r.GroupID = s
			}
		} else if s, isStr := v.(string); isStr && s != "" {
			r.GroupID = s
		}
	}
	return nil
}

// hints validates OS-SCH-HNT:scheduler_hints (cinder/api/schemas/
// scheduler_hints.py). Only the affinity hints are used.
func (r *createVolumeRequest) hints(raw any) error {
	if raw == nil {
		return nil
	}
	h, ok := raw.(object)
	if !ok {
		return typeError(schedulerHintsKey, raw, "object", "null")
	}
	for _, key := range []string{"same_host", "different_host"} {
		v, ok := h[key]
		if !ok {
			continue
		}
		ids, err := hintIDs(key, v)
		if err != nil {
			return err
		}
		if key == "same_host" {
			r.SameHost = ids
		} else {
			r.DifferentHost = ids
		}
	}
	if v, ok := h["local_to_instance"]; ok {
		if _, err := optionalUUIDField("local_to_instance", v); err != nil {
			return err
		}
	}
	if v, ok := h["query"]; ok {
		switch v.(type) {
		case string, object:
		default:
			return typeError("query", v, "string", "object")
		}
	}
	return nil
}

// hintIDs reads an affinity hint: one volume UUID or a list of unique ones.
func hintIDs(key string, v any) ([]string, error) {
	invalid := fieldError(key, v, pyRepr(v)+" is not valid under any of the given schemas")
	switch t := v.(type) {
	case string:
		if !isUUID(t) {
			return nil, invalid
		}
		return []string{t}, nil
	case []any:
		ids := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok || !isUUID(s) || slices.Contains(ids, s) {
				return nil, invalid
			}
			ids = append(ids, s)
		}
		return ids, nil
	default:
		return nil, invalid
	}
}

// createVolume is POST volumes.
func (s *server) createVolume(c *fiber.Ctx) error {
	ri := info(c)
	body, err := decodeBody(c)
	if err != nil {
		return err
	}
	req, err := parseCreateVolume(body, ri.Version)
	if err != nil {
		return err
	}
	st := s.b.State()
	v, err := s.newVolume(st, ri, req)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.CreateVolume{Volume: *v}); err != nil {
		return err
	}
	// The 202 shows the volume as created (creating, no host), as Cinder
	// does, even when a fast pool has made it available by now.
	created := st.Volume(v.ID)
	if created == nil {
		return volumeNotFound(v.ID) // deleted between the write and this read
	}
	view := *created
	if view.Status == state.StatusAvailable {
		view.Status = state.StatusCreating
	}
	return c.Status(http.StatusAccepted).JSON(fiber.Map{"volume": s.volumeDetail(c, st, &view)})
}

// newVolume resolves a validated request against the state, in the order
// Cinder's controller and create flow check things: the type, the
// snapshot, the source volume, groups, other sources, then the size. A
// volume created from a snapshot or volume takes the source's size and
// type unless the request names them; the state machine checks the
// source's status and that the size is not smaller.
func (s *server) newVolume(st *state.State, ri *reqInfo, req *createVolumeRequest) (*state.Volume, error) {
	var vt *state.VolumeType
	if req.TypeRef != "" {
		var err error
		if vt, err = resolveType(st, req.TypeRef); err != nil {
			return nil, err
		}
	}
	var (
		sourceSize          int64
		sourceTypeID        string
		snapAZ, sourceVolAZ string
	)
	if req.SnapshotID != "" {
		sn := visibleSnapshot(st, req.SnapshotID, ri.Project)
		if sn == nil {
			return nil, snapshotNotFound(req.SnapshotID)
		}
		sourceSize, sourceTypeID = sn.SizeGB, sn.TypeID
		if v := st.Volume(sn.VolumeID); v != nil {
			snapAZ = v.AZ
		}
	}
	if req.SourceVolID != "" {
		src := visibleVolume(st, req.SourceVolID, ri.Project)
		if src == nil {
			return nil, volumeNotFound(req.SourceVolID)
		}
		if req.SnapshotID == "" {
			sourceSize, sourceTypeID = src.SizeGB, src.TypeID
		}
		sourceVolAZ = src.AZ
	}
	if req.GroupID != "" {
		return nil, notFound("Group %s could not be found.", req.GroupID)
	}
	if req.SourceKey != "" {
		return nil, badRequest("Creating a volume from %s is not supported yet (%s %s).",
			sourceNames[req.SourceKey], req.SourceKey, req.Source)
	}
	typeID := sourceTypeID
	switch {
	case vt != nil:
		typeID = vt.ID
	case typeID == "":
		def, err := resolveType(st, "")
		if err != nil {
			return nil, err
		}
		typeID = def.ID
	}
	size := req.Size
	if !req.HasSize {
		if sourceSize == 0 {
			return nil, invalidInput("Volume size 'None' must be an integer and greater than 0")
		}
		size = sourceSize
	}
	// A sourced volume is made on its source's pool, so it stays in the
	// source's zone (Cinder's cloned_volume_same_az, on by default).
	az := cmp.Or(req.AZ, snapAZ, sourceVolAZ, s.opts.DefaultZone)
	if req.AZ != "" && !s.validZone(st, az) {
		return nil, badRequest("Availability zone '%s' is invalid.", az)
	}
	if snapAZ != "" && snapAZ != az {
		return nil, invalidInput("Volume must be in the same availability zone as the snapshot")
	}
	if sourceVolAZ != "" && sourceVolAZ != az {
		return nil, invalidInput("Volume must be in the same availability zone as the source volume")
	}
	for _, hint := range []struct {
		key string
		ids []string
	}{{"same_host", req.SameHost}, {"different_host", req.DifferentHost}} {
		for _, id := range hint.ids {
			if visibleVolume(st, id, ri.Project) == nil {
				return nil, invalidInput("scheduler hint %s names volume %s, which could not be found.", hint.key, id)
			}
		}
	}
	t := now()
	return &state.Volume{
		ID: newUUID(), ProjectID: ri.Project, UserID: ri.User,
		Name: req.Name, Description: req.Description, SizeGB: size,
		TypeID: typeID, AZ: az, Metadata: req.Metadata, Multiattach: req.Multiattach,
		Hints:      state.Hints{SameHost: req.SameHost, DifferentHost: req.DifferentHost},
		SnapshotID: req.SnapshotID, SourceVolID: req.SourceVolID,
		CreatedAt: t, UpdatedAt: t,
	}, nil
}

var sourceNames = map[string]string{
	"imageRef": "an image", "image_id": "an image", "backup_id": "a backup",
}

// resolveType finds a volume type by ID or name (Cinder's
// get_by_name_or_id); "" is the default type.
func resolveType(st *state.State, ref string) (*state.VolumeType, error) {
	if ref == "" {
		if t := st.Type(state.DefaultTypeID); t != nil {
			return t, nil
		}
		return nil, notFound("Volume type with name %s could not be found.", state.DefaultTypeName)
	}
	if isUUID(ref) {
		if t := st.Type(ref); t != nil {
			return t, nil
		}
		if t := st.TypeByName(ref); t != nil {
			return t, nil
		}
		return nil, notFound("Volume type %s could not be found.", ref)
	}
	if t := st.TypeByName(ref); t != nil {
		return t, nil
	}
	return nil, notFound("Volume type with name %s could not be found.", ref)
}

// validZone reports whether az is the default zone or a registered pool's.
func (s *server) validZone(st *state.State, az string) bool {
	if az == s.opts.DefaultZone {
		return true
	}
	for _, p := range st.Pools() {
		if p.Zone == az {
			return true
		}
	}
	return false
}

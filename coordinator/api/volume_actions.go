package api

import (
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Volume actions (cinder/api/contrib/volume_actions.py, admin_actions.py,
// volume_image_metadata.py, volume_unmanage.py, cinder/api/v3/volumes.py;
// schemas volume_actions.py).

// volumeActions lists every action Cinder's volumes controller and its
// extensions know. Kiln serves os-extend, revert, the attach actions
// (attachments.go) and the admin and metadata actions (volume_admin.go,
// os-force_detach included);
// the others answer 501.
var volumeActions = map[string]action{
	"os-extend": {run: (*server).extendVolume},
	"revert":    {since: mvVolumeRevert, run: (*server).revertVolume},

	"os-attach":                    {run: attachVolume},
	"os-detach":                    {run: detachVolume},
	"os-reserve":                   {run: reserveVolume},
	"os-unreserve":                 {run: unreserveVolume},
	"os-begin_detaching":           {run: beginDetaching},
	"os-roll_detaching":            {run: rollDetaching},
	"os-initialize_connection":     {run: initializeConnection},
	"os-terminate_connection":      {run: terminateConnection},
	"os-volume_upload_image":       {},
	"os-update_readonly_flag":      {run: (*server).updateReadonlyFlag},
	"os-retype":                    {},
	"os-set_bootable":              {run: (*server).setBootable},
	"os-reimage":                   {since: mvReimage},
	"os-extend_volume_completion":  {since: mvExtendCompletion},
	"os-reset_status":              {run: (*server).resetVolumeStatus},
	"os-force_delete":              {run: (*server).forceDeleteVolume},
	"os-force_detach":              {run: (*server).forceDetachVolume},
	"os-migrate_volume":            {},
	"os-migrate_volume_completion": {},
	"os-set_image_metadata":        {run: (*server).setImageMetadata},
	"os-unset_image_metadata":      {run: (*server).unsetImageMetadata},
	"os-show_image_metadata":       {run: (*server).showImageMetadata},
	"os-unmanage":                  {},
}

// volumeAction is POST volumes/{id}/action.
func (s *server) volumeAction(c *fiber.Ctx) error {
	return s.dispatchAction(c, volumeActions, func(c *fiber.Ctx) error {
		_, _, err := s.findVolume(c)
		return err
	})
}

// extendVolume is os-extend {"new_size": N} (202). The local pool extends
// attached volumes, so from 3.42 an in-use volume may grow too.
func (s *server) extendVolume(c *fiber.Ctx, arg any) error {
	obj, err := actionObject("os-extend", arg, "new_size")
	if err != nil {
		return err
	}
	raw, ok := obj["new_size"]
	if !ok {
		return requiredProperty("new_size")
	}
	size, err := sizeField("new_size", raw)
	if err != nil {
		return err
	}
	_, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	ri := info(c)
	cmd := state.ExtendVolume{ID: v.ID, ProjectID: ri.Project, NewSizeGB: size,
		AllowInUse: ri.Version.atLeast(mvExtendInUse), At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// latestSnapshot is the volume's most recently created snapshot (ties
// broken by ID, as the state machine does), or nil.
func latestSnapshot(st *state.State, volumeID string) *state.Snapshot {
	var latest *state.Snapshot
	for _, sn := range st.Snapshots(state.SnapshotFilter{VolumeID: volumeID}) {
		if latest == nil || sn.CreatedAt.After(latest.CreatedAt) ||
			(sn.CreatedAt.Equal(latest.CreatedAt) && sn.ID > latest.ID) {
			latest = sn
		}
	}
	return latest
}

// pyStr renders a JSON value as Python's str() does in Cinder's messages.
func pyStr(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return pyRepr(v)
}

// revertVolume is revert {"snapshot_id": ...} (3.40, 202): the volume goes
// back to its latest snapshot. Cinder answers a volume or snapshot in the
// wrong status with 409, unlike most actions.
func (s *server) revertVolume(c *fiber.Ctx, arg any) error {
	obj, ok := arg.(object)
	if !ok {
		return badRequest("Missing required element 'revert' in request body.")
	}
	snapID := obj["snapshot_id"]
	st, v, err := s.findVolume(c)
	if err != nil {
		return err
	}
	latest := latestSnapshot(st, v.ID)
	if latest == nil {
		return badRequest("Volume %s doesn't have any snapshots.", v.ID)
	}
	if id, isStr := snapID.(string); !isStr || id != latest.ID {
		return badRequest("Specified snapshot %s is None or not the latest one of volume %s.", pyStr(snapID), v.ID)
	}
	if v.SizeGB != latest.SizeGB {
		return badRequest("Can't revert volume %s to its latest snapshot %s. The volume size must be equal to the snapshot size.",
			v.ID, latest.ID)
	}
	err = s.apply(c, state.RevertVolume{ID: v.ID, ProjectID: info(c).Project, SnapshotID: latest.ID, At: now()})
	var se *state.Error
	if errors.As(err, &se) && se.Kind == state.KindInvalid {
		return &apiError{Status: http.StatusConflict, Msg: se.Error()}
	}
	if err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

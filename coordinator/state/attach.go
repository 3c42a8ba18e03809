package state

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Attach/detach commands (issue 3): the attachments API (3.27+) and the
// legacy attach actions. Values are persisted in the Raft log: never
// renumber.
const (
	CmdCreateAttachment   CommandType = 44
	CmdUpdateAttachment   CommandType = 45
	CmdCompleteAttachment CommandType = 46
	CmdDeleteAttachment   CommandType = 47
	CmdReserveVolume      CommandType = 48
	CmdUnreserveVolume    CommandType = 49
	CmdAttachVolume       CommandType = 50
	CmdBeginDetaching     CommandType = 51
	CmdRollDetaching      CommandType = 52
	CmdDetachVolume       CommandType = 53
	CmdForceDetachVolume  CommandType = 54
)

// AttachModeNull is the attach mode of an attachment created without a
// mode, resolved (rw, or ro for a read-only volume) once a connector is
// given, as Cinder does.
const AttachModeNull = "null"

// CreateAttachment is POST attachments: the volume is reserved for the
// attachment; with a connector (and its connection info) the attachment is
// attaching at once. The proposer chooses ID and CreatedAt.
type CreateAttachment struct {
	Attachment Attachment `json:"attachment"`
}

// UpdateAttachment is PUT attachments/{id}: the consumer's connector and
// the connection info the backend returned for it.
type UpdateAttachment struct {
	ID             string            `json:"id"`
	ProjectID      string            `json:"project_id"`
	Connector      storage.Connector `json:"connector"`
	ConnectionInfo string            `json:"connection_info,omitempty"`
	At             time.Time         `json:"at"`
}

// CompleteAttachment is the attachments os-complete action.
type CompleteAttachment struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	At        time.Time `json:"at"`
}

// DeleteAttachment is DELETE attachments/{id}.
type DeleteAttachment struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	At        time.Time `json:"at"`
}

// ReserveVolume is os-reserve.
type ReserveVolume struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	At        time.Time `json:"at"`
}

// UnreserveVolume is os-unreserve (and the end of os-terminate_connection).
type UnreserveVolume struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	At        time.Time `json:"at"`
}

// AttachVolume is os-attach: it records an attached attachment with the
// proposer-chosen AttachmentID.
type AttachVolume struct {
	ID           string    `json:"id"`
	ProjectID    string    `json:"project_id"`
	AttachmentID string    `json:"attachment_id"`
	InstanceUUID string    `json:"instance_uuid,omitempty"`
	HostName     string    `json:"host_name,omitempty"`
	Mountpoint   string    `json:"mountpoint"`
	Mode         string    `json:"mode"`
	At           time.Time `json:"at"`
}

// BeginDetaching is os-begin_detaching.
type BeginDetaching struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	At        time.Time `json:"at"`
}

// RollDetaching is os-roll_detaching.
type RollDetaching struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	At        time.Time `json:"at"`
}

// DetachVolume is os-detach; AttachmentID may be empty for a volume with
// at most one attachment.
type DetachVolume struct {
	ID           string    `json:"id"`
	ProjectID    string    `json:"project_id"`
	AttachmentID string    `json:"attachment_id,omitempty"`
	At           time.Time `json:"at"`
}

// ForceDetachVolume is the admin os-force_detach: the named attachment,
// or every attachment of the volume when AttachmentID is empty, is removed
// whatever the volume's status, and the statuses are recomputed from the
// attachments left.
type ForceDetachVolume struct {
	ID           string    `json:"id"`
	ProjectID    string    `json:"project_id"`
	AttachmentID string    `json:"attachment_id,omitempty"`
	At           time.Time `json:"at"`
}

func (CreateAttachment) CommandType() CommandType   { return CmdCreateAttachment }
func (UpdateAttachment) CommandType() CommandType   { return CmdUpdateAttachment }
func (CompleteAttachment) CommandType() CommandType { return CmdCompleteAttachment }
func (DeleteAttachment) CommandType() CommandType   { return CmdDeleteAttachment }
func (ReserveVolume) CommandType() CommandType      { return CmdReserveVolume }
func (UnreserveVolume) CommandType() CommandType    { return CmdUnreserveVolume }
func (AttachVolume) CommandType() CommandType       { return CmdAttachVolume }
func (BeginDetaching) CommandType() CommandType     { return CmdBeginDetaching }
func (RollDetaching) CommandType() CommandType      { return CmdRollDetaching }
func (DetachVolume) CommandType() CommandType       { return CmdDetachVolume }
func (ForceDetachVolume) CommandType() CommandType  { return CmdForceDetachVolume }

func attachmentNotFound(id string) *Error {
	return errorf(KindNotFound, "Volume attachment could not be found with filter: attachment_id = %s.", id)
}

// orStr is Cinder's utils.build_or_str.
func orStr(items ...string) string { return strings.Join(items, " or ") }

// volumeAttachments returns a volume's attachments sorted by creation time
// then ID. Caller holds mu.
func (s *State) volumeAttachments(volumeID string) []*Attachment {
	var out []*Attachment
	for _, a := range s.d.Attachments {
		if a.VolumeID == volumeID {
			out = append(out, a)
		}
	}
	sortAttachments(out)
	return out
}

func sortAttachments(out []*Attachment) {
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
}

// StatusesFromAttachments is Cinder's _get_statuses_from_attachments: the
// alphabetically first attach status of the attachments not in an error_*
// status (attached > attaching > detaching > reserved) is the volume's
// attach status, none is detached; the volume status maps attached to
// in-use and detached to available and is the attach status otherwise.
func StatusesFromAttachments(atts []*Attachment) (status, attachStatus string) {
	for _, a := range atts {
		if strings.HasPrefix(a.AttachStatus, "error_") {
			continue
		}
		if attachStatus == "" || a.AttachStatus < attachStatus {
			attachStatus = a.AttachStatus
		}
	}
	if attachStatus == "" {
		attachStatus = AttachDetached
	}
	switch attachStatus {
	case AttachAttached:
		return StatusInUse, attachStatus
	case AttachDetached:
		return StatusAvailable, attachStatus
	}
	return attachStatus, attachStatus
}

// recompute sets a volume's statuses from its attachments (and touches
// it: its attachments changed). Caller holds mu.
func (s *State) recompute(volumeID string, at time.Time) {
	v := s.d.Volumes[volumeID]
	if v == nil {
		return
	}
	status, attach := StatusesFromAttachments(s.volumeAttachments(volumeID))
	nv := cloneVolume(v)
	nv.Status, nv.AttachStatus = status, attach
	touch(nv, at)
	s.put(nv)
}

// setVolumeStatus replaces a volume with its status (and, when non-empty,
// attach status) changed.
func (s *State) setVolumeStatus(v *Volume, status, attach string, at time.Time) {
	nv := cloneVolume(v)
	nv.Status = status
	if attach != "" {
		nv.AttachStatus = attach
	}
	touch(nv, at)
	s.put(nv)
}

// ownAttachment finds an attachment visible to project ("" = any).
func (s *State) ownAttachment(id, project string) (*Attachment, *Error) {
	a := s.d.Attachments[id]
	if a == nil || (project != "" && a.ProjectID != project) {
		return nil, attachmentNotFound(id)
	}
	return a, nil
}

// resolveMode turns the null attach mode into rw, or ro for a read-only
// volume.
func resolveMode(mode string, v *Volume) string {
	if mode != "" && mode != AttachModeNull {
		return mode
	}
	if v.ReadOnly {
		return AttachModeRO
	}
	return AttachModeRW
}

func (s *State) applyCreateAttachment(c *CreateAttachment) *Error {
	a := c.Attachment
	if old := s.d.Attachments[a.ID]; old != nil {
		if old.VolumeID == a.VolumeID && old.CreatedAt.Equal(a.CreatedAt) {
			return nil // the same command retried
		}
		return errorf(KindConflict, "Volume attachment %s already exists.", a.ID)
	}
	v, err := s.ownVolume(a.VolumeID, a.ProjectID)
	if err != nil {
		return err
	}
	if strings.Contains(v.Status, "error") {
		return errorf(KindInvalid, "Volume attachments can not be created if the volume is in an error state. The Volume %s currently has a status of: %s ", v.ID, v.Status)
	}
	expected := []string{StatusAvailable, StatusDownloading}
	if v.Multiattach {
		expected = []string{StatusAvailable, StatusInUse, StatusDownloading}
	}
	if !slices.Contains(expected, v.Status) {
		// Re-attaching the same volume to the same instance (a move) is
		// allowed (LP 1694530).
		override := false
		if a.InstanceUUID != "" && (v.Status == StatusInUse || v.Status == StatusReserved) {
			for _, o := range s.volumeAttachments(v.ID) {
				if o.InstanceUUID == a.InstanceUUID {
					override = true
					break
				}
			}
		}
		if !override {
			return errorf(KindInvalid, "Invalid volume: Volume %s status must be %s", v.ID, orStr(expected...))
		}
	}
	if a.AttachMode == "" {
		a.AttachMode = AttachModeNull
	}
	if a.AttachMode != AttachModeNull && a.AttachMode != AttachModeRW && a.AttachMode != AttachModeRO {
		return errorf(KindInvalid, "Invalid attach mode %s.", a.AttachMode)
	}
	a.UpdatedAt = a.CreatedAt
	a.AttachedAt, a.DetachedAt = time.Time{}, time.Time{}
	if a.Connector != nil {
		c := *a.Connector
		a.Connector = &c
		a.AttachStatus = AttachAttaching
		a.AttachMode = resolveMode(a.AttachMode, v)
		s.d.Attachments[a.ID] = &a
		s.recompute(v.ID, a.CreatedAt)
		return nil
	}
	a.AttachStatus = AttachReserved
	a.ConnectionInfo = ""
	s.d.Attachments[a.ID] = &a
	// Cinder's _attachment_reserve: the volume becomes reserved.
	attach := v.AttachStatus
	if attach != AttachAttached {
		attach = AttachReserved
	}
	s.setVolumeStatus(v, StatusReserved, attach, a.CreatedAt)
	return nil
}

func (s *State) applyUpdateAttachment(c *UpdateAttachment) *Error {
	a, err := s.ownAttachment(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	v := s.d.Volumes[a.VolumeID]
	if v == nil {
		return volumeNotFound(a.VolumeID)
	}
	if strings.Contains(v.Status, "error") {
		return errorf(KindConflict, "Unable to update the attachment: volume %s is in %s status.", v.ID, v.Status)
	}
	na := *a
	conn := c.Connector
	na.Connector = &conn
	na.ConnectionInfo = c.ConnectionInfo
	na.AttachMode = resolveMode(a.AttachMode, v)
	if na.AttachStatus != AttachAttached {
		na.AttachStatus = AttachAttaching
	}
	na.UpdatedAt = c.At
	s.d.Attachments[na.ID] = &na
	s.recompute(v.ID, c.At)
	return nil
}

func (s *State) applyCompleteAttachment(c *CompleteAttachment) *Error {
	a, err := s.ownAttachment(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if a.AttachStatus == AttachAttached {
		return nil
	}
	na := *a
	na.AttachStatus = AttachAttached
	na.AttachedAt, na.UpdatedAt = c.At, c.At
	s.d.Attachments[na.ID] = &na
	s.recompute(a.VolumeID, c.At)
	return nil
}

func (s *State) applyDeleteAttachment(c *DeleteAttachment) *Error {
	a, err := s.ownAttachment(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	delete(s.d.Attachments, a.ID)
	s.recompute(a.VolumeID, c.At)
	return nil
}

func (s *State) applyReserveVolume(c *ReserveVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	expected := []string{StatusAvailable}
	if v.Multiattach {
		expected = []string{StatusAvailable, StatusInUse}
	}
	if !slices.Contains(expected, v.Status) {
		return errorf(KindInvalid, "Invalid volume: Volume status must be %s to reserve, but the status is %s.", orStr(expected...), v.Status)
	}
	s.setVolumeStatus(v, StatusAttaching, "", c.At)
	return nil
}

func (s *State) applyUnreserveVolume(c *UnreserveVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if v.Status != StatusAttaching {
		return nil // Cinder's conditional update: silently nothing
	}
	status := StatusAvailable
	if len(s.volumeAttachments(v.ID)) > 0 {
		status = StatusInUse
	}
	s.setVolumeStatus(v, status, "", c.At)
	return nil
}

func (s *State) applyAttachVolume(c *AttachVolume) *Error {
	if old := s.d.Attachments[c.AttachmentID]; old != nil {
		if old.VolumeID == c.ID && old.CreatedAt.Equal(c.At) {
			return nil // the same command retried
		}
		return errorf(KindConflict, "Volume attachment %s already exists.", c.AttachmentID)
	}
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if v.Status == StatusMaintenance {
		return errorf(KindInvalid, "Invalid volume: The volume cannot be attached in maintenance mode.")
	}
	if c.InstanceUUID == "" && c.HostName == "" {
		return errorf(KindInvalid, "Invalid request to attach volume to an invalid target")
	}
	mode := c.Mode
	if mode == "" {
		mode = AttachModeRW
	}
	if mode != AttachModeRW && mode != AttachModeRO {
		return errorf(KindInvalid, "Invalid attaching mode '%s' for volume %s.", mode, v.ID)
	}
	if v.ReadOnly && mode != AttachModeRO {
		return errorf(KindInvalid, "Invalid attaching mode '%s' for volume %s.", mode, v.ID)
	}
	if v.Status == StatusInUse && !v.Multiattach && v.MigrationStatus == "" {
		return errorf(KindInvalid, "Invalid volume: volume is already attached")
	}
	if !slices.Contains([]string{StatusAvailable, StatusAttaching, StatusReserved, StatusInUse}, v.Status) {
		return errorf(KindInvalid, "Invalid volume: Volume %s status must be available or attaching to attach, but current status is: %s.", v.ID, v.Status)
	}
	a := &Attachment{ID: c.AttachmentID, VolumeID: v.ID, ProjectID: v.ProjectID, InstanceUUID: c.InstanceUUID,
		HostName: c.HostName, Mountpoint: c.Mountpoint, AttachStatus: AttachAttached, AttachMode: mode,
		AttachedAt: c.At, CreatedAt: c.At, UpdatedAt: c.At}
	s.d.Attachments[a.ID] = a
	s.recompute(v.ID, c.At)
	return nil
}

func (s *State) applyBeginDetaching(c *BeginDetaching) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if v.Status != StatusInUse || v.AttachStatus != AttachAttached || !migrationAvailable(v) {
		return errorf(KindInvalid, "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach.")
	}
	s.setVolumeStatus(v, StatusDetaching, "", c.At)
	return nil
}

// migrationAvailable is Cinder's AVAILABLE_MIGRATION_STATUS check.
func migrationAvailable(v *Volume) bool {
	return slices.Contains([]string{"", "deleting", "error", "success"}, v.MigrationStatus)
}

func (s *State) applyRollDetaching(c *RollDetaching) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if v.Status == StatusDetaching {
		s.setVolumeStatus(v, StatusInUse, "", c.At)
	}
	return nil
}

func (s *State) applyDetachVolume(c *DetachVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if v.Status == StatusMaintenance {
		return errorf(KindInvalid, "Invalid volume: The volume cannot be detached in maintenance mode.")
	}
	atts := s.volumeAttachments(v.ID)
	var a *Attachment
	switch {
	case c.AttachmentID != "":
		a = s.d.Attachments[c.AttachmentID]
		if a == nil || a.VolumeID != v.ID {
			return attachmentNotFound(c.AttachmentID)
		}
	case len(atts) == 1:
		a = atts[0]
	case len(atts) > 1:
		return errorf(KindInvalid, "Invalid volume: Detach volume failed: More than one attachment, but no attachment_id provided.")
	default:
		// "Volume detach called, but volume not attached": the manager
		// marks the volume available and detached.
		if v.Status != StatusAvailable || v.AttachStatus != AttachDetached {
			s.setVolumeStatus(v, StatusAvailable, AttachDetached, c.At)
		}
		return nil
	}
	delete(s.d.Attachments, a.ID)
	s.recompute(v.ID, c.At)
	return nil
}

func (s *State) applyForceDetachVolume(c *ForceDetachVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if c.AttachmentID != "" {
		a := s.d.Attachments[c.AttachmentID]
		if a == nil || a.VolumeID != v.ID {
			return attachmentNotFound(c.AttachmentID)
		}
		delete(s.d.Attachments, a.ID)
	} else {
		s.clearAttachments(v.ID)
	}
	s.recompute(v.ID, c.At)
	return nil
}

// clearAttachments removes every attachment of a volume (os-reset_status
// with attach_status detached). Caller holds mu.
func (s *State) clearAttachments(volumeID string) {
	for id, a := range s.d.Attachments {
		if a.VolumeID == volumeID {
			delete(s.d.Attachments, id)
		}
	}
}

// ---- readers ----

// Attachment returns an attachment by ID (nil if absent). Do not modify it.
func (s *State) Attachment(id string) *Attachment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Attachments[id]
}

// VolumeAttachments returns a volume's attachments by creation time.
func (s *State) VolumeAttachments(volumeID string) []*Attachment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.volumeAttachments(volumeID)
}

// AttachmentFilter selects attachments for listing.
type AttachmentFilter struct {
	ProjectID    string // "" = all projects
	VolumeID     string
	Status       string
	InstanceUUID string
}

// Attachments returns the attachments matching f, by creation time.
func (s *State) Attachments(f AttachmentFilter) []*Attachment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Attachment
	for a := range maps.Values(s.d.Attachments) {
		if (f.ProjectID != "" && a.ProjectID != f.ProjectID) || (f.VolumeID != "" && a.VolumeID != f.VolumeID) ||
			(f.Status != "" && a.AttachStatus != f.Status) || (f.InstanceUUID != "" && a.InstanceUUID != f.InstanceUUID) {
			continue
		}
		out = append(out, a)
	}
	sortAttachments(out)
	return out
}

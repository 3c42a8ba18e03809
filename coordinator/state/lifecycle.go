package state

import (
	"maps"
	"slices"
	"time"
)

// Lifecycle commands (issue 3): snapshots, extend, revert. Values are
// persisted in the Raft log: never renumber.
const (
	CmdCreateSnapshot       CommandType = 18
	CmdSnapshotCreated      CommandType = 19
	CmdSnapshotCreateFailed CommandType = 20
	CmdUpdateSnapshot       CommandType = 21
	CmdDeleteSnapshot       CommandType = 22
	CmdSnapshotDeleted      CommandType = 23
	CmdSnapshotDeleteFailed CommandType = 24
	CmdSetSnapshotStatus    CommandType = 25
	CmdExtendVolume         CommandType = 26
	CmdVolumeExtended       CommandType = 27
	CmdVolumeExtendFailed   CommandType = 28
	CmdRevertVolume         CommandType = 29
	CmdVolumeReverted       CommandType = 30
	CmdVolumeRevertFailed   CommandType = 31
)

// CreateSnapshot checks and reserves snapshot quota and inserts the
// snapshot in status creating on its volume's pool.
type CreateSnapshot struct {
	Snapshot Snapshot `json:"snapshot"`
	// AllowInUse permits a snapshot of an in-use volume (force, or
	// microversion 3.66 and later).
	AllowInUse bool `json:"allow_in_use"`
}

// SnapshotCreated marks a snapshot available and commits its quota.
type SnapshotCreated struct {
	ID       string    `json:"id"`
	Location string    `json:"location"`
	At       time.Time `json:"at"`
}

// SnapshotCreateFailed moves a snapshot to error and releases its quota.
type SnapshotCreateFailed struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// UpdateSnapshot changes name, description or metadata.
type UpdateSnapshot struct {
	ID          string            `json:"id"`
	ProjectID   string            `json:"project_id"`
	Name        *string           `json:"name,omitempty"`
	Description *string           `json:"description,omitempty"`
	MetaMode    string            `json:"meta_mode,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	DeleteKey   string            `json:"delete_key,omitempty"`
	At          time.Time         `json:"at"`
}

// DeleteSnapshot starts deleting a snapshot (available or error, unless Force).
type DeleteSnapshot struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	Force     bool      `json:"force"`
	At        time.Time `json:"at"`
}

// SnapshotDeleted removes a snapshot and frees its quota.
type SnapshotDeleted struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// SnapshotDeleteFailed moves a deleting snapshot to error_deleting.
type SnapshotDeleteFailed struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Snapshot status change modes.
const (
	SnapStatusReset  = "reset"  // os-reset_status (admin): any valid status
	SnapStatusUpdate = "update" // os-update_snapshot_status: Cinder's transitions
)

// SetSnapshotStatus is os-reset_status / os-update_snapshot_status.
type SetSnapshotStatus struct {
	ID       string    `json:"id"`
	Mode     string    `json:"mode"`
	Status   string    `json:"status"`
	Progress string    `json:"progress,omitempty"`
	At       time.Time `json:"at"`
}

// ExtendVolume checks and reserves the growth and moves the volume to
// extending.
type ExtendVolume struct {
	ID         string    `json:"id"`
	ProjectID  string    `json:"project_id"`
	NewSizeGB  int64     `json:"new_size"`
	AllowInUse bool      `json:"allow_in_use"`
	At         time.Time `json:"at"`
}

// VolumeExtended commits an extend: new size, previous status.
type VolumeExtended struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// VolumeExtendFailed moves the volume to error_extending, releasing the growth.
type VolumeExtendFailed struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// RevertVolume starts reverting a volume to its latest snapshot.
type RevertVolume struct {
	ID         string    `json:"id"`
	ProjectID  string    `json:"project_id"`
	SnapshotID string    `json:"snapshot_id"`
	At         time.Time `json:"at"`
}

// VolumeReverted ends a revert: volume and snapshot available again.
type VolumeReverted struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// VolumeRevertFailed ends a failed revert: volume error, snapshot available
// (Cinder's revert failure handling).
type VolumeRevertFailed struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

func (CreateSnapshot) CommandType() CommandType       { return CmdCreateSnapshot }
func (SnapshotCreated) CommandType() CommandType      { return CmdSnapshotCreated }
func (SnapshotCreateFailed) CommandType() CommandType { return CmdSnapshotCreateFailed }
func (UpdateSnapshot) CommandType() CommandType       { return CmdUpdateSnapshot }
func (DeleteSnapshot) CommandType() CommandType       { return CmdDeleteSnapshot }
func (SnapshotDeleted) CommandType() CommandType      { return CmdSnapshotDeleted }
func (SnapshotDeleteFailed) CommandType() CommandType { return CmdSnapshotDeleteFailed }
func (SetSnapshotStatus) CommandType() CommandType    { return CmdSetSnapshotStatus }
func (ExtendVolume) CommandType() CommandType         { return CmdExtendVolume }
func (VolumeExtended) CommandType() CommandType       { return CmdVolumeExtended }
func (VolumeExtendFailed) CommandType() CommandType   { return CmdVolumeExtendFailed }
func (RevertVolume) CommandType() CommandType         { return CmdRevertVolume }
func (VolumeReverted) CommandType() CommandType       { return CmdVolumeReverted }
func (VolumeRevertFailed) CommandType() CommandType   { return CmdVolumeRevertFailed }

func snapshotNotFound(id string) *Error {
	return errorf(KindNotFound, "Snapshot %s could not be found.", id)
}

func (s *State) ownSnapshot(id, project string) (*Snapshot, *Error) {
	sn := s.d.Snapshots[id]
	if sn == nil || (project != "" && sn.ProjectID != project) {
		return nil, snapshotNotFound(id)
	}
	return sn, nil
}

func cloneSnap(sn *Snapshot) *Snapshot {
	c := *sn
	c.Metadata = maps.Clone(sn.Metadata)
	return &c
}

// checkSnapshotQuota applies Cinder's snapshot limits: snapshots and
// gigabytes, overall and per type.
func (s *State) checkSnapshotQuota(project, typeID string, size int64) *Error {
	lim := s.limits(project)
	typeName := ""
	if t := s.d.Types[typeID]; t != nil {
		typeName = t.Name
	}
	used := func(key string) int64 {
		if u := s.usage[project][key]; u != nil {
			return u.InUse + u.Reserved
		}
		return 0
	}
	checks := []struct {
		name, key string
		add       int64
	}{
		{QuotaSnapshots, usageKey(QuotaSnapshots, ""), 1},
		{QuotaGigabytes, usageKey(QuotaGigabytes, ""), size},
	}
	if typeName != "" {
		checks = append(checks,
			struct {
				name, key string
				add       int64
			}{QuotaSnapshots + "_" + typeName, usageKey(QuotaSnapshots, typeID), 1},
			struct {
				name, key string
				add       int64
			}{QuotaGigabytes + "_" + typeName, usageKey(QuotaGigabytes, typeID), size})
	}
	for _, c := range checks {
		limit, ok := lim[c.name]
		if !ok || limit < 0 || used(c.key)+c.add <= limit {
			continue
		}
		if c.add == 1 && c.name != QuotaGigabytes {
			return quotaErr("SnapshotLimitExceeded", "Maximum number of snapshots allowed (%d) exceeded for quota '%s'.", limit, c.name)
		}
		return quotaErr("VolumeSizeExceedsAvailableQuota",
			"Requested volume or snapshot exceeds allowed %s quota. Requested %dG, quota is %dG and %dG has been consumed.",
			c.name, size, limit, used(c.key))
	}
	return nil
}

func (s *State) applyCreateSnapshot(c *CreateSnapshot) *Error {
	sn := c.Snapshot
	if old := s.d.Snapshots[sn.ID]; old != nil {
		if old.ProjectID == sn.ProjectID && old.CreatedAt.Equal(sn.CreatedAt) {
			return nil // the same command retried
		}
		return errorf(KindConflict, "Snapshot %s already exists.", sn.ID)
	}
	v, err := s.ownVolume(sn.VolumeID, sn.ProjectID)
	if err != nil {
		return err
	}
	switch {
	case v.Status == StatusAvailable:
	case v.Status == StatusInUse && c.AllowInUse:
	case v.Status == StatusInUse:
		return errorf(KindInvalid, "Invalid volume: Volume %s status must be available, but current status is: in-use. Use force to snapshot an in-use volume.", v.ID)
	default:
		return errorf(KindInvalid, "Invalid volume: Volume %s status must be available or in-use, but current status is: %s.", v.ID, v.Status)
	}
	if err := s.checkSnapshotQuota(sn.ProjectID, v.TypeID, v.SizeGB); err != nil {
		return err
	}
	n := cloneSnap(&sn)
	if n.Metadata == nil {
		n.Metadata = map[string]string{}
	}
	n.SizeGB, n.TypeID, n.Pool = v.SizeGB, v.TypeID, v.Pool
	n.Status, n.Progress, n.ConsumesQuota = SnapCreating, "0%", true
	n.UpdatedAt, n.TaskStartedAt = sn.CreatedAt, sn.CreatedAt
	s.putSnap(n)
	return nil
}

func (s *State) snapIn(id string, statuses ...string) (*Snapshot, *Error) {
	sn := s.d.Snapshots[id]
	if sn == nil {
		return nil, snapshotNotFound(id)
	}
	if !slices.Contains(statuses, sn.Status) {
		return nil, errorf(KindInvalid, "snapshot %s is %s, not %v", id, sn.Status, statuses)
	}
	return sn, nil
}

func (s *State) applySnapshotCreated(c *SnapshotCreated) *Error {
	sn, err := s.snapIn(c.ID, SnapCreating)
	if err != nil {
		return err
	}
	n := cloneSnap(sn)
	n.Status, n.Progress, n.ProviderLocation, n.ErrorMessage, n.UpdatedAt = SnapAvailable, "100%", c.Location, "", c.At
	s.putSnap(n)
	return nil
}

func (s *State) applySnapshotCreateFailed(c *SnapshotCreateFailed) *Error {
	sn, err := s.snapIn(c.ID, SnapCreating)
	if err != nil {
		return err
	}
	n := cloneSnap(sn)
	n.Status, n.ErrorMessage, n.ConsumesQuota, n.UpdatedAt = SnapError, c.Reason, false, c.At
	s.putSnap(n)
	return nil
}

func (s *State) applyUpdateSnapshot(c *UpdateSnapshot) *Error {
	sn, err := s.ownSnapshot(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	n := cloneSnap(sn)
	if c.Name != nil {
		n.Name = *c.Name
	}
	if c.Description != nil {
		n.Description = *c.Description
	}
	md, merr := applyMetadata(n.Metadata, c.MetaMode, c.Metadata, c.DeleteKey)
	if merr != nil {
		if merr.Kind == KindNotFound {
			merr.Msg = "Metadata key " + c.DeleteKey + " could not be found for snapshot " + c.ID + "."
		}
		return merr
	}
	n.Metadata, n.UpdatedAt = md, c.At
	s.putSnap(n)
	return nil
}

// applyMetadata returns metadata changed by mode (see the Meta* modes).
func applyMetadata(cur map[string]string, mode string, md map[string]string, delKey string) (map[string]string, *Error) {
	out := maps.Clone(cur)
	if out == nil {
		out = map[string]string{}
	}
	switch mode {
	case MetaKeep:
	case MetaReplace:
		out = maps.Clone(md)
		if out == nil {
			out = map[string]string{}
		}
	case MetaMerge:
		maps.Copy(out, md)
	case MetaDelete:
		if _, ok := out[delKey]; !ok {
			return nil, errorf(KindNotFound, "Metadata key %s could not be found.", delKey)
		}
		delete(out, delKey)
	default:
		return nil, errorf(KindInvalid, "unknown metadata mode %q", mode)
	}
	return out, nil
}

func (s *State) applyDeleteSnapshot(c *DeleteSnapshot) *Error {
	sn, err := s.ownSnapshot(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if sn.Status == SnapDeleting {
		return nil
	}
	if !c.Force && sn.Status != SnapAvailable && sn.Status != SnapError {
		return errorf(KindInvalid, "Invalid snapshot: Snapshot status must be available or error (status %s).", sn.Status)
	}
	if v := s.d.Volumes[sn.VolumeID]; !c.Force && v != nil && v.Status == StatusReverting && v.RevertSnapshotID == sn.ID {
		return errorf(KindInvalid, "Invalid snapshot: the volume is being reverted to it.")
	}
	n := cloneSnap(sn)
	n.Status, n.TaskStartedAt, n.UpdatedAt = SnapDeleting, c.At, c.At
	s.putSnap(n)
	return nil
}

func (s *State) applySnapshotDeleted(c *SnapshotDeleted) *Error {
	sn := s.d.Snapshots[c.ID]
	if sn == nil {
		return nil
	}
	if sn.Status != SnapDeleting {
		return errorf(KindInvalid, "snapshot %s is %s, not deleting", c.ID, sn.Status)
	}
	s.removeSnap(c.ID)
	return nil
}

func (s *State) applySnapshotDeleteFailed(c *SnapshotDeleteFailed) *Error {
	sn, err := s.snapIn(c.ID, SnapDeleting)
	if err != nil {
		return err
	}
	n := cloneSnap(sn)
	n.Status, n.ErrorMessage, n.UpdatedAt = SnapErrorDeleting, c.Reason, c.At
	s.putSnap(n)
	return nil
}

// SnapshotStatuses are the values os-reset_status accepts for snapshots.
var SnapshotStatuses = []string{"error", "available", "creating", "deleting", "error_deleting", "updating", "unmanaging", "backing-up", "restoring"}

// snapshotUpdateTransitions are os-update_snapshot_status's allowed moves.
var snapshotUpdateTransitions = map[string][]string{
	SnapCreating: {SnapCreating, SnapAvailable, SnapError},
	SnapDeleting: {SnapDeleting, SnapErrorDeleting},
}

func (s *State) applySetSnapshotStatus(c *SetSnapshotStatus) *Error {
	sn := s.d.Snapshots[c.ID]
	if sn == nil {
		return snapshotNotFound(c.ID)
	}
	switch c.Mode {
	case SnapStatusReset:
		if !slices.Contains(SnapshotStatuses, c.Status) {
			return errorf(KindInvalid, "Invalid status %q.", c.Status)
		}
	case SnapStatusUpdate:
		if !slices.Contains(snapshotUpdateTransitions[sn.Status], c.Status) {
			return errorf(KindInvalid, "Provided snapshot status %s not allowed for snapshot with status %s.", c.Status, sn.Status)
		}
	default:
		return errorf(KindInvalid, "unknown status mode %q", c.Mode)
	}
	n := cloneSnap(sn)
	n.Status, n.UpdatedAt = c.Status, c.At
	if c.Progress != "" {
		n.Progress = c.Progress
	}
	if n.Status == SnapCreating || n.Status == SnapDeleting {
		n.TaskStartedAt = c.At
	}
	s.putSnap(n)
	return nil
}

func (s *State) applyExtendVolume(c *ExtendVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	switch {
	case v.Status == StatusAvailable:
	case v.Status == StatusInUse && c.AllowInUse && s.onlineExtend(v.Pool):
	default:
		return errorf(KindInvalid, "Invalid volume: Volume %s status must be available or in-use (microversion 3.42 or later, on a backend that extends attached volumes), but current status is: %s.", v.ID, v.Status)
	}
	if c.NewSizeGB <= v.SizeGB {
		return errorf(KindInvalid, "Invalid input received: New size for extend must be greater than current size. (current: %d, extended: %d).", v.SizeGB, c.NewSizeGB)
	}
	lim := s.limits(v.ProjectID)
	if per := lim[QuotaPerVolumeGigabytes]; per >= 0 && c.NewSizeGB > per {
		return quotaErr("VolumeSizeExceedsLimit", "Requested volume size %dG is larger than maximum allowed limit %dG.", c.NewSizeGB, per)
	}
	grow := c.NewSizeGB - v.SizeGB
	names := map[string]string{usageKey(QuotaGigabytes, ""): QuotaGigabytes}
	if t := s.d.Types[v.TypeID]; t != nil {
		names[usageKey(QuotaGigabytes, v.TypeID)] = QuotaGigabytes + "_" + t.Name
	}
	for _, key := range slices.Sorted(maps.Keys(names)) {
		name := names[key]
		limit, ok := lim[name]
		if !ok || limit < 0 {
			continue
		}
		var used int64
		if u := s.usage[v.ProjectID][key]; u != nil {
			used = u.InUse + u.Reserved
		}
		if used+grow > limit {
			return quotaErr("VolumeSizeExceedsAvailableQuota",
				"Requested volume or snapshot exceeds allowed %s quota. Requested %dG, quota is %dG and %dG has been consumed.",
				name, grow, limit, used)
		}
	}
	nv := cloneVolume(v)
	nv.PreviousStatus, nv.Status, nv.ExtendToGB = v.Status, StatusExtending, c.NewSizeGB
	nv.TaskStartedAt = c.At
	touch(nv, c.At)
	s.put(nv)
	return nil
}

// onlineExtend reports whether a pool's driver extends attached volumes
// (Cinder's online_extend_support capability).
func (s *State) onlineExtend(pool string) bool {
	p := s.d.Pools[pool]
	if p == nil {
		return false
	}
	b, ok := boolCapability(p.Info.Capabilities["online_extend_support"])
	return ok && b
}

func boolCapability(v string) (bool, bool) {
	switch v {
	case "True", "true", "1", "yes":
		return true, true
	case "False", "false", "0", "no":
		return false, true
	}
	return false, false
}

func (s *State) volIn(id string, status string) (*Volume, *Error) {
	v := s.d.Volumes[id]
	if v == nil {
		return nil, volumeNotFound(id)
	}
	if v.Status != status {
		return nil, errorf(KindInvalid, "volume %s is %s, not %s", id, v.Status, status)
	}
	return v, nil
}

func (s *State) applyVolumeExtended(c *VolumeExtended) *Error {
	v, err := s.volIn(c.ID, StatusExtending)
	if err != nil {
		return err
	}
	nv := cloneVolume(v)
	nv.SizeGB, nv.ExtendToGB = v.ExtendToGB, 0
	nv.Status, nv.PreviousStatus, nv.ErrorMessage = v.PreviousStatus, "", ""
	if nv.Status == "" {
		nv.Status = StatusAvailable
	}
	touch(nv, c.At)
	s.put(nv)
	return nil
}

func (s *State) applyVolumeExtendFailed(c *VolumeExtendFailed) *Error {
	v, err := s.volIn(c.ID, StatusExtending)
	if err != nil {
		return err
	}
	nv := cloneVolume(v)
	nv.ExtendToGB, nv.PreviousStatus = 0, ""
	nv.Status, nv.ErrorMessage = StatusErrorExtend, c.Reason
	touch(nv, c.At)
	s.put(nv)
	return nil
}

// latestSnapshot is the volume's most recently created snapshot.
func (s *State) latestSnapshot(volumeID string) *Snapshot {
	var latest *Snapshot
	for _, sn := range s.d.Snapshots {
		if sn.VolumeID != volumeID {
			continue
		}
		if latest == nil || sn.CreatedAt.After(latest.CreatedAt) || (sn.CreatedAt.Equal(latest.CreatedAt) && sn.ID > latest.ID) {
			latest = sn
		}
	}
	return latest
}

func (s *State) applyRevertVolume(c *RevertVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	sn, err := s.ownSnapshot(c.SnapshotID, c.ProjectID)
	if err != nil {
		return err
	}
	if sn.VolumeID != v.ID {
		return errorf(KindInvalid, "Invalid input received: Snapshot %s does not belong to volume %s.", sn.ID, v.ID)
	}
	if latest := s.latestSnapshot(v.ID); latest == nil || latest.ID != sn.ID {
		return errorf(KindInvalid, "Invalid snapshot: Cannot revert volume %s to snapshot %s, only the latest snapshot of the volume can be used.", v.ID, sn.ID)
	}
	if v.Status != StatusAvailable {
		return errorf(KindInvalid, "Invalid volume: Volume %s status must be available, but current status is: %s.", v.ID, v.Status)
	}
	if sn.Status != SnapAvailable {
		return errorf(KindInvalid, "Invalid snapshot: Snapshot %s status must be available, but current status is: %s.", sn.ID, sn.Status)
	}
	if v.SizeGB != sn.SizeGB {
		return errorf(KindInvalid, "Invalid volume: Volume %s size %dG differs from its snapshot's %dG; Kiln reverts only snapshots of the same size.", v.ID, v.SizeGB, sn.SizeGB)
	}
	nv := cloneVolume(v)
	nv.Status, nv.RevertSnapshotID, nv.TaskStartedAt = StatusReverting, sn.ID, c.At
	touch(nv, c.At)
	s.put(nv)
	ns := cloneSnap(sn)
	ns.Status, ns.UpdatedAt = SnapRestoring, c.At
	s.putSnap(ns)
	return nil
}

func (s *State) endRevert(id string, at time.Time, volStatus, reason string) *Error {
	v, err := s.volIn(id, StatusReverting)
	if err != nil {
		return err
	}
	if sn := s.d.Snapshots[v.RevertSnapshotID]; sn != nil && sn.Status == SnapRestoring {
		ns := cloneSnap(sn)
		ns.Status, ns.UpdatedAt = SnapAvailable, at
		s.putSnap(ns)
	}
	nv := cloneVolume(v)
	nv.Status, nv.RevertSnapshotID, nv.ErrorMessage = volStatus, "", reason
	touch(nv, at)
	s.put(nv)
	return nil
}

func (s *State) applyVolumeReverted(c *VolumeReverted) *Error {
	return s.endRevert(c.ID, c.At, StatusAvailable, "")
}

func (s *State) applyVolumeRevertFailed(c *VolumeRevertFailed) *Error {
	return s.endRevert(c.ID, c.At, StatusError, c.Reason)
}

package state

import (
	"maps"
	"slices"
	"sort"
	"time"
)

// Admin and miscellaneous volume commands and QoS specs (issue 3). Values
// are persisted in the Raft log: never renumber.
const (
	CmdResetVolumeStatus       CommandType = 32
	CmdSetVolumeBootable       CommandType = 33
	CmdSetVolumeReadOnly       CommandType = 34
	CmdSetImageMetadata        CommandType = 35
	CmdDeleteImageMetadata     CommandType = 36
	CmdCreateQoSSpecs          CommandType = 37
	CmdUpdateQoSSpecs          CommandType = 38
	CmdDeleteQoSSpecs          CommandType = 39
	CmdDeleteQoSSpecsKeys      CommandType = 40
	CmdAssociateQoSSpecs       CommandType = 41
	CmdDisassociateQoSSpecs    CommandType = 42
	CmdDisassociateAllQoSSpecs CommandType = 43
)

// VolumeStatuses is Cinder's VolumeStatus.ALL, the statuses os-reset_status
// accepts (before its own refusals).
var VolumeStatuses = []string{"creating", "available", "deleting", "error", "error_deleting",
	"error_managing", "managing", "attaching", "in-use", "detaching", "maintenance",
	"restoring-backup", "error_restoring", "reserved", "awaiting-transfer", "backing-up",
	"error_backing-up", "error_extending", "downloading", "uploading", "retyping", "extending"}

// VolumeAttachStatuses are those os-reset_status accepts.
var VolumeAttachStatuses = []string{"attached", AttachDetached}

// VolumeMigrationStatuses is Cinder's VolumeMigrationStatus.ALL ("none"
// clears the migration status).
var VolumeMigrationStatuses = []string{"migrating", "error", "success", "completing", "none", "starting"}

// ResetVolumeStatus is the admin os-reset_status: each non-empty field is
// set as given (MigrationStatus "none" clears it).
type ResetVolumeStatus struct {
	ID              string    `json:"id"`
	ProjectID       string    `json:"project_id"`
	Status          string    `json:"status,omitempty"`
	AttachStatus    string    `json:"attach_status,omitempty"`
	MigrationStatus string    `json:"migration_status,omitempty"`
	At              time.Time `json:"at"`
}

// SetVolumeBootable is os-set_bootable.
type SetVolumeBootable struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	Bootable  bool      `json:"bootable"`
	At        time.Time `json:"at"`
}

// SetVolumeReadOnly is os-update_readonly_flag (volume must be available).
type SetVolumeReadOnly struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	ReadOnly  bool      `json:"readonly"`
	At        time.Time `json:"at"`
}

// SetImageMetadata merges keys into a volume's image metadata.
type SetImageMetadata struct {
	ID        string            `json:"id"`
	ProjectID string            `json:"project_id"`
	Metadata  map[string]string `json:"metadata"`
	At        time.Time         `json:"at"`
}

// DeleteImageMetadata removes one image metadata key.
type DeleteImageMetadata struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	Key       string    `json:"key"`
	At        time.Time `json:"at"`
}

// CreateQoSSpecs adds QoS specs; the name is unique.
type CreateQoSSpecs struct {
	Specs QoSSpecs `json:"specs"`
}

// UpdateQoSSpecs sets the consumer (when non-empty) and adds or overwrites
// spec keys.
type UpdateQoSSpecs struct {
	ID       string            `json:"id"`
	Consumer string            `json:"consumer,omitempty"`
	Specs    map[string]string `json:"specs,omitempty"`
	At       time.Time         `json:"at"`
}

// DeleteQoSSpecs removes QoS specs; associated ones need Force, which
// disassociates them first.
type DeleteQoSSpecs struct {
	ID    string `json:"id"`
	Force bool   `json:"force"`
}

// DeleteQoSSpecsKeys removes spec keys; every key must exist.
type DeleteQoSSpecsKeys struct {
	ID   string    `json:"id"`
	Keys []string  `json:"keys"`
	At   time.Time `json:"at"`
}

// AssociateQoSSpecs associates QoS specs with a volume type.
type AssociateQoSSpecs struct {
	ID     string    `json:"id"`
	TypeID string    `json:"type_id"`
	At     time.Time `json:"at"`
}

// DisassociateQoSSpecs removes the association of QoS specs with a type.
type DisassociateQoSSpecs struct {
	ID     string    `json:"id"`
	TypeID string    `json:"type_id"`
	At     time.Time `json:"at"`
}

// DisassociateAllQoSSpecs removes every association of QoS specs.
type DisassociateAllQoSSpecs struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

func (ResetVolumeStatus) CommandType() CommandType       { return CmdResetVolumeStatus }
func (SetVolumeBootable) CommandType() CommandType       { return CmdSetVolumeBootable }
func (SetVolumeReadOnly) CommandType() CommandType       { return CmdSetVolumeReadOnly }
func (SetImageMetadata) CommandType() CommandType        { return CmdSetImageMetadata }
func (DeleteImageMetadata) CommandType() CommandType     { return CmdDeleteImageMetadata }
func (CreateQoSSpecs) CommandType() CommandType          { return CmdCreateQoSSpecs }
func (UpdateQoSSpecs) CommandType() CommandType          { return CmdUpdateQoSSpecs }
func (DeleteQoSSpecs) CommandType() CommandType          { return CmdDeleteQoSSpecs }
func (DeleteQoSSpecsKeys) CommandType() CommandType      { return CmdDeleteQoSSpecsKeys }
func (AssociateQoSSpecs) CommandType() CommandType       { return CmdAssociateQoSSpecs }
func (DisassociateQoSSpecs) CommandType() CommandType    { return CmdDisassociateQoSSpecs }
func (DisassociateAllQoSSpecs) CommandType() CommandType { return CmdDisassociateAllQoSSpecs }

// transitional statuses the leader drives; a reset into one restarts its
// task clock.
var taskStatuses = []string{StatusCreating, StatusDeleting, StatusExtending, StatusReverting}

func (s *State) applyResetVolumeStatus(c *ResetVolumeStatus) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if c.Status == "" && c.AttachStatus == "" && c.MigrationStatus == "" {
		return errorf(KindInvalid, "Must specify 'status', 'attach_status' or 'migration_status' for update.")
	}
	if c.Status != "" && !slices.Contains(VolumeStatuses, c.Status) {
		return errorf(KindInvalid, "Volume status: %s is invalid.", c.Status)
	}
	if c.AttachStatus != "" && !slices.Contains(VolumeAttachStatuses, c.AttachStatus) {
		return errorf(KindInvalid, "Volume attach status: %s is invalid.", c.AttachStatus)
	}
	if c.MigrationStatus != "" && !slices.Contains(VolumeMigrationStatuses, c.MigrationStatus) {
		return errorf(KindInvalid, "Volume migration status: %s is invalid.", c.MigrationStatus)
	}
	switch c.Status {
	case StatusDeleting:
		// A delete is started by DELETE, which checks what may be deleted.
		return errorf(KindInvalid, "Cannot reset-state to %s", c.Status)
	case StatusInUse:
		if len(s.volumeAttachments(v.ID)) == 0 {
			return errorf(KindInvalid, "Cannot reset-state to in-use because volume does not have any attachments.")
		}
	}
	nv := cloneVolume(v)
	if c.Status != "" && c.Status != v.Status {
		nv.Status = c.Status
		// Leaving a task drops its bookkeeping, so the reserved growth and
		// pool allocation of an extend are released (put re-derives them).
		if v.Status == StatusExtending {
			nv.ExtendToGB, nv.PreviousStatus = 0, ""
		}
		if v.Status == StatusReverting {
			nv.RevertSnapshotID = ""
		}
		if c.Status == StatusExtending {
			// The leader re-drives an extend to the current size, which
			// then returns the volume to its previous status.
			nv.ExtendToGB, nv.PreviousStatus = v.SizeGB, v.Status
		}
		if slices.Contains(taskStatuses, c.Status) {
			nv.TaskStartedAt = c.At
		}
	}
	if c.AttachStatus != "" {
		nv.AttachStatus = c.AttachStatus
		if c.AttachStatus == AttachDetached {
			// Cinder's reset also removes the volume's attachments.
			s.clearAttachments(v.ID)
		}
	}
	switch c.MigrationStatus {
	case "":
	case "none":
		nv.MigrationStatus = ""
	default:
		nv.MigrationStatus = c.MigrationStatus
	}
	touch(nv, c.At)
	s.put(nv)
	return nil
}

// checkNotMaintenance is volume/api.py update's guard.
func checkNotMaintenance(v *Volume) *Error {
	if v.Status == "maintenance" {
		return errorf(KindInvalid, "Invalid volume: The volume cannot be updated during maintenance.")
	}
	return nil
}

func (s *State) applySetVolumeBootable(c *SetVolumeBootable) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if err := checkNotMaintenance(v); err != nil {
		return err
	}
	nv := cloneVolume(v)
	nv.Bootable = c.Bootable
	touch(nv, c.At)
	s.put(nv)
	return nil
}

func (s *State) applySetVolumeReadOnly(c *SetVolumeReadOnly) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if v.Status != StatusAvailable {
		return errorf(KindInvalid, "Invalid volume: Volume %s status must be available to update readonly flag, but current status is: %s.", v.ID, v.Status)
	}
	nv := cloneVolume(v)
	nv.ReadOnly = c.ReadOnly
	touch(nv, c.At)
	s.put(nv)
	return nil
}

// checkImageMetadataStatus is update_volume_metadata's status guard.
func checkImageMetadataStatus(v *Volume) *Error {
	if v.Status == "maintenance" || v.Status == "uploading" {
		return errorf(KindInvalid, "Invalid volume: Updating volume metadata is not allowed for volumes in %s status.", v.Status)
	}
	return nil
}

func (s *State) applySetImageMetadata(c *SetImageMetadata) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if err := checkImageMetadataStatus(v); err != nil {
		return err
	}
	nv := cloneVolume(v)
	if nv.ImageMetadata == nil {
		nv.ImageMetadata = map[string]string{}
	}
	maps.Copy(nv.ImageMetadata, c.Metadata)
	touch(nv, c.At)
	s.put(nv)
	return nil
}

func (s *State) applyDeleteImageMetadata(c *DeleteImageMetadata) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if _, ok := v.ImageMetadata[c.Key]; !ok {
		return errorf(KindNotFound, "Metadata item was not found.")
	}
	if err := checkImageMetadataStatus(v); err != nil {
		return err
	}
	nv := cloneVolume(v)
	delete(nv.ImageMetadata, c.Key)
	touch(nv, c.At)
	s.put(nv)
	return nil
}

// ---- QoS specs ----

func qosNotFound(id string) *Error {
	return errorf(KindNotFound, "No such QoS spec %s.", id)
}

func invalidConsumer() *Error {
	return errorf(KindInvalid, "Invalid QoS specs: Valid consumer of QoS specs are: ['front-end', 'back-end', 'both']")
}

func cloneQoS(q *QoSSpecs) *QoSSpecs {
	c := *q
	c.Specs = maps.Clone(q.Specs)
	if c.Specs == nil {
		c.Specs = map[string]string{}
	}
	return &c
}

func (s *State) qosByName(name string) *QoSSpecs {
	for _, q := range s.d.QoSSpecs {
		if q.Name == name {
			return q
		}
	}
	return nil
}

func (s *State) applyCreateQoSSpecs(c *CreateQoSSpecs) *Error {
	q := cloneQoS(&c.Specs)
	if old := s.d.QoSSpecs[q.ID]; old != nil {
		if old.Name == q.Name && old.CreatedAt.Equal(q.CreatedAt) {
			return nil // the same command retried
		}
		return errorf(KindConflict, "QoS Specs %s already exists.", q.ID)
	}
	if q.Name == "" {
		return errorf(KindInvalid, "Please specify a name for QoS specs.")
	}
	if s.qosByName(q.Name) != nil {
		return errorf(KindConflict, "QoS Specs %s already exists.", q.Name)
	}
	if q.Consumer == "" {
		q.Consumer = QoSBackEnd
	}
	if !slices.Contains(QoSConsumers, q.Consumer) {
		return invalidConsumer()
	}
	q.UpdatedAt = q.CreatedAt
	s.d.QoSSpecs[q.ID] = q
	return nil
}

func (s *State) applyUpdateQoSSpecs(c *UpdateQoSSpecs) *Error {
	old := s.d.QoSSpecs[c.ID]
	if old == nil {
		return qosNotFound(c.ID)
	}
	if c.Consumer != "" && !slices.Contains(QoSConsumers, c.Consumer) {
		return invalidConsumer()
	}
	q := cloneQoS(old)
	if c.Consumer != "" {
		q.Consumer = c.Consumer
	}
	maps.Copy(q.Specs, c.Specs)
	q.UpdatedAt = c.At
	s.d.QoSSpecs[q.ID] = q
	return nil
}

// qosTypes returns the IDs of the types associated with QoS specs, sorted.
func (s *State) qosTypes(id string) []string {
	var ids []string
	for _, t := range s.d.Types {
		if t.QoSSpecsID == id {
			ids = append(ids, t.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// setTypeQoS replaces a type record with its QoS association changed.
func (s *State) setTypeQoS(typeID, qosID string, at time.Time) {
	nt := *s.d.Types[typeID]
	nt.ExtraSpecs = maps.Clone(nt.ExtraSpecs)
	nt.QoSSpecsID = qosID
	if !at.IsZero() {
		nt.UpdatedAt = at
	}
	s.d.Types[typeID] = &nt
}

func (s *State) applyDeleteQoSSpecs(c *DeleteQoSSpecs) *Error {
	if s.d.QoSSpecs[c.ID] == nil {
		return qosNotFound(c.ID)
	}
	types := s.qosTypes(c.ID)
	if len(types) > 0 && !c.Force {
		return errorf(KindInvalid, "Qos specs still in use.")
	}
	for _, id := range types {
		s.setTypeQoS(id, "", time.Time{})
	}
	delete(s.d.QoSSpecs, c.ID)
	return nil
}

func (s *State) applyDeleteQoSSpecsKeys(c *DeleteQoSSpecsKeys) *Error {
	old := s.d.QoSSpecs[c.ID]
	if old == nil {
		return qosNotFound(c.ID)
	}
	for _, k := range c.Keys {
		if _, ok := old.Specs[k]; !ok {
			return errorf(KindInvalid, "QoS spec %s has no spec with key %s.", c.ID, k)
		}
	}
	q := cloneQoS(old)
	for _, k := range c.Keys {
		delete(q.Specs, k)
	}
	q.UpdatedAt = c.At
	s.d.QoSSpecs[q.ID] = q
	return nil
}

func (s *State) applyAssociateQoSSpecs(c *AssociateQoSSpecs) *Error {
	t := s.d.Types[c.TypeID]
	if t == nil {
		return typeNotFound(c.TypeID)
	}
	if s.d.QoSSpecs[c.ID] == nil {
		return qosNotFound(c.ID)
	}
	switch t.QoSSpecsID {
	case c.ID:
		return nil // already associated: nothing to do, as in Cinder
	case "":
	default:
		return errorf(KindInvalid, "Invalid volume type: Type %s is already associated with another qos specs: %s", c.TypeID, t.QoSSpecsID)
	}
	s.setTypeQoS(c.TypeID, c.ID, c.At)
	return nil
}

func (s *State) applyDisassociateQoSSpecs(c *DisassociateQoSSpecs) *Error {
	t := s.d.Types[c.TypeID]
	if t == nil {
		return typeNotFound(c.TypeID)
	}
	if s.d.QoSSpecs[c.ID] == nil {
		return qosNotFound(c.ID)
	}
	if t.QoSSpecsID == c.ID {
		s.setTypeQoS(c.TypeID, "", c.At)
	}
	return nil
}

func (s *State) applyDisassociateAllQoSSpecs(c *DisassociateAllQoSSpecs) *Error {
	if s.d.QoSSpecs[c.ID] == nil {
		return qosNotFound(c.ID)
	}
	for _, id := range s.qosTypes(c.ID) {
		s.setTypeQoS(id, "", c.At)
	}
	return nil
}

// ---- readers ----

// QoSSpec returns QoS specs by ID (nil if absent). Do not modify it.
func (s *State) QoSSpec(id string) *QoSSpecs {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.QoSSpecs[id]
}

// AllQoSSpecs returns every QoS specs record, sorted by creation time then ID.
func (s *State) AllQoSSpecs() []*QoSSpecs {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Collect(maps.Values(s.d.QoSSpecs))
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// QoSAssociations returns the types associated with QoS specs, by ID.
func (s *State) QoSAssociations(id string) []*VolumeType {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*VolumeType
	for _, tid := range s.qosTypes(id) {
		out = append(out, s.d.Types[tid])
	}
	return out
}

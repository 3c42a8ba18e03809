package state

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/placement"
)

// Result is what applying a command returns. Err is set when the command was
// refused; a refused command changes nothing.
type Result struct {
	Err   *Error `json:"error,omitempty"`
	Index uint64 `json:"index"`
}

// Apply decodes one log entry and applies it. Unknown command types panic
// unless marked ignorable, as a coordinator must not silently diverge.
func (s *State) Apply(entry []byte) *Result {
	if len(entry) == 0 {
		panic("state: empty log entry")
	}
	typ, body := CommandType(entry[0]), entry[1:]
	e, ok := registry[typ&^IgnorableFlag]
	if !ok {
		if typ&IgnorableFlag != 0 {
			return &Result{}
		}
		panic(fmt.Sprintf("state: unknown command type %d", typ))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := e.apply(s, body); err != nil {
		return &Result{Err: err}
	}
	return &Result{}
}

type handler func(s *State, body []byte) *Error

// Validate checks that entry is a well-formed command this version knows,
// without applying it. Entries arriving from outside the Raft log (leader
// forwarding) are validated first: Apply treats an undecodable entry as
// corruption and panics.
func Validate(entry []byte) error {
	if len(entry) == 0 {
		return fmt.Errorf("empty command")
	}
	typ := CommandType(entry[0])
	e, ok := registry[typ&^IgnorableFlag]
	if !ok {
		if typ&IgnorableFlag != 0 {
			return nil
		}
		return fmt.Errorf("unknown command type %d", typ)
	}
	return e.validate(entry[1:])
}

func validate[C any](body []byte) error {
	var c C
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("decode %T: %w", c, err)
	}
	return nil
}

// decode wraps a typed apply method as a handler.
func decode[C any](fn func(s *State, c *C) *Error) handler {
	return func(s *State, body []byte) *Error {
		var c C
		if err := json.Unmarshal(body, &c); err != nil {
			// A log entry we wrote ourselves and cannot read is corruption.
			panic(fmt.Sprintf("state: corrupt %T entry: %v", c, err))
		}
		return fn(s, &c)
	}
}

// registry maps each command type to its decoder+applier and validator.
var registry = map[CommandType]entry{
	CmdCreateVolume:         reg((*State).applyCreateVolume),
	CmdScheduleVolume:       reg((*State).applyScheduleVolume),
	CmdVolumeCreated:        reg((*State).applyVolumeCreated),
	CmdVolumeCreateFailed:   reg((*State).applyVolumeCreateFailed),
	CmdUpdateVolume:         reg((*State).applyUpdateVolume),
	CmdDeleteVolume:         reg((*State).applyDeleteVolume),
	CmdVolumeDeleted:        reg((*State).applyVolumeDeleted),
	CmdVolumeDeleteFailed:   reg((*State).applyVolumeDeleteFailed),
	CmdCreateType:           reg((*State).applyCreateType),
	CmdUpdateType:           reg((*State).applyUpdateType),
	CmdDeleteType:           reg((*State).applyDeleteType),
	CmdSetExtraSpecs:        reg((*State).applySetExtraSpecs),
	CmdDeleteExtraSpec:      reg((*State).applyDeleteExtraSpec),
	CmdSetQuota:             reg((*State).applySetQuota),
	CmdDeleteQuota:          reg((*State).applyDeleteQuota),
	CmdRegisterAgent:        reg((*State).applyRegisterAgent),
	CmdSetServiceState:      reg((*State).applySetServiceState),
	CmdCreateSnapshot:       reg((*State).applyCreateSnapshot),
	CmdSnapshotCreated:      reg((*State).applySnapshotCreated),
	CmdSnapshotCreateFailed: reg((*State).applySnapshotCreateFailed),
	CmdUpdateSnapshot:       reg((*State).applyUpdateSnapshot),
	CmdDeleteSnapshot:       reg((*State).applyDeleteSnapshot),
	CmdSnapshotDeleted:      reg((*State).applySnapshotDeleted),
	CmdSnapshotDeleteFailed: reg((*State).applySnapshotDeleteFailed),
	CmdSetSnapshotStatus:    reg((*State).applySetSnapshotStatus),
	CmdExtendVolume:         reg((*State).applyExtendVolume),
	CmdVolumeExtended:       reg((*State).applyVolumeExtended),
	CmdVolumeExtendFailed:   reg((*State).applyVolumeExtendFailed),
	CmdRevertVolume:         reg((*State).applyRevertVolume),
	CmdVolumeReverted:       reg((*State).applyVolumeReverted),
	CmdVolumeRevertFailed:   reg((*State).applyVolumeRevertFailed),

	CmdResetVolumeStatus:       reg((*State).applyResetVolumeStatus),
	CmdSetVolumeBootable:       reg((*State).applySetVolumeBootable),
	CmdSetVolumeReadOnly:       reg((*State).applySetVolumeReadOnly),
	CmdSetImageMetadata:        reg((*State).applySetImageMetadata),
	CmdDeleteImageMetadata:     reg((*State).applyDeleteImageMetadata),
	CmdCreateQoSSpecs:          reg((*State).applyCreateQoSSpecs),
	CmdUpdateQoSSpecs:          reg((*State).applyUpdateQoSSpecs),
	CmdDeleteQoSSpecs:          reg((*State).applyDeleteQoSSpecs),
	CmdDeleteQoSSpecsKeys:      reg((*State).applyDeleteQoSSpecsKeys),
	CmdAssociateQoSSpecs:       reg((*State).applyAssociateQoSSpecs),
	CmdDisassociateQoSSpecs:    reg((*State).applyDisassociateQoSSpecs),
	CmdDisassociateAllQoSSpecs: reg((*State).applyDisassociateAllQoSSpecs),

	CmdCreateAttachment:   reg((*State).applyCreateAttachment),
	CmdUpdateAttachment:   reg((*State).applyUpdateAttachment),
	CmdCompleteAttachment: reg((*State).applyCompleteAttachment),
	CmdDeleteAttachment:   reg((*State).applyDeleteAttachment),
	CmdReserveVolume:      reg((*State).applyReserveVolume),
	CmdUnreserveVolume:    reg((*State).applyUnreserveVolume),
	CmdAttachVolume:       reg((*State).applyAttachVolume),
	CmdBeginDetaching:     reg((*State).applyBeginDetaching),
	CmdRollDetaching:      reg((*State).applyRollDetaching),
	CmdDetachVolume:       reg((*State).applyDetachVolume),
	CmdForceDetachVolume:  reg((*State).applyForceDetachVolume),

	CmdSetProviderAuth: reg((*State).applySetProviderAuth),

	CmdMarkMissing:    regChecked((*State).applyMarkMissing),
	CmdSetPoolOrphans: regChecked((*State).applySetPoolOrphans),
}

type entry struct {
	apply    handler
	validate func([]byte) error
}

// reg builds a registry entry from a typed apply method.
func reg[C any](fn func(s *State, c *C) *Error) entry {
	return entry{apply: decode(fn), validate: validate[C]}
}

func volumeNotFound(id string) *Error {
	return errorf(KindNotFound, "Volume %s could not be found.", id)
}

// ownVolume finds a volume visible to project ("" = any project).
func (s *State) ownVolume(id, project string) (*Volume, *Error) {
	v := s.d.Volumes[id]
	if v == nil || (project != "" && v.ProjectID != project) {
		return nil, volumeNotFound(id)
	}
	return v, nil
}

// checkVolumeQuota refuses a new volume of size in project/type that would
// exceed a limit; messages are Cinder's.
func (s *State) checkVolumeQuota(project, typeID string, size int64) *Error {
	lim := s.limits(project)
	typeName := ""
	if t := s.d.Types[typeID]; t != nil {
		typeName = t.Name
	}
	if per := lim[QuotaPerVolumeGigabytes]; per >= 0 && size > per {
		return quotaErr("VolumeSizeExceedsLimit", "Requested volume size %dG is larger than maximum allowed limit %dG.", size, per)
	}
	type check struct {
		res, key, name string
		add            int64
	}
	checks := []check{
		{QuotaVolumes, usageKey(QuotaVolumes, ""), QuotaVolumes, 1},
		{QuotaGigabytes, usageKey(QuotaGigabytes, ""), QuotaGigabytes, size},
	}
	if typeName != "" {
		checks = append(checks,
			check{QuotaVolumes, usageKey(QuotaVolumes, typeID), QuotaVolumes + "_" + typeName, 1},
			check{QuotaGigabytes, usageKey(QuotaGigabytes, typeID), QuotaGigabytes + "_" + typeName, size})
	}
	for _, c := range checks {
		limit, ok := lim[c.name]
		if !ok || limit < 0 {
			continue
		}
		var used int64
		if u := s.usage[project][c.key]; u != nil {
			used = u.InUse + u.Reserved
		}
		if used+c.add <= limit {
			continue
		}
		if c.res == QuotaVolumes {
			return quotaErr("VolumeLimitExceeded", "Maximum number of volumes allowed (%d) exceeded for quota '%s'.", limit, c.name)
		}
		return quotaErr("VolumeSizeExceedsAvailableQuota",
			"Requested volume or snapshot exceeds allowed %s quota. Requested %dG, quota is %dG and %dG has been consumed.",
			c.name, size, limit, used)
	}
	return nil
}

func (s *State) applyCreateVolume(c *CreateVolume) *Error {
	v := c.Volume
	if old := s.d.Volumes[v.ID]; old != nil {
		// IDs are fresh UUIDs chosen by the proposer, so the same ID with
		// the same project and creation time is this very command again (a
		// forward retried after the leader died before answering).
		if old.ProjectID == v.ProjectID && old.CreatedAt.Equal(v.CreatedAt) {
			return nil
		}
		return errorf(KindConflict, "Volume %s already exists.", v.ID)
	}
	if s.d.Types[v.TypeID] == nil {
		return errorf(KindNotFound, "Volume type %s could not be found.", v.TypeID)
	}
	if err := s.checkSource(&v); err != nil {
		return err
	}
	if err := s.checkVolumeQuota(v.ProjectID, v.TypeID, v.SizeGB); err != nil {
		return err
	}
	nv := cloneVolume(&v)
	if nv.Metadata == nil {
		nv.Metadata = map[string]string{}
	}
	nv.Status = StatusCreating
	nv.AttachStatus = AttachDetached
	nv.ConsumesQuota = true
	nv.Pool = ""
	nv.Tried = nil
	nv.UpdatedAt = v.CreatedAt
	nv.TaskStartedAt = v.CreatedAt
	s.put(nv)
	return nil
}

// checkSource validates a volume's snapshot or source volume (Cinder's
// create-from-source rules); the volume is later created on its pool.
func (s *State) checkSource(v *Volume) *Error {
	switch {
	case v.SnapshotID != "" && v.SourceVolID != "":
		return errorf(KindInvalid, "Invalid input received: a volume has one source: snapshot_id or source_volid, not both.")
	case v.SnapshotID != "":
		sn, err := s.ownSnapshot(v.SnapshotID, v.ProjectID)
		if err != nil {
			return err
		}
		if sn.Status != SnapAvailable {
			return errorf(KindInvalid, "Invalid snapshot: Originating snapshot status must be one of 'available' values (status %s).", sn.Status)
		}
		if v.SizeGB < sn.SizeGB {
			return errorf(KindInvalid, "Invalid input received: Volume size '%d' must be an integer and greater than 0 and not smaller than the snapshot size %dGB.", v.SizeGB, sn.SizeGB)
		}
	case v.SourceVolID != "":
		src, err := s.ownVolume(v.SourceVolID, v.ProjectID)
		if err != nil {
			return err
		}
		if src.Status != StatusAvailable && src.Status != StatusInUse {
			return errorf(KindInvalid, "Invalid volume: Source volume status must be available or in-use (status %s).", src.Status)
		}
		if v.SizeGB < src.SizeGB {
			return errorf(KindInvalid, "Invalid input received: Volume size %dGB cannot be smaller than original volume size %dGB. They must be >= original volume size.", v.SizeGB, src.SizeGB)
		}
	}
	return nil
}

// SourcePool is the pool a sourced volume must be created on ("" for a
// blank volume or a source that no longer exists).
func (s *State) SourcePool(v *Volume) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sn := s.d.Snapshots[v.SnapshotID]; v.SnapshotID != "" && sn != nil {
		return sn.Pool
	}
	if src := s.d.Volumes[v.SourceVolID]; v.SourceVolID != "" && src != nil {
		return src.Pool
	}
	return ""
}

// PlacementPool builds the placement view of a registered pool from Raft
// facts, Raft allocation and an observed capacity. The leader and the FSM use
// the same function so the re-check in Apply is the filter's own rule.
func PlacementPool(p *Pool, use PoolUse, totalKind storage.CapacityKind, totalGB float64, freeKind storage.CapacityKind, freeGB float64) placement.Pool {
	pp := placement.Pool{
		Name: p.Name, Host: p.Agent, Backend: p.Info.Backend, AvailabilityZone: p.Zone,
		TotalKind: totalKind, TotalGB: totalGB, FreeKind: freeKind, FreeGB: freeGB,
		AllocatedGB: float64(use.AllocatedGB), VolumeCount: use.Volumes,
		ReservedPercentage: p.Info.ReservedPercentage,
		ThinProvisioning:   p.Info.ThinProvisioning, ThickProvisioning: p.Info.ThickProvisioning,
		MaxOverSubscriptionRatio: 1,
		Capabilities:             p.Info.Capabilities,
	}
	if p.Info.MaxOverSubscriptionRatio == "auto" {
		pp.OverSubscriptionAuto = true
	} else if r, err := parseRatio(p.Info.MaxOverSubscriptionRatio); err == nil {
		pp.MaxOverSubscriptionRatio = r
	}
	// Thick accounting: what Raft has placed on the pool is gone from its
	// free space even before the agent has created (and re-reported) it.
	if !pp.ThinProvisioning && totalKind == storage.Known && freeKind == storage.Known {
		pp.FreeGB = math.Min(freeGB, totalGB-float64(use.AllocatedGB))
	}
	return pp
}

func parseRatio(s string) (float64, error) {
	var r float64
	if _, err := fmt.Sscanf(s, "%g", &r); err != nil {
		return 0, err
	}
	if r < 1 || math.IsNaN(r) || math.IsInf(r, 0) {
		return 0, fmt.Errorf("ratio %q < 1", s)
	}
	return r, nil
}

func (s *State) applyScheduleVolume(c *ScheduleVolume) *Error {
	v := s.d.Volumes[c.ID]
	if v == nil {
		return volumeNotFound(c.ID)
	}
	if v.Status != StatusCreating || v.Pool != "" {
		return errorf(KindInvalid, "volume %s is %s on pool %q, not awaiting placement", c.ID, v.Status, v.Pool)
	}
	p := s.d.Pools[c.Pool]
	if p == nil {
		return errorf(KindNotFound, "pool %s is not registered", c.Pool)
	}
	use := PoolUse{}
	if pu := s.poolUse[c.Pool]; pu != nil {
		use = *pu
	}
	pp := PlacementPool(p, use, c.TotalKind, c.TotalGB, c.FreeKind, c.FreeGB)
	var specs map[string]string
	if t := s.d.Types[v.TypeID]; t != nil {
		specs = t.ExtraSpecs
	}
	if ok, reason := placement.CheckCapacityFor(pp, v.SizeGB, placement.ThickRequested(specs)); !ok {
		return errorf(KindNoCapacity, "pool %s: %s", c.Pool, reason)
	}
	nv := cloneVolume(v)
	nv.Pool = c.Pool
	if !slices.Contains(nv.Tried, c.Pool) {
		nv.Tried = append(nv.Tried, c.Pool)
	}
	touch(nv, c.At)
	s.put(nv)
	return nil
}

func (s *State) applyVolumeCreated(c *VolumeCreated) *Error {
	v := s.d.Volumes[c.ID]
	if v == nil {
		return volumeNotFound(c.ID)
	}
	if v.Status != StatusCreating || v.Pool != c.Pool {
		return errorf(KindInvalid, "volume %s is %s on pool %q, not creating on %q", c.ID, v.Status, v.Pool, c.Pool)
	}
	nv := cloneVolume(v)
	nv.Status = StatusAvailable
	nv.ProviderLocation = c.Location
	nv.ErrorMessage = ""
	touch(nv, c.At)
	s.put(nv)
	return nil
}

func (s *State) applyVolumeCreateFailed(c *VolumeCreateFailed) *Error {
	v := s.d.Volumes[c.ID]
	if v == nil {
		return volumeNotFound(c.ID)
	}
	if v.Status != StatusCreating || v.Pool != c.Pool {
		return errorf(KindInvalid, "volume %s is %s on pool %q, not creating on %q", c.ID, v.Status, v.Pool, c.Pool)
	}
	nv := cloneVolume(v)
	nv.Pool = ""
	nv.ErrorMessage = c.Reason
	if c.Final {
		nv.Status = StatusError
		nv.ConsumesQuota = false
	}
	touch(nv, c.At)
	s.put(nv)
	return nil
}

func (s *State) applyUpdateVolume(c *UpdateVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	nv := cloneVolume(v)
	if c.Name != nil {
		nv.Name = *c.Name
	}
	if c.Description != nil {
		nv.Description = *c.Description
	}
	switch c.MetaMode {
	case MetaKeep:
	case MetaReplace:
		nv.Metadata = maps.Clone(c.Metadata)
		if nv.Metadata == nil {
			nv.Metadata = map[string]string{}
		}
	case MetaMerge:
		if nv.Metadata == nil {
			nv.Metadata = map[string]string{}
		}
		maps.Copy(nv.Metadata, c.Metadata)
	case MetaDelete:
		if _, ok := nv.Metadata[c.DeleteKey]; !ok {
			return errorf(KindNotFound, "Metadata key %s could not be found for volume %s.", c.DeleteKey, c.ID)
		}
		delete(nv.Metadata, c.DeleteKey)
	default:
		return errorf(KindInvalid, "unknown metadata mode %q", c.MetaMode)
	}
	touch(nv, c.At)
	s.put(nv)
	return nil
}

// deletableStatuses are those Cinder lets a plain DELETE start from.
var deletableStatuses = []string{StatusAvailable, StatusError, "error_restoring", "error_extending", "error_managing"}

func (s *State) applyDeleteVolume(c *DeleteVolume) *Error {
	v, err := s.ownVolume(c.ID, c.ProjectID)
	if err != nil {
		return err
	}
	if v.Status == StatusDeleting {
		return nil // already under way: DELETE is idempotent
	}
	// Every check comes before any change: a refused delete changes nothing.
	// Force skips the status check but not the attach status one, as in
	// Cinder's volume/api.py delete.
	if (!c.Force && !slices.Contains(deletableStatuses, v.Status)) || v.AttachStatus == AttachAttached {
		return errorf(KindInvalid, "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer. (status %s)", v.Status)
	}
	if n := s.volSnaps[v.ID]; n > 0 {
		if !c.Cascade {
			return errorf(KindInvalid, "Invalid volume: Volume %s still has %d dependent snapshots.", v.ID, n)
		}
		if err := s.cascadeSnapshots(v.ID, c.Force, c.At); err != nil {
			return err
		}
	}
	if v.Pool == "" && v.Status != StatusCreating {
		// Never placed (or its placement failed): nothing exists on a backend.
		s.remove(v.ID)
		return nil
	}
	nv := cloneVolume(v)
	nv.Status = StatusDeleting
	nv.TaskStartedAt = c.At
	touch(nv, c.At)
	s.put(nv)
	return nil
}

// cascadeSnapshots moves every snapshot of a volume to deleting; without
// force each must be available or error first. Called before any change.
func (s *State) cascadeSnapshots(volumeID string, force bool, at time.Time) *Error {
	var snaps []*Snapshot
	for _, sn := range s.d.Snapshots {
		if sn.VolumeID != volumeID {
			continue
		}
		if !force && sn.Status != SnapAvailable && sn.Status != SnapError && sn.Status != SnapDeleting {
			return errorf(KindInvalid, "Invalid volume: Snapshot %s of volume %s is %s; cascade delete needs available or error snapshots.", sn.ID, volumeID, sn.Status)
		}
		snaps = append(snaps, sn)
	}
	for _, sn := range snaps {
		if sn.Status == SnapDeleting {
			continue
		}
		n := cloneSnap(sn)
		n.Status, n.TaskStartedAt, n.UpdatedAt = SnapDeleting, at, at
		s.putSnap(n)
	}
	return nil
}

func (s *State) applyVolumeDeleted(c *VolumeDeleted) *Error {
	v := s.d.Volumes[c.ID]
	if v == nil {
		return nil
	}
	if v.Status != StatusDeleting {
		return errorf(KindInvalid, "volume %s is %s, not deleting", c.ID, v.Status)
	}
	if n := s.volSnaps[c.ID]; n > 0 {
		return errorf(KindInvalid, "volume %s still has %d snapshots", c.ID, n)
	}
	s.remove(c.ID)
	return nil
}

func (s *State) applyVolumeDeleteFailed(c *VolumeDeleteFailed) *Error {
	v := s.d.Volumes[c.ID]
	if v == nil {
		return volumeNotFound(c.ID)
	}
	if v.Status != StatusDeleting {
		return errorf(KindInvalid, "volume %s is %s, not deleting", c.ID, v.Status)
	}
	nv := cloneVolume(v)
	nv.Status = StatusErrorDeleting
	nv.ErrorMessage = c.Reason
	touch(nv, c.At)
	s.put(nv)
	return nil
}

func typeNotFound(id string) *Error {
	return errorf(KindNotFound, "Volume type %s could not be found.", id)
}

func (s *State) applyCreateType(c *CreateType) *Error {
	if old := s.d.Types[c.Type.ID]; old != nil {
		if old.Name == c.Type.Name && old.CreatedAt.Equal(c.Type.CreatedAt) {
			return nil // the same command retried
		}
		return errorf(KindConflict, "Volume type %s already exists.", c.Type.ID)
	}
	if s.typeByName(c.Type.Name) != nil {
		return errorf(KindConflict, "Volume Type %s already exists.", c.Type.Name)
	}
	t := c.Type
	t.ExtraSpecs = maps.Clone(c.Type.ExtraSpecs)
	if t.ExtraSpecs == nil {
		t.ExtraSpecs = map[string]string{}
	}
	t.UpdatedAt = t.CreatedAt
	s.d.Types[t.ID] = &t
	return nil
}

func (s *State) applyUpdateType(c *UpdateType) *Error {
	t := s.d.Types[c.ID]
	if t == nil {
		return typeNotFound(c.ID)
	}
	nt := *t
	nt.ExtraSpecs = maps.Clone(t.ExtraSpecs)
	if c.Name != nil && *c.Name != t.Name {
		if t.ID == DefaultTypeID {
			return errorf(KindInvalid, "The default volume type %s cannot be renamed.", DefaultTypeName)
		}
		if s.typeByName(*c.Name) != nil {
			return errorf(KindConflict, "Volume Type %s already exists.", *c.Name)
		}
		// Per-type quota limits are keyed by type name: carry them over.
		for _, q := range s.d.Quotas {
			for _, r := range PerTypeResources {
				if l, ok := q[r+"_"+t.Name]; ok {
					delete(q, r+"_"+t.Name)
					q[r+"_"+*c.Name] = l
				}
			}
		}
		nt.Name = *c.Name
	}
	if c.Description != nil {
		nt.Description = *c.Description
	}
	if c.IsPublic != nil {
		nt.IsPublic = *c.IsPublic
	}
	nt.UpdatedAt = c.At
	s.d.Types[c.ID] = &nt
	return nil
}

func (s *State) applyDeleteType(c *DeleteType) *Error {
	t := s.d.Types[c.ID]
	if t == nil {
		return typeNotFound(c.ID)
	}
	if t.ID == DefaultTypeID {
		return errorf(KindInvalid, "Default volume type can not be deleted.")
	}
	if s.typeUses[c.ID] > 0 {
		return errorf(KindInvalid, "Target volume type is still in use.")
	}
	for _, q := range s.d.Quotas {
		for _, r := range PerTypeResources {
			delete(q, r+"_"+t.Name)
		}
	}
	delete(s.d.Types, c.ID)
	return nil
}

// changeSpecs applies fn to a copy of an unused type's extra specs.
func (s *State) changeSpecs(typeID string, at time.Time, fn func(specs map[string]string) *Error) *Error {
	t := s.d.Types[typeID]
	if t == nil {
		return typeNotFound(typeID)
	}
	nt := *t
	nt.ExtraSpecs = maps.Clone(t.ExtraSpecs)
	if nt.ExtraSpecs == nil {
		nt.ExtraSpecs = map[string]string{}
	}
	if err := fn(nt.ExtraSpecs); err != nil {
		return err
	}
	if s.typeUses[typeID] > 0 {
		return errorf(KindInvalid, "Volume Type is currently in use.")
	}
	nt.UpdatedAt = at
	s.d.Types[typeID] = &nt
	return nil
}

func (s *State) applySetExtraSpecs(c *SetExtraSpecs) *Error {
	return s.changeSpecs(c.TypeID, c.At, func(specs map[string]string) *Error {
		maps.Copy(specs, c.Specs)
		return nil
	})
}

func (s *State) applyDeleteExtraSpec(c *DeleteExtraSpec) *Error {
	return s.changeSpecs(c.TypeID, c.At, func(specs map[string]string) *Error {
		if _, ok := specs[c.Key]; !ok {
			return errorf(KindNotFound, "Volume Type %s has no extra specs with key %s.", c.TypeID, c.Key)
		}
		delete(specs, c.Key)
		return nil
	})
}

// usageOf returns in-use + reserved of a quota resource name for a project.
func (s *State) usageOf(project, name string) int64 {
	key := name
	for _, r := range PerTypeResources {
		if tn, ok := cutPrefix(name, r+"_"); ok {
			if t := s.typeByName(tn); t != nil {
				key = usageKey(r, t.ID)
			}
		}
	}
	if u := s.usage[project][key]; u != nil {
		return u.InUse + u.Reserved
	}
	return 0
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}

func (s *State) applySetQuota(c *SetQuota) *Error {
	known := s.limits("")
	for name, limit := range c.Limits {
		if _, ok := known[name]; !ok {
			return errorf(KindInvalid, "Bad key(s) in quota set: %s", name)
		}
		if limit < -1 {
			return errorf(KindInvalid, "Quota limit %d for %s must be -1 or greater.", limit, name)
		}
		if limit >= 0 && name != QuotaPerVolumeGigabytes {
			if used := s.usageOf(c.ProjectID, name); limit < used {
				return errorf(KindInvalid, "Quota %s limit must be equal or greater than existing resources. Current usage is %d and the requested limit is %d.", name, used, limit)
			}
		}
	}
	q := maps.Clone(s.d.Quotas[c.ProjectID])
	if q == nil {
		q = map[string]int64{}
	}
	maps.Copy(q, c.Limits)
	s.d.Quotas[c.ProjectID] = q
	return nil
}

func (s *State) applyDeleteQuota(c *DeleteQuota) *Error {
	delete(s.d.Quotas, c.ProjectID)
	return nil
}

func (s *State) applyRegisterAgent(c *RegisterAgent) *Error {
	key := BinaryVolume + "/" + c.Agent
	svc := &Service{Host: c.Agent, Binary: BinaryVolume, Zone: c.Zone, RPCAddr: c.RPCAddr, Up: true, UpdatedAt: c.At}
	if old := s.d.Services[key]; old != nil {
		svc.Disabled, svc.DisabledReason = old.Disabled, old.DisabledReason
	}
	s.d.Services[key] = svc
	for _, info := range c.Pools {
		name := PoolName(c.Agent, info.Backend, info.Name)
		p := &Pool{Name: name, Agent: c.Agent, Zone: c.Zone, Info: info, RegisteredAt: c.At}
		if old := s.d.Pools[name]; old != nil {
			p.Orphans = old.Orphans // the last inventory's finding stands until the next one
		}
		s.d.Pools[name] = p
	}
	return nil
}

func (s *State) applySetServiceState(c *SetServiceState) *Error {
	key := c.Binary + "/" + c.Host
	svc := &Service{Host: c.Host, Binary: c.Binary, Zone: c.Zone}
	if old := s.d.Services[key]; old != nil {
		cp := *old
		svc = &cp
	}
	svc.Up = c.Up
	svc.UpdatedAt = c.At
	if c.Zone != "" {
		svc.Zone = c.Zone
	}
	s.d.Services[key] = svc
	return nil
}

package state

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Quota resource names (Cinder's).
const (
	QuotaVolumes            = "volumes"
	QuotaSnapshots          = "snapshots"
	QuotaGigabytes          = "gigabytes"
	QuotaPerVolumeGigabytes = "per_volume_gigabytes"
	QuotaBackups            = "backups"
	QuotaBackupGigabytes    = "backup_gigabytes"
	QuotaGroups             = "groups"
)

// DefaultQuotas are Cinder's default limits.
func DefaultQuotas() map[string]int64 {
	return map[string]int64{
		QuotaVolumes: 10, QuotaSnapshots: 10, QuotaGigabytes: 1000,
		QuotaPerVolumeGigabytes: -1, QuotaBackups: 10, QuotaBackupGigabytes: 1000,
		QuotaGroups: 10,
	}
}

// PerTypeResources are the quota resources repeated per volume type as
// "<resource>_<type name>", unlimited by default.
var PerTypeResources = []string{QuotaVolumes, QuotaSnapshots, QuotaGigabytes}

// Use is one resource's usage: committed (InUse) and in flight (Reserved).
type Use struct {
	InUse    int64 `json:"in_use"`
	Reserved int64 `json:"reserved"`
}

// PoolUse is the allocation Raft knows for a pool.
type PoolUse struct {
	AllocatedGB int64 `json:"allocated_gb"`
	Volumes     int   `json:"volumes"`
}

// data is everything that is snapshotted.
type data struct {
	Volumes   map[string]*Volume          `json:"volumes"`
	Types     map[string]*VolumeType      `json:"types"`
	Quotas    map[string]map[string]int64 `json:"quotas"` // project -> overrides
	Defaults  map[string]int64            `json:"quota_defaults"`
	Pools     map[string]*Pool            `json:"pools"`
	Services  map[string]*Service         `json:"services"` // key binary/host
	Snapshots map[string]*Snapshot        `json:"snapshots"`
	QoSSpecs  map[string]*QoSSpecs        `json:"qos_specs"`
	// Attachments of volumes, by attachment ID.
	Attachments map[string]*Attachment `json:"attachments"`
}

// State is the in-memory replicated state. Apply methods are called only by
// the FSM; readers use the exported accessors, which take a read lock.
type State struct {
	mu sync.RWMutex
	d  data
	// derived, rebuilt on restore
	usage    map[string]map[string]*Use // project -> resource key -> use
	poolUse  map[string]*PoolUse
	typeUses map[string]int // type ID -> live volumes
	volSnaps map[string]int // volume ID -> live snapshots
	// onChange, if set, is told the ID of every volume a command changed.
	// It runs under the state lock and must not block.
	onChange func(id string)
}

// OnVolumeChange registers a function told the ID of every changed volume
// (the leader's dispatcher uses it). It must not block or call back into s.
func (s *State) OnVolumeChange(fn func(id string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = fn
}

// New returns an empty state holding the __DEFAULT__ type.
func New() *State {
	s := &State{}
	s.reset(data{
		Volumes:   map[string]*Volume{},
		Types:     map[string]*VolumeType{DefaultTypeID: defaultType()},
		Quotas:    map[string]map[string]int64{},
		Defaults:  DefaultQuotas(),
		Pools:     map[string]*Pool{},
		Services:  map[string]*Service{},
		Snapshots: map[string]*Snapshot{},
		QoSSpecs:  map[string]*QoSSpecs{},

		Attachments: map[string]*Attachment{},
	})
	return s
}

func defaultType() *VolumeType {
	return &VolumeType{ID: DefaultTypeID, Name: DefaultTypeName, Description: "Default Volume Type",
		IsPublic: true, ExtraSpecs: map[string]string{}}
}

// reset installs d and rebuilds derived indexes. Caller holds mu (or owns s).
func (s *State) reset(d data) {
	if d.Volumes == nil {
		d.Volumes = map[string]*Volume{}
	}
	if d.Types == nil {
		d.Types = map[string]*VolumeType{}
	}
	if d.Quotas == nil {
		d.Quotas = map[string]map[string]int64{}
	}
	if d.Defaults == nil {
		d.Defaults = DefaultQuotas()
	}
	if d.Pools == nil {
		d.Pools = map[string]*Pool{}
	}
	if d.Services == nil {
		d.Services = map[string]*Service{}
	}
	if d.Snapshots == nil {
		d.Snapshots = map[string]*Snapshot{}
	}
	if d.QoSSpecs == nil {
		d.QoSSpecs = map[string]*QoSSpecs{}
	}
	if d.Attachments == nil {
		d.Attachments = map[string]*Attachment{}
	}
	s.d = d
	s.usage = map[string]map[string]*Use{}
	s.poolUse = map[string]*PoolUse{}
	s.typeUses = map[string]int{}
	s.volSnaps = map[string]int{}
	for _, v := range d.Volumes {
		s.account(v, +1)
	}
	for _, sn := range d.Snapshots {
		s.accountSnap(sn, +1)
	}
}

// usageKey names a usage counter; per-type counters are keyed by type ID so
// renaming a type keeps its usage.
func usageKey(resource, typeID string) string {
	if typeID == "" {
		return resource
	}
	return resource + "@" + typeID
}

func (s *State) use(project, key string) *Use {
	p := s.usage[project]
	if p == nil {
		p = map[string]*Use{}
		s.usage[project] = p
	}
	u := p[key]
	if u == nil {
		u = &Use{}
		p[key] = u
	}
	return u
}

// account adds (sign=+1) or removes (sign=-1) a volume's contribution to the
// derived counters. Quota: a consuming volume in status creating is reserved,
// otherwise in use. Pools: a placed volume counts in its pool.
func (s *State) account(v *Volume, sign int64) {
	s.typeUses[v.TypeID] += int(sign)
	if v.ConsumesQuota {
		for _, k := range []string{usageKey(QuotaVolumes, ""), usageKey(QuotaVolumes, v.TypeID)} {
			u := s.use(v.ProjectID, k)
			if v.Status == StatusCreating {
				u.Reserved += sign
			} else {
				u.InUse += sign
			}
		}
		for _, k := range []string{usageKey(QuotaGigabytes, ""), usageKey(QuotaGigabytes, v.TypeID)} {
			u := s.use(v.ProjectID, k)
			if v.Status == StatusCreating {
				u.Reserved += sign * v.SizeGB
			} else {
				u.InUse += sign * v.SizeGB
			}
		}
	}
	// An extend in flight reserves the growth.
	if grow := v.ExtendToGB - v.SizeGB; v.ConsumesQuota && v.Status == StatusExtending && grow > 0 {
		for _, k := range []string{usageKey(QuotaGigabytes, ""), usageKey(QuotaGigabytes, v.TypeID)} {
			s.use(v.ProjectID, k).Reserved += sign * grow
		}
	}
	if v.Pool != "" {
		pu := s.poolUse[v.Pool]
		if pu == nil {
			pu = &PoolUse{}
			s.poolUse[v.Pool] = pu
		}
		pu.AllocatedGB += sign * max(v.SizeGB, v.ExtendToGB)
		pu.Volumes += int(sign)
	}
}

// accountSnap adds or removes a snapshot's quota usage (snapshots and
// gigabytes, as Cinder counts snapshot sizes in the gigabytes quota).
func (s *State) accountSnap(sn *Snapshot, sign int64) {
	s.volSnaps[sn.VolumeID] += int(sign)
	if !sn.ConsumesQuota {
		return
	}
	add := func(key string, n int64) {
		u := s.use(sn.ProjectID, key)
		if sn.Status == SnapCreating {
			u.Reserved += sign * n
		} else {
			u.InUse += sign * n
		}
	}
	add(usageKey(QuotaSnapshots, ""), 1)
	add(usageKey(QuotaSnapshots, sn.TypeID), 1)
	add(usageKey(QuotaGigabytes, ""), sn.SizeGB)
	add(usageKey(QuotaGigabytes, sn.TypeID), sn.SizeGB)
}

// putSnap replaces a snapshot record, keeping derived counters right.
func (s *State) putSnap(sn *Snapshot) {
	if old := s.d.Snapshots[sn.ID]; old != nil {
		s.accountSnap(old, -1)
	}
	s.d.Snapshots[sn.ID] = sn
	s.accountSnap(sn, +1)
	if s.onChange != nil {
		s.onChange(sn.ID)
	}
}

func (s *State) removeSnap(id string) {
	if old := s.d.Snapshots[id]; old != nil {
		s.accountSnap(old, -1)
		delete(s.d.Snapshots, id)
		if s.onChange != nil {
			s.onChange(id)
		}
	}
}

// put replaces a volume record, keeping derived counters right.
func (s *State) put(v *Volume) {
	if old := s.d.Volumes[v.ID]; old != nil {
		s.account(old, -1)
	}
	s.d.Volumes[v.ID] = v
	s.account(v, +1)
	if s.onChange != nil {
		s.onChange(v.ID)
	}
}

func (s *State) remove(id string) {
	if old := s.d.Volumes[id]; old != nil {
		s.account(old, -1)
		delete(s.d.Volumes, id)
		for aid, a := range s.d.Attachments {
			if a.VolumeID == id {
				delete(s.d.Attachments, aid)
			}
		}
		if s.onChange != nil {
			s.onChange(id)
		}
	}
}

// ---- readers ----

// Volume returns a volume by ID (nil if absent). The record must not be modified.
func (s *State) Volume(id string) *Volume {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Volumes[id]
}

// VolumeFilter selects volumes for listing.
type VolumeFilter struct {
	ProjectID string // "" = all projects
	Name      string
	Status    string
	Metadata  map[string]string
	Pool      string
}

// Volumes returns the volumes matching f, unsorted.
func (s *State) Volumes(f VolumeFilter) []*Volume {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Volume, 0, 64)
	for _, v := range s.d.Volumes {
		if f.ProjectID != "" && v.ProjectID != f.ProjectID {
			continue
		}
		if f.Name != "" && v.Name != f.Name {
			continue
		}
		if f.Status != "" && v.Status != f.Status {
			continue
		}
		if f.Pool != "" && v.Pool != f.Pool {
			continue
		}
		if hasMetadata(v.Metadata, f.Metadata) {
			out = append(out, v)
		}
	}
	return out
}

// TransitionalVolumes returns IDs of volumes the leader still has work for.
func (s *State) TransitionalVolumes() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ids []string
	for id, v := range s.d.Volumes {
		switch v.Status {
		case StatusCreating, StatusDeleting, StatusExtending, StatusReverting:
			ids = append(ids, id)
		}
	}
	for id, sn := range s.d.Snapshots {
		if sn.Status == SnapCreating || sn.Status == SnapDeleting {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Snapshot returns a snapshot by ID (nil if absent). Do not modify it.
func (s *State) Snapshot(id string) *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Snapshots[id]
}

// SnapshotFilter selects snapshots for listing.
type SnapshotFilter struct {
	ProjectID string // "" = all projects
	VolumeID  string
	Name      string
	Status    string
	Metadata  map[string]string
}

// Snapshots returns the snapshots matching f, unsorted.
func (s *State) Snapshots(f SnapshotFilter) []*Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Snapshot
	for _, sn := range s.d.Snapshots {
		if (f.ProjectID != "" && sn.ProjectID != f.ProjectID) || (f.VolumeID != "" && sn.VolumeID != f.VolumeID) ||
			(f.Name != "" && sn.Name != f.Name) || (f.Status != "" && sn.Status != f.Status) || !hasMetadata(sn.Metadata, f.Metadata) {
			continue
		}
		out = append(out, sn)
	}
	return out
}

// VolumeSnapshotCount is how many snapshots a volume has.
func (s *State) VolumeSnapshotCount(volumeID string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.volSnaps[volumeID]
}

func hasMetadata(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Type returns a volume type by ID (nil if absent).
func (s *State) Type(id string) *VolumeType {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Types[id]
}

// TypeByName returns a volume type by exact name (nil if absent).
func (s *State) TypeByName(name string) *VolumeType {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.typeByName(name)
}

func (s *State) typeByName(name string) *VolumeType {
	for _, t := range s.d.Types {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Types returns all volume types sorted by name.
func (s *State) Types() []*VolumeType {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Collect(maps.Values(s.d.Types))
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TypeInUse reports whether any volume uses the type.
func (s *State) TypeInUse(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.typeUses[id] > 0
}

// QuotaLimits returns a project's effective limits, per-type keys by type name.
func (s *State) QuotaLimits(project string) map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.limits(project)
}

// QuotaDefaults returns the default limits including per-type keys.
func (s *State) QuotaDefaults() map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.limits("")
}

func (s *State) limits(project string) map[string]int64 {
	out := maps.Clone(s.d.Defaults)
	for _, t := range s.d.Types {
		for _, r := range PerTypeResources {
			out[r+"_"+t.Name] = -1
		}
	}
	if project != "" {
		maps.Copy(out, s.d.Quotas[project])
	}
	return out
}

// QuotaUsage returns a project's usage by resource name (per-type keys by
// type name), for every resource in its limits.
func (s *State) QuotaUsage(project string) map[string]Use {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]Use{}
	for k := range s.limits(project) {
		out[k] = Use{}
	}
	for key, u := range s.usage[project] {
		name := key
		if res, typeID, ok := strings.Cut(key, "@"); ok {
			t := s.d.Types[typeID]
			if t == nil {
				continue
			}
			name = res + "_" + t.Name
		}
		out[name] = *u
	}
	return out
}

// Pools returns registered pools sorted by name.
func (s *State) Pools() []*Pool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Collect(maps.Values(s.d.Pools))
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Pool returns a pool by full name (nil if absent).
func (s *State) Pool(name string) *Pool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Pools[name]
}

// PoolUsage returns the allocation Raft knows for a pool.
func (s *State) PoolUsage(name string) PoolUse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if pu := s.poolUse[name]; pu != nil {
		return *pu
	}
	return PoolUse{}
}

// Services returns services sorted by binary then host.
func (s *State) Services() []*Service {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := slices.Collect(maps.Values(s.d.Services))
	sort.Slice(out, func(i, j int) bool {
		if out[i].Binary != out[j].Binary {
			return out[i].Binary < out[j].Binary
		}
		return out[i].Host < out[j].Host
	})
	return out
}

// Service returns one service (nil if absent).
func (s *State) Service(binary, host string) *Service {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.d.Services[binary+"/"+host]
}

// Now-independent helpers used by Apply.

func touch(v *Volume, at time.Time) { v.UpdatedAt = at }

func cloneVolume(v *Volume) *Volume {
	c := *v
	c.Metadata = maps.Clone(v.Metadata)
	c.Tried = slices.Clone(v.Tried)
	c.ImageMetadata = maps.Clone(v.ImageMetadata)
	return &c
}

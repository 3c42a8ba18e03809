package state

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// CommandType is the first byte of every Raft log entry.
type CommandType uint8

// IgnorableFlag marks a command type an older coordinator may skip instead of
// refusing to run (for rolling upgrades that add optional commands).
const IgnorableFlag CommandType = 0x80

// Command types. Values are persisted in the Raft log: never renumber.
const (
	CmdCreateVolume       CommandType = 1
	CmdScheduleVolume     CommandType = 2
	CmdVolumeCreated      CommandType = 3
	CmdVolumeCreateFailed CommandType = 4
	CmdUpdateVolume       CommandType = 5
	CmdDeleteVolume       CommandType = 6
	CmdVolumeDeleted      CommandType = 7
	CmdVolumeDeleteFailed CommandType = 8
	CmdCreateType         CommandType = 9
	CmdUpdateType         CommandType = 10
	CmdDeleteType         CommandType = 11
	CmdSetExtraSpecs      CommandType = 12
	CmdDeleteExtraSpec    CommandType = 13
	CmdSetQuota           CommandType = 14
	CmdDeleteQuota        CommandType = 15
	CmdRegisterAgent      CommandType = 16
	CmdSetServiceState    CommandType = 17

	// Inventory reconcile (inventory.go). 56 belongs to another command.
	CmdMarkMissing    CommandType = 55
	CmdSetPoolOrphans CommandType = 57
)

// Command is a typed state change.
type Command interface {
	CommandType() CommandType
}

// Encode renders a command as a Raft log entry: type byte + JSON body.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", c.CommandType(), err)
	}
	out := make([]byte, 0, len(body)+1)
	out = append(out, byte(c.CommandType()))
	return append(out, body...), nil
}

// CreateVolume checks the project's quota, reserves it and inserts the
// volume in status creating, all in one step.
type CreateVolume struct {
	Volume Volume `json:"volume"`
}

// ScheduleVolume records the pool chosen for a creating volume; Apply
// re-checks the fit against the allocation at apply time.
type ScheduleVolume struct {
	ID   string    `json:"id"`
	Pool string    `json:"pool"`
	At   time.Time `json:"at"`
	// Observed capacity the leader placed on (from gossip).
	TotalKind storage.CapacityKind `json:"total_kind"`
	TotalGB   float64              `json:"total_gb"`
	FreeKind  storage.CapacityKind `json:"free_kind"`
	FreeGB    float64              `json:"free_gb"`
}

// VolumeCreated marks a volume available and commits its quota.
type VolumeCreated struct {
	ID       string    `json:"id"`
	Pool     string    `json:"pool"`
	Location string    `json:"location"`
	At       time.Time `json:"at"`
}

// VolumeCreateFailed records a failed attempt. With Final the volume goes to
// error and its quota is released; otherwise it is unplaced for a retry.
type VolumeCreateFailed struct {
	ID     string    `json:"id"`
	Pool   string    `json:"pool"`
	Reason string    `json:"reason"`
	Final  bool      `json:"final"`
	At     time.Time `json:"at"`
}

// Metadata update modes.
const (
	MetaKeep    = ""        // leave metadata unchanged
	MetaReplace = "replace" // set to exactly Metadata
	MetaMerge   = "merge"   // add/overwrite the keys in Metadata
	MetaDelete  = "delete"  // remove DeleteKey
)

// UpdateVolume changes user-editable fields.
type UpdateVolume struct {
	ID          string            `json:"id"`
	ProjectID   string            `json:"project_id"`
	Name        *string           `json:"name,omitempty"`
	Description *string           `json:"description,omitempty"`
	MetaMode    string            `json:"meta_mode,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	DeleteKey   string            `json:"delete_key,omitempty"`
	At          time.Time         `json:"at"`
}

// DeleteVolume starts a delete (status deleting), or removes at once a
// volume that was never placed.
type DeleteVolume struct {
	ID        string `json:"id"`
	ProjectID string `json:"project_id"`
	Force     bool   `json:"force"`
	// Cascade deletes the volume's snapshots too (?cascade=true).
	Cascade bool      `json:"cascade,omitempty"`
	At      time.Time `json:"at"`
}

// VolumeDeleted removes a volume and frees its quota and pool allocation.
type VolumeDeleted struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// VolumeDeleteFailed moves a deleting volume to error_deleting.
type VolumeDeleteFailed struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// CreateType adds a volume type.
type CreateType struct {
	Type VolumeType `json:"type"`
}

// UpdateType changes a type's name, description or visibility.
type UpdateType struct {
	ID          string    `json:"id"`
	Name        *string   `json:"name,omitempty"`
	Description *string   `json:"description,omitempty"`
	IsPublic    *bool     `json:"is_public,omitempty"`
	At          time.Time `json:"at"`
}

// DeleteType removes an unused type.
type DeleteType struct {
	ID string `json:"id"`
}

// SetExtraSpecs adds or overwrites extra specs of a type.
type SetExtraSpecs struct {
	TypeID string            `json:"type_id"`
	Specs  map[string]string `json:"specs"`
	At     time.Time         `json:"at"`
}

// DeleteExtraSpec removes one extra spec.
type DeleteExtraSpec struct {
	TypeID string    `json:"type_id"`
	Key    string    `json:"key"`
	At     time.Time `json:"at"`
}

// SetQuota sets limits for a project; a limit below usage is refused.
type SetQuota struct {
	ProjectID string           `json:"project_id"`
	Limits    map[string]int64 `json:"limits"`
}

// DeleteQuota returns a project to the default limits.
type DeleteQuota struct {
	ProjectID string `json:"project_id"`
}

// RegisterAgent records an agent's service and its pools' static facts.
type RegisterAgent struct {
	Agent   string             `json:"agent"`
	Zone    string             `json:"zone"`
	RPCAddr string             `json:"rpc_addr"`
	Pools   []storage.PoolInfo `json:"pools"`
	At      time.Time          `json:"at"`
}

// SetServiceState records liveness of a service as seen by Serf.
type SetServiceState struct {
	Host   string    `json:"host"`
	Binary string    `json:"binary"`
	Zone   string    `json:"zone"`
	Up     bool      `json:"up"`
	At     time.Time `json:"at"`
}

func (CreateVolume) CommandType() CommandType       { return CmdCreateVolume }
func (ScheduleVolume) CommandType() CommandType     { return CmdScheduleVolume }
func (VolumeCreated) CommandType() CommandType      { return CmdVolumeCreated }
func (VolumeCreateFailed) CommandType() CommandType { return CmdVolumeCreateFailed }
func (UpdateVolume) CommandType() CommandType       { return CmdUpdateVolume }
func (DeleteVolume) CommandType() CommandType       { return CmdDeleteVolume }
func (VolumeDeleted) CommandType() CommandType      { return CmdVolumeDeleted }
func (VolumeDeleteFailed) CommandType() CommandType { return CmdVolumeDeleteFailed }
func (CreateType) CommandType() CommandType         { return CmdCreateType }
func (UpdateType) CommandType() CommandType         { return CmdUpdateType }
func (DeleteType) CommandType() CommandType         { return CmdDeleteType }
func (SetExtraSpecs) CommandType() CommandType      { return CmdSetExtraSpecs }
func (DeleteExtraSpec) CommandType() CommandType    { return CmdDeleteExtraSpec }
func (SetQuota) CommandType() CommandType           { return CmdSetQuota }
func (DeleteQuota) CommandType() CommandType        { return CmdDeleteQuota }
func (RegisterAgent) CommandType() CommandType      { return CmdRegisterAgent }
func (SetServiceState) CommandType() CommandType    { return CmdSetServiceState }

// Package state is Kiln's replicated state: the records kept in Raft and the
// typed commands that change them. The FSM (fsm.go) is the only writer; every
// command is deterministic (the proposer chooses IDs and timestamps), so all
// coordinators reach the same state from the same log.
package state

import (
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Volume statuses (Cinder's VolumeStatus values used so far).
const (
	StatusCreating      = "creating"
	StatusAvailable     = "available"
	StatusDeleting      = "deleting"
	StatusError         = "error"
	StatusErrorDeleting = "error_deleting"
	StatusInUse         = "in-use"
	StatusExtending     = "extending"
	StatusErrorExtend   = "error_extending"
	StatusReverting     = "reverting"
)

// Snapshot statuses (Cinder's SnapshotStatus values used so far).
const (
	SnapCreating      = "creating"
	SnapAvailable     = "available"
	SnapDeleting      = "deleting"
	SnapError         = "error"
	SnapErrorDeleting = "error_deleting"
	SnapRestoring     = "restoring"
)

// Attach statuses (Cinder's VolumeAttachStatus).
const (
	AttachDetached       = "detached"
	AttachAttached       = "attached"
	AttachAttaching      = "attaching"
	AttachDetaching      = "detaching"
	AttachReserved       = "reserved"
	AttachErrorAttaching = "error_attaching"
	AttachErrorDetaching = "error_detaching"
)

// Volume statuses of the attach/detach flows.
const (
	StatusAttaching   = "attaching"
	StatusDetaching   = "detaching"
	StatusReserved    = "reserved"
	StatusMaintenance = "maintenance"
	StatusDownloading = "downloading"
)

// Attach modes.
const (
	AttachModeRW = "rw"
	AttachModeRO = "ro"
)

// Attachment is one attachment of a volume to an instance or host
// (Cinder's VolumeAttachment). Records are immutable once stored.
type Attachment struct {
	ID           string `json:"id"`
	VolumeID     string `json:"volume_id"`
	ProjectID    string `json:"project_id"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	HostName     string `json:"host_name,omitempty"`
	Mountpoint   string `json:"mountpoint,omitempty"`
	AttachStatus string `json:"attach_status"`
	AttachMode   string `json:"attach_mode"`
	// Connector is the consumer's connector once known.
	Connector *storage.Connector `json:"connector,omitempty"`
	// ConnectionInfo is the JSON of the connection_info last returned for
	// this attachment ("" = none).
	ConnectionInfo string    `json:"connection_info,omitempty"`
	AttachedAt     time.Time `json:"attached_at"`
	DetachedAt     time.Time `json:"detached_at"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Volume is one volume. Records are immutable once stored: the FSM replaces
// the pointer when anything changes, so readers may keep a pointer.
type Volume struct {
	ID           string            `json:"id"`
	ProjectID    string            `json:"project_id"`
	UserID       string            `json:"user_id"`
	Name         string            `json:"name"`
	Description  string            `json:"description"`
	SizeGB       int64             `json:"size"`
	Status       string            `json:"status"`
	AttachStatus string            `json:"attach_status"`
	TypeID       string            `json:"volume_type_id"`
	AZ           string            `json:"availability_zone"`
	Metadata     map[string]string `json:"metadata"`
	Bootable     bool              `json:"bootable"`
	Multiattach  bool              `json:"multiattach"`
	Hints        Hints             `json:"hints,omitempty"`
	// SnapshotID / SourceVolID name the source of a volume created from a
	// snapshot or cloned from a volume; it is created on the source's pool.
	SnapshotID  string `json:"snapshot_id,omitempty"`
	SourceVolID string `json:"source_volid,omitempty"`
	// PreviousStatus is the status to return to after extending.
	PreviousStatus string `json:"previous_status,omitempty"`
	// ExtendToGB is the target size while extending; the difference to
	// SizeGB is reserved quota and pool allocation until the extend ends.
	ExtendToGB int64 `json:"extend_to_gb,omitempty"`
	// RevertSnapshotID is the snapshot a reverting volume is restored from.
	RevertSnapshotID string `json:"revert_snapshot_id,omitempty"`
	// MigrationStatus is Cinder's migration_status; only os-reset_status
	// sets it (Kiln does not migrate volumes yet). Empty is None.
	MigrationStatus string `json:"migration_status,omitempty"`
	// ReadOnly is os-update_readonly_flag (Cinder keeps it as the admin
	// metadata key "readonly"); attachments will use it for attach_mode.
	ReadOnly bool `json:"readonly,omitempty"`
	// ImageMetadata is Cinder's volume glance metadata
	// (os-set_image_metadata, shown as volume_image_metadata).
	ImageMetadata map[string]string `json:"image_metadata,omitempty"`

	// Pool is the full pool name ("agent@backend#pool") the volume is placed
	// on; empty until scheduled. A volume with a Pool counts in the pool's
	// allocated capacity.
	Pool string `json:"pool,omitempty"`
	// Tried lists pools already attempted for this create.
	Tried []string `json:"tried,omitempty"`
	// ProviderLocation is what the driver returned.
	ProviderLocation string `json:"provider_location,omitempty"`
	// ProviderAuth is "CHAP <username> <secret>" for volumes on iSCSI
	// pools, set at the first export (SetProviderAuth); never shown by
	// the API except inside connection_info.
	ProviderAuth string `json:"provider_auth,omitempty"`
	// ConsumesQuota is false once a failed create released its quota.
	ConsumesQuota bool `json:"consumes_quota"`
	// ErrorMessage explains the last failure (Cinder's user messages).
	ErrorMessage string `json:"error_message,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// TaskStartedAt is when the current transitional status began; the
	// leader's reconcile loop fails tasks that exceed their deadline.
	TaskStartedAt time.Time `json:"task_started_at"`
}

// Snapshot is a point-in-time copy of a volume, held on the volume's pool.
type Snapshot struct {
	ID               string            `json:"id"`
	VolumeID         string            `json:"volume_id"`
	ProjectID        string            `json:"project_id"`
	UserID           string            `json:"user_id"`
	Name             string            `json:"name"`
	Description      string            `json:"description"`
	SizeGB           int64             `json:"size"`
	Status           string            `json:"status"`
	Progress         string            `json:"progress"`
	Metadata         map[string]string `json:"metadata"`
	Pool             string            `json:"pool"`
	TypeID           string            `json:"volume_type_id"`
	ProviderLocation string            `json:"provider_location,omitempty"`
	ConsumesQuota    bool              `json:"consumes_quota"`
	ErrorMessage     string            `json:"error_message,omitempty"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
	TaskStartedAt    time.Time         `json:"task_started_at"`
}

// Hints are scheduler hints resolved at create time.
type Hints struct {
	SameHost      []string `json:"same_host,omitempty"`
	DifferentHost []string `json:"different_host,omitempty"`
}

// VolumeType is a Cinder volume type.
type VolumeType struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	IsPublic    bool              `json:"is_public"`
	ExtraSpecs  map[string]string `json:"extra_specs"`
	// QoSSpecsID is the QoS specs associated with the type ("" = none).
	QoSSpecsID string    `json:"qos_specs_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// QoS consumers (Cinder's QoSConsumerValues).
const (
	QoSBackEnd  = "back-end"
	QoSFrontEnd = "front-end"
	QoSBoth     = "both"
)

// QoSConsumers are the valid consumers, in Cinder's order.
var QoSConsumers = []string{QoSFrontEnd, QoSBackEnd, QoSBoth}

// QoSSpecs is a Cinder QoS specification, associated with volume types
// through VolumeType.QoSSpecsID.
type QoSSpecs struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Consumer  string            `json:"consumer"`
	Specs     map[string]string `json:"specs"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// DefaultTypeID is the fixed ID of the __DEFAULT__ type created with the state.
const DefaultTypeID = "1c5b2a7e-2f0d-4b8e-9a45-7d1f5c0e3a10"

// DefaultTypeName is Cinder's name for the default volume type.
const DefaultTypeName = "__DEFAULT__"

// Pool is a registered pool: its static facts plus the last capacity the
// leader recorded. Allocation is derived from volumes (see State.PoolUsage).
type Pool struct {
	Name         string           `json:"name"` // agent@backend#pool
	Agent        string           `json:"agent"`
	Zone         string           `json:"availability_zone"`
	Info         storage.PoolInfo `json:"info"`
	RegisteredAt time.Time        `json:"registered_at"`
	// Orphans are what the pool holds that Raft does not place there, as
	// the leader's last inventory found them (nil: none).
	Orphans *PoolOrphans `json:"orphans,omitempty"`
}

// Service is an agent or coordinator as os-services shows it.
type Service struct {
	Host           string    `json:"host"`
	Binary         string    `json:"binary"`
	Zone           string    `json:"zone"`
	RPCAddr        string    `json:"rpc_addr"`
	Disabled       bool      `json:"disabled"`
	DisabledReason string    `json:"disabled_reason"`
	Up             bool      `json:"up"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Service binaries as os-services reports them.
const (
	BinaryVolume    = "cinder-volume"
	BinaryScheduler = "cinder-scheduler"
)

// PoolName builds the cluster-wide pool name Cinder uses.
func PoolName(agent, backend, pool string) string {
	return agent + "@" + backend + "#" + pool
}

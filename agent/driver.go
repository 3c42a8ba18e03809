package agent

import (
	"context"

	"github.com/kilnstore/kiln/internal/storage"
)

// Driver is what the agent needs from a storage backend. One Driver serves one
// pool. Every method is idempotent by volume or snapshot ID: creating a
// volume or snapshot that exists with the same properties succeeds, deleting
// a missing one succeeds. IDs reach a driver already validated by
// storage.ValidateID, sizes by storage.ValidateSize; drivers check again.
//
// Errors wrap the storage sentinels: storage.ErrNotFound for a missing
// volume or snapshot (the object operated on or the source read from),
// storage.ErrExists for an ID taken with other properties,
// storage.ErrNoSpace for a pool that cannot hold it, storage.ErrInvalid for
// a request the driver refuses (bad ID or size, shrinking).
//
// What a pool supports beyond this interface is reported in
// storage.PoolInfo.Capabilities; agentrpc.CapabilityOnlineExtend says
// whether ExtendVolume works on an attached volume.
type Driver interface {
	// Info returns the pool's static facts.
	Info() storage.PoolInfo
	// Stats measures the pool's capacity now.
	Stats(ctx context.Context) (storage.PoolStats, error)
	// CreateVolume creates a blank volume of sizeGiB and returns it.
	CreateVolume(ctx context.Context, id string, sizeGiB int64) (storage.Volume, error)
	// CreateVolumeFromSnapshot creates volume id holding the snapshot's
	// data, grown to sizeGiB (>= snapshot size).
	CreateVolumeFromSnapshot(ctx context.Context, id, snapshotID string, sizeGiB int64) (storage.Volume, error)
	// CloneVolume creates volume id as a copy of volume sourceID, grown to
	// sizeGiB (>= source size).
	CloneVolume(ctx context.Context, id, sourceID string, sizeGiB int64) (storage.Volume, error)
	// ExtendVolume grows a volume to newSizeGiB. A volume already of that
	// size is a success; shrinking is storage.ErrInvalid.
	ExtendVolume(ctx context.Context, id string, newSizeGiB int64) error
	// DeleteVolume removes a volume; a missing volume is not an error.
	// Deleting a volume that has snapshots is allowed here; whether it is
	// allowed at all is the coordinator's rule.
	DeleteVolume(ctx context.Context, id string) error
	// ListVolumes reports the volumes the pool holds.
	ListVolumes(ctx context.Context) ([]storage.Volume, error)

	// CreateSnapshot captures volume volumeID as snapshot snapshotID. An
	// existing snapshot of that volume is returned; the ID taken by a
	// snapshot of another volume is storage.ErrExists.
	CreateSnapshot(ctx context.Context, snapshotID, volumeID string) (storage.Snapshot, error)
	// DeleteSnapshot removes a snapshot; a missing one is not an error.
	DeleteSnapshot(ctx context.Context, snapshotID string) error
	// RevertToSnapshot restores a volume's data to its snapshot's, as
	// Cinder's generic revert does: the volume keeps its current size, and
	// the part beyond the snapshot's size (if the volume was extended since)
	// reads as zeros. A snapshot of another volume is storage.ErrInvalid.
	RevertToSnapshot(ctx context.Context, volumeID, snapshotID string) error
	// ListSnapshots reports the snapshots the pool holds.
	ListSnapshots(ctx context.Context) ([]storage.Snapshot, error)

	// ExportVolume makes the volume reachable for connector and returns
	// Cinder's connection_info; idempotent. auth carries the CHAP
	// credentials the coordinator keeps for the volume (zero for pools that
	// do not authenticate).
	ExportVolume(ctx context.Context, id string, connector storage.Connector, auth storage.Credentials) (storage.ConnectionInfo, error)
	// UnexportVolume removes the export for connector (a zero connector:
	// every export of the volume); a missing export is a success.
	UnexportVolume(ctx context.Context, id string, connector storage.Connector) error
}

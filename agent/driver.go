package agent

import (
	"context"

	"github.com/kilnstore/kiln/internal/storage"
)

// Driver is what the agent needs from a storage backend. One Driver serves one
// pool. Every method is idempotent by volume ID: creating a volume that exists
// with the same size succeeds, deleting a missing volume succeeds. IDs reach a
// driver already validated by storage.ValidateID.
type Driver interface {
	// Info returns the pool's static facts.
	Info() storage.PoolInfo
	// Stats measures the pool's capacity now.
	Stats(ctx context.Context) (storage.PoolStats, error)
	// CreateVolume creates a blank volume of sizeGiB and returns it.
	CreateVolume(ctx context.Context, id string, sizeGiB int64) (storage.Volume, error)
	// DeleteVolume removes a volume; a missing volume is not an error.
	DeleteVolume(ctx context.Context, id string) error
	// ListVolumes reports the volumes the pool holds.
	ListVolumes(ctx context.Context) ([]storage.Volume, error)
}

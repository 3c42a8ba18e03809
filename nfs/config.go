package nfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/kilnstore/kiln/internal/storage"
)

// Provisioning modes accepted in Config.Provisioning.
const (
	ProvisioningThin  = "thin"
	ProvisioningThick = "thick"
)

// Snapshot modes accepted in Config.Snapshots.
const (
	// SnapshotsCopy: a snapshot is a full sparse copy of its volume, a
	// file of its own (snapshot-<id>); raw volumes only.
	SnapshotsCopy = "copy"
	// SnapshotsQCOW2: Cinder's NFS snapshots, qcow2 overlays chained on
	// the volume's file and tracked in volume-<id>.info.
	SnapshotsQCOW2 = "qcow2"
)

// Volume file formats.
const (
	formatRaw   = "raw"
	formatQCOW2 = "qcow2"
)

// DefaultFileMode is the permission of volume and overlay files when
// Config.FileMode is 0: owner and group read and write, as Cinder's
// nas_secure_file_permissions.
const DefaultFileMode os.FileMode = 0o660

// Defaults applied by New to empty Config fields.
const (
	DefaultBackend                  = "local"
	DefaultMaxOverSubscriptionRatio = storage.DefaultMaxOverSubscriptionRatio
)

const (
	// maxCapacityGB keeps the cap in bytes within an int64.
	maxCapacityGB = float64(math.MaxInt64 / storage.GiB)
)

// MaxCapabilities bounds Config.Capabilities (storage.MaxCapabilities).
const MaxCapabilities = storage.MaxCapabilities

// Config configures one local-directory pool.
type Config struct {
	// Name is the pool name (storage.ValidateName).
	Name string
	// Backend is the volume_backend_name; DefaultBackend if empty.
	Backend string
	// Dir is the absolute path of the pool directory. New creates it (0750,
	// with parents) if missing; it must be a directory.
	Dir string
	// CapacityGB caps the pool's total capacity in GiB; 0 means no cap, so
	// total is what statfs reports for the file system holding Dir.
	CapacityGB float64
	// Provisioning is ProvisioningThin (default) or ProvisioningThick.
	Provisioning string
	// ReservedPercentage of total capacity placement keeps free (0-100).
	ReservedPercentage int
	// MaxOverSubscriptionRatio is a number >= 1 or "auto";
	// DefaultMaxOverSubscriptionRatio if empty.
	MaxOverSubscriptionRatio string
	// Capabilities are extra capabilities matched by volume-type extra
	// specs. Keys are 1-255 characters of [A-Za-z0-9_.:-] and may not be one
	// the driver reports itself; values are up to 255 bytes of printable
	// UTF-8; at most MaxCapabilities entries.
	Capabilities map[string]string
	// QCOW2Volumes makes new volumes qcow2 images (Cinder's
	// nfs_qcow2_volumes) instead of raw sparse files. It needs qcow2
	// snapshots.
	QCOW2Volumes bool
	// Snapshots is SnapshotsCopy or SnapshotsQCOW2. Empty means qcow2 for
	// a pool that is exported (Exporter) or holds qcow2 volumes, copy for a
	// plain local directory (kiln dev: no qemu-img needed). A pool cannot
	// change modes while it holds snapshots (New refuses).
	Snapshots string
	// FileMode is the permission of volume and overlay files (0 means
	// DefaultFileMode); it must give the owner read and write and nothing
	// beyond 0777.
	FileMode os.FileMode
	// QemuImg is the qemu-img binary of the qcow2 mode: a name in PATH or
	// an absolute path; empty means "qemu-img".
	QemuImg string
	// Share, if set, is a remote NFS share the pool lives on: the driver
	// mounts it (ShareConfig) and the pool's directory is the mount point,
	// so Dir must be empty. Without an Exporter, connection info then
	// points compute hosts at the same share, as Cinder's NFS driver does.
	Share *ShareConfig
	// Logger receives the driver's records; nil means slog.Default().
	Logger *slog.Logger
	// Exporter, if set, serves the pool's directory over NFS (nfs-ganesha
	// on this host, internal/ganesha): ExportVolume then answers Cinder's
	// "nfs" connection info and restricts access to the connector's host.
	// Without it the pool is local to the agent's host.
	Exporter Exporter
}

// Exporter exports the directory holding a volume's file to a connector's
// host and builds Cinder's NFS connection info for the file.
type Exporter interface {
	ExportVolume(ctx context.Context, volumeID, dir string, c storage.Connector, name, format string) (storage.ConnectionInfo, error)
	UnexportVolume(ctx context.Context, volumeID string, c storage.Connector) error
}

// withDefaults returns cfg with empty fields defaulted and Dir cleaned.
func (cfg Config) withDefaults() Config {
	if cfg.Backend == "" {
		cfg.Backend = DefaultBackend
	}
	if cfg.Provisioning == "" {
		cfg.Provisioning = ProvisioningThin
	}
	if cfg.MaxOverSubscriptionRatio == "" {
		cfg.MaxOverSubscriptionRatio = DefaultMaxOverSubscriptionRatio
	}
	if cfg.Dir != "" {
		cfg.Dir = filepath.Clean(cfg.Dir)
	}
	if cfg.Snapshots == "" {
		cfg.Snapshots = SnapshotsCopy
		if cfg.QCOW2Volumes || cfg.Exporter != nil || cfg.Share != nil {
			cfg.Snapshots = SnapshotsQCOW2
		}
	}
	if cfg.FileMode == 0 {
		cfg.FileMode = DefaultFileMode
	}
	return cfg
}

// validate reports every problem in a defaulted config, each wrapping
// storage.ErrInvalid. It does not touch the file system.
func (cfg Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{storage.ErrInvalid}, args...)...))
	}

	errs = append(errs, storage.PoolSettings{
		Name: cfg.Name, Backend: cfg.Backend, ReservedPercentage: cfg.ReservedPercentage,
		MaxOverSubscriptionRatio: cfg.MaxOverSubscriptionRatio, Capabilities: cfg.Capabilities,
	}.Validate()...)
	switch {
	case cfg.Dir == "":
		bad("dir is required")
	case !filepath.IsAbs(cfg.Dir):
		bad("dir %q is not an absolute path", cfg.Dir)
	}
	if math.IsNaN(cfg.CapacityGB) || cfg.CapacityGB < 0 || cfg.CapacityGB > maxCapacityGB {
		bad("capacity_gb %v must be 0 (no cap) or a positive number of GiB up to %.0f", cfg.CapacityGB, maxCapacityGB)
	}
	if cfg.Provisioning != ProvisioningThin && cfg.Provisioning != ProvisioningThick {
		bad("provisioning %q must be %q or %q", cfg.Provisioning, ProvisioningThin, ProvisioningThick)
	}
	switch cfg.Snapshots {
	case SnapshotsQCOW2:
	case SnapshotsCopy:
		if cfg.QCOW2Volumes {
			bad("qcow2 volumes need qcow2 snapshots (nfs_snapshots = %q), not %q", SnapshotsQCOW2, cfg.Snapshots)
		}
	default:
		bad("snapshots %q must be %q or %q", cfg.Snapshots, SnapshotsCopy, SnapshotsQCOW2)
	}
	if cfg.QemuImg != "" {
		if err := storage.ValidateCommand("qemu-img binary", cfg.QemuImg); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.FileMode&^os.ModePerm != 0 || cfg.FileMode&0o600 != 0o600 {
		bad("file mode %#o must be permission bits (at most 0777) that let the owner read and write", uint32(cfg.FileMode))
	}

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("nfs: invalid pool config: %w", errors.Join(errs...))
}

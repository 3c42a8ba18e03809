package nfs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/kilnstore/kiln/internal/storage"
)

// Provisioning modes accepted in Config.Provisioning.
const (
	ProvisioningThin  = "thin"
	ProvisioningThick = "thick"
)

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

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("nfs: invalid pool config: %w", errors.Join(errs...))
}

package lvm

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Pool types (Cinder's lvm_type). TypeDefault is Cinder's spelling of thick.
const (
	TypeThick   = "thick"
	TypeDefault = "default"
	TypeThin    = "thin"
	TypeAuto    = "auto"
)

// Volume clearing on delete (Cinder's volume_clear).
const (
	ClearNone = "none"
	ClearZero = "zero"
)

// Defaults applied to empty Config fields.
const (
	DefaultBackend        = "lvm"
	DefaultBinary         = "lvm"
	DefaultCommandTimeout = 5 * time.Minute
	// DefaultSnapshotPercent sizes a thick snapshot's copy-on-write area
	// as a share of its origin; Cinder uses the origin's full size.
	DefaultSnapshotPercent = 100
	// thinPoolShare is the part of the VG's free space a thin pool that
	// Kiln creates takes (Cinder: 95%).
	thinPoolShare = 0.95
)

// vgNamePattern is what lvm accepts for VG and LV names that Kiln puts on a
// command line (lvm's own rule is [a-zA-Z0-9+_.-], not starting with '-').
var vgNamePattern = regexp.MustCompile(`^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$`)

// Config configures one LVM pool: a volume group (thick) or a thin pool
// inside one.
type Config struct {
	// Name is the pool name; Backend the volume_backend_name (DefaultBackend).
	Name    string
	Backend string
	// VG is the volume group; it must exist (created by the operator with
	// vgcreate, see docs/backends/lvm.md).
	VG string
	// Type is TypeThick (or Cinder's TypeDefault), TypeThin or TypeAuto;
	// thick if empty. Thin uses ThinPool, creating it from 95% of the VG's
	// free space when missing (as Cinder does); auto is thin when the thin
	// pool exists or can be created, else thick.
	Type string
	// ThinPool is the thin pool LV name; "<VG>-pool" if empty (Cinder's).
	ThinPool string
	// ReservedPercentage, MaxOverSubscriptionRatio, Capabilities: as for
	// every pool (storage.PoolSettings).
	ReservedPercentage       int
	MaxOverSubscriptionRatio string
	Capabilities             map[string]string
	// SnapshotPercent sizes a thick snapshot's COW area, 1-100% of the
	// origin (DefaultSnapshotPercent if 0).
	SnapshotPercent int
	// VolumeClear is ClearZero or ClearNone (Cinder's volume_clear; zero if
	// empty): a thick LV is overwritten with zeros before it is removed, so
	// the next volume on those extents cannot read old data. Thin LVs are
	// never cleared: the thin pool zeroes newly provisioned blocks.
	VolumeClear string
	// VolumeClearSizeMiB clears only the first N MiB (0: the whole LV;
	// Cinder's volume_clear_size).
	VolumeClearSizeMiB int64
	// Binary is the lvm executable (DefaultBinary, found in PATH).
	Binary string
	// ConfFile is an lvm.conf to use instead of /etc/lvm/lvm.conf (Cinder's
	// lvm_conf_file): the driver points LVM_SYSTEM_DIR at its directory, so
	// the file must be named lvm.conf.
	ConfFile string
	// ConfigOverride is passed to every lvm command as --config (e.g. a
	// device filter); validated to be printable.
	ConfigOverride string
	// CommandTimeout bounds one lvm command (DefaultCommandTimeout).
	CommandTimeout time.Duration
	// Exporter exports volumes over iSCSI; nil: the pool cannot export.
	Exporter Exporter
	// Locks serializes commands per VG; share one across an agent's LVM
	// pools. A private set if nil.
	Locks *Locks
	// Logger receives the driver's logs; slog.Default() if nil.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.Backend == "" {
		cfg.Backend = DefaultBackend
	}
	if cfg.Type == "" || cfg.Type == TypeDefault {
		cfg.Type = TypeThick
	}
	if cfg.ThinPool == "" && cfg.VG != "" {
		cfg.ThinPool = cfg.VG + "-pool"
	}
	if cfg.MaxOverSubscriptionRatio == "" {
		cfg.MaxOverSubscriptionRatio = storage.DefaultMaxOverSubscriptionRatio
	}
	if cfg.SnapshotPercent == 0 {
		cfg.SnapshotPercent = DefaultSnapshotPercent
	}
	if cfg.VolumeClear == "" {
		cfg.VolumeClear = ClearZero
	}
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.Locks == nil {
		cfg.Locks = NewLocks()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// validate reports every problem in a defaulted config, each wrapping
// storage.ErrInvalid. It only reads the file system (ConfFile, Binary).
func (cfg Config) validate() error {
	errs := storage.PoolSettings{
		Name: cfg.Name, Backend: cfg.Backend, ReservedPercentage: cfg.ReservedPercentage,
		MaxOverSubscriptionRatio: cfg.MaxOverSubscriptionRatio, Capabilities: cfg.Capabilities,
	}.Validate()
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{storage.ErrInvalid}, args...)...))
	}
	if !vgNamePattern.MatchString(cfg.VG) {
		bad("volume_group %q must be 1-127 characters of [A-Za-z0-9+_.-] not starting with '-'", cfg.VG)
	}
	if !vgNamePattern.MatchString(cfg.ThinPool) {
		bad("thin_pool %q must be 1-127 characters of [A-Za-z0-9+_.-] not starting with '-'", cfg.ThinPool)
	}
	switch cfg.Type {
	case TypeThick, TypeThin, TypeAuto:
	default:
		bad("lvm_type %q must be %q (or %q), %q or %q", cfg.Type, TypeThick, TypeDefault, TypeThin, TypeAuto)
	}
	if cfg.SnapshotPercent < 1 || cfg.SnapshotPercent > 100 {
		bad("snapshot_percent %d must be within 1..100", cfg.SnapshotPercent)
	}
	if cfg.VolumeClear != ClearZero && cfg.VolumeClear != ClearNone {
		bad("volume_clear %q must be %q or %q", cfg.VolumeClear, ClearZero, ClearNone)
	}
	if cfg.VolumeClearSizeMiB < 0 || cfg.VolumeClearSizeMiB > storage.MaxVolumeGiB*1024 {
		bad("volume_clear_size_mib %d must be 0 (whole volume) or a positive number of MiB", cfg.VolumeClearSizeMiB)
	}
	if cfg.ConfFile != "" {
		switch fi, err := os.Stat(cfg.ConfFile); {
		case !filepath.IsAbs(cfg.ConfFile) || filepath.Base(cfg.ConfFile) != "lvm.conf":
			bad("lvm_conf %q must be an absolute path to a file named lvm.conf (LVM reads it through LVM_SYSTEM_DIR)", cfg.ConfFile)
		case err != nil:
			bad("lvm_conf %q: %v", cfg.ConfFile, err)
		case fi.IsDir():
			bad("lvm_conf %q is a directory", cfg.ConfFile)
		}
	}
	if len(cfg.ConfigOverride) > 4096 || !storage.Printable(cfg.ConfigOverride) {
		bad("lvm_config must be at most 4096 bytes of printable text")
	}
	if cfg.Binary != DefaultBinary && !filepath.IsAbs(cfg.Binary) {
		bad("lvm_binary %q must be %q or an absolute path", cfg.Binary, DefaultBinary)
	}
	if cfg.CommandTimeout < 0 {
		bad("command_timeout %s must be positive", cfg.CommandTimeout)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("lvm: invalid pool config: %w", errors.Join(errs...))
}

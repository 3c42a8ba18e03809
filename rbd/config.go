package rbd

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Defaults applied by New to empty Config fields.
const (
	DefaultBackend                  = "ceph"
	DefaultUser                     = "cinder"
	DefaultClusterName              = "ceph"
	DefaultConf                     = "/etc/ceph/ceph.conf"
	DefaultMaxCloneDepth            = 5
	DefaultTimeout                  = 60 * time.Second
	DefaultMaxOverSubscriptionRatio = storage.DefaultMaxOverSubscriptionRatio
)

// Config configures one pool: one Ceph pool reached as one cephx user.
type Config struct {
	// Name is the Kiln pool name (storage.ValidateName).
	Name string
	// Backend is the volume_backend_name; DefaultBackend if empty.
	Backend string
	// Pool is the Ceph pool holding the images (Cinder's rbd_pool).
	Pool string
	// User is the cephx user without "client." (Cinder's rbd_user);
	// DefaultUser if empty.
	User string
	// Conf is ceph.conf (Cinder's rbd_ceph_conf); DefaultConf if empty.
	Conf string
	// Keyring is the user's keyring; empty means ceph's default search
	// (/etc/ceph/<cluster>.client.<user>.keyring).
	Keyring string
	// ClusterName is reported in connection info (Cinder's
	// rbd_cluster_name); DefaultClusterName if empty.
	ClusterName string
	// SecretUUID is the libvirt secret holding the user's key on compute
	// hosts (Cinder's rbd_secret_uuid), passed in connection info.
	SecretUUID string
	// MaxCloneDepth: a volume made from a snapshot whose chain of parents
	// would be deeper is flattened (Cinder's rbd_max_clone_depth); 0 means
	// DefaultMaxCloneDepth, negative is invalid.
	MaxCloneDepth int
	// FlattenFromSnapshot flattens every volume created from a snapshot
	// (Cinder's rbd_flatten_volume_from_snapshot).
	FlattenFromSnapshot bool
	// Timeout bounds every rbd and ceph command (a cluster without quorum
	// makes them wait forever); DefaultTimeout if 0. Flatten and copy
	// commands get ten times as long.
	Timeout time.Duration
	// RBD and Ceph are the binaries; "rbd" and "ceph" in PATH if empty.
	RBD, Ceph string

	ReservedPercentage       int
	MaxOverSubscriptionRatio string
	Capabilities             map[string]string
}

var (
	// Ceph pool names: what `ceph osd pool create` accepts that is safe to
	// pass as an argument and inside "pool/image" specs.
	poolPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	// cephx user IDs (without "client.").
	userPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

func (cfg Config) withDefaults() Config {
	if cfg.Backend == "" {
		cfg.Backend = DefaultBackend
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.Conf == "" {
		cfg.Conf = DefaultConf
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = DefaultClusterName
	}
	if cfg.MaxCloneDepth == 0 {
		cfg.MaxCloneDepth = DefaultMaxCloneDepth
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RBD == "" {
		cfg.RBD = "rbd"
	}
	if cfg.Ceph == "" {
		cfg.Ceph = "ceph"
	}
	if cfg.MaxOverSubscriptionRatio == "" {
		cfg.MaxOverSubscriptionRatio = DefaultMaxOverSubscriptionRatio
	}
	return cfg
}

// validate reports every problem, each wrapping storage.ErrInvalid.
func (cfg Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{storage.ErrInvalid}, args...)...))
	}
	errs = append(errs, storage.PoolSettings{
		Name: cfg.Name, Backend: cfg.Backend, ReservedPercentage: cfg.ReservedPercentage,
		MaxOverSubscriptionRatio: cfg.MaxOverSubscriptionRatio, Capabilities: cfg.Capabilities,
	}.Validate()...)
	if !poolPattern.MatchString(cfg.Pool) {
		bad("rbd_pool %q must be 1-128 characters of [A-Za-z0-9_.-] starting with a letter or digit", cfg.Pool)
	}
	if !userPattern.MatchString(cfg.User) || strings.HasPrefix(cfg.User, "client.") {
		bad("rbd_user %q must be a cephx user ID without \"client.\" (1-64 characters of [A-Za-z0-9_.-])", cfg.User)
	}
	if !userPattern.MatchString(cfg.ClusterName) {
		bad("rbd_cluster_name %q must be 1-64 characters of [A-Za-z0-9_.-]", cfg.ClusterName)
	}
	for what, p := range map[string]string{"rbd_ceph_conf": cfg.Conf, "rbd_keyring": cfg.Keyring} {
		if p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsAny(p, "\x00\n")) {
			bad("%s %q must be a clean absolute path", what, p)
		}
	}
	for what, b := range map[string]string{"rbd binary": cfg.RBD, "ceph binary": cfg.Ceph} {
		if err := storage.ValidateCommand(what, b); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.SecretUUID != "" && !uuidPattern.MatchString(cfg.SecretUUID) {
		bad("rbd_secret_uuid %q is not a UUID", cfg.SecretUUID)
	}
	if cfg.MaxCloneDepth < 0 || cfg.MaxCloneDepth > 64 {
		bad("rbd_max_clone_depth %d must be 1..64 (0 means %d)", cfg.MaxCloneDepth, DefaultMaxCloneDepth)
	}
	if cfg.Timeout < time.Second {
		bad("command timeout %s must be at least 1s", cfg.Timeout)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("rbd: invalid pool config: %w", errors.Join(errs...))
}

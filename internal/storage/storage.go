// Package storage holds the types shared by the agent and the storage
// drivers (nfs/, lvm/, rbd/): pool facts, pool capacity, held volumes, the
// sentinel errors drivers return, and validation of the identifiers that are
// allowed to reach a driver command.
//
// The Driver interface itself is declared where it is consumed, in agent/.
package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// Sentinel errors drivers wrap so that callers can branch on them.
var (
	// ErrNotFound: the volume (or pool) does not exist on this backend.
	ErrNotFound = errors.New("not found")
	// ErrExists: a volume with the ID exists with different properties.
	ErrExists = errors.New("already exists with different properties")
	// ErrNoSpace: the backend cannot hold the requested size.
	ErrNoSpace = errors.New("not enough space")
	// ErrInvalid: the request is malformed (bad ID, bad size).
	ErrInvalid = errors.New("invalid request")
)

// GiB is one gibibyte in bytes.
const GiB = int64(1) << 30

// MaxVolumeGiB bounds the size of a single volume (1 PiB).
const MaxVolumeGiB = int64(1) << 20

// CapacityKind says whether a capacity figure is a number, infinite or unknown
// (Cinder reports the latter two as the strings "infinite" and "unknown").
type CapacityKind uint8

const (
	// Known means the GB value is meaningful.
	Known CapacityKind = iota
	// Infinite capacity always passes capacity checks.
	Infinite
	// Unknown capacity (backend unreachable) passes the capacity filter and
	// ranks lowest in the capacity weigher, as in Cinder.
	Unknown
)

// String returns "known", "infinite" or "unknown".
func (k CapacityKind) String() string {
	switch k {
	case Infinite:
		return "infinite"
	case Unknown:
		return "unknown"
	default:
		return "known"
	}
}

// PoolInfo is the static description of a pool, registered with the
// coordinator when an agent joins and stored in Raft.
type PoolInfo struct {
	// Name is the pool's name on its agent, e.g. "local"; the cluster-wide
	// name is "<agent>@<backend>#<name>".
	Name string `json:"name"`
	// Backend is the volume_backend_name matched by volume-type extra specs.
	Backend string `json:"volume_backend_name"`
	// Driver names the implementation ("nfs", "lvm", "rbd").
	Driver string `json:"driver"`
	// DriverVersion is reported in get_pools capabilities.
	DriverVersion string `json:"driver_version"`
	// Protocol is Cinder's storage_protocol ("nfs", "iSCSI", "ceph", "local").
	Protocol string `json:"storage_protocol"`
	// ThinProvisioning / ThickProvisioning are Cinder's
	// thin_provisioning_support / thick_provisioning_support.
	ThinProvisioning  bool `json:"thin_provisioning_support"`
	ThickProvisioning bool `json:"thick_provisioning_support"`
	// ReservedPercentage of total capacity is kept free (0-100).
	ReservedPercentage int `json:"reserved_percentage"`
	// MaxOverSubscriptionRatio is a number >= 1 as a string, or "auto".
	MaxOverSubscriptionRatio string `json:"max_over_subscription_ratio"`
	// Capabilities are extra facts matched by extra specs (string values).
	Capabilities map[string]string `json:"capabilities,omitempty"`
}

// PoolStats is the fast-changing capacity of a pool, published over gossip.
type PoolStats struct {
	TotalKind CapacityKind `json:"total_kind"`
	TotalGB   float64      `json:"total_gb"`
	FreeKind  CapacityKind `json:"free_kind"`
	FreeGB    float64      `json:"free_gb"`
	// ProvisionedGB is the sum of the sizes of the volumes the pool holds.
	ProvisionedGB float64 `json:"provisioned_gb"`
	// Volumes is the number of volumes the pool holds.
	Volumes int `json:"volumes"`
}

// Volume is a volume a driver holds.
type Volume struct {
	ID        string `json:"id"`
	SizeBytes int64  `json:"size_bytes"`
	// Location is the driver's provider_location (a path, an LV name, ...).
	Location string `json:"location"`
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidateID checks that id is a lowercase canonical UUID, the only form of
// identifier a driver ever puts into a path or a command argument.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: %q is not a canonical lowercase UUID", ErrInvalid, id)
	}
	return nil
}

// ValidateSize checks a volume size in GiB.
func ValidateSize(sizeGiB int64) error {
	if sizeGiB < 1 || sizeGiB > MaxVolumeGiB {
		return fmt.Errorf("%w: size %d GiB is outside 1..%d", ErrInvalid, sizeGiB, MaxVolumeGiB)
	}
	return nil
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidateCommand checks a configured program (what names it in the
// error, e.g. "rbd binary"): a name looked up in PATH or an absolute path,
// never taken for an option and free of control characters.
func ValidateCommand(what, bin string) error {
	if bin == "" || strings.HasPrefix(bin, "-") || strings.ContainsFunc(bin, unicode.IsControl) ||
		strings.ContainsRune(bin, '/') && !filepath.IsAbs(bin) {
		return fmt.Errorf("%w: %s %q must be a name in PATH or an absolute path", ErrInvalid, what, bin)
	}
	return nil
}

// ValidateName checks a pool, backend or agent name: 1-63 characters of
// letters, digits, '_', '.', '-', starting with a letter or digit. Such names
// end up in pool names ("host@backend#pool") and gossip tags.
func ValidateName(what, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: %s %q must be 1-63 characters of [A-Za-z0-9_.-] starting with a letter or digit", ErrInvalid, what, name)
	}
	return nil
}

// Snapshot is a point-in-time copy of a volume held by a driver.
type Snapshot struct {
	ID        string `json:"id"`
	VolumeID  string `json:"volume_id"`
	SizeBytes int64  `json:"size_bytes"`
	Location  string `json:"location"`
}

// Connector describes the host that wants to attach a volume (os-brick's
// connector dict as Nova and other consumers send it). Drivers use the
// fields their protocol needs; all are optional.
type Connector struct {
	Host      string `json:"host,omitempty"`
	IP        string `json:"ip,omitempty"`
	Initiator string `json:"initiator,omitempty"`
	Multipath bool   `json:"multipath,omitempty"`
	Platform  string `json:"platform,omitempty"`
	OSType    string `json:"os_type,omitempty"`
}

// ConnectionInfo is Cinder's connection_info: how a consumer reaches an
// exported volume. Data is protocol specific (for "local": device_path).
type ConnectionInfo struct {
	DriverVolumeType string         `json:"driver_volume_type"`
	Data             map[string]any `json:"data"`
	// MountPointBase is where Cinder's NFS driver mounts shares on its own
	// host, shown beside data as a hint (os-brick uses its own setting).
	MountPointBase string `json:"mount_point_base,omitempty"`
}

// Credentials are the CHAP credentials the coordinator generated and keeps
// for a volume (Cinder's provider_auth); drivers that export over iSCSI
// require them on the target. Secret never appears in logs.
type Credentials struct {
	// Method is "CHAP" or "" (no authentication).
	Method   string `json:"auth_method,omitempty"`
	Username string `json:"auth_username,omitempty"`
	Secret   string `json:"auth_password,omitempty"`
}

// LogValue keeps the secret out of structured logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("auth_method", c.Method), slog.String("auth_username", c.Username))
}

// ProgressFunc receives the progress of a long data copy.
type ProgressFunc func(doneBytes, totalBytes int64)

type progressKey struct{}

// WithProgress returns a context whose data copies report to fn.
func WithProgress(ctx context.Context, fn ProgressFunc) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// Progress returns the context's ProgressFunc, or one that does nothing.
func Progress(ctx context.Context) ProgressFunc {
	if fn, ok := ctx.Value(progressKey{}).(ProgressFunc); ok && fn != nil {
		return fn
	}
	return func(int64, int64) {}
}

package nfs

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"

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
	DefaultMaxOverSubscriptionRatio = "20.0" // Cinder's default
)

// Limits on Config.Capabilities. Capabilities travel to the coordinator and
// are matched by extra specs, whose keys and values Cinder bounds at 255.
const (
	MaxCapabilities       = 64
	MaxCapabilityKeyLen   = 255
	MaxCapabilityValueLen = 255
)

const (
	// maxCapacityGB keeps the cap in bytes within an int64.
	maxCapacityGB = float64(math.MaxInt64 / storage.GiB)
	ratioAuto     = "auto"
)

var capabilityKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]*$`)

// reservedCapability reports the capability names the driver itself
// reports; an extra capability may not shadow them.
func reservedCapability(key string) bool {
	switch key {
	case "pool_name", "volume_backend_name", "driver", "driver_version",
		"storage_protocol", "vendor_name",
		"thin_provisioning_support", "thick_provisioning_support",
		"reserved_percentage", "max_over_subscription_ratio",
		"total_capacity_gb", "free_capacity_gb", "provisioned_capacity_gb",
		"allocated_capacity_gb", "total_volumes", "online_extend_support":
		return true
	}
	return false
}

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

	if err := storage.ValidateName("pool name", cfg.Name); err != nil {
		errs = append(errs, err)
	}
	if err := storage.ValidateName("backend name", cfg.Backend); err != nil {
		errs = append(errs, err)
	}
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
	if cfg.ReservedPercentage < 0 || cfg.ReservedPercentage > 100 {
		bad("reserved_percentage %d must be within 0..100", cfg.ReservedPercentage)
	}
	if err := validateRatio(cfg.MaxOverSubscriptionRatio); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, validateCapabilities(cfg.Capabilities)...)

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("nfs: invalid pool config: %w", errors.Join(errs...))
}

func validateRatio(ratio string) error {
	if ratio == ratioAuto {
		return nil
	}
	f, err := strconv.ParseFloat(ratio, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 1 {
		return fmt.Errorf("%w: max_over_subscription_ratio %q must be a number >= 1 or %q", storage.ErrInvalid, ratio, ratioAuto)
	}
	return nil
}

func validateCapabilities(caps map[string]string) []error {
	var errs []error
	if len(caps) > MaxCapabilities {
		errs = append(errs, fmt.Errorf("%w: %d capabilities, at most %d allowed", storage.ErrInvalid, len(caps), MaxCapabilities))
	}
	// Sorted, so the error for a given config is always the same.
	for _, k := range slices.Sorted(maps.Keys(caps)) {
		v := caps[k]
		switch {
		case len(k) == 0 || len(k) > MaxCapabilityKeyLen || !capabilityKeyPattern.MatchString(k):
			errs = append(errs, fmt.Errorf("%w: capability key %q must be 1-%d characters of [A-Za-z0-9_.:-]", storage.ErrInvalid, k, MaxCapabilityKeyLen))
		case reservedCapability(k):
			errs = append(errs, fmt.Errorf("%w: capability key %q is reported by the driver and cannot be set", storage.ErrInvalid, k))
		}
		if len(v) > MaxCapabilityValueLen || !printable(v) {
			errs = append(errs, fmt.Errorf("%w: capability %q: value must be at most %d bytes of printable UTF-8", storage.ErrInvalid, k, MaxCapabilityValueLen))
		}
	}
	return errs
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

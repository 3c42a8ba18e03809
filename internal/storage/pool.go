package storage

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Limits on a pool's extra capabilities. Capabilities travel to the
// coordinator and are matched by extra specs, whose keys and values Cinder
// bounds at 255.
const (
	MaxCapabilities       = 64
	MaxCapabilityKeyLen   = 255
	MaxCapabilityValueLen = 255
)

// RatioAuto is the max_over_subscription_ratio that Cinder derives from the
// pool's own provisioned/used figures.
const RatioAuto = "auto"

// DefaultMaxOverSubscriptionRatio is Cinder's default ratio.
const DefaultMaxOverSubscriptionRatio = "20.0"

var capabilityKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]*$`)

// reservedCapability reports the capability names drivers report
// themselves; an operator's extra capability may not shadow them.
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

// PoolSettings are the settings every driver's pool configuration shares.
type PoolSettings struct {
	Name                     string
	Backend                  string
	ReservedPercentage       int
	MaxOverSubscriptionRatio string
	Capabilities             map[string]string
}

// Validate reports every problem in s, each wrapping ErrInvalid, sorted so
// that the same settings always give the same errors.
func (s PoolSettings) Validate() []error {
	var errs []error
	if err := ValidateName("pool name", s.Name); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateName("backend name", s.Backend); err != nil {
		errs = append(errs, err)
	}
	if s.ReservedPercentage < 0 || s.ReservedPercentage > 100 {
		errs = append(errs, fmt.Errorf("%w: reserved_percentage %d must be within 0..100", ErrInvalid, s.ReservedPercentage))
	}
	if err := validateRatio(s.MaxOverSubscriptionRatio); err != nil {
		errs = append(errs, err)
	}
	return append(errs, validateCapabilities(s.Capabilities)...)
}

func validateRatio(ratio string) error {
	if ratio == RatioAuto {
		return nil
	}
	f, err := strconv.ParseFloat(ratio, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 1 {
		return fmt.Errorf("%w: max_over_subscription_ratio %q must be a number >= 1 or %q", ErrInvalid, ratio, RatioAuto)
	}
	return nil
}

func validateCapabilities(caps map[string]string) []error {
	var errs []error
	if len(caps) > MaxCapabilities {
		errs = append(errs, fmt.Errorf("%w: %d capabilities, at most %d allowed", ErrInvalid, len(caps), MaxCapabilities))
	}
	for _, k := range slices.Sorted(maps.Keys(caps)) {
		v := caps[k]
		switch {
		case len(k) == 0 || len(k) > MaxCapabilityKeyLen || !capabilityKeyPattern.MatchString(k):
			errs = append(errs, fmt.Errorf("%w: capability key %q must be 1-%d characters of [A-Za-z0-9_.:-]", ErrInvalid, k, MaxCapabilityKeyLen))
		case reservedCapability(k):
			errs = append(errs, fmt.Errorf("%w: capability key %q is reported by the driver and cannot be set", ErrInvalid, k))
		}
		if len(v) > MaxCapabilityValueLen || !Printable(v) {
			errs = append(errs, fmt.Errorf("%w: capability %q: value must be at most %d bytes of printable UTF-8", ErrInvalid, k, MaxCapabilityValueLen))
		}
	}
	return errs
}

// Printable reports whether s is valid UTF-8 made only of printable runes.
func Printable(s string) bool {
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

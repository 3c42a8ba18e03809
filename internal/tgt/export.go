package tgt

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// Export is one volume exported as one iSCSI target with one LUN (LUN).
// It is what the agent records (Store) and re-creates after tgtd restarts.
//
// Export implements fmt.Stringer, fmt.GoStringer and slog.LogValuer with the
// CHAP secret redacted, so printing or logging one does not leak it.
type Export struct {
	// VolumeID (storage.ValidateID) names the target:
	// Config.IQNPrefix + "volume-" + VolumeID.
	VolumeID string `json:"volume_id"`
	// BackingStore is the absolute path of the block device or file tgtd
	// serves as the LUN: characters [A-Za-z0-9/._+@:-] only (tgtd splits
	// its parameters at ',' and '=').
	BackingStore string `json:"backing_store"`
	// Initiators are the initiator names (ValidateInitiator) allowed to log
	// in. Empty refuses everyone: a tgt target without ACL entries accepts
	// nobody.
	Initiators []string `json:"initiators,omitempty"`
	// CHAPUser and CHAPSecret (ValidateCHAP), both empty for no CHAP. With
	// CHAP an initiator needs an allowed name and the secret.
	CHAPUser   string `json:"chap_user,omitempty"`
	CHAPSecret string `json:"chap_secret,omitempty"`
}

// Validate checks every field that reaches a tgtadm argument.
func (e Export) Validate() error {
	if err := storage.ValidateID(e.VolumeID); err != nil {
		return fmt.Errorf("tgt: export: %w", err)
	}
	if err := validateBackingStore(e.BackingStore); err != nil {
		return fmt.Errorf("tgt: export of volume %s: %w", e.VolumeID, err)
	}
	for _, i := range e.Initiators {
		if err := ValidateInitiator(i); err != nil {
			return fmt.Errorf("tgt: export of volume %s: %w", e.VolumeID, err)
		}
	}
	if e.CHAPUser != "" || e.CHAPSecret != "" {
		if err := ValidateCHAP(e.CHAPUser, e.CHAPSecret); err != nil {
			return fmt.Errorf("tgt: export of volume %s: %w", e.VolumeID, err)
		}
	}
	return nil
}

// normalized returns a copy with the initiators sorted and deduplicated.
func (e Export) normalized() Export {
	e.Initiators = slices.Clone(e.Initiators)
	slices.Sort(e.Initiators)
	e.Initiators = slices.Compact(e.Initiators)
	return e
}

// clone returns a deep copy.
func (e Export) clone() Export {
	e.Initiators = slices.Clone(e.Initiators)
	return e
}

// String formats the export without its CHAP secret.
func (e Export) String() string {
	return fmt.Sprintf("{VolumeID:%s BackingStore:%s Initiators:%v CHAPUser:%s CHAPSecret:%s}",
		e.VolumeID, e.BackingStore, e.Initiators, e.CHAPUser, redactedIfSet(e.CHAPSecret))
}

// GoString formats the export for %#v without its CHAP secret.
func (e Export) GoString() string {
	return fmt.Sprintf("tgt.Export{VolumeID:%q, BackingStore:%q, Initiators:%#v, CHAPUser:%q, CHAPSecret:%q}",
		e.VolumeID, e.BackingStore, e.Initiators, e.CHAPUser, redactedIfSet(e.CHAPSecret))
}

// LogValue logs the export without its CHAP secret.
func (e Export) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("volume_id", e.VolumeID),
		slog.String("backing_store", e.BackingStore),
		slog.Any("initiators", e.Initiators),
		slog.String("chap_user", e.CHAPUser),
		slog.String("chap_secret", redactedIfSet(e.CHAPSecret)),
	)
}

func redactedIfSet(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// The forms of iSCSI names (RFC 3720 3.2.6.3) accepted as initiators:
// iqn.YYYY-MM.reverse.domain[:suffix], eui.<16 hex>, naa.<16 or 32 hex>. The
// domain must be lowercase (iSCSI names are normalised to lowercase); the
// suffix may hold letters, digits, '.', '-', ':' and '_' (more than RFC 3722
// stringprep output, far less than it allows: no spaces, quotes, control
// characters or non-ASCII).
var (
	iqnPattern = regexp.MustCompile(`^iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[A-Za-z0-9._:-]+)?$`)
	euiPattern = regexp.MustCompile(`^eui\.[0-9A-Fa-f]{16}$`)
	naaPattern = regexp.MustCompile(`^naa\.([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$`)
)

// MaxISCSINameLen is the longest iSCSI name (RFC 3720: 223 bytes).
const MaxISCSINameLen = 223

// ValidateInitiator checks an initiator name before it reaches tgtadm.
func ValidateInitiator(name string) error {
	if len(name) > MaxISCSINameLen ||
		!(iqnPattern.MatchString(name) || euiPattern.MatchString(name) || naaPattern.MatchString(name)) {
		return fmt.Errorf("%w: initiator name %q is not an iqn.YYYY-MM.domain[:suffix], eui. or naa. name of at most %d characters",
			storage.ErrInvalid, name, MaxISCSINameLen)
	}
	return nil
}

// CHAP limits. tgtd itself takes up to 255 characters for both (it copies
// them into 256-byte buffers), but Microsoft's initiator and some others
// only accept secrets of 12 to 16 bytes, so that is what Kiln allows.
const (
	MaxCHAPUserLen   = 64
	MinCHAPSecretLen = 12
	MaxCHAPSecretLen = 16
	// GeneratedCHAPUserLen is the length of GenerateCHAP's user names (as
	// Cinder's generate_username).
	GeneratedCHAPUserLen = 20
)

// ValidateCHAP checks a CHAP user name (1-64 of [A-Za-z0-9._-], not
// starting with '-') and secret (12-16 of the same, not starting with '-').
// The error never contains the secret.
func ValidateCHAP(user, secret string) error {
	if !chapToken(user, 1, MaxCHAPUserLen) {
		return fmt.Errorf("%w: CHAP user %q must be 1-%d characters of [A-Za-z0-9._-] not starting with '-'",
			storage.ErrInvalid, user, MaxCHAPUserLen)
	}
	if !chapToken(secret, MinCHAPSecretLen, MaxCHAPSecretLen) {
		return fmt.Errorf("%w: CHAP secret of user %q must be %d-%d characters of [A-Za-z0-9._-] not starting with '-' (got %d characters)",
			storage.ErrInvalid, user, MinCHAPSecretLen, MaxCHAPSecretLen, len(secret))
	}
	return nil
}

func chapToken(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

const alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// GenerateCHAP returns a fresh random CHAP user name (20 characters) and
// secret (16 characters), both of [A-Za-z0-9], from crypto/rand.
func GenerateCHAP() (user, secret string) {
	return randomString(GeneratedCHAPUserLen), randomString(MaxCHAPSecretLen)
}

func randomString(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		rand.Read(buf) // never fails (crypto/rand, Go >= 1.24)
		for _, b := range buf {
			// 248 = 4*62: reject the rest so every character is equally likely.
			if b < 248 && len(out) < n {
				out = append(out, alphanumerics[int(b)%len(alphanumerics)])
			}
		}
	}
	return string(out)
}

const maxBackingStoreLen = 1024

func validateBackingStore(p string) error {
	ok := len(p) > 1 && len(p) <= maxBackingStoreLen && p[0] == '/' && filepath.Clean(p) == p
	for i := 0; ok && i < len(p); i++ {
		c := p[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._+@:-", c) >= 0
	}
	if !ok {
		return fmt.Errorf("%w: backing store %q must be a clean absolute path of at most %d characters of [A-Za-z0-9/._+@:-]",
			storage.ErrInvalid, p, maxBackingStoreLen)
	}
	return nil
}

// aclAddress reports whether a tgt ACL entry is an address rule (ALL, an IP
// address or a prefix) rather than an initiator name; only those are
// unbound with --initiator-address.
func aclAddress(entry string) bool {
	if entry == "ALL" {
		return true
	}
	if _, err := netip.ParseAddr(entry); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(entry)
	return err == nil
}

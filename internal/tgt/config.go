package tgt

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Defaults applied by New to empty Config fields.
const (
	DefaultTgtadm           = "tgtadm"
	DefaultIQNPrefix        = "iqn.2010-10.org.openstack:" // Cinder's target_prefix
	DefaultBackingStoreType = "rdwr"
	DefaultCommandTimeout   = 10 * time.Second
)

// MaxControlPort is the largest control socket number tgtd and tgtadm
// accept ("-C argument value '32768' out of range").
const MaxControlPort = 32767

// LUN is the logical unit number every export uses; LUN 0 is the controller
// tgtd adds to every target.
const LUN = 1

// Config configures a Manager.
type Config struct {
	// Tgtadm is the tgtadm binary, a path or a name looked up in PATH;
	// DefaultTgtadm if empty.
	Tgtadm string
	// ControlPort selects tgtd's control socket /run/tgtd/socket.N (tgtadm
	// -C N; not a TCP port), 0..MaxControlPort. 0 means tgtadm's default
	// socket (no -C flag).
	ControlPort int
	// Portals are the "ip:port" addresses tgtd must listen on (exactly
	// these), in the order they are given to initiators. At least one.
	Portals []string
	// IQNPrefix starts every target name: IQNPrefix + "volume-" + volume ID;
	// DefaultIQNPrefix if empty. It must make a valid lowercase iqn. name.
	IQNPrefix string
	// BackingStoreType is tgt's --bstype for the LUN: "rdwr" (default,
	// pread/pwrite) or "aio" (Linux native AIO).
	BackingStoreType string
	// CommandTimeout bounds each tgtadm command; DefaultCommandTimeout if 0.
	// A tgtd that does not answer in time counts as ErrTargetUnavailable.
	CommandTimeout time.Duration
}

// withDefaults validates c and fills in defaults; it also returns the
// portals parsed, canonical and sorted.
func (c Config) withDefaults() (Config, []netip.AddrPort, error) {
	if c.Tgtadm == "" {
		c.Tgtadm = DefaultTgtadm
	}
	if c.IQNPrefix == "" {
		c.IQNPrefix = DefaultIQNPrefix
	}
	if c.BackingStoreType == "" {
		c.BackingStoreType = DefaultBackingStoreType
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if strings.HasPrefix(c.Tgtadm, "-") {
		return c, nil, fmt.Errorf("%w: tgt: tgtadm path %q starts with '-'", storage.ErrInvalid, c.Tgtadm)
	}
	if c.ControlPort < 0 || c.ControlPort > MaxControlPort {
		return c, nil, fmt.Errorf("%w: tgt: control port %d is outside 0..%d", storage.ErrInvalid, c.ControlPort, MaxControlPort)
	}
	if c.CommandTimeout < 0 {
		return c, nil, fmt.Errorf("%w: tgt: negative command timeout %s", storage.ErrInvalid, c.CommandTimeout)
	}
	switch c.BackingStoreType {
	case "rdwr", "aio":
	default:
		return c, nil, fmt.Errorf("%w: tgt: backing store type %q is not rdwr or aio", storage.ErrInvalid, c.BackingStoreType)
	}
	// The prefix is checked on the longest name it produces.
	sample := c.IQNPrefix + "volume-00000000-0000-0000-0000-000000000000"
	if !strings.HasPrefix(c.IQNPrefix, "iqn.") || sample != strings.ToLower(sample) || ValidateInitiator(sample) != nil {
		return c, nil, fmt.Errorf("%w: tgt: IQN prefix %q does not make valid lowercase iqn. names (e.g. %q)",
			storage.ErrInvalid, c.IQNPrefix, DefaultIQNPrefix)
	}
	if len(c.Portals) == 0 {
		return c, nil, fmt.Errorf("%w: tgt: no portals configured", storage.ErrInvalid)
	}
	// c.Portals keeps the configured order (the first is the target_portal
	// initiators get); the parsed list is sorted for comparing with tgtd's.
	portals := make([]netip.AddrPort, 0, len(c.Portals))
	canonical := make([]string, 0, len(c.Portals))
	for _, p := range c.Portals {
		ap, err := netip.ParseAddrPort(p)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			return c, nil, fmt.Errorf("%w: tgt: portal %q is not ip:port", storage.ErrInvalid, p)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		portals = append(portals, ap)
		canonical = append(canonical, ap.String())
	}
	slices.SortFunc(portals, netip.AddrPort.Compare)
	if len(slices.Compact(slices.Clone(portals))) != len(portals) {
		return c, nil, fmt.Errorf("%w: tgt: duplicate portals in %q", storage.ErrInvalid, c.Portals)
	}
	c.Portals = canonical
	return c, portals, nil
}

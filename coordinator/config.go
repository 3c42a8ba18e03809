// Package coordinator runs a Kiln coordinator: a Raft node holding the
// replicated state (coordinator/state), the Cinder v3 API (coordinator/api),
// Serf membership shared with the agents, and, on the leader, placement and
// the dispatch/reconcile loops that drive agents.
package coordinator

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/placement"
)

// Config configures one coordinator.
type Config struct {
	// NodeName is the coordinator's unique name (Raft server ID and Serf name).
	NodeName string
	// DataDir holds raft.db and snapshots/.
	DataDir string
	// RaftAddr is the host:port the Raft TCP transport binds and advertises.
	RaftAddr string
	// SerfAddr is the host:port Serf binds (port 0 picks one).
	SerfAddr string
	// Join lists Serf addresses (coordinators or agents) to join at start.
	Join []string
	// APIAddr is the host:port of the Cinder API (also used for forwarding).
	APIAddr string
	// PublicURL is the base URL clients reach the API at, used in links;
	// default "http://<APIAddr>".
	PublicURL string
	// BootstrapExpect is the number of coordinators that form the cluster;
	// 1 bootstraps alone. With 3 or 5, the cluster forms once that many
	// coordinators with the same setting see each other over Serf.
	BootstrapExpect int
	// Timing selects Raft and Serf timing: "lan" (defaults) or "local"
	// (fast, for tests and kiln dev on one host).
	Timing string
	// DefaultZone is the availability zone of volumes that name none.
	DefaultZone string
	// Placement configures filters and weighers.
	Placement placement.Config
	// MaxAttempts bounds placements per create (Cinder's scheduler_max_attempts).
	MaxAttempts int
	// AgentTimeout bounds one agent RPC.
	AgentTimeout time.Duration
	// TaskTimeout bounds how long a volume may stay creating/deleting before
	// the leader moves it to error/error_deleting.
	TaskTimeout time.Duration
	// ReconcileInterval is how often the leader re-drives transitional
	// volumes and refreshes agent registrations.
	ReconcileInterval time.Duration
	// InventoryInterval is how often the leader compares every agent's
	// pools with Raft (missing volumes, orphans) besides doing so when an
	// agent joins or restarts and on gaining leadership; default 10 min,
	// negative: only on those events.
	InventoryInterval time.Duration
	// AgentClient calls agents; nil uses the HTTP client of internal/agentrpc.
	AgentClient AgentClient
	// Version is reported in gossip tags.
	Version string
	Logger  *slog.Logger
}

// withDefaults fills unset fields and validates the rest.
func (c Config) withDefaults() (Config, error) {
	if err := storage.ValidateName("node name", c.NodeName); err != nil {
		return c, fmt.Errorf("coordinator config: %w", err)
	}
	if c.DataDir == "" {
		return c, fmt.Errorf("coordinator config: data dir is required")
	}
	c.DataDir = filepath.Clean(c.DataDir)
	for name, addr := range map[string]string{"raft address": c.RaftAddr, "serf address": c.SerfAddr, "api address": c.APIAddr} {
		if err := validateHostPort(addr); err != nil {
			return c, fmt.Errorf("coordinator config: %s: %w", name, err)
		}
	}
	if c.BootstrapExpect == 0 {
		c.BootstrapExpect = 1
	}
	if c.BootstrapExpect < 1 || c.BootstrapExpect > 7 {
		return c, fmt.Errorf("coordinator config: bootstrap_expect %d must be 1..7", c.BootstrapExpect)
	}
	switch c.Timing {
	case "":
		c.Timing = "lan"
	case "lan", "local":
	default:
		return c, fmt.Errorf("coordinator config: timing %q must be \"lan\" or \"local\"", c.Timing)
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.APIAddr
	}
	if c.DefaultZone == "" {
		c.DefaultZone = "nova"
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.MaxAttempts < 1 {
		return c, fmt.Errorf("coordinator config: max_attempts %d must be >= 1", c.MaxAttempts)
	}
	if c.AgentTimeout == 0 {
		c.AgentTimeout = 2 * time.Minute
	}
	if c.TaskTimeout == 0 {
		c.TaskTimeout = 15 * time.Minute
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 30 * time.Second
	}
	if c.InventoryInterval == 0 {
		c.InventoryInterval = 10 * time.Minute
	}
	if c.Placement.Filters == nil && c.Placement.Weighers == nil && c.Placement.CapacityWeightMultiplier == 0 {
		c.Placement = placement.DefaultConfig()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func validateHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("%q: host must be an IP address", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}

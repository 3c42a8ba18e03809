package api

import (
	"context"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/storage"
)

// Backend is what the API needs from a coordinator. The coordinator
// implements it over Raft; tests may implement it over a bare state.State.
type Backend interface {
	// State is the local replica, for reads.
	State() *state.State
	// Apply proposes a command through Raft (forwarding to the leader when
	// this node is a follower) and returns once the local replica has
	// applied it, so a read after Apply sees the write. A command the state
	// machine refused returns a *state.Error; anything else (no leader,
	// timeout) is an infrastructure error (503).
	Apply(ctx context.Context, cmd state.Command) error
	// PoolCapacity returns the latest capacity of a pool as gossiped by its
	// agent, and whether one is known.
	PoolCapacity(pool string) (gossip.PoolCapacity, bool)
	// Services lists coordinators and agents with liveness as this node's
	// Serf view sees it.
	Services() []ServiceStatus
	// Export asks the agent holding the volume for Cinder connection_info
	// for connector (idempotent). Errors from the agent wrap the storage
	// sentinels; an unreachable agent is an infrastructure error.
	Export(ctx context.Context, volumeID string, connector storage.Connector) (storage.ConnectionInfo, error)
	// Unexport removes the volume's export for connector (idempotent).
	Unexport(ctx context.Context, volumeID string, connector storage.Connector) error
}

// ServiceStatus is one row of os-services.
type ServiceStatus struct {
	Binary         string
	Host           string
	Zone           string
	Up             bool
	Disabled       bool
	DisabledReason string
	UpdatedAt      time.Time
}

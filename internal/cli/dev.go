package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/coordinator"
	"github.com/kilnstore/kiln/nfs"
)

// DevConfig configures an all-in-one dev cluster.
type DevConfig struct {
	DataDir        string
	APIAddr        string
	PoolCapacityGB float64
	Logger         *slog.Logger
}

// Dev is a running coordinator + agent pair.
type Dev struct {
	Coordinator *coordinator.Server
	Agent       *agent.Agent
	poolDir     string
}

// StartDev starts a single-node coordinator and an agent with one
// local-directory pool under DataDir. Raft and Serf use the ports after the
// API port's host (fixed ports so that Raft's stored address stays valid
// across restarts).
func StartDev(c DevConfig) (*Dev, error) {
	host, _, err := net.SplitHostPort(c.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("--api-addr: %w", err)
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	port := func(p int) string { return net.JoinHostPort(host, strconv.Itoa(p)) }
	co, err := coordinator.Start(coordinator.Config{
		NodeName: "dev-coordinator", DataDir: filepath.Join(dir, "coordinator"),
		RaftAddr: port(8778), SerfAddr: port(8779), APIAddr: c.APIAddr, BootstrapExpect: 1,
		Timing: "local", Version: Version, Logger: c.Logger,
		ReconcileInterval: 5 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	poolDir := filepath.Join(dir, "pool")
	pool, err := nfs.New(nfs.Config{Name: "local", Dir: poolDir, CapacityGB: c.PoolCapacityGB})
	if err != nil {
		co.Shutdown()
		return nil, fmt.Errorf("dev pool: %w", err)
	}
	ag, err := agent.Start(agent.Config{
		Name: "dev-agent", RPCAddr: port(8780), SerfAddr: port(8781), Join: []string{co.SerfAddr()},
		DataDir: filepath.Join(dir, "agent"), Timing: "local", StatsInterval: 10 * time.Second,
		Drivers: []agent.Driver{pool}, Version: Version, Logger: c.Logger,
	})
	if err != nil {
		co.Shutdown()
		return nil, err
	}
	return &Dev{Coordinator: co, Agent: ag, poolDir: poolDir}, nil
}

// WaitReady waits until the coordinator leads and the agent's pool is registered.
func (d *Dev) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if d.Coordinator.LeaderReady() && len(d.Coordinator.State().Pools()) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dev cluster not ready within %s (leader=%v, pools=%d)", timeout, d.Coordinator.IsLeader(), len(d.Coordinator.State().Pools()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts both down.
func (d *Dev) Stop() {
	d.Agent.Leave()
	d.Coordinator.Shutdown()
}

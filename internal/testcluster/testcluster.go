// Package testcluster starts real in-process Kiln clusters for tests:
// coordinators with real Raft over TCP loopback and real Serf, and agents
// with local-directory pools. Every integration test uses it.
package testcluster

import (
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/coordinator"
	"github.com/kilnstore/kiln/nfs"
)

// Options shape a cluster.
type Options struct {
	Coordinators int // default 1
	Agents       int // default 1
	// PoolCapacityGB caps each agent's pool (0 = file system size).
	PoolCapacityGB float64
	// Provisioning of each pool: "thin" (default) or "thick".
	Provisioning string
	// TaskTimeout for coordinators (default: coordinator default).
	TaskTimeout time.Duration
	// AgentClient replaces the coordinators' agent client (fault injection).
	AgentClient coordinator.AgentClient
	// Zones gives agent i the zone Zones[i % len] (default "nova").
	Zones []string
	// Drivers, if set, gives agent i its pools instead of one
	// local-directory pool (e.g. an LVM pool on a test VG).
	Drivers func(i int) []agent.Driver
}

// Cluster is a running test cluster.
type Cluster struct {
	t            testing.TB
	opts         Options
	dir          string
	Coordinators []*coordinator.Server
	Agents       []*agent.Agent
	killed       map[int]bool
	Log          *slog.Logger
}

// Logger returns a logger writing to the test log at Warn level (Debug when
// KILN_TEST_LOG=debug), so failures show what the cluster did.
func Logger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	switch os.Getenv("KILN_TEST_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // logging after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = tWriter{}

// Start starts a cluster and waits until it has a leader and every agent's
// pool is registered. It is stopped by t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Coordinators == 0 {
		opts.Coordinators = 1
	}
	if opts.Agents == 0 {
		opts.Agents = 1
	}
	c := &Cluster{t: t, opts: opts, dir: t.TempDir(), killed: map[int]bool{}, Log: Logger(t)}
	t.Cleanup(c.Stop)
	for i := 0; i < opts.Coordinators; i++ {
		c.startCoordinator(i)
	}
	for i := 0; i < opts.Agents; i++ {
		c.startAgent(i)
	}
	c.WaitFor(30*time.Second, func() error {
		if c.Leader() == nil {
			return fmt.Errorf("no leader")
		}
		if n := len(c.Leader().State().Pools()); n < opts.Agents {
			return fmt.Errorf("%d of %d pools registered", n, opts.Agents)
		}
		return nil
	})
	return c
}

func (c *Cluster) startCoordinator(i int) {
	c.t.Helper()
	var join []string
	if i > 0 {
		join = []string{c.Coordinators[0].SerfAddr()}
	}
	s, err := coordinator.Start(coordinator.Config{
		NodeName: fmt.Sprintf("coord%d", i), DataDir: filepath.Join(c.dir, fmt.Sprintf("coord%d", i)),
		RaftAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Join: join,
		BootstrapExpect: c.opts.Coordinators, Timing: "local", TaskTimeout: c.opts.TaskTimeout,
		ReconcileInterval: time.Second, AgentTimeout: 10 * time.Second,
		AgentClient: c.opts.AgentClient, Logger: c.Log.With("t", "coord"),
	})
	if err != nil {
		c.t.Fatalf("start coordinator %d: %v", i, err)
	}
	c.Coordinators = append(c.Coordinators, s)
}

func (c *Cluster) startAgent(i int) {
	c.t.Helper()
	zone := "nova"
	if len(c.opts.Zones) > 0 {
		zone = c.opts.Zones[i%len(c.opts.Zones)]
	}
	var drivers []agent.Driver
	if c.opts.Drivers != nil {
		drivers = c.opts.Drivers(i)
	} else {
		d, err := nfs.New(nfs.Config{Name: "local", Dir: filepath.Join(c.dir, fmt.Sprintf("pool%d", i)),
			CapacityGB: c.opts.PoolCapacityGB, Provisioning: c.opts.Provisioning})
		if err != nil {
			c.t.Fatalf("pool %d: %v", i, err)
		}
		drivers = []agent.Driver{d}
	}
	a, err := agent.Start(agent.Config{
		Name: fmt.Sprintf("agent%d", i), Zone: zone, RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0",
		Join: []string{c.Coordinators[0].SerfAddr()}, Timing: "local", StatsInterval: time.Second,
		Drivers: drivers, Logger: c.Log.With("t", "agent"),
	})
	if err != nil {
		c.t.Fatalf("start agent %d: %v", i, err)
	}
	c.Agents = append(c.Agents, a)
}

// PoolDir is agent i's pool directory.
func (c *Cluster) PoolDir(i int) string { return filepath.Join(c.dir, fmt.Sprintf("pool%d", i)) }

// Leader returns the current leader among live coordinators, or nil.
func (c *Cluster) Leader() *coordinator.Server {
	for i, s := range c.Coordinators {
		if !c.killed[i] && s.IsLeader() {
			return s
		}
	}
	return nil
}

// WaitLeader waits for a leader and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) *coordinator.Server {
	c.t.Helper()
	var l *coordinator.Server
	c.WaitFor(timeout, func() error {
		if l = c.Leader(); l == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return l
}

// Live returns the coordinators not killed.
func (c *Cluster) Live() []*coordinator.Server {
	var out []*coordinator.Server
	for i, s := range c.Coordinators {
		if !c.killed[i] {
			out = append(out, s)
		}
	}
	return out
}

// Kill stops coordinator i abruptly (no Serf leave, no Raft handoff).
func (c *Cluster) Kill(i int) {
	c.killed[i] = true
	c.Coordinators[i].Shutdown()
}

// URL is the API base URL of coordinator i ("http://127.0.0.1:port").
func (c *Cluster) URL(i int) string { return "http://" + c.Coordinators[i].APIAddr() }

// WaitFor polls cond until it returns nil or timeout, then fails the test.
func (c *Cluster) WaitFor(timeout time.Duration, cond func() error) {
	c.t.Helper()
	if err := WaitFor(context.Background(), timeout, cond); err != nil {
		c.t.Fatal(err)
	}
}

// WaitFor polls cond every 20 ms until it returns nil or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop stops agents then coordinators.
func (c *Cluster) Stop() {
	for _, a := range c.Agents {
		a.Shutdown()
	}
	for i, s := range c.Coordinators {
		if !c.killed[i] {
			s.Shutdown()
		}
	}
}

// WaitForT polls cond until it returns nil or timeout, failing t otherwise.
func WaitForT(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := WaitFor(context.Background(), timeout, cond); err != nil {
		t.Fatal(err)
	}
}

// BlockStorage returns a gophercloud block-storage v3 client for project
// in Cinder's noauth mode, talking to coordinator i: the client Terraform's
// provider uses.
func (c *Cluster) BlockStorage(i int, project string) *gophercloud.ServiceClient {
	c.t.Helper()
	provider, err := noauth.NewClient(gophercloud.AuthOptions{Username: project, TenantName: project})
	if err != nil {
		c.t.Fatal(err)
	}
	client, err := noauth.NewBlockStorageNoAuthV3(provider, noauth.EndpointOpts{CinderEndpoint: c.URL(i) + "/v3"})
	if err != nil {
		c.t.Fatal(err)
	}
	return client
}

// WaitVolume waits up to a minute for volume id to reach status through
// the API, failing t with the volume as last seen.
func WaitVolume(t testing.TB, client *gophercloud.ServiceClient, id, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := volumes.WaitForStatus(ctx, client, id, status); err != nil {
		v, _ := volumes.Get(context.Background(), client, id).Extract()
		t.Fatalf("volume %s never %s: %v (%+v)", id, status, err, v)
	}
}

// WaitSnapshot is WaitVolume for a snapshot.
func WaitSnapshot(t testing.TB, client *gophercloud.ServiceClient, id, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := snapshots.WaitForStatus(ctx, client, id, status); err != nil {
		s, _ := snapshots.Get(context.Background(), client, id).Extract()
		t.Fatalf("snapshot %s never %s: %v (%+v)", id, status, err, s)
	}
}

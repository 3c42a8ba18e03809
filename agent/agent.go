// Package agent runs a Kiln storage agent: it joins Serf, publishes its
// pools' capacity in its tags, and serves the RPC endpoint the coordinator
// leader calls to run volume and snapshot operations (create, copy, extend,
// revert, export, delete) through the storage drivers.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/keyedlock"
	"github.com/kilnstore/kiln/internal/storage"
)

// Config configures an agent.
type Config struct {
	// Name is the agent's unique name: the "host" in pool names.
	Name string
	// Zone is the availability zone of the agent's pools.
	Zone string
	// RPCAddr is the host:port the RPC endpoint listens on (port 0 picks one).
	RPCAddr string
	// SerfAddr is the host:port Serf binds.
	SerfAddr string
	// Join lists Serf addresses to join at start (coordinators or agents).
	Join []string
	// DataDir keeps the Serf snapshot (optional).
	DataDir string
	// Timing is the Serf timing profile: "lan" or "local".
	Timing string
	// StatsInterval is how often capacity is re-measured and re-published
	// even without changes (default 30 s).
	StatsInterval time.Duration
	// Drivers serve the agent's pools, one pool each.
	Drivers []Driver
	// Background runs for the agent's lifetime, each in its own goroutine,
	// until the context is cancelled at Leave (e.g. the iSCSI export
	// keeper that re-creates exports after tgtd restarts).
	Background []func(ctx context.Context)
	Version    string
	Logger     *slog.Logger
}

// Agent is a running agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	pools map[string]Driver // by pool name
	order []string
	// copies holds the progress of running data copies by volume ID.
	copies sync.Map
	locks  keyedlock.Map // by object: "volume/<id>", "snapshot/<id>" (see op)
	serf   *gossip.Node
	ln     net.Listener
	srv    *http.Server

	// bootID tells this process from the agent's earlier and later ones in
	// its tags (gossip.Tags.BootID), so the leader sees every restart.
	bootID string

	mu   sync.Mutex
	gen  uint64
	last []gossip.PoolCapacity

	changed  chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutOnce sync.Once
}

// Start validates the configuration, measures the pools, starts the RPC
// endpoint and joins Serf.
func Start(cfg Config) (*Agent, error) {
	if err := storage.ValidateName("agent name", cfg.Name); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if cfg.Zone == "" {
		cfg.Zone = "nova"
	}
	if err := storage.ValidateName("availability zone", cfg.Zone); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if len(cfg.Drivers) == 0 {
		return nil, fmt.Errorf("agent config: no pools configured")
	}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("node", cfg.Name, "role", "agent"),
		pools: map[string]Driver{}, changed: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		bootID: gossip.NewBootID(),
	}
	for _, d := range cfg.Drivers {
		info := d.Info()
		if err := storage.ValidateName("pool name", info.Name); err != nil {
			cancel()
			return nil, fmt.Errorf("agent config: %w", err)
		}
		if err := storage.ValidateName("backend name", info.Backend); err != nil {
			cancel()
			return nil, fmt.Errorf("agent config: pool %s: %w", info.Name, err)
		}
		if _, dup := a.pools[info.Name]; dup {
			cancel()
			return nil, fmt.Errorf("agent config: pool %q configured twice", info.Name)
		}
		a.pools[info.Name] = d
		a.order = append(a.order, info.Name)
	}
	ok := false
	defer func() {
		if !ok {
			a.Shutdown()
		}
	}()
	a.reconcileLocal(ctx)
	caps := a.measure(ctx)
	a.last, a.gen = caps, 1

	ln, err := net.Listen("tcp", cfg.RPCAddr)
	if err != nil {
		return nil, fmt.Errorf("agent rpc listen on %s: %w", cfg.RPCAddr, err)
	}
	a.ln = ln
	a.srv = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent rpc server stopped", "err", err)
		}
	}()

	host, port, err := splitHostPort(cfg.SerfAddr)
	if err != nil {
		return nil, fmt.Errorf("agent config: serf address: %w", err)
	}
	gc := gossip.Config{NodeName: cfg.Name, BindAddr: host, BindPort: port, Tags: a.tags(), Timing: cfg.Timing, Logger: a.log}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("agent data dir: %w", err)
		}
		gc.SnapshotPath = filepath.Join(cfg.DataDir, "serf-agent.snapshot")
	}
	n, err := gossip.Start(gc)
	if err != nil {
		return nil, fmt.Errorf("agent serf: %w", err)
	}
	a.serf = n
	if len(cfg.Join) > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			_ = n.RetryJoin(a.ctx, cfg.Join, time.Second)
		}()
	}
	a.wg.Add(1)
	go a.publishLoop()
	for _, run := range cfg.Background {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			run(a.ctx)
		}()
	}
	ok = true
	a.log.Info("agent started", "rpc", a.RPCAddr(), "serf", n.Addr(), "pools", a.order, "boot_id", a.bootID)
	return a, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return host, port, nil
}

// RPCAddr is the bound RPC address.
func (a *Agent) RPCAddr() string { return a.ln.Addr().String() }

// SerfAddr is the bound Serf address.
func (a *Agent) SerfAddr() string { return a.serf.Addr() }

// Name is the agent's name.
func (a *Agent) Name() string { return a.cfg.Name }

// Join joins more Serf peers.
func (a *Agent) Join(addrs []string) error {
	_, err := a.serf.Join(addrs)
	return err
}

func (a *Agent) tags() gossip.Tags {
	a.mu.Lock()
	defer a.mu.Unlock()
	return gossip.Tags{
		Role: gossip.RoleAgent, Version: a.cfg.Version, Zone: a.cfg.Zone,
		RPCAddr: a.rpcAddrOrConfigured(), Generation: a.gen, BootID: a.bootID, Pools: a.last,
	}
}

func (a *Agent) rpcAddrOrConfigured() string {
	if a.ln != nil {
		return a.ln.Addr().String()
	}
	return a.cfg.RPCAddr
}

// measure reads every pool's stats; a pool that cannot be measured reports
// unknown capacity (it stays placeable only where Cinder would allow it).
func (a *Agent) measure(ctx context.Context) []gossip.PoolCapacity {
	out := make([]gossip.PoolCapacity, 0, len(a.order))
	for _, name := range a.order {
		st, err := a.pools[name].Stats(ctx)
		if err != nil {
			a.log.Warn("pool stats failed", "pool", name, "err", err)
			out = append(out, gossip.PoolCapacity{Name: name, TotalKind: storage.Unknown, FreeKind: storage.Unknown})
			continue
		}
		out = append(out, gossip.PoolCapacity{
			Name: name, TotalKind: st.TotalKind, TotalGB: st.TotalGB, FreeKind: st.FreeKind, FreeGB: st.FreeGB,
			ProvisionedGB: st.ProvisionedGB, Volumes: st.Volumes,
		})
	}
	return out
}

// poke asks the publisher to re-measure now (after a change).
func (a *Agent) poke() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func (a *Agent) publishLoop() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		case <-a.changed:
		}
		caps := a.measure(a.ctx)
		if a.ctx.Err() != nil {
			// Shutting down: a measurement cut short reads as "unknown"
			// capacity, which must not reach the cluster as the last word.
			return
		}
		a.mu.Lock()
		same := equalCaps(caps, a.last)
		if !same {
			a.last = caps
			a.gen++
		}
		a.mu.Unlock()
		if same {
			continue
		}
		if err := a.serf.SetTags(a.tags()); err != nil {
			a.log.Error("publish capacity failed", "err", err)
		}
	}
}

func equalCaps(x, y []gossip.PoolCapacity) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// reconcileLocal logs what each pool holds at start, so an operator can see
// the agent found its volumes and snapshots again after a restart.
func (a *Agent) reconcileLocal(ctx context.Context) {
	for _, name := range a.order {
		vols, err := a.pools[name].ListVolumes(ctx)
		if err != nil {
			a.log.Warn("listing pool volumes failed", "pool", name, "err", err)
			continue
		}
		snaps, err := a.pools[name].ListSnapshots(ctx)
		if err != nil {
			a.log.Warn("listing pool snapshots failed", "pool", name, "err", err)
			continue
		}
		a.log.Info("pool ready", "pool", name, "volumes", len(vols), "snapshots", len(snaps))
	}
}

// Report describes the agent's pools (used by the RPC and tests).
func (a *Agent) Report(ctx context.Context) agentrpc.Report {
	r := agentrpc.Report{Agent: a.cfg.Name, Zone: a.cfg.Zone}
	for _, name := range a.order {
		d := a.pools[name]
		pr := agentrpc.PoolReport{Info: d.Info()}
		st, err := d.Stats(ctx)
		if err != nil {
			pr.StatsError = err.Error()
			pr.Stats = storage.PoolStats{TotalKind: storage.Unknown, FreeKind: storage.Unknown}
		} else {
			pr.Stats = st
		}
		r.Pools = append(r.Pools, pr)
	}
	return r
}

// Leave leaves Serf gracefully, then shuts down.
func (a *Agent) Leave() {
	if a.serf != nil {
		_ = a.serf.Leave()
	}
	a.Shutdown()
}

// Shutdown stops the agent; safe to call more than once.
func (a *Agent) Shutdown() {
	a.shutOnce.Do(func() {
		a.cancel()
		if a.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = a.srv.Shutdown(ctx)
			cancel()
		}
		if a.serf != nil {
			_ = a.serf.Shutdown()
		}
		a.wg.Wait()
		a.log.Info("agent stopped")
	})
}

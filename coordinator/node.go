package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/kilnstore/kiln/coordinator/api"
	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/logging"
	"github.com/kilnstore/kiln/placement"
)

// Server is one running coordinator.
type Server struct {
	// established is true while this node leads and has applied every
	// entry committed before its term (the leader barrier passed).
	established atomic.Bool

	cfg    Config
	log    *slog.Logger
	fsm    *state.FSM
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	store  *raftboltdb.BoltStore
	serf   *gossip.Node
	app    *fiber.App
	apiLn  net.Listener
	client AgentClient
	fwd    *forwarder

	wake chan struct{} // dispatcher wake-up (volume changed)
	work *workSet
	view *view
	// engine ranks pools; rnd feeds its chance weigher (leader only).
	engine *placement.Engine

	leaderNotify chan bool
	memberPoke   chan struct{}
	leading      atomic.Bool
	bootstrapped atomic.Bool
	hasState     bool

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutOnce sync.Once
}

// Start brings up Raft, Serf and the API and returns once all listen.
func Start(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName, "role", "coordinator"),
		fsm: state.NewFSM(), wake: make(chan struct{}, 1), work: newWorkSet(),
		view: newView(), memberPoke: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel,
	}
	engine, err := placement.New(cfg.Placement)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("coordinator config: placement: %w", err)
	}
	s.engine = engine
	s.client = cfg.AgentClient
	if s.client == nil {
		s.client = agentrpc.NewClient(cfg.AgentTimeout)
	}
	s.fwd = newForwarder(s)
	s.fsm.State.OnVolumeChange(func(id string) {
		if !s.leading.Load() {
			return
		}
		s.work.add(id)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	})
	ok := false
	defer func() {
		if !ok {
			s.Shutdown()
		}
	}()
	if err := s.startRaft(); err != nil {
		return nil, err
	}
	if err := s.startAPI(); err != nil {
		return nil, err
	}
	if err := s.startSerf(); err != nil {
		return nil, err
	}
	s.wg.Add(2)
	go s.monitorLeadership()
	go s.watchMembers()
	ok = true
	s.log.Info("coordinator started", "raft", s.cfg.RaftAddr, "api", s.APIAddr(), "serf", s.serf.Addr(), "expect", cfg.BootstrapExpect)
	return s, nil
}

func (s *Server) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeName)
	rc.Logger = logging.NewHCLogger(s.log, "raft")
	rc.SnapshotThreshold = 8192
	rc.TrailingLogs = 10240
	if s.cfg.Timing == "local" {
		rc.HeartbeatTimeout = 500 * time.Millisecond
		rc.ElectionTimeout = 500 * time.Millisecond
		rc.LeaderLeaseTimeout = 250 * time.Millisecond
		rc.CommitTimeout = 20 * time.Millisecond
	}
	return rc
}

func (s *Server) startRaft() error {
	dir := filepath.Join(s.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		return fmt.Errorf("open raft store %s: %w", dir, err)
	}
	s.store = store
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logging.NewHCLogger(s.log, "raft-snapshots"))
	if err != nil {
		return fmt.Errorf("raft snapshot store: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", s.cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("raft address: %w", err)
	}
	var advertise net.Addr = addr
	if addr.Port == 0 {
		advertise = nil // the transport advertises the port it bound
	}
	trans, err := raft.NewTCPTransportWithLogger(s.cfg.RaftAddr, advertise, 8, 10*time.Second, logging.NewHCLogger(s.log, "raft-net"))
	if err != nil {
		return fmt.Errorf("raft transport on %s: %w", s.cfg.RaftAddr, err)
	}
	s.trans = trans
	s.cfg.RaftAddr = string(trans.LocalAddr())
	rc := s.raftConfig()
	if err := s.recoverPeers(dir, rc, logs, store, snaps, trans); err != nil {
		return err
	}
	notify := make(chan bool, 8)
	rc.NotifyCh = notify
	s.leaderNotify = notify
	r, err := raft.NewRaft(rc, s.fsm, logs, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("raft state check: %w", err)
	}
	s.hasState = existing
	if s.cfg.BootstrapExpect == 1 {
		s.bootstrapped.Store(true)
		if !existing {
			s.bootstrap([]raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}})
		}
	}
	return nil
}

// recoverPeers implements the operator's outage recovery (as Consul's
// peers.json): if DataDir/raft/peers.json exists, it lists the servers
// ([{"id":"ctl1","address":"10.0.0.11:8778"}]) that form the cluster from
// now on; the Raft configuration is rewritten to it and the file removed.
func (s *Server) recoverPeers(dir string, rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) error {
	path := filepath.Join(dir, "peers.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var peers []struct {
		ID      string `json:"id"`
		Address string `json:"address"`
	}
	if err := json.Unmarshal(data, &peers); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var conf raft.Configuration
	for _, p := range peers {
		if p.ID == "" || validateHostPort(p.Address) != nil {
			return fmt.Errorf("%s: entry %+v needs an id and an IP:port address", path, p)
		}
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: raft.Voter})
	}
	if len(conf.Servers) == 0 {
		return fmt.Errorf("%s lists no servers", path)
	}
	if err := raft.RecoverCluster(rc, s.fsm, logs, stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover raft cluster from %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s after recovery: %w", path, err)
	}
	// RecoverCluster replayed the log into s.fsm and wrote a snapshot;
	// NewRaft restores that snapshot into the same FSM (Restore resets it).
	s.log.Warn("raft configuration recovered from peers.json", "servers", len(conf.Servers))
	return nil
}

func (s *Server) bootstrap(servers []raft.Server) {
	f := s.raft.BootstrapCluster(raft.Configuration{Servers: servers})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		s.log.Error("raft bootstrap failed", "err", err)
		return
	}
	ids := make([]string, len(servers))
	for i, sv := range servers {
		ids[i] = string(sv.ID)
	}
	s.log.Info("raft cluster bootstrapped", "servers", ids)
}

func (s *Server) startAPI() error {
	ln, err := net.Listen("tcp", s.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api listen on %s: %w", s.cfg.APIAddr, err)
	}
	s.apiLn = ln
	if s.cfg.PublicURL == "http://"+s.cfg.APIAddr {
		s.cfg.PublicURL = "http://" + ln.Addr().String()
	}
	s.app = api.NewApp(s.log)
	s.fwd.mount(s.app)
	api.Register(s.app, &apiBackend{s: s}, api.Options{PublicURL: s.cfg.PublicURL, DefaultZone: s.cfg.DefaultZone, Logger: s.log})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.app.Listener(ln); err != nil {
			s.log.Error("api server stopped", "err", err)
		}
	}()
	return nil
}

func (s *Server) tags() gossip.Tags {
	return gossip.Tags{
		Role: gossip.RoleCoordinator, Version: s.cfg.Version, RPCAddr: s.APIAddr(),
		RaftAddr: s.cfg.RaftAddr, Expect: s.cfg.BootstrapExpect,
	}
}

func (s *Server) startSerf() error {
	host, port, err := splitHostPort(s.cfg.SerfAddr)
	if err != nil {
		return err
	}
	n, err := gossip.Start(gossip.Config{
		NodeName: s.cfg.NodeName, BindAddr: host, BindPort: port, Tags: s.tags(),
		Timing: s.cfg.Timing, Logger: s.log,
		SnapshotPath: filepath.Join(s.cfg.DataDir, "serf.snapshot"),
	})
	if err != nil {
		return fmt.Errorf("start serf: %w", err)
	}
	s.serf = n
	if len(s.cfg.Join) > 0 {
		// Peers may start later: keep trying until one answers.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = n.RetryJoin(s.ctx, s.cfg.Join, time.Second)
		}()
	}
	return nil
}

// APIAddr is the address the API listens on.
func (s *Server) APIAddr() string {
	if s.apiLn == nil {
		return s.cfg.APIAddr
	}
	return s.apiLn.Addr().String()
}

// SerfAddr is the bound Serf address (for agents to join).
func (s *Server) SerfAddr() string { return s.serf.Addr() }

// RaftAddr is the bound Raft address.
func (s *Server) RaftAddr() string { return s.cfg.RaftAddr }

// Name is the node name.
func (s *Server) Name() string { return s.cfg.NodeName }

// State exposes the local replica (read-only use).
func (s *Server) State() *state.State { return s.fsm.State }

// IsLeader reports whether this node is the Raft leader.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderReady reports whether this node leads and its state holds every
// entry committed before it took over (after a restart, the log is
// replayed into the state machine only then).
func (s *Server) LeaderReady() bool { return s.IsLeader() && s.established.Load() }

// Raft exposes the Raft node for operator commands and tests.
func (s *Server) Raft() *raft.Raft { return s.raft }

// Members returns this node's Serf view.
func (s *Server) Members() []gossip.Member { return s.serf.Members() }

// Shutdown stops everything; safe to call more than once.
func (s *Server) Shutdown() {
	s.shutOnce.Do(func() {
		s.cancel()
		// Raft first: pending applies fail fast instead of holding API
		// handlers (and so the API shutdown) until their timeout.
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				s.log.Warn("raft shutdown", "err", err)
			}
		}
		if s.app != nil {
			_ = s.app.ShutdownWithTimeout(5 * time.Second)
		}
		if s.serf != nil {
			_ = s.serf.Shutdown()
		}
		if s.trans != nil {
			_ = s.trans.Close()
		}
		s.wg.Wait()
		if s.store != nil {
			_ = s.store.Close()
		}
		s.log.Info("coordinator stopped")
	})
}

// Leave gracefully leaves Serf (and Raft if leader steps down) then shuts down.
func (s *Server) Leave() {
	if s.serf != nil {
		_ = s.serf.Leave()
	}
	s.Shutdown()
}

// raftServers lists current Raft configuration server IDs (sorted).
func (s *Server) raftServers() ([]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	out := f.Configuration().Servers
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

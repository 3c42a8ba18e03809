package coordinator

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/agentrpc"
)

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return host, port, nil
}

// view is this node's picture of the Serf membership, kept current from
// member events: agent liveness, RPC addresses and gossiped capacity.
type view struct {
	mu      sync.RWMutex
	members map[string]gossip.Member
	// capacity by full pool name, from tags or (when tags were truncated)
	// from an RPC report.
	capacity map[string]gossip.PoolCapacity
	// joins counts Serf join events per member, so that a member that
	// failed and came back between two looks is still seen to have
	// rejoined (the inventory checks an agent's pools then).
	joins map[string]uint64
}

func newView() *view {
	return &view{members: map[string]gossip.Member{}, capacity: map[string]gossip.PoolCapacity{}, joins: map[string]uint64{}}
}

func (v *view) noteJoin(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.joins[name]++
}

func (v *view) joinCount(name string) uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.joins[name]
}

func (v *view) update(m gossip.Member) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.members[m.Name] = m
	if m.TagsErr != nil || m.Tags.Role != gossip.RoleAgent {
		return
	}
	for _, pc := range m.Tags.Pools {
		// Pool capacity is keyed by agent + pool; the backend part of the
		// full name comes from Raft, so store under agent/pool.
		v.capacity[m.Name+"/"+pc.Name] = pc
	}
}

func (v *view) setCapacity(agent string, pc gossip.PoolCapacity) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.capacity[agent+"/"+pc.Name] = pc
}

func (v *view) member(name string) (gossip.Member, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.members[name]
	return m, ok
}

func (v *view) alive(name string) bool {
	m, ok := v.member(name)
	return ok && m.Status == gossip.StatusAlive && m.TagsErr == nil
}

func (v *view) poolCapacity(p *state.Pool) (gossip.PoolCapacity, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	pc, ok := v.capacity[p.Agent+"/"+p.Info.Name]
	return pc, ok
}

func (v *view) all() []gossip.Member {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]gossip.Member, 0, len(v.members))
	for _, m := range v.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// watchMembers keeps the view current, bootstraps Raft by expect, and pokes
// the leader's member reconciliation.
func (s *Server) watchMembers() {
	defer s.wg.Done()
	for _, m := range s.serf.Members() {
		s.view.update(m)
	}
	s.maybeBootstrap()
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-s.serf.Events():
			if !ok {
				return
			}
			s.view.update(ev.Member)
			if ev.Type == gossip.EventJoin {
				s.view.noteJoin(ev.Member.Name)
			}
			if ev.Member.TagsErr != nil {
				s.log.Warn("member has malformed tags; ignored", "member", ev.Member.Name, "err", ev.Member.TagsErr)
			}
			s.maybeBootstrap()
			select {
			case s.memberPoke <- struct{}{}:
			default:
			}
		}
	}
}

// maybeBootstrap forms the cluster once BootstrapExpect coordinators with
// the same setting are alive, as Consul's bootstrap_expect does. Every
// candidate bootstraps with the same sorted server list, which Raft accepts.
func (s *Server) maybeBootstrap() {
	if s.cfg.BootstrapExpect < 2 || s.bootstrapped.Load() {
		return
	}
	var servers []raft.Server
	for _, m := range s.view.all() {
		if m.Status != gossip.StatusAlive || m.TagsErr != nil || m.Tags.Role != gossip.RoleCoordinator {
			continue
		}
		if m.Tags.Expect != s.cfg.BootstrapExpect {
			if m.Tags.Expect != 0 {
				s.log.Warn("coordinator has a different bootstrap_expect; not counting it", "member", m.Name, "expect", m.Tags.Expect)
			}
			continue
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Tags.RaftAddr)})
	}
	if len(servers) < s.cfg.BootstrapExpect {
		return
	}
	s.bootstrapped.Store(true)
	if s.hasState {
		return
	}
	s.bootstrap(servers)
}

// monitorLeadership runs the leader routines while this node leads.
func (s *Server) monitorLeadership() {
	defer s.wg.Done()
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	stop := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
			s.leading.Store(false)
			s.log.Info("leadership lost; leader routines stopped")
		}
	}
	defer stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case isLeader := <-s.leaderNotify:
			if isLeader && cancel == nil {
				ctx, c := context.WithCancel(s.ctx)
				cancel = c
				done = make(chan struct{})
				s.leading.Store(true)
				go func() {
					defer close(done)
					s.leaderLoop(ctx)
				}()
			} else if !isLeader {
				stop()
			}
		}
	}
}

// leaderLoop establishes leadership (barrier), then runs the dispatcher and
// the inventory (inventory.go) and reconciles members and volumes until ctx
// ends.
func (s *Server) leaderLoop(ctx context.Context) {
	if err := s.raft.Barrier(time.Minute).Error(); err != nil {
		s.log.Error("leader barrier failed", "err", err)
		return
	}
	s.established.Store(true)
	defer s.established.Store(false)
	s.log.Info("leadership established; starting leader routines")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runDispatcher(ctx)
	}()
	inv := s.newInventory()
	if inv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runInventory(ctx, inv)
		}()
	}
	defer wg.Wait()
	interval := s.cfg.ReconcileInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	s.reconcileMembers(ctx)
	inv.observe(s.view) // after registration: pools are known to Raft
	s.requeueTransitional()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.memberPoke:
			s.reconcileMembers(ctx)
			inv.observe(s.view)
		case <-tick.C:
			s.reconcileMembers(ctx)
			inv.observe(s.view)
			s.requeueTransitional()
			s.expireAttachStates(ctx)
		}
	}
}

// reconcileMembers brings Raft in line with Serf: coordinators become
// voters (and leave the configuration when they leave Serf), agents are
// registered with their pools, and services' up/down follows liveness.
func (s *Server) reconcileMembers(ctx context.Context) {
	servers, err := s.raftServers()
	if err != nil {
		s.log.Warn("reconcile members", "err", err)
		return
	}
	inRaft := map[string]raft.ServerAddress{}
	for _, sv := range servers {
		inRaft[string(sv.ID)] = sv.Address
	}
	now := time.Now().UTC()
	for _, m := range s.view.all() {
		if m.TagsErr != nil {
			continue
		}
		up := m.Status == gossip.StatusAlive
		switch m.Tags.Role {
		case gossip.RoleCoordinator:
			s.reconcileCoordinator(m, inRaft)
			s.setServiceState(ctx, state.BinaryScheduler, m.Name, "", up, now)
		case gossip.RoleAgent:
			if up {
				s.registerAgent(ctx, m, now)
			}
			s.setServiceState(ctx, state.BinaryVolume, m.Name, m.Tags.Zone, up, now)
		}
	}
}

func (s *Server) reconcileCoordinator(m gossip.Member, inRaft map[string]raft.ServerAddress) {
	addr, known := inRaft[m.Name]
	switch {
	case m.Status == gossip.StatusAlive && (!known || string(addr) != m.Tags.RaftAddr):
		if m.Tags.Expect != 0 && m.Tags.Expect != s.cfg.BootstrapExpect {
			s.log.Warn("not adding coordinator with a different bootstrap_expect", "member", m.Name)
			return
		}
		f := s.raft.AddVoter(raft.ServerID(m.Name), raft.ServerAddress(m.Tags.RaftAddr), 0, 10*time.Second)
		if err := f.Error(); err != nil {
			s.log.Warn("add raft voter failed", "member", m.Name, "err", err)
			return
		}
		s.log.Info("raft voter added", "member", m.Name, "addr", m.Tags.RaftAddr)
	case m.Status == gossip.StatusLeft && known && m.Name != s.cfg.NodeName:
		if err := s.raft.RemoveServer(raft.ServerID(m.Name), 0, 10*time.Second).Error(); err != nil {
			s.log.Warn("remove raft server failed", "member", m.Name, "err", err)
			return
		}
		s.log.Info("raft server removed after leaving", "member", m.Name)
	}
}

func (s *Server) setServiceState(ctx context.Context, binary, host, zone string, up bool, now time.Time) {
	cur := s.fsm.State.Service(binary, host)
	if cur != nil && cur.Up == up && (zone == "" || cur.Zone == zone) {
		return
	}
	if cur == nil && binary == state.BinaryVolume {
		return // registered (with its pools) by registerAgent first
	}
	if err := s.Apply(ctx, state.SetServiceState{Host: host, Binary: binary, Zone: zone, Up: up, At: now}); err != nil {
		s.log.Warn("record service state failed", "host", host, "binary", binary, "err", err)
		return
	}
	s.log.Info("service state changed", "host", host, "binary", binary, "up", up)
}

// registerAgent fetches the agent's pool report when Raft does not yet know
// its pools (or they changed) and records them; it also takes capacity from
// the report when gossip tags were truncated.
func (s *Server) registerAgent(ctx context.Context, m gossip.Member, now time.Time) {
	svc := s.fsm.State.Service(state.BinaryVolume, m.Name)
	need := svc == nil || svc.RPCAddr != m.Tags.RPCAddr || m.Tags.PoolsTruncated
	if !need {
		for _, pc := range m.Tags.Pools {
			if !s.agentHasPool(m.Name, pc.Name) {
				need = true
				break
			}
		}
	}
	if !need {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := s.client.Report(rctx, m.Tags.RPCAddr)
	if err != nil {
		s.log.Warn("fetch agent report failed", "agent", m.Name, "rpc", m.Tags.RPCAddr, "err", err)
		return
	}
	if rep.Agent != m.Name {
		s.log.Warn("agent report names another agent; ignored", "member", m.Name, "report", rep.Agent)
		return
	}
	cmd := state.RegisterAgent{Agent: m.Name, Zone: m.Tags.Zone, RPCAddr: m.Tags.RPCAddr, At: now}
	for _, pr := range rep.Pools {
		cmd.Pools = append(cmd.Pools, pr.Info)
		s.view.setCapacity(m.Name, capacityFromReport(pr))
	}
	if svc != nil && svc.RPCAddr == m.Tags.RPCAddr && s.samePools(m.Name, cmd) {
		return
	}
	if err := s.Apply(ctx, cmd); err != nil {
		s.log.Warn("register agent failed", "agent", m.Name, "err", err)
		return
	}
	s.log.Info("agent registered", "agent", m.Name, "pools", len(cmd.Pools))
}

func capacityFromReport(pr agentrpc.PoolReport) gossip.PoolCapacity {
	return gossip.PoolCapacity{Name: pr.Info.Name, TotalKind: pr.Stats.TotalKind, TotalGB: pr.Stats.TotalGB,
		FreeKind: pr.Stats.FreeKind, FreeGB: pr.Stats.FreeGB, ProvisionedGB: pr.Stats.ProvisionedGB, Volumes: pr.Stats.Volumes}
}

func (s *Server) agentHasPool(agent, pool string) bool {
	for _, p := range s.fsm.State.Pools() {
		if p.Agent == agent && p.Info.Name == pool {
			return true
		}
	}
	return false
}

func (s *Server) samePools(agent string, cmd state.RegisterAgent) bool {
	for _, info := range cmd.Pools {
		p := s.fsm.State.Pool(state.PoolName(agent, info.Backend, info.Name))
		if p == nil || p.Zone != cmd.Zone || !reflect.DeepEqual(p.Info, info) {
			return false
		}
	}
	return true
}

// expireAttachStates ends the attach states a client abandoned: a volume
// reserved with os-reserve (attaching, no attachment) and never attached is
// unreserved, and os-begin_detaching never followed by a detach is rolled
// back, once task_timeout has passed. Attachments created through the
// attachments API are left alone: Nova keeps reserved attachments for as
// long as an instance is shelved, and Cinder never expires them either.
func (s *Server) expireAttachStates(ctx context.Context) {
	now := time.Now().UTC()
	for _, status := range []string{state.StatusAttaching, state.StatusDetaching} {
		for _, v := range s.fsm.State.Volumes(state.VolumeFilter{Status: status}) {
			if now.Sub(v.UpdatedAt) <= s.cfg.TaskTimeout {
				continue
			}
			var cmd state.Command
			switch {
			case status == state.StatusDetaching:
				cmd = state.RollDetaching{ID: v.ID, At: now}
			case len(s.fsm.State.VolumeAttachments(v.ID)) == 0:
				cmd = state.UnreserveVolume{ID: v.ID, At: now}
			default:
				continue
			}
			if err := s.Apply(ctx, cmd); err != nil {
				s.log.Warn("expiring an abandoned attach state failed", "volume_id", v.ID, "status", status, "err", err)
				continue
			}
			s.log.Warn("abandoned attach state expired", "volume_id", v.ID, "status", status, "after", s.cfg.TaskTimeout)
		}
	}
}

// requeueTransitional hands every volume with pending work to the dispatcher.
func (s *Server) requeueTransitional() {
	for _, id := range s.fsm.State.TransitionalVolumes() {
		s.work.add(id)
	}
	s.kick()
}

func (s *Server) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

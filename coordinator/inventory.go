package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
)

// Inventory reconcile: the leader asks an agent what each of its pools
// holds and compares that with what Raft places there.
//
//   - Missing: a volume (or snapshot) Raft places on the pool in a settled
//     status, unchanged since before the list was asked for, that the pool
//     does not hold, is marked error with the reason (state.MarkMissing,
//     which re-checks every record in Apply).
//   - Orphans: what the pool holds that Raft does not place there is never
//     deleted; it is logged and recorded on the pool record
//     (state.SetPoolOrphans) so operators see it in get_pools.
//
// It runs when an agent is first seen by this leader (which covers gaining
// leadership), when it comes back or restarts (a new boot ID in its tags,
// see restartReason), and every InventoryInterval.

// poolLister is what the inventory needs from the agent client besides
// AgentClient. The agentrpc client has it; an AgentClient without it turns
// the inventory off (logged when leadership starts).
type poolLister interface {
	ListVolumes(ctx context.Context, addr, pool string) ([]storage.Volume, error)
	ListSnapshots(ctx context.Context, addr, pool string) ([]storage.Snapshot, error)
}

const (
	// inventoryWorkers bounds agents checked at once.
	inventoryWorkers = 4
	// inventoryRetry is the wait before checking an agent again after a
	// failed list.
	inventoryRetry = 30 * time.Second
	// missingBatch bounds the IDs of one MarkMissing command.
	missingBatch = 500
)

// agentIncarnation is what the leader last saw of an agent in Serf. A
// change that means the agent (re)started makes its pools due for a check.
type agentIncarnation struct {
	alive      bool
	rpcAddr    string
	addr       string
	port       uint16
	generation uint64
	bootID     string
	joins      uint64
}

// restartReason says why cur, seen after old, calls for an inventory ("" =
// no reason).
//
// A restart Serf did not see as a failure (same address, back within the
// failure-detection time) brings no join and no new address; it shows as a
// new boot ID, which every agent process draws at start
// (gossip.Tags.BootID). The generation cannot tell it reliably: it restarts
// at 1 with the process, but an agent whose capacity had not changed was
// still at 1, and the new process may have counted past the old one before
// the leader looks. It is only the fallback for agents without a boot ID
// (older versions during a rolling upgrade), where it catches the restarts
// after which the generation went back. An agent that gains or loses a
// boot ID was restarted (upgraded or downgraded), so that counts as well.
func restartReason(old agentIncarnation, known bool, cur agentIncarnation) string {
	switch {
	case !cur.alive:
		return ""
	case !known:
		return "first seen by this leader"
	case !old.alive:
		return "alive again"
	case cur.joins != old.joins:
		return "rejoined"
	case cur.rpcAddr != old.rpcAddr || cur.addr != old.addr || cur.port != old.port:
		return "new address"
	case cur.bootID != old.bootID:
		return "restarted"
	case cur.bootID == "" && cur.generation < old.generation:
		return "restarted"
	}
	return ""
}

// inventory schedules the checks of one leadership term.
type inventory struct {
	lister poolLister
	poke   chan struct{}

	mu      sync.Mutex
	seen    map[string]agentIncarnation
	due     map[string]string // agent -> why
	running map[string]bool
}

// newInventory returns the term's scheduler, or nil (inventory off) when
// the agent client cannot list pools.
func (s *Server) newInventory() *inventory {
	lister, ok := s.client.(poolLister)
	if !ok {
		s.log.Warn("the agent client cannot list pools; inventory reconcile is off", "client", fmt.Sprintf("%T", s.client))
		return nil
	}
	return &inventory{lister: lister, poke: make(chan struct{}, 1),
		seen: map[string]agentIncarnation{}, due: map[string]string{}, running: map[string]bool{}}
}

func (inv *inventory) wake() {
	select {
	case inv.poke <- struct{}{}:
	default:
	}
}

// observe compares the agents in the view with what was seen last and
// marks those that started, came back or restarted. Safe on nil.
func (inv *inventory) observe(v *view) {
	if inv == nil {
		return
	}
	members := v.all()
	inv.mu.Lock()
	marked := false
	for _, m := range members {
		if m.TagsErr != nil || m.Tags.Role != gossip.RoleAgent {
			continue
		}
		cur := agentIncarnation{alive: m.Status == gossip.StatusAlive, rpcAddr: m.Tags.RPCAddr, addr: m.Addr,
			port: m.Port, generation: m.Tags.Generation, bootID: m.Tags.BootID, joins: v.joinCount(m.Name)}
		old, known := inv.seen[m.Name]
		inv.seen[m.Name] = cur
		if why := restartReason(old, known, cur); why != "" {
			inv.due[m.Name] = why
			marked = true
		}
	}
	inv.mu.Unlock()
	if marked {
		inv.wake()
	}
}

// markAlive marks every alive agent of the view (the periodic check).
func (inv *inventory) markAlive(v *view, why string) {
	inv.mu.Lock()
	for _, m := range v.all() {
		if m.TagsErr == nil && m.Tags.Role == gossip.RoleAgent && m.Status == gossip.StatusAlive {
			inv.due[m.Name] = why
		}
	}
	inv.mu.Unlock()
	inv.wake()
}

func (inv *inventory) mark(agent, why string) {
	inv.mu.Lock()
	inv.due[agent] = why
	inv.mu.Unlock()
	inv.wake()
}

type dueAgent struct{ agent, why string }

// take hands out the due agents not being checked, sorted; an agent marked
// again while its check runs waits for it (see finished).
func (inv *inventory) take() []dueAgent {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var out []dueAgent
	for a, why := range inv.due {
		if inv.running[a] {
			continue
		}
		delete(inv.due, a)
		inv.running[a] = true
		out = append(out, dueAgent{a, why})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].agent < out[j].agent })
	return out
}

func (inv *inventory) finished(agent string) {
	inv.mu.Lock()
	delete(inv.running, agent)
	again := inv.due[agent] != ""
	inv.mu.Unlock()
	if again {
		inv.wake()
	}
}

// runInventory checks due agents until ctx ends (leadership lost).
func (s *Server) runInventory(ctx context.Context, inv *inventory) {
	var tick <-chan time.Time
	if s.cfg.InventoryInterval > 0 {
		t := time.NewTicker(s.cfg.InventoryInterval)
		defer t.Stop()
		tick = t.C
	}
	sem := make(chan struct{}, inventoryWorkers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		for _, d := range inv.take() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ok := s.checkAgentInventory(ctx, inv.lister, d.agent, d.why)
				inv.finished(d.agent)
				if !ok {
					time.AfterFunc(inventoryRetry, func() {
						if ctx.Err() == nil {
							inv.mark(d.agent, "retry after a failed check")
						}
					})
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-inv.poke:
		case <-tick:
			inv.markAlive(s.view, "periodic")
		}
	}
}

// checkAgentInventory checks every pool Raft registers for agent; false
// means a pool could not be listed and the agent should be checked again.
func (s *Server) checkAgentInventory(ctx context.Context, lister poolLister, agent, why string) bool {
	addr, ok := s.agentAddr(agent)
	if !ok || !s.view.alive(agent) {
		return true // checked again when it is back
	}
	done, pools := true, 0
	for _, p := range s.fsm.State.Pools() {
		if p.Agent != agent {
			continue
		}
		pools++
		if err := s.checkPoolInventory(ctx, lister, p, addr, why); err != nil {
			if ctx.Err() != nil {
				return true // leadership lost; the next leader checks
			}
			s.log.Warn("pool inventory failed; will retry", "pool", p.Name, "agent", agent, "retry_in", inventoryRetry, "err", err)
			done = false
		}
	}
	if pools == 0 {
		// Its registration failed or is still to come (an agent always has
		// a pool): check again once its pools are known.
		s.log.Debug("agent has no registered pools yet; inventory postponed", "agent", agent)
		return false
	}
	return done
}

// placed is the set of IDs Raft places on one pool.
type placed struct{ volumes, snapshots map[string]bool }

func placedOn(st *state.State, pool string) placed {
	p := placed{volumes: map[string]bool{}, snapshots: map[string]bool{}}
	for _, v := range st.Volumes(state.VolumeFilter{Pool: pool}) {
		p.volumes[v.ID] = true
	}
	for _, sn := range st.Snapshots(state.SnapshotFilter{}) {
		if sn.Pool == pool {
			p.snapshots[sn.ID] = true
		}
	}
	return p
}

// poolDiff is what one inventory of a pool found; every list is sorted.
type poolDiff struct {
	missingVolumes, missingSnapshots []string
	orphanVolumes, orphanSnapshots   []string
}

// diffPool compares a pool's lists, asked for at listedAt, with Raft.
// before is what Raft placed on the pool before the lists were asked for:
// an object is an orphan only if Raft placed it there neither before nor
// after (so a volume deleted or created while the agent listed is not one).
// An object is missing only if state.CheckableVolume/CheckableSnapshot hold
// now, which MarkMissing re-checks in Apply.
func diffPool(st *state.State, pool string, before placed, vols []storage.Volume, snaps []storage.Snapshot, listedAt time.Time) poolDiff {
	after := placedOn(st, pool)
	var d poolDiff
	heldVols := map[string]bool{}
	for _, v := range vols {
		if storage.ValidateID(v.ID) != nil || heldVols[v.ID] {
			continue // not a name Kiln gives, or listed twice
		}
		heldVols[v.ID] = true
		if !before.volumes[v.ID] && !after.volumes[v.ID] {
			d.orphanVolumes = append(d.orphanVolumes, v.ID)
		}
	}
	heldSnaps := map[string]bool{}
	for _, sn := range snaps {
		if storage.ValidateID(sn.ID) != nil || heldSnaps[sn.ID] {
			continue
		}
		heldSnaps[sn.ID] = true
		if !before.snapshots[sn.ID] && !after.snapshots[sn.ID] {
			d.orphanSnapshots = append(d.orphanSnapshots, sn.ID)
		}
	}
	for _, v := range st.Volumes(state.VolumeFilter{Pool: pool}) {
		if state.CheckableVolume(v, pool, listedAt) && !heldVols[v.ID] {
			d.missingVolumes = append(d.missingVolumes, v.ID)
		}
	}
	for _, sn := range st.Snapshots(state.SnapshotFilter{}) {
		if state.CheckableSnapshot(sn, pool, listedAt) && !heldSnaps[sn.ID] {
			d.missingSnapshots = append(d.missingSnapshots, sn.ID)
		}
	}
	for _, l := range [][]string{d.missingVolumes, d.missingSnapshots, d.orphanVolumes, d.orphanSnapshots} {
		slices.Sort(l)
	}
	return d
}

// checkPoolInventory lists one pool and acts on the differences.
func (s *Server) checkPoolInventory(ctx context.Context, lister poolLister, p *state.Pool, addr, why string) error {
	reqID := newRequestID()
	ctx = agentrpc.WithRequestID(ctx, reqID)
	log := s.log.With("pool", p.Name, "agent", p.Agent, "request_id", reqID)
	st := s.fsm.State
	before := placedOn(st, p.Name)
	// Wall clock, as record timestamps are: UpdatedAt of a record changed
	// after this instant is not before it, so the record is left alone.
	listedAt := time.Now().UTC()
	vols, err := lister.ListVolumes(ctx, addr, p.Info.Name)
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	snaps, err := lister.ListSnapshots(ctx, addr, p.Info.Name)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	d := diffPool(st, p.Name, before, vols, snaps, listedAt)
	log.Debug("pool inventory", "why", why, "volumes", len(vols), "snapshots", len(snaps),
		"missing_volumes", len(d.missingVolumes), "missing_snapshots", len(d.missingSnapshots),
		"orphan_volumes", len(d.orphanVolumes), "orphan_snapshots", len(d.orphanSnapshots))
	if err := s.markMissing(ctx, log, p.Name, d, listedAt); err != nil {
		return err
	}
	return s.recordOrphans(ctx, log, p.Name, d)
}

// markMissing proposes MarkMissing in batches and logs what it marked.
func (s *Server) markMissing(ctx context.Context, log *slog.Logger, pool string, d poolDiff, listedAt time.Time) error {
	type obj struct {
		kind, id string
	}
	var all []obj
	for _, id := range d.missingVolumes {
		all = append(all, obj{"volume", id})
	}
	for _, id := range d.missingSnapshots {
		all = append(all, obj{"snapshot", id})
	}
	for len(all) > 0 {
		batch := all[:min(len(all), missingBatch)]
		all = all[len(batch):]
		at := time.Now().UTC()
		if at.Before(listedAt) {
			at = listedAt // the wall clock stepped back
		}
		cmd := state.MarkMissing{Pool: pool, ListedAt: listedAt, At: at}
		for _, o := range batch {
			if o.kind == "volume" {
				cmd.VolumeIDs = append(cmd.VolumeIDs, o.id)
			} else {
				cmd.SnapshotIDs = append(cmd.SnapshotIDs, o.id)
			}
		}
		if err := s.Apply(ctx, cmd); err != nil {
			return fmt.Errorf("mark missing: %w", err)
		}
		st := s.fsm.State
		for _, o := range batch {
			reason := state.MissingReason(o.kind, o.id, pool, listedAt)
			var marked bool
			if o.kind == "volume" {
				v := st.Volume(o.id)
				marked = v != nil && v.Status == state.StatusError && v.ErrorMessage == reason && v.UpdatedAt.Equal(at)
			} else {
				sn := st.Snapshot(o.id)
				marked = sn != nil && sn.Status == state.SnapError && sn.ErrorMessage == reason && sn.UpdatedAt.Equal(at)
			}
			if marked {
				log.Error(o.kind+" missing on its pool; marked error", o.kind+"_id", o.id, "reason", reason)
			} else {
				log.Debug(o.kind+" reported absent but changed since the list; left alone", o.kind+"_id", o.id)
			}
		}
	}
	return nil
}

// recordOrphans logs the orphans and records them on the pool when they
// differ from what the pool record shows.
func (s *Server) recordOrphans(ctx context.Context, log *slog.Logger, pool string, d poolDiff) error {
	var cur *state.PoolOrphans
	if p := s.fsm.State.Pool(pool); p != nil {
		cur = p.Orphans
	}
	volIDs := d.orphanVolumes[:min(len(d.orphanVolumes), state.MaxOrphanIDs)]
	snapIDs := d.orphanSnapshots[:min(len(d.orphanSnapshots), state.MaxOrphanIDs)]
	if n := len(d.orphanVolumes) + len(d.orphanSnapshots); n > 0 {
		var known map[string]bool
		if cur != nil {
			known = map[string]bool{}
			for _, id := range slices.Concat(cur.VolumeIDs, cur.SnapshotIDs) {
				known[id] = true
			}
		}
		for _, id := range volIDs {
			if !known[id] {
				log.Warn("pool holds a volume Kiln does not place there; left in place", "volume_id", id)
			}
		}
		for _, id := range snapIDs {
			if !known[id] {
				log.Warn("pool holds a snapshot Kiln does not place there; left in place", "snapshot_id", id)
			}
		}
		log.Warn("pool has orphans (never deleted by Kiln; see get_pools kiln:orphan_*)",
			"orphan_volumes", len(d.orphanVolumes), "orphan_snapshots", len(d.orphanSnapshots))
	}
	if state.SameOrphans(cur, len(d.orphanVolumes), volIDs, len(d.orphanSnapshots), snapIDs) {
		return nil
	}
	cmd := state.SetPoolOrphans{Pool: pool, Volumes: len(d.orphanVolumes), VolumeIDs: volIDs,
		Snapshots: len(d.orphanSnapshots), SnapshotIDs: snapIDs, At: time.Now().UTC()}
	if err := s.Apply(ctx, cmd); err != nil {
		return fmt.Errorf("record orphans: %w", err)
	}
	if cmd.Volumes == 0 && cmd.Snapshots == 0 {
		log.Info("pool orphans cleared: the pool holds nothing Kiln does not place there")
	}
	return nil
}

package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/placement"
)

// AgentClient is what the leader needs to drive agents.
type AgentClient interface {
	Report(ctx context.Context, addr string) (agentrpc.Report, error)
	CreateVolume(ctx context.Context, addr, pool, id string, sizeGB int64) (storage.Volume, error)
	CreateVolumeFrom(ctx context.Context, addr, pool, id string, sizeGB int64, snapshotID, sourceVolumeID string) (storage.Volume, error)
	DeleteVolume(ctx context.Context, addr, pool, id string) error
	ExtendVolume(ctx context.Context, addr, pool, id string, newSizeGB int64) error
	RevertToSnapshot(ctx context.Context, addr, pool, volumeID, snapshotID string) error
	CreateSnapshot(ctx context.Context, addr, pool, snapshotID, volumeID string) (storage.Snapshot, error)
	DeleteSnapshot(ctx context.Context, addr, pool, snapshotID string) error
	ExportVolume(ctx context.Context, addr, pool, id string, c storage.Connector, auth storage.Credentials) (storage.ConnectionInfo, error)
	UnexportVolume(ctx context.Context, addr, pool, id string, c storage.Connector) error
}

// workSet is a de-duplicating queue of volume IDs with per-ID exclusion: an
// ID is handed to at most one worker at a time; one added while in flight is
// handed out again after done.
type workSet struct {
	mu       sync.Mutex
	pending  map[string]bool
	order    []string
	inFlight map[string]bool
	again    map[string]bool
}

func newWorkSet() *workSet {
	return &workSet{pending: map[string]bool{}, inFlight: map[string]bool{}, again: map[string]bool{}}
}

func (w *workSet) add(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inFlight[id] {
		w.again[id] = true
		return
	}
	if !w.pending[id] {
		w.pending[id] = true
		w.order = append(w.order, id)
	}
}

// take returns the next ID not in flight, or "" when none.
func (w *workSet) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.order) > 0 {
		id := w.order[0]
		w.order = w.order[1:]
		if !w.pending[id] {
			continue
		}
		delete(w.pending, id)
		w.inFlight[id] = true
		return id
	}
	return ""
}

// done releases id; it reports whether id was re-added meanwhile.
func (w *workSet) done(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.inFlight, id)
	if w.again[id] {
		delete(w.again, id)
		if !w.pending[id] {
			w.pending[id] = true
			w.order = append(w.order, id)
		}
		return true
	}
	return false
}

const dispatchWorkers = 32

// runDispatcher drives volumes in transitional states until ctx ends.
func (s *Server) runDispatcher(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, dispatchWorkers)
	defer wg.Wait()
	for {
		for {
			id := s.work.take()
			if id == "" {
				break
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.work.done(id)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.process(ctx, id)
				if s.work.done(id) {
					s.kick()
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
	}
}

// retryLater re-queues id after d (while ctx lives).
func (s *Server) retryLater(ctx context.Context, id string, d time.Duration) {
	time.AfterFunc(d, func() {
		if ctx.Err() == nil {
			s.work.add(id)
			s.kick()
		}
	})
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "req-" + hex.EncodeToString(b[:])
}

// process performs the next step for one volume. Each step ends in a Raft
// command whose state change re-queues the volume for the step after.
func (s *Server) process(ctx context.Context, id string) {
	v := s.fsm.State.Volume(id)
	if v == nil {
		if sn := s.fsm.State.Snapshot(id); sn != nil {
			s.processSnapshot(ctx, sn)
		}
		return
	}
	reqID := newRequestID()
	ctx = agentrpc.WithRequestID(ctx, reqID)
	log := s.log.With("volume_id", id, "request_id", reqID, "status", v.Status)
	now := time.Now().UTC()
	timedOut := now.Sub(v.TaskStartedAt) > s.cfg.TaskTimeout
	switch v.Status {
	case state.StatusCreating:
		switch {
		case timedOut:
			s.applyLogged(ctx, log, state.VolumeCreateFailed{ID: id, Pool: v.Pool, Final: true, At: now,
				Reason: fmt.Sprintf("create did not complete within %s", s.cfg.TaskTimeout)})
		case v.Pool == "":
			s.place(ctx, log, v)
		default:
			s.createOnAgent(ctx, log, v)
		}
	case state.StatusExtending, state.StatusReverting:
		s.processVolumeTask(ctx, log, v)
	case state.StatusDeleting:
		switch {
		case s.fsm.State.VolumeSnapshotCount(id) > 0:
			// Cascade: the snapshots go first; look again shortly.
			s.retryLater(ctx, id, 200*time.Millisecond)
		case v.Pool == "":
			s.applyLogged(ctx, log, state.VolumeDeleted{ID: id, At: now})
		case timedOut:
			s.applyLogged(ctx, log, state.VolumeDeleteFailed{ID: id, At: now,
				Reason: fmt.Sprintf("delete did not complete within %s", s.cfg.TaskTimeout)})
		default:
			s.deleteOnAgent(ctx, log, v)
		}
	}
}

func (s *Server) applyLogged(ctx context.Context, log *slog.Logger, cmd state.Command) bool {
	if err := s.Apply(ctx, cmd); err != nil {
		if ctx.Err() == nil {
			log.Warn("state change refused", "command", fmt.Sprintf("%T", cmd), "err", err)
		}
		return false
	}
	return true
}

// placementPools returns the pools placement may use: registered in Raft,
// agent alive in Serf, service enabled, with capacity from gossip.
func (s *Server) placementPools() []placement.Pool {
	pools := s.fsm.State.Pools()
	out := make([]placement.Pool, 0, len(pools))
	for _, p := range pools {
		if !s.view.alive(p.Agent) {
			continue
		}
		if svc := s.fsm.State.Service(state.BinaryVolume, p.Agent); svc != nil && svc.Disabled {
			continue
		}
		pc, ok := s.view.poolCapacity(p)
		if !ok {
			pc.TotalKind, pc.FreeKind = storage.Unknown, storage.Unknown
		}
		out = append(out, state.PlacementPool(p, s.fsm.State.PoolUsage(p.Name), pc.TotalKind, pc.TotalGB, pc.FreeKind, pc.FreeGB))
	}
	return out
}

// place chooses a pool and records it; the fit is re-checked in Apply, and
// a lost race re-places with fresh state.
func (s *Server) place(ctx context.Context, log *slog.Logger, v *state.Volume) {
	req := placement.Request{SizeGB: v.SizeGB, AvailabilityZone: v.AZ, Tried: v.Tried}
	if t := s.fsm.State.Type(v.TypeID); t != nil {
		req.ExtraSpecs = t.ExtraSpecs
	}
	req.SameBackendAs = s.hintPools(v.Hints.SameHost)
	req.DifferentBackendFrom = s.hintPools(v.Hints.DifferentHost)
	src := ""
	if v.SnapshotID != "" || v.SourceVolID != "" {
		// Created from a snapshot or a volume: on the source's pool only
		// (drivers copy within a pool), as Cinder does.
		if src = s.fsm.State.SourcePool(v); src == "" {
			s.applyLogged(ctx, log, state.VolumeCreateFailed{ID: v.ID, Final: true, At: time.Now().UTC(),
				Reason: "the source snapshot or volume no longer exists"})
			return
		}
	}
	for try := 0; try < 8; try++ {
		pools := s.placementPools()
		if src != "" {
			pools = slices.DeleteFunc(pools, func(p placement.Pool) bool { return p.Name != src })
		}
		best, err := s.engine.PlaceBest(req, pools, mrand.Float64)
		if err != nil {
			reason := err.Error()
			if len(pools) == 0 {
				reason = s.noPoolsReason(v.SizeGB)
			}
			if len(v.Tried) > 0 && v.ErrorMessage != "" {
				reason = v.ErrorMessage + "; then " + reason
			}
			log.Warn("no valid pool", "reason", reason)
			s.applyLogged(ctx, log, state.VolumeCreateFailed{ID: v.ID, Final: true, Reason: reason, At: time.Now().UTC()})
			return
		}
		p := best
		err = s.Apply(ctx, state.ScheduleVolume{ID: v.ID, Pool: p.Name, At: time.Now().UTC(),
			TotalKind: p.TotalKind, TotalGB: p.TotalGB, FreeKind: p.FreeKind, FreeGB: s.rawFree(p)})
		if err == nil {
			log.Debug("volume placed", "pool", p.Name, "candidates", len(pools))
			return
		}
		if !errors.Is(err, state.ErrNoCapacity) {
			if ctx.Err() == nil {
				log.Warn("recording placement failed", "pool", p.Name, "err", err)
				s.retryLater(ctx, v.ID, time.Second)
			}
			return
		}
		log.Debug("lost placement race; re-placing", "pool", p.Name, "err", err)
	}
	s.retryLater(ctx, v.ID, 100*time.Millisecond)
}

// noPoolsReason explains an empty candidate list: no pool registered, or
// every registered pool's agent down or disabled.
func (s *Server) noPoolsReason(sizeGB int64) string {
	registered := s.fsm.State.Pools()
	if len(registered) == 0 {
		return fmt.Sprintf("no valid pool for %d GiB: no pools are registered (is an agent running and joined?)", sizeGB)
	}
	var parts []string
	for _, p := range registered {
		why := "agent " + p.Agent + " is not alive"
		if svc := s.fsm.State.Service(state.BinaryVolume, p.Agent); svc != nil && svc.Disabled && s.view.alive(p.Agent) {
			why = "service disabled"
		}
		parts = append(parts, "pool "+p.Name+": "+why)
		if len(parts) == 20 {
			parts = append(parts, fmt.Sprintf("and %d more", len(registered)-20))
			break
		}
	}
	return fmt.Sprintf("no valid pool for %d GiB: %s", sizeGB, strings.Join(parts, "; "))
}

// rawFree returns the gossiped free capacity (before the thick-accounting
// adjustment PlacementPool applies, which Apply re-applies itself).
func (s *Server) rawFree(p placement.Pool) float64 {
	if sp := s.fsm.State.Pool(p.Name); sp != nil {
		if pc, ok := s.view.poolCapacity(sp); ok {
			return pc.FreeGB
		}
	}
	return p.FreeGB
}

// hintPools resolves volume IDs from scheduler hints to the pools holding them.
func (s *Server) hintPools(ids []string) []string {
	var out []string
	for _, id := range ids {
		if v := s.fsm.State.Volume(id); v != nil && v.Pool != "" {
			out = append(out, v.Pool)
		}
	}
	return out
}

func (s *Server) agentAddr(agent string) (string, bool) {
	if m, ok := s.view.member(agent); ok && m.TagsErr == nil && m.Tags.RPCAddr != "" {
		return m.Tags.RPCAddr, true
	}
	if svc := s.fsm.State.Service(state.BinaryVolume, agent); svc != nil && svc.RPCAddr != "" {
		return svc.RPCAddr, true
	}
	return "", false
}

// target finds the pool a volume is placed on and its agent's address. A
// pool Raft no longer knows returns nil; an agent without an address yet
// schedules a retry and returns ok=false.
func (s *Server) target(ctx context.Context, v *state.Volume) (p *state.Pool, addr string, ok bool) {
	p = s.fsm.State.Pool(v.Pool)
	if p == nil {
		return nil, "", true
	}
	if addr, ok = s.agentAddr(p.Agent); !ok {
		s.retryLater(ctx, v.ID, 2*time.Second)
	}
	return p, addr, ok
}

func (s *Server) createOnAgent(ctx context.Context, log *slog.Logger, v *state.Volume) {
	p, addr, ok := s.target(ctx, v)
	if !ok {
		return
	}
	if p == nil {
		s.failCreate(ctx, log, v, "pool "+v.Pool+" is no longer registered")
		return
	}
	log = log.With("pool", v.Pool, "agent", p.Agent)
	start := time.Now()
	var vol storage.Volume
	var err error
	if v.SnapshotID != "" || v.SourceVolID != "" {
		stop := s.watchCopy(ctx, log, addr, p.Info.Name, v.ID)
		vol, err = s.client.CreateVolumeFrom(ctx, addr, p.Info.Name, v.ID, v.SizeGB, v.SnapshotID, v.SourceVolID)
		stop()
	} else {
		vol, err = s.client.CreateVolume(ctx, addr, p.Info.Name, v.ID, v.SizeGB)
	}
	if err == nil {
		if s.applyLogged(ctx, log, state.VolumeCreated{ID: v.ID, Pool: v.Pool, Location: vol.Location, At: time.Now().UTC()}) {
			log.Info("volume available", "took", time.Since(start))
		}
		return
	}
	if ctx.Err() != nil {
		return // leadership lost; the next leader re-drives
	}
	if agentrpc.IsDefinite(err) {
		s.failCreate(ctx, log, v, fmt.Sprintf("pool %s: %v", v.Pool, err))
		return
	}
	// The call may or may not have created the volume. Only move on to
	// another pool once this one confirms it holds nothing, so a volume is
	// never created on two agents.
	if derr := s.client.DeleteVolume(ctx, addr, p.Info.Name, v.ID); derr == nil {
		s.failCreate(ctx, log, v, fmt.Sprintf("pool %s: %v", v.Pool, err))
		return
	}
	log.Warn("agent unreachable during create; will retry on the same pool", "err", err)
	s.retryLater(ctx, v.ID, 2*time.Second)
}

// failCreate records a failed attempt: re-placed while attempts remain,
// otherwise error with quota released.
func (s *Server) failCreate(ctx context.Context, log *slog.Logger, v *state.Volume, reason string) {
	final := len(v.Tried) >= s.cfg.MaxAttempts
	if v.ErrorMessage != "" && !strings.Contains(reason, v.ErrorMessage) {
		reason = v.ErrorMessage + "; " + reason
	}
	log.Warn("create attempt failed", "attempt", len(v.Tried), "max_attempts", s.cfg.MaxAttempts, "final", final, "reason", reason)
	s.applyLogged(ctx, log, state.VolumeCreateFailed{ID: v.ID, Pool: v.Pool, Final: final, Reason: reason, At: time.Now().UTC()})
}

func (s *Server) deleteOnAgent(ctx context.Context, log *slog.Logger, v *state.Volume) {
	p, addr, ok := s.target(ctx, v)
	if !ok {
		return
	}
	if p == nil {
		s.applyLogged(ctx, log, state.VolumeDeleted{ID: v.ID, At: time.Now().UTC()})
		return
	}
	log = log.With("pool", v.Pool, "agent", p.Agent)
	err := s.client.DeleteVolume(ctx, addr, p.Info.Name, v.ID)
	if err == nil {
		if s.applyLogged(ctx, log, state.VolumeDeleted{ID: v.ID, At: time.Now().UTC()}) {
			log.Info("volume deleted")
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	if agentrpc.IsDefinite(err) {
		s.applyLogged(ctx, log, state.VolumeDeleteFailed{ID: v.ID, Reason: err.Error(), At: time.Now().UTC()})
		return
	}
	log.Warn("agent unreachable during delete; will retry", "err", err)
	s.retryLater(ctx, v.ID, 2*time.Second)
}

// step performs one idempotent agent call for a record in a transitional
// status: success applies done; a definite failure (the agent answered)
// applies failed; an ambiguous one is retried until the task deadline, then
// failed. Idempotent agent operations make the retries safe.
func (s *Server) step(ctx context.Context, log *slog.Logger, id string, startedAt time.Time,
	call func() error, done func() state.Command, failed func(reason string) state.Command) {
	err := call()
	switch {
	case err == nil:
		s.applyLogged(ctx, log, done())
	case ctx.Err() != nil:
		// Leadership lost: the next leader re-drives.
	case agentrpc.IsDefinite(err):
		log.Warn("agent refused", "err", err)
		s.applyLogged(ctx, log, failed(err.Error()))
	case time.Since(startedAt) > s.cfg.TaskTimeout:
		s.applyLogged(ctx, log, failed(fmt.Sprintf("did not complete within %s: %v", s.cfg.TaskTimeout, err)))
	default:
		log.Warn("agent unreachable; will retry", "err", err)
		s.retryLater(ctx, id, 2*time.Second)
	}
}

// processVolumeTask drives extending and reverting volumes.
func (s *Server) processVolumeTask(ctx context.Context, log *slog.Logger, v *state.Volume) {
	p, addr, ok := s.target(ctx, v)
	if !ok {
		return
	}
	now := func() time.Time { return time.Now().UTC() }
	switch v.Status {
	case state.StatusExtending:
		fail := func(r string) state.Command { return state.VolumeExtendFailed{ID: v.ID, Reason: r, At: now()} }
		if p == nil {
			s.applyLogged(ctx, log, fail("pool "+v.Pool+" is no longer registered"))
			return
		}
		s.step(ctx, log, v.ID, v.TaskStartedAt,
			func() error { return s.client.ExtendVolume(ctx, addr, p.Info.Name, v.ID, v.ExtendToGB) },
			func() state.Command { return state.VolumeExtended{ID: v.ID, At: now()} }, fail)
	case state.StatusReverting:
		fail := func(r string) state.Command { return state.VolumeRevertFailed{ID: v.ID, Reason: r, At: now()} }
		if p == nil {
			s.applyLogged(ctx, log, fail("pool "+v.Pool+" is no longer registered"))
			return
		}
		s.step(ctx, log, v.ID, v.TaskStartedAt,
			func() error {
				defer s.watchCopy(ctx, log, addr, p.Info.Name, v.ID)()
				return s.client.RevertToSnapshot(ctx, addr, p.Info.Name, v.ID, v.RevertSnapshotID)
			},
			func() state.Command { return state.VolumeReverted{ID: v.ID, At: now()} }, fail)
	}
}

// processSnapshot drives creating and deleting snapshots.
func (s *Server) processSnapshot(ctx context.Context, sn *state.Snapshot) {
	reqID := newRequestID()
	ctx = agentrpc.WithRequestID(ctx, reqID)
	log := s.log.With("snapshot_id", sn.ID, "volume_id", sn.VolumeID, "request_id", reqID, "status", sn.Status)
	now := func() time.Time { return time.Now().UTC() }
	p, addr, ok := s.target(ctx, &state.Volume{ID: sn.ID, Pool: sn.Pool})
	if !ok {
		return
	}
	switch sn.Status {
	case state.SnapCreating:
		fail := func(r string) state.Command { return state.SnapshotCreateFailed{ID: sn.ID, Reason: r, At: now()} }
		if p == nil {
			s.applyLogged(ctx, log, fail("pool "+sn.Pool+" is no longer registered"))
			return
		}
		var loc string
		s.step(ctx, log, sn.ID, sn.TaskStartedAt,
			func() error {
				snap, err := s.client.CreateSnapshot(ctx, addr, p.Info.Name, sn.ID, sn.VolumeID)
				loc = snap.Location
				return err
			},
			func() state.Command { return state.SnapshotCreated{ID: sn.ID, Location: loc, At: now()} }, fail)
	case state.SnapDeleting:
		done := func() state.Command { return state.SnapshotDeleted{ID: sn.ID, At: now()} }
		if p == nil {
			s.applyLogged(ctx, log, done())
			return
		}
		s.step(ctx, log, sn.ID, sn.TaskStartedAt,
			func() error { return s.client.DeleteSnapshot(ctx, addr, p.Info.Name, sn.ID) }, done,
			func(r string) state.Command { return state.SnapshotDeleteFailed{ID: sn.ID, Reason: r, At: now()} })
	}
}

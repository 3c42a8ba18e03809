package state

import (
	"fmt"
	"io"
	"maps"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// FSM adapts State to raft.FSM.
type FSM struct {
	State *State
	// applied is the index of the last entry the FSM applied (raft's own
	// AppliedIndex runs ahead of the FSM: it is set when entries are handed
	// to the FSM goroutine, not when they are applied).
	applied atomic.Uint64
}

// AppliedIndex is the index of the last log entry applied to the state.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// NewFSM returns an FSM over a fresh state.
func NewFSM() *FSM { return &FSM{State: New()} }

// Apply applies one committed log entry and returns a *Result.
func (f *FSM) Apply(l *raft.Log) any {
	defer f.applied.Store(l.Index)
	if l.Type != raft.LogCommand {
		return &Result{Index: l.Index}
	}
	r := f.State.Apply(l.Data)
	r.Index = l.Index
	return r
}

// Snapshot captures the state cheaply: records are immutable, so copying
// the maps of pointers under the read lock is enough; encoding happens in
// Persist, outside the lock. Every map of data must be copied here
// (TestSnapshotCopiesEveryMap checks it).
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := f.State
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.d
	d.Volumes = maps.Clone(s.d.Volumes)
	d.Types = maps.Clone(s.d.Types)
	d.Quotas = make(map[string]map[string]int64, len(s.d.Quotas))
	for p, q := range s.d.Quotas {
		d.Quotas[p] = maps.Clone(q)
	}
	d.Defaults = maps.Clone(s.d.Defaults)
	d.Pools = maps.Clone(s.d.Pools)
	d.Services = maps.Clone(s.d.Services)
	d.Snapshots = maps.Clone(s.d.Snapshots)
	d.QoSSpecs = maps.Clone(s.d.QoSSpecs)
	d.Attachments = maps.Clone(s.d.Attachments)
	return &snapshot{d: d, index: f.applied.Load()}, nil
}

// Restore replaces the state with a snapshot. The snapshot is read and
// checked in full before the state is touched: a snapshot that is truncated,
// corrupt or of an unknown version leaves the state as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	d, index, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	s := f.State
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset(d)
	f.applied.Store(index)
	if s.onChange != nil {
		for id := range s.d.Volumes {
			s.onChange(id)
		}
	}
	return nil
}

type snapshot struct {
	d     data
	index uint64
}

// Persist writes the snapshot (format in snapshot.go) to sink.
func (sn *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, sn.index, &sn.d); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (sn *snapshot) Release() {}

package state

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// inventoryFixture is a state with two pools: on pool, volume 1 available,
// 2 in-use, 3 creating (placed), 4 extending, 5 error, and snapshots 1
// (available) and 2 (creating) of volume 1; volume 6 is available on the
// other pool.
func inventoryFixture(t *testing.T) (s *State, pool, other string) {
	t.Helper()
	s = New()
	pool = registerPool(t, s, "a1", true)
	other = registerPool(t, s, "a2", true)
	for n := 1; n <= 5; n++ {
		availableVolume(t, s, n, "p", pool, 1)
	}
	availableVolume(t, s, 6, "p", other, 1)
	setVolumeStatus(s, vid(2), StatusInUse)
	setVolumeStatus(s, vid(3), StatusCreating)
	setVolumeStatus(s, vid(4), StatusExtending)
	setVolumeStatus(s, vid(5), StatusError)
	mustApply(t, s, CreateSnapshot{Snapshot: newSnap(1, 1, "p")})
	mustApply(t, s, SnapshotCreated{ID: sid(1), At: t0})
	mustApply(t, s, CreateSnapshot{Snapshot: newSnap(2, 1, "p")})
	return s, pool, other
}

func TestMarkMissing(t *testing.T) {
	s, pool, other := inventoryFixture(t)
	listed := t0.Add(time.Hour)
	at := listed.Add(time.Second)
	usedBefore := s.QuotaUsage("p")
	cmd := MarkMissing{Pool: pool, ListedAt: listed, At: at,
		VolumeIDs:   []string{vid(1), vid(2), vid(3), vid(4), vid(5), vid(6), vid(99)},
		SnapshotIDs: []string{sid(1), sid(2), sid(99)}}
	mustApply(t, s, cmd)
	for n, want := range map[int]string{1: StatusError, 2: StatusError, 3: StatusCreating, 4: StatusExtending, 5: StatusError, 6: StatusAvailable} {
		if got := s.Volume(vid(n)).Status; got != want {
			t.Errorf("volume %d: %s, want %s", n, got, want)
		}
	}
	for _, n := range []int{1, 2} {
		v := s.Volume(vid(n))
		want := "volume-" + vid(n) + " is missing on pool " + pool + ": the agent reported it absent at 2026-11-21T13:00:00Z"
		if v.ErrorMessage != want || !v.UpdatedAt.Equal(at) || !v.ConsumesQuota {
			t.Errorf("volume %d: %q, updated %s, consumes quota %v", n, v.ErrorMessage, v.UpdatedAt, v.ConsumesQuota)
		}
	}
	if v := s.Volume(vid(5)); v.ErrorMessage != "" {
		t.Errorf("an error volume was re-marked: %q", v.ErrorMessage)
	}
	if sn := s.Snapshot(sid(1)); sn.Status != SnapError || !strings.HasPrefix(sn.ErrorMessage, "snapshot-"+sid(1)+" is missing on pool") {
		t.Errorf("snapshot 1: %s %q", sn.Status, sn.ErrorMessage)
	}
	if sn := s.Snapshot(sid(2)); sn.Status != SnapCreating {
		t.Errorf("creating snapshot marked: %s", sn.Status)
	}
	// The volumes still exist in Raft: quota and pool allocation are kept
	// until an operator or user deletes them.
	if got := s.QuotaUsage("p"); !maps.Equal(got, usedBefore) {
		t.Errorf("usage %v, was %v", got, usedBefore)
	}
	derivedMatchesFresh(t, s, "p", pool)
	derivedMatchesFresh(t, s, "p", other)

	// Applying it again changes nothing: the marked records are no
	// longer settled.
	before := snapshotBytes(t, s)
	mustApply(t, s, cmd)
	if !bytes.Equal(before, snapshotBytes(t, s)) {
		t.Fatal("a repeated MarkMissing changed the state")
	}
}

// TestMarkMissingSkipsWhatChangedSinceTheList is the deterministic re-check
// in Apply: a record changed at or after ListedAt, moved to a transitional
// status, or placed elsewhere is left alone, whatever the leader saw.
func TestMarkMissingSkipsWhatChangedSinceTheList(t *testing.T) {
	s, pool, _ := inventoryFixture(t)
	listed := t0.Add(time.Hour)
	// Volume 1 was renamed after the list was asked for (its record changed).
	name := "renamed"
	mustApply(t, s, UpdateVolume{ID: vid(1), ProjectID: "p", Name: &name, At: listed})
	// Volume 2 started a delete.
	setVolumeStatus(s, vid(2), StatusAvailable)
	mustApply(t, s, DeleteVolume{ID: vid(2), ProjectID: "p", At: t0.Add(time.Minute)})
	mustApply(t, s, MarkMissing{Pool: pool, ListedAt: listed, At: listed.Add(time.Second), VolumeIDs: []string{vid(1), vid(2)}})
	if v := s.Volume(vid(1)); v.Status != StatusAvailable {
		t.Errorf("volume changed at the list time was marked: %s", v.Status)
	}
	if v := s.Volume(vid(2)); v.Status != StatusDeleting {
		t.Errorf("deleting volume was marked: %s", v.Status)
	}

	// Two replicas applying the same entries end in the same state.
	a, _, _ := inventoryFixture(t)
	b, _, _ := inventoryFixture(t)
	for _, st := range []*State{a, b} {
		mustApply(t, st, MarkMissing{Pool: pool, ListedAt: listed, At: listed, VolumeIDs: []string{vid(2), vid(1)}, SnapshotIDs: []string{sid(1)}})
		mustApply(t, st, SetPoolOrphans{Pool: pool, Volumes: 3, VolumeIDs: []string{vid(7), vid(8)}, At: listed})
	}
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("replicas differ")
	}
}

func TestInventoryCommandsRefuseBadInput(t *testing.T) {
	s, pool, _ := inventoryFixture(t)
	listed := t0.Add(time.Hour)
	many := make([]string, MaxOrphanIDs+1)
	for i := range many {
		many[i] = fmt.Sprintf("0b000000-0000-4000-8000-%012d", i)
	}
	lots := make([]string, maxMissingIDs+1)
	for i := range lots {
		lots[i] = fmt.Sprintf("0c000000-0000-4000-8000-%012d", i)
	}
	for name, c := range map[string]Command{
		"missing: no pool":        MarkMissing{ListedAt: listed, At: listed, VolumeIDs: []string{vid(1)}},
		"missing: no listed_at":   MarkMissing{Pool: pool, At: listed, VolumeIDs: []string{vid(1)}},
		"missing: no at":          MarkMissing{Pool: pool, ListedAt: listed, VolumeIDs: []string{vid(1)}},
		"missing: at before list": MarkMissing{Pool: pool, ListedAt: listed, At: listed.Add(-time.Second), VolumeIDs: []string{vid(1)}},
		"missing: no IDs":         MarkMissing{Pool: pool, ListedAt: listed, At: listed},
		"missing: bad ID":         MarkMissing{Pool: pool, ListedAt: listed, At: listed, VolumeIDs: []string{"../etc"}},
		"missing: upper-case ID":  MarkMissing{Pool: pool, ListedAt: listed, At: listed, SnapshotIDs: []string{strings.ToUpper(sid(1))}},
		"missing: duplicate":      MarkMissing{Pool: pool, ListedAt: listed, At: listed, VolumeIDs: []string{vid(1), vid(1)}},
		"missing: too many":       MarkMissing{Pool: pool, ListedAt: listed, At: listed, VolumeIDs: lots},
		"orphans: no pool":        SetPoolOrphans{At: listed},
		"orphans: no at":          SetPoolOrphans{Pool: pool},
		"orphans: count too low":  SetPoolOrphans{Pool: pool, Volumes: 1, VolumeIDs: []string{vid(7), vid(8)}, At: listed},
		"orphans: negative":       SetPoolOrphans{Pool: pool, Snapshots: -1, At: listed},
		"orphans: too many IDs":   SetPoolOrphans{Pool: pool, Volumes: len(many), VolumeIDs: many, At: listed},
		"orphans: unsorted":       SetPoolOrphans{Pool: pool, Volumes: 2, VolumeIDs: []string{vid(8), vid(7)}, At: listed},
		"orphans: bad ID":         SetPoolOrphans{Pool: pool, Snapshots: 1, SnapshotIDs: []string{"x"}, At: listed},
	} {
		entry, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(entry); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
		before := snapshotBytes(t, s)
		if err := s.Apply(entry).Err; err == nil || err.Kind != KindInvalid {
			t.Errorf("%s: Apply gave %v, want an invalid-input refusal", name, err)
		}
		if !bytes.Equal(before, snapshotBytes(t, s)) {
			t.Fatalf("%s: refused but changed the state", name)
		}
	}
	// A pool that is not registered.
	refusedUnchanged(t, s, MarkMissing{Pool: "nope@x#y", ListedAt: listed, At: listed, VolumeIDs: []string{vid(1)}}, KindNotFound)
	refusedUnchanged(t, s, SetPoolOrphans{Pool: "nope@x#y", At: listed}, KindNotFound)
}

func TestSetPoolOrphans(t *testing.T) {
	s, pool, other := inventoryFixture(t)
	at := t0.Add(time.Hour)
	// Optional for older coordinators; MarkMissing is not.
	for _, tc := range []struct {
		c    Command
		want byte
	}{{SetPoolOrphans{Pool: pool, At: at}, 57 | 0x80}, {MarkMissing{}, 55}} {
		if e, err := Encode(tc.c); err != nil || e[0] != tc.want {
			t.Errorf("%T encodes with type byte %#x, want %#x", tc.c, e[0], tc.want)
		}
	}
	// Volume 6 is on the other pool, volume 7 unknown, and volume 1 is
	// placed on this pool by the time the command applies: not an orphan.
	mustApply(t, s, SetPoolOrphans{Pool: pool, Volumes: 5, VolumeIDs: []string{vid(1), vid(6), vid(7)},
		Snapshots: 2, SnapshotIDs: []string{sid(1), sid(7)}, At: at})
	want := &PoolOrphans{Volumes: 4, VolumeIDs: []string{vid(6), vid(7)}, Snapshots: 1, SnapshotIDs: []string{sid(7)}, At: at}
	if got := s.Pool(pool).Orphans; !reflect.DeepEqual(got, want) {
		t.Fatalf("orphans %+v, want %+v", got, want)
	}
	if !SameOrphans(s.Pool(pool).Orphans, 4, []string{vid(6), vid(7)}, 1, []string{sid(7)}) ||
		SameOrphans(s.Pool(pool).Orphans, 4, []string{vid(6)}, 1, []string{sid(7)}) || !SameOrphans(nil, 0, nil, 0, []string{}) {
		t.Error("SameOrphans")
	}
	if s.Pool(other).Orphans != nil {
		t.Fatal("the other pool got orphans")
	}

	// Re-registering the agent (restart, new RPC address) keeps them.
	mustApply(t, s, RegisterAgent{Agent: "a1", Zone: "nova", RPCAddr: "127.0.0.1:2", At: at, Pools: []storage.PoolInfo{s.Pool(pool).Info}})
	if got := s.Pool(pool).Orphans; !reflect.DeepEqual(got, want) {
		t.Fatalf("orphans after re-registration %+v", got)
	}

	// Survives a snapshot and restore.
	f := &FSM{State: s}
	g := NewFSM()
	if err := restore(g, persist(t, f)); err != nil {
		t.Fatal(err)
	}
	if got := g.State.Pool(pool).Orphans; !reflect.DeepEqual(got, want) {
		t.Fatalf("orphans after restore %+v", got)
	}
	if dump(t, g) != dump(t, f) {
		t.Fatal("state differs after restore")
	}

	// A later inventory that finds none clears them; only IDs that are
	// all placed on the pool clear them too.
	mustApply(t, s, SetPoolOrphans{Pool: pool, At: at.Add(time.Minute)})
	if o := s.Pool(pool).Orphans; o != nil {
		t.Fatalf("orphans not cleared: %+v", o)
	}
	mustApply(t, s, SetPoolOrphans{Pool: pool, Volumes: 1, VolumeIDs: []string{vid(2)}, At: at})
	if o := s.Pool(pool).Orphans; o != nil {
		t.Fatalf("a volume placed on the pool recorded as orphan: %+v", o)
	}
}

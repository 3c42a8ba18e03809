package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

func sid(n int) string { return fmt.Sprintf("5a000000-0000-4000-8000-%012d", n) }

// availableVolume creates, places and completes volume n of size on pool.
func availableVolume(t *testing.T, s *State, n int, project, pool string, size int64) {
	t.Helper()
	mustApply(t, s, CreateVolume{Volume: newVolume(n, project, size)})
	mustApply(t, s, ScheduleVolume{ID: vid(n), Pool: pool, TotalGB: 1000, FreeGB: 1000, At: t0})
	mustApply(t, s, VolumeCreated{ID: vid(n), Pool: pool, At: t0})
}

func newSnap(n, vol int, project string) Snapshot {
	return Snapshot{ID: sid(n), VolumeID: vid(vol), ProjectID: project, Name: fmt.Sprintf("s%d", n),
		CreatedAt: t0.Add(time.Duration(n) * time.Minute)}
}

func setVolumeStatus(s *State, id, status string) {
	v := cloneVolume(s.d.Volumes[id])
	v.Status = status
	s.put(v)
}

func TestSnapshotLifecycleAndQuota(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 4)
	mustApply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{QuotaSnapshots: 1}})
	mustApply(t, s, CreateSnapshot{Snapshot: newSnap(1, 1, "p")})
	sn := s.Snapshot(sid(1))
	if sn.Status != SnapCreating || sn.Pool != pool || sn.SizeGB != 4 || s.QuotaUsage("p")[QuotaSnapshots].Reserved != 1 {
		t.Fatalf("created snapshot %+v", sn)
	}
	if u := s.QuotaUsage("p")[QuotaGigabytes]; u.InUse+u.Reserved != 8 {
		t.Fatalf("gigabytes must count the snapshot: %+v", u)
	}
	if err := apply(t, s, CreateSnapshot{Snapshot: newSnap(2, 1, "p")}); err == nil || err.Class != "SnapshotLimitExceeded" {
		t.Fatalf("second snapshot over quota: %v", err)
	}
	mustApply(t, s, SnapshotCreated{ID: sid(1), Location: "/x", At: t0})
	if u := s.QuotaUsage("p")[QuotaSnapshots]; u.InUse != 1 || u.Reserved != 0 {
		t.Fatalf("after created: %+v", u)
	}
	// A volume with snapshots cannot be deleted without cascade.
	if err := apply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", At: t0}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("delete volume with snapshots: %v", err)
	}
	mustApply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", Cascade: true, At: t0})
	if s.Snapshot(sid(1)).Status != SnapDeleting || s.Volume(vid(1)).Status != StatusDeleting {
		t.Fatal("cascade did not start deleting both")
	}
	if err := apply(t, s, VolumeDeleted{ID: vid(1)}); err == nil {
		t.Fatal("volume removed while its snapshot still exists")
	}
	mustApply(t, s, SnapshotDeleted{ID: sid(1)})
	mustApply(t, s, VolumeDeleted{ID: vid(1)})
	for res, u := range s.QuotaUsage("p") {
		if u != (Use{}) {
			t.Fatalf("usage %s left: %+v", res, u)
		}
	}
}

// TestSnapshotCreateFromEveryVolumeStatus is the status-machine table for
// snapshot create: allowed from available, from in-use only with force or
// 3.66, refused otherwise with Cinder's error.
func TestSnapshotCreateFromEveryVolumeStatus(t *testing.T) {
	for _, status := range []string{StatusCreating, StatusAvailable, StatusDeleting, StatusError, StatusErrorDeleting,
		StatusInUse, StatusExtending, StatusErrorExtend, StatusReverting, "attaching", "detaching", "maintenance", "reserved"} {
		for _, force := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/force=%v", status, force), func(t *testing.T) {
				s := New()
				pool := registerPool(t, s, "a1", true)
				availableVolume(t, s, 1, "p", pool, 1)
				setVolumeStatus(s, vid(1), status)
				err := apply(t, s, CreateSnapshot{Snapshot: newSnap(1, 1, "p"), AllowInUse: force})
				want := status == StatusAvailable || (status == StatusInUse && force)
				if want != (err == nil) {
					t.Fatalf("allowed=%v, err=%v", want, err)
				}
				if err != nil && (err.Kind != KindInvalid || s.Snapshot(sid(1)) != nil) {
					t.Fatalf("refusal %v changed state or has the wrong kind", err)
				}
			})
		}
	}
}

func TestSnapshotStatusUpdatesAndResets(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 1)
	mustApply(t, s, CreateSnapshot{Snapshot: newSnap(1, 1, "p")})
	// os-update_snapshot_status: creating -> {creating, available, error}.
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{SnapCreating, SnapCreating, true}, {SnapCreating, SnapAvailable, true}, {SnapCreating, SnapError, true},
		{SnapCreating, SnapDeleting, false}, {SnapAvailable, SnapError, false}, {SnapDeleting, SnapErrorDeleting, true},
		{SnapDeleting, SnapAvailable, false}, {SnapError, SnapAvailable, false},
	} {
		n := cloneSnap(s.d.Snapshots[sid(1)])
		n.Status = tc.from
		s.putSnap(n)
		err := apply(t, s, SetSnapshotStatus{ID: sid(1), Mode: SnapStatusUpdate, Status: tc.to, At: t0})
		if tc.ok != (err == nil) {
			t.Fatalf("update %s -> %s: %v", tc.from, tc.to, err)
		}
	}
	if err := apply(t, s, SetSnapshotStatus{ID: sid(1), Mode: SnapStatusReset, Status: "bogus"}); err == nil {
		t.Fatal("reset to an invalid status accepted")
	}
	mustApply(t, s, SetSnapshotStatus{ID: sid(1), Mode: SnapStatusReset, Status: SnapAvailable})
	if err := apply(t, s, DeleteSnapshot{ID: sid(1), ProjectID: "other"}); err == nil || err.Kind != KindNotFound {
		t.Fatalf("other project's snapshot: %v", err)
	}
}

func TestExtendFromEveryStatusAndQuota(t *testing.T) {
	for _, status := range []string{StatusCreating, StatusAvailable, StatusDeleting, StatusError, StatusInUse, StatusExtending, StatusErrorExtend, StatusReverting} {
		for _, inUse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/inuse=%v", status, inUse), func(t *testing.T) {
				s := New()
				pool := registerPool(t, s, "a1", true)
				availableVolume(t, s, 1, "p", pool, 2)
				setVolumeStatus(s, vid(1), status)
				err := apply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 5, AllowInUse: inUse, At: t0})
				want := status == StatusAvailable || (status == StatusInUse && inUse)
				if want != (err == nil) {
					t.Fatalf("allowed=%v err=%v", want, err)
				}
			})
		}
	}
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 2)
	mustApply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{QuotaGigabytes: 6}})
	if err := apply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 2}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("extend to the same size: %v", err)
	}
	if err := apply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 7}); err == nil || err.Kind != KindOverQuota {
		t.Fatalf("extend over quota: %v", err)
	}
	mustApply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 6, At: t0})
	if u := s.QuotaUsage("p")[QuotaGigabytes]; u.InUse != 2 || u.Reserved != 4 {
		t.Fatalf("usage while extending: %+v", u)
	}
	if pu := s.PoolUsage(pool); pu.AllocatedGB != 6 {
		t.Fatalf("pool allocation while extending: %+v", pu)
	}
	mustApply(t, s, VolumeExtended{ID: vid(1), At: t0})
	v := s.Volume(vid(1))
	if v.SizeGB != 6 || v.Status != StatusAvailable || s.QuotaUsage("p")[QuotaGigabytes] != (Use{InUse: 6}) {
		t.Fatalf("after extend: %+v %+v", v, s.QuotaUsage("p")[QuotaGigabytes])
	}
	// A failed extend releases the growth and leaves error_extending.
	mustApply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{QuotaGigabytes: 10}})
	mustApply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 8, At: t0})
	mustApply(t, s, VolumeExtendFailed{ID: vid(1), Reason: "no space", At: t0})
	v = s.Volume(vid(1))
	if v.Status != StatusErrorExtend || v.SizeGB != 6 || s.QuotaUsage("p")[QuotaGigabytes] != (Use{InUse: 6}) || s.PoolUsage(pool).AllocatedGB != 6 {
		t.Fatalf("after failed extend: %+v", v)
	}
}

func TestRevertOnlyToLatestSnapshot(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 1)
	availableVolume(t, s, 2, "p", pool, 1)
	for n := 1; n <= 2; n++ {
		mustApply(t, s, CreateSnapshot{Snapshot: newSnap(n, 1, "p")})
		mustApply(t, s, SnapshotCreated{ID: sid(n)})
	}
	mustApply(t, s, CreateSnapshot{Snapshot: newSnap(3, 2, "p")})
	mustApply(t, s, SnapshotCreated{ID: sid(3)})
	if err := apply(t, s, RevertVolume{ID: vid(1), ProjectID: "p", SnapshotID: sid(1)}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("revert to an older snapshot: %v", err)
	}
	if err := apply(t, s, RevertVolume{ID: vid(1), ProjectID: "p", SnapshotID: sid(3)}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("revert to another volume's snapshot: %v", err)
	}
	mustApply(t, s, RevertVolume{ID: vid(1), ProjectID: "p", SnapshotID: sid(2), At: t0})
	if s.Volume(vid(1)).Status != StatusReverting || s.Snapshot(sid(2)).Status != SnapRestoring {
		t.Fatal("revert did not move volume to reverting and snapshot to restoring")
	}
	if err := apply(t, s, DeleteSnapshot{ID: sid(2), ProjectID: "p"}); err == nil {
		t.Fatal("deleted the snapshot being restored")
	}
	mustApply(t, s, VolumeReverted{ID: vid(1), At: t0})
	if s.Volume(vid(1)).Status != StatusAvailable || s.Snapshot(sid(2)).Status != SnapAvailable {
		t.Fatal("revert did not end in available/available")
	}
	mustApply(t, s, RevertVolume{ID: vid(1), ProjectID: "p", SnapshotID: sid(2), At: t0})
	mustApply(t, s, VolumeRevertFailed{ID: vid(1), Reason: "io error", At: t0})
	if s.Volume(vid(1)).Status != StatusError || s.Snapshot(sid(2)).Status != SnapAvailable {
		t.Fatal("failed revert must leave volume error and snapshot available")
	}
}

func TestCreateFromSourceRules(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 3)
	mustApply(t, s, CreateSnapshot{Snapshot: newSnap(1, 1, "p")})
	v := newVolume(2, "p", 3)
	v.SnapshotID = sid(1)
	if err := apply(t, s, CreateVolume{Volume: v}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("from a creating snapshot: %v", err)
	}
	mustApply(t, s, SnapshotCreated{ID: sid(1)})
	v.SizeGB = 2
	if err := apply(t, s, CreateVolume{Volume: v}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("smaller than the snapshot: %v", err)
	}
	v.SizeGB = 4
	mustApply(t, s, CreateVolume{Volume: v})
	if s.SourcePool(s.Volume(vid(2))) != pool {
		t.Fatal("source pool not found")
	}
	c := newVolume(3, "p", 3)
	c.SourceVolID = vid(1)
	mustApply(t, s, CreateVolume{Volume: c})
	both := newVolume(4, "p", 3)
	both.SourceVolID, both.SnapshotID = vid(1), sid(1)
	if err := apply(t, s, CreateVolume{Volume: both}); err == nil {
		t.Fatal("two sources accepted")
	}
	other := newVolume(5, "q", 3)
	other.SourceVolID = vid(1)
	if err := apply(t, s, CreateVolume{Volume: other}); err == nil || err.Kind != KindNotFound {
		t.Fatalf("another project's source: %v", err)
	}
}

func TestInUseExtendNeedsOnlineExtendSupport(t *testing.T) {
	s := New()
	mustApply(t, s, RegisterAgent{Agent: "a2", Zone: "nova", At: t0, Pools: []storage.PoolInfo{{
		Name: "vg", Backend: "lvm", ThickProvisioning: true, MaxOverSubscriptionRatio: "1.0"}}})
	pool := PoolName("a2", "lvm", "vg")
	availableVolume(t, s, 1, "p", pool, 1)
	setVolumeStatus(s, vid(1), StatusInUse)
	if err := apply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 2, AllowInUse: true}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("in-use extend on a pool without online_extend_support: %v", err)
	}
}

func TestRefusedCascadeDeleteChangesNothing(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 1)
	mustApply(t, s, CreateSnapshot{Snapshot: newSnap(1, 1, "p")})
	mustApply(t, s, SnapshotCreated{ID: sid(1)})
	mustApply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 2, At: t0})
	if err := apply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", Cascade: true, At: t0}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("cascade delete of an extending volume: %v", err)
	}
	if st := s.Snapshot(sid(1)).Status; st != SnapAvailable {
		t.Fatalf("refused cascade moved the snapshot to %s", st)
	}
}

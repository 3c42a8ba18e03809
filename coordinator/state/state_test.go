package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnstore/kiln/internal/storage"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func mustApply(t *testing.T, s *State, c Command) {
	t.Helper()
	if err := apply(t, s, c); err != nil {
		t.Fatalf("apply %T: %v", c, err)
	}
}

func apply(t *testing.T, s *State, c Command) *Error {
	t.Helper()
	entry, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(entry); err != nil {
		t.Fatalf("validate %T: %v", c, err)
	}
	return s.Apply(entry).Err
}

func vid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

func newVolume(n int, project string, size int64) Volume {
	return Volume{ID: vid(n), ProjectID: project, UserID: "u", Name: fmt.Sprintf("v%d", n), SizeGB: size,
		TypeID: DefaultTypeID, AZ: "nova", CreatedAt: t0.Add(time.Duration(n) * time.Second)}
}

func registerPool(t *testing.T, s *State, agent string, thin bool) string {
	t.Helper()
	mustApply(t, s, RegisterAgent{Agent: agent, Zone: "nova", RPCAddr: "127.0.0.1:1", At: t0, Pools: []storage.PoolInfo{{
		Name: "local", Backend: "local", Driver: "nfs", Protocol: "local", ThinProvisioning: thin, ThickProvisioning: !thin,
		MaxOverSubscriptionRatio: "20.0", Capabilities: map[string]string{"online_extend_support": "True"},
	}}})
	return PoolName(agent, "local", "local")
}

// recount recomputes usage from the live volumes: the invariant that usage
// equals the sum of live resources.
func recount(s *State, project string) (vols, gb int64) {
	for _, v := range s.Volumes(VolumeFilter{ProjectID: project}) {
		if v.ConsumesQuota {
			vols++
			gb += v.SizeGB
		}
	}
	return
}

func usage(s *State, project string) (vols, gb int64) {
	u := s.QuotaUsage(project)
	return u[QuotaVolumes].InUse + u[QuotaVolumes].Reserved, u[QuotaGigabytes].InUse + u[QuotaGigabytes].Reserved
}

func TestCreateLifecycleAccounting(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", false)
	mustApply(t, s, CreateVolume{Volume: newVolume(1, "p", 5)})
	v := s.Volume(vid(1))
	if v.Status != StatusCreating || !v.ConsumesQuota || v.AttachStatus != AttachDetached {
		t.Fatalf("created volume = %+v", v)
	}
	if u := s.QuotaUsage("p")[QuotaGigabytes]; u.Reserved != 5 || u.InUse != 0 {
		t.Fatalf("usage while creating = %+v", u)
	}
	mustApply(t, s, ScheduleVolume{ID: vid(1), Pool: pool, At: t0, TotalGB: 100, FreeGB: 100})
	if pu := s.PoolUsage(pool); pu.AllocatedGB != 5 || pu.Volumes != 1 {
		t.Fatalf("pool usage = %+v", pu)
	}
	mustApply(t, s, VolumeCreated{ID: vid(1), Pool: pool, Location: "/x", At: t0})
	if u := s.QuotaUsage("p")[QuotaGigabytes]; u.Reserved != 0 || u.InUse != 5 {
		t.Fatalf("usage after create = %+v", u)
	}
	if u := s.QuotaUsage("p")["gigabytes___DEFAULT__"]; u.InUse != 5 {
		t.Fatalf("per-type usage = %+v", u)
	}
	mustApply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", At: t0})
	if s.Volume(vid(1)).Status != StatusDeleting {
		t.Fatal("not deleting")
	}
	mustApply(t, s, VolumeDeleted{ID: vid(1), At: t0})
	if s.Volume(vid(1)) != nil {
		t.Fatal("volume still present")
	}
	if v, g := usage(s, "p"); v != 0 || g != 0 {
		t.Fatalf("usage after delete = %d vols %d GB", v, g)
	}
	if pu := s.PoolUsage(pool); pu.AllocatedGB != 0 || pu.Volumes != 0 {
		t.Fatalf("pool usage after delete = %+v", pu)
	}
}

func TestQuotaRefusalsChangeNothing(t *testing.T) {
	s := New()
	mustApply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{QuotaVolumes: 2, QuotaGigabytes: 10, QuotaPerVolumeGigabytes: 8}})
	mustApply(t, s, CreateVolume{Volume: newVolume(1, "p", 4)})
	cases := []struct {
		name  string
		v     Volume
		class string
	}{
		{"per volume", newVolume(2, "p", 9), "VolumeSizeExceedsLimit"},
		{"gigabytes", newVolume(3, "p", 7), "VolumeSizeExceedsAvailableQuota"},
	}
	for _, tc := range cases {
		err := apply(t, s, CreateVolume{Volume: tc.v})
		if err == nil || err.Kind != KindOverQuota || err.Class != tc.class {
			t.Fatalf("%s: err = %v", tc.name, err)
		}
		if s.Volume(tc.v.ID) != nil {
			t.Fatalf("%s: volume inserted despite refusal", tc.name)
		}
	}
	mustApply(t, s, CreateVolume{Volume: newVolume(4, "p", 1)})
	err := apply(t, s, CreateVolume{Volume: newVolume(5, "p", 1)})
	if err == nil || err.Class != "VolumeLimitExceeded" || !errors.Is(err, ErrOverQuota) {
		t.Fatalf("volumes limit: err = %v", err)
	}
	if want := "VolumeLimitExceeded: Maximum number of volumes allowed (2) exceeded for quota 'volumes'."; err.Error() != want {
		t.Fatalf("message = %q", err.Error())
	}
	if v, g := usage(s, "p"); v != 2 || g != 5 {
		t.Fatalf("usage = %d/%d", v, g)
	}
	// Another project is unaffected.
	mustApply(t, s, CreateVolume{Volume: newVolume(6, "q", 100)})
	// A limit below usage is refused.
	if err := apply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{QuotaGigabytes: 4}}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("limit below usage: %v", err)
	}
	if err := apply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{"bogus": 4}}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("unknown key: %v", err)
	}
	if got := s.QuotaLimits("p")[QuotaGigabytes]; got != 10 {
		t.Fatalf("limit changed by refused update: %d", got)
	}
}

func TestPerTypeQuota(t *testing.T) {
	s := New()
	mustApply(t, s, CreateType{Type: VolumeType{ID: "11111111-1111-4111-8111-111111111111", Name: "gold", IsPublic: true, CreatedAt: t0}})
	mustApply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{"volumes_gold": 1}})
	v := newVolume(1, "p", 1)
	v.TypeID = "11111111-1111-4111-8111-111111111111"
	mustApply(t, s, CreateVolume{Volume: v})
	v2 := newVolume(2, "p", 1)
	v2.TypeID = v.TypeID
	if err := apply(t, s, CreateVolume{Volume: v2}); err == nil || err.Class != "VolumeLimitExceeded" {
		t.Fatalf("per-type limit: %v", err)
	}
	// Default-type volumes are not limited by the gold quota.
	mustApply(t, s, CreateVolume{Volume: newVolume(3, "p", 1)})
	// Renaming the type carries the limit and usage along.
	name := "platinum"
	mustApply(t, s, UpdateType{ID: v.TypeID, Name: &name, At: t0})
	if l := s.QuotaLimits("p")["volumes_platinum"]; l != 1 {
		t.Fatalf("renamed limit = %d", l)
	}
	if u := s.QuotaUsage("p")["volumes_platinum"]; u.Reserved != 1 {
		t.Fatalf("renamed usage = %+v", u)
	}
	if err := apply(t, s, DeleteType{ID: v.TypeID}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("delete type in use: %v", err)
	}
}

func TestScheduleRechecksCapacity(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", false)
	// Pool: 10 GiB total, all free per gossip. Two 6 GiB volumes race.
	mustApply(t, s, CreateVolume{Volume: newVolume(1, "p", 6)})
	mustApply(t, s, CreateVolume{Volume: newVolume(2, "p", 6)})
	mustApply(t, s, ScheduleVolume{ID: vid(1), Pool: pool, TotalGB: 10, FreeGB: 10, At: t0})
	err := apply(t, s, ScheduleVolume{ID: vid(2), Pool: pool, TotalGB: 10, FreeGB: 10, At: t0})
	if err == nil || !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("second placement should not fit: %v", err)
	}
	if s.Volume(vid(2)).Pool != "" || s.PoolUsage(pool).AllocatedGB != 6 {
		t.Fatal("refused placement changed state")
	}
	// Scheduling twice is refused (already placed).
	if err := apply(t, s, ScheduleVolume{ID: vid(1), Pool: pool, TotalGB: 10, FreeGB: 10}); err == nil {
		t.Fatal("re-schedule accepted")
	}
	// Unknown pool.
	if err := apply(t, s, ScheduleVolume{ID: vid(2), Pool: "x@y#z", TotalGB: 10, FreeGB: 10}); err == nil || err.Kind != KindNotFound {
		t.Fatalf("unknown pool: %v", err)
	}
}

func TestCreateFailureRetriesThenReleasesQuota(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	mustApply(t, s, CreateVolume{Volume: newVolume(1, "p", 3)})
	mustApply(t, s, ScheduleVolume{ID: vid(1), Pool: pool, TotalGB: 100, FreeGB: 100})
	mustApply(t, s, VolumeCreateFailed{ID: vid(1), Pool: pool, Reason: "boom"})
	v := s.Volume(vid(1))
	if v.Status != StatusCreating || v.Pool != "" || len(v.Tried) != 1 || s.PoolUsage(pool).AllocatedGB != 0 {
		t.Fatalf("after non-final failure: %+v", v)
	}
	mustApply(t, s, VolumeCreateFailed{ID: vid(1), Final: true, Reason: "no valid pool"})
	v = s.Volume(vid(1))
	if v.Status != StatusError || v.ConsumesQuota || v.ErrorMessage != "no valid pool" {
		t.Fatalf("after final failure: %+v", v)
	}
	if vols, gb := usage(s, "p"); vols != 0 || gb != 0 {
		t.Fatalf("quota not released: %d %d", vols, gb)
	}
	// An error volume that was never placed is removed at once by delete.
	mustApply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p"})
	if s.Volume(vid(1)) != nil {
		t.Fatal("unplaced error volume should be removed by delete")
	}
}

func TestDeleteRules(t *testing.T) {
	s := New()
	mustApply(t, s, CreateVolume{Volume: newVolume(1, "p", 1)})
	if err := apply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p"}); err == nil || err.Kind != KindInvalid {
		t.Fatalf("delete of creating volume: %v", err)
	}
	if err := apply(t, s, DeleteVolume{ID: vid(1), ProjectID: "other"}); err == nil || err.Kind != KindNotFound {
		t.Fatalf("delete from another project: %v", err)
	}
	mustApply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", Force: true})
	if s.Volume(vid(1)).Status != StatusDeleting {
		t.Fatal("force delete should start deleting")
	}
	mustApply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p"}) // idempotent
}

func TestUpdateVolumeMetadataModes(t *testing.T) {
	s := New()
	v := newVolume(1, "p", 1)
	v.Metadata = map[string]string{"a": "1"}
	mustApply(t, s, CreateVolume{Volume: v})
	mustApply(t, s, UpdateVolume{ID: vid(1), ProjectID: "p", MetaMode: MetaMerge, Metadata: map[string]string{"b": "2"}})
	if got := s.Volume(vid(1)).Metadata; !reflect.DeepEqual(got, map[string]string{"a": "1", "b": "2"}) {
		t.Fatalf("merge: %v", got)
	}
	mustApply(t, s, UpdateVolume{ID: vid(1), ProjectID: "p", MetaMode: MetaDelete, DeleteKey: "a"})
	if err := apply(t, s, UpdateVolume{ID: vid(1), ProjectID: "p", MetaMode: MetaDelete, DeleteKey: "zz"}); err == nil || err.Kind != KindNotFound {
		t.Fatalf("delete missing key: %v", err)
	}
	mustApply(t, s, UpdateVolume{ID: vid(1), ProjectID: "p", MetaMode: MetaReplace, Metadata: map[string]string{"c": "3"}})
	name := "renamed"
	mustApply(t, s, UpdateVolume{ID: vid(1), ProjectID: "p", Name: &name})
	got := s.Volume(vid(1))
	if got.Name != "renamed" || !reflect.DeepEqual(got.Metadata, map[string]string{"c": "3"}) {
		t.Fatalf("after replace+rename: %+v", got)
	}
}

func TestTypesAndExtraSpecs(t *testing.T) {
	s := New()
	if s.TypeByName(DefaultTypeName) == nil {
		t.Fatal("no __DEFAULT__ type")
	}
	id := "22222222-2222-4222-8222-222222222222"
	mustApply(t, s, CreateType{Type: VolumeType{ID: id, Name: "fast", CreatedAt: t0}})
	if err := apply(t, s, CreateType{Type: VolumeType{ID: vid(9), Name: "fast"}}); err == nil || err.Kind != KindConflict {
		t.Fatalf("duplicate name: %v", err)
	}
	mustApply(t, s, SetExtraSpecs{TypeID: id, Specs: map[string]string{"volume_backend_name": "local"}})
	if s.Type(id).ExtraSpecs["volume_backend_name"] != "local" {
		t.Fatal("extra spec not set")
	}
	if err := apply(t, s, DeleteExtraSpec{TypeID: id, Key: "nope"}); err == nil || err.Kind != KindNotFound {
		t.Fatalf("delete missing spec: %v", err)
	}
	mustApply(t, s, DeleteExtraSpec{TypeID: id, Key: "volume_backend_name"})
	if err := apply(t, s, DeleteType{ID: DefaultTypeID}); err == nil {
		t.Fatal("default type deleted")
	}
	mustApply(t, s, DeleteType{ID: id})
	if s.Type(id) != nil {
		t.Fatal("type not deleted")
	}
}

func TestUnknownCommand(t *testing.T) {
	s := New()
	if r := s.Apply([]byte{byte(0x7f | IgnorableFlag), '{', '}'}); r.Err != nil {
		t.Fatalf("ignorable unknown command: %v", r.Err)
	}
	if err := Validate([]byte{0x7f, '{', '}'}); err == nil {
		t.Fatal("validate accepted unknown command")
	}
	if err := Validate([]byte{byte(CmdCreateVolume), '{'}); err == nil {
		t.Fatal("validate accepted malformed body")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("unknown command did not panic")
		}
	}()
	s.Apply([]byte{0x7f, '{', '}'})
}

// sink is an in-memory raft.SnapshotSink.
type sink struct{ bytes.Buffer }

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { return nil }
func (s *sink) Close() error  { return nil }

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f := NewFSM()
	s := f.State
	pool := registerPool(t, s, "a1", false)
	mustApply(t, s, SetQuota{ProjectID: "p", Limits: map[string]int64{QuotaVolumes: 50}})
	mustApply(t, s, CreateType{Type: VolumeType{ID: "33333333-3333-4333-8333-333333333333", Name: "t", ExtraSpecs: map[string]string{"k": "v"}, CreatedAt: t0}})
	for i := 1; i <= 20; i++ {
		mustApply(t, s, CreateVolume{Volume: newVolume(i, "p", int64(i))})
		if i%2 == 0 {
			mustApply(t, s, ScheduleVolume{ID: vid(i), Pool: pool, TotalGB: 1000, FreeGB: 1000})
			mustApply(t, s, VolumeCreated{ID: vid(i), Pool: pool})
		}
	}
	mustApply(t, s, SetServiceState{Host: "c1", Binary: BinaryScheduler, Up: true, At: t0})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	usageBefore := s.QuotaUsage("p")
	// Changes after the snapshot must not leak into it.
	mustApply(t, s, CreateVolume{Volume: newVolume(99, "p", 1)})
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(out.Bytes()))); err != nil {
		t.Fatal(err)
	}
	r := g.State
	if r.Volume(vid(99)) != nil {
		t.Fatal("snapshot contains a later write")
	}
	for i := 1; i <= 20; i++ {
		if !reflect.DeepEqual(r.Volume(vid(i)), s.Volume(vid(i))) {
			t.Fatalf("volume %d differs after restore", i)
		}
	}
	if !reflect.DeepEqual(r.QuotaUsage("p"), usageBefore) {
		t.Fatalf("usage differs after restore: %v vs %v", r.QuotaUsage("p"), usageBefore)
	}
	if r.PoolUsage(pool) != s.PoolUsage(pool) || !reflect.DeepEqual(r.QuotaLimits("p"), s.QuotaLimits("p")) {
		t.Fatal("pool usage or limits differ after restore")
	}
	if !reflect.DeepEqual(r.Types(), s.Types()) || !reflect.DeepEqual(r.Services(), s.Services()) || !reflect.DeepEqual(r.Pools(), s.Pools()) {
		t.Fatal("types, services or pools differ after restore")
	}
	// A snapshot of another version is refused.
	bad, _ := json.Marshal(map[string]any{"version": 99})
	if err := NewFSM().Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Fatal("restore accepted unknown version")
	}
	var _ raft.SnapshotSink = &out
}

func BenchmarkSnapshotRestore100k(b *testing.B) {
	f := NewFSM()
	s := f.State
	pool := "a@b#c"
	for i := 0; i < 100000; i++ {
		v := newVolume(i, fmt.Sprintf("p%d", i%100), 1)
		v.Pool = pool
		v.Status = StatusAvailable
		v.ConsumesQuota = true
		s.d.Volumes[v.ID] = &v
	}
	s.reset(s.d)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, _ := f.Snapshot()
		var out sink
		if err := snap.Persist(&out); err != nil {
			b.Fatal(err)
		}
		g := NewFSM()
		if err := g.Restore(io.NopCloser(&out)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(perOp/2.0, "x_target_2s")
}

func TestCreateIsIdempotentForTheSameCommand(t *testing.T) {
	s := New()
	v := newVolume(1, "p", 2)
	mustApply(t, s, CreateVolume{Volume: v})
	mustApply(t, s, CreateVolume{Volume: v}) // retried forward
	if vols, gb := usage(s, "p"); vols != 1 || gb != 2 {
		t.Fatalf("retried create counted twice: %d %d", vols, gb)
	}
	other := v
	other.CreatedAt = v.CreatedAt.Add(time.Second)
	if err := apply(t, s, CreateVolume{Volume: other}); err == nil || err.Kind != KindConflict {
		t.Fatalf("different create with the same ID: %v", err)
	}
}

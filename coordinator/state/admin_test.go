package state

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// refusedUnchanged applies c, wants a refusal of kind, and checks that the
// state (its full snapshot encoding) did not change.
func refusedUnchanged(t *testing.T, s *State, c Command, kind ErrorKind) *Error {
	t.Helper()
	before := persist(t, &FSM{State: s})
	err := apply(t, s, c)
	if err == nil || err.Kind != kind {
		t.Fatalf("%T: got %v, want a refusal of kind %d", c, err, kind)
	}
	if after := persist(t, &FSM{State: s}); !bytes.Equal(before, after) {
		t.Fatalf("%T refused but changed the state", c)
	}
	return err
}

// derivedMatchesFresh checks that the incrementally kept quota usage and
// pool allocation equal those rebuilt from scratch.
func derivedMatchesFresh(t *testing.T, s *State, project, pool string) {
	t.Helper()
	fresh := &State{}
	fresh.reset(s.d)
	if got, want := s.QuotaUsage(project), fresh.QuotaUsage(project); !maps.Equal(got, want) {
		t.Fatalf("usage %+v, rebuilt %+v", got, want)
	}
	if got, want := s.PoolUsage(pool), fresh.PoolUsage(pool); got != want {
		t.Fatalf("pool use %+v, rebuilt %+v", got, want)
	}
}

// TestResetStatusFromEveryStatus is the status-machine table of the admin
// os-reset_status: every target from every status; deleting and in-use
// (no attachments exist) are refused, everything else is allowed.
func TestResetStatusFromEveryStatus(t *testing.T) {
	from := []string{StatusCreating, StatusAvailable, StatusError, StatusErrorDeleting, StatusExtending,
		StatusErrorExtend, StatusReverting, "maintenance", "attaching"}
	targets := append(slices.Clone(VolumeStatuses), "reverting", "bogus", "Available")
	for _, f := range from {
		for _, to := range targets {
			t.Run(f+"->"+to, func(t *testing.T) {
				s := New()
				pool := registerPool(t, s, "a1", true)
				availableVolume(t, s, 1, "p", pool, 2)
				setVolumeStatus(s, vid(1), f)
				cmd := ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: to, At: t0.Add(time.Hour)}
				allowed := slices.Contains(VolumeStatuses, to) && to != StatusDeleting && to != StatusInUse
				if !allowed {
					refusedUnchanged(t, s, cmd, KindInvalid)
					return
				}
				mustApply(t, s, cmd)
				v := s.Volume(vid(1))
				if v.Status != to || !v.UpdatedAt.Equal(t0.Add(time.Hour)) {
					t.Fatalf("after reset: %+v", v)
				}
				derivedMatchesFresh(t, s, "p", pool)
			})
		}
	}
}

func TestResetStatusAccountingAndFields(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 2)
	mustApply(t, s, ExtendVolume{ID: vid(1), ProjectID: "p", NewSizeGB: 5, At: t0})
	if u := s.QuotaUsage("p")[QuotaGigabytes]; u.Reserved != 3 || s.PoolUsage(pool).AllocatedGB != 5 {
		t.Fatalf("extending: %+v", u)
	}
	// Leaving extending by reset releases the growth: usage is the size.
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusError, At: t0})
	v := s.Volume(vid(1))
	if v.ExtendToGB != 0 || v.PreviousStatus != "" || v.SizeGB != 2 {
		t.Fatalf("after reset from extending: %+v", v)
	}
	if u := s.QuotaUsage("p")[QuotaGigabytes]; u != (Use{InUse: 2}) || s.PoolUsage(pool).AllocatedGB != 2 {
		t.Fatalf("usage after reset: %+v pool %+v", u, s.PoolUsage(pool))
	}
	if vols, gb := usage(s, "p"); vols != 1 || gb != 2 {
		t.Fatalf("usage %d/%d", vols, gb)
	}
	derivedMatchesFresh(t, s, "p", pool)

	// Reset to creating counts the quota as reserved again, then back.
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusCreating, At: t0.Add(time.Minute)})
	if u := s.QuotaUsage("p")[QuotaVolumes]; u != (Use{Reserved: 1}) || !s.Volume(vid(1)).TaskStartedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("creating: %+v", u)
	}
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusAvailable, At: t0})
	if u := s.QuotaUsage("p")[QuotaVolumes]; u != (Use{InUse: 1}) || s.PoolUsage(pool).AllocatedGB != 2 {
		t.Fatalf("available: %+v", u)
	}
	// Reset to extending re-drives an extend to the current size.
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusExtending, At: t0})
	if v := s.Volume(vid(1)); v.ExtendToGB != 2 || v.PreviousStatus != StatusAvailable {
		t.Fatalf("reset to extending: %+v", v)
	}
	mustApply(t, s, VolumeExtended{ID: vid(1), At: t0})
	if v := s.Volume(vid(1)); v.Status != StatusAvailable || v.SizeGB != 2 {
		t.Fatalf("after re-driven extend: %+v", v)
	}
	derivedMatchesFresh(t, s, "p", pool)

	// Attach and migration status; "none" clears the migration status.
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", AttachStatus: "attached", MigrationStatus: "migrating", At: t0})
	if v := s.Volume(vid(1)); v.AttachStatus != "attached" || v.MigrationStatus != "migrating" || v.Status != StatusAvailable {
		t.Fatalf("attach/migration: %+v", v)
	}
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", AttachStatus: AttachDetached, MigrationStatus: "none", At: t0})
	if v := s.Volume(vid(1)); v.AttachStatus != AttachDetached || v.MigrationStatus != "" {
		t.Fatalf("detached/none: %+v", v)
	}
	for name, c := range map[string]ResetVolumeStatus{
		"nothing":          {ID: vid(1), ProjectID: "p"},
		"attach status":    {ID: vid(1), ProjectID: "p", AttachStatus: "attaching"},
		"migration status": {ID: vid(1), ProjectID: "p", MigrationStatus: "moving"},
		"valid and bad":    {ID: vid(1), ProjectID: "p", Status: StatusError, MigrationStatus: "moving"},
		"in-use":           {ID: vid(1), ProjectID: "p", Status: StatusInUse},
		"deleting":         {ID: vid(1), ProjectID: "p", Status: StatusDeleting},
	} {
		t.Run(name, func(t *testing.T) { refusedUnchanged(t, s, c, KindInvalid) })
	}
	refusedUnchanged(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "other", Status: StatusError}, KindNotFound)
	refusedUnchanged(t, s, ResetVolumeStatus{ID: vid(9), Status: StatusError}, KindNotFound)
}

func TestBootableReadOnlyAndImageMetadata(t *testing.T) {
	s := New()
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 1)
	mustApply(t, s, SetVolumeBootable{ID: vid(1), ProjectID: "p", Bootable: true, At: t0})
	if !s.Volume(vid(1)).Bootable {
		t.Fatal("not bootable")
	}
	mustApply(t, s, SetVolumeReadOnly{ID: vid(1), ProjectID: "p", ReadOnly: true, At: t0})
	if !s.Volume(vid(1)).ReadOnly {
		t.Fatal("not read-only")
	}
	// The readonly flag needs an available volume; bootable any status but maintenance.
	for _, status := range []string{StatusCreating, StatusError, StatusInUse, StatusExtending, "maintenance", "uploading"} {
		t.Run(status, func(t *testing.T) {
			setVolumeStatus(s, vid(1), status)
			defer setVolumeStatus(s, vid(1), StatusAvailable)
			err := refusedUnchanged(t, s, SetVolumeReadOnly{ID: vid(1), ProjectID: "p", At: t0}, KindInvalid)
			if want := fmt.Sprintf("current status is: %s.", status); !bytes.Contains([]byte(err.Msg), []byte(want)) {
				t.Fatalf("message %q", err.Msg)
			}
			bootable := SetVolumeBootable{ID: vid(1), ProjectID: "p", At: t0}
			meta := SetImageMetadata{ID: vid(1), ProjectID: "p", Metadata: map[string]string{"a": "b"}, At: t0}
			switch status {
			case "maintenance":
				refusedUnchanged(t, s, bootable, KindInvalid)
				refusedUnchanged(t, s, meta, KindInvalid)
			case "uploading":
				mustApply(t, s, bootable)
				refusedUnchanged(t, s, meta, KindInvalid)
				mustApply(t, s, SetVolumeBootable{ID: vid(1), ProjectID: "p", Bootable: true, At: t0})
			default:
				mustApply(t, s, bootable)
				mustApply(t, s, SetVolumeBootable{ID: vid(1), ProjectID: "p", Bootable: true, At: t0})
			}
		})
	}
	refusedUnchanged(t, s, SetVolumeBootable{ID: vid(1), ProjectID: "q"}, KindNotFound)
	refusedUnchanged(t, s, SetVolumeReadOnly{ID: vid(1), ProjectID: "q"}, KindNotFound)

	mustApply(t, s, SetImageMetadata{ID: vid(1), ProjectID: "p", Metadata: map[string]string{"os_distro": "debian", "k": "1"}, At: t0})
	mustApply(t, s, SetImageMetadata{ID: vid(1), ProjectID: "p", Metadata: map[string]string{"k": "2"}, At: t0})
	if got := s.Volume(vid(1)).ImageMetadata; !maps.Equal(got, map[string]string{"os_distro": "debian", "k": "2"}) {
		t.Fatalf("image metadata %v", got)
	}
	refusedUnchanged(t, s, DeleteImageMetadata{ID: vid(1), ProjectID: "p", Key: "nope"}, KindNotFound)
	refusedUnchanged(t, s, SetImageMetadata{ID: vid(1), ProjectID: "q", Metadata: map[string]string{"a": "b"}}, KindNotFound)
	mustApply(t, s, DeleteImageMetadata{ID: vid(1), ProjectID: "p", Key: "k", At: t0})
	if got := s.Volume(vid(1)).ImageMetadata; !maps.Equal(got, map[string]string{"os_distro": "debian"}) {
		t.Fatalf("after unset %v", got)
	}
	derivedMatchesFresh(t, s, "p", pool)
}

func qid(n int) string { return fmt.Sprintf("9a000000-0000-4000-8000-%012d", n) }

func TestQoSSpecsLifecycle(t *testing.T) {
	s := New()
	mustApply(t, s, CreateType{Type: VolumeType{ID: "t1", Name: "fast", CreatedAt: t0}})
	mustApply(t, s, CreateType{Type: VolumeType{ID: "t2", Name: "slow", CreatedAt: t0}})
	create := CreateQoSSpecs{Specs: QoSSpecs{ID: qid(1), Name: "gold", Specs: map[string]string{"total_iops_sec": "100"}, CreatedAt: t0}}
	mustApply(t, s, create)
	mustApply(t, s, create) // the same command retried
	q := s.QoSSpec(qid(1))
	if q.Consumer != QoSBackEnd || q.Specs["total_iops_sec"] != "100" || !q.UpdatedAt.Equal(t0) {
		t.Fatalf("created %+v", q)
	}
	if err := refusedUnchanged(t, s, CreateQoSSpecs{Specs: QoSSpecs{ID: qid(2), Name: "gold", CreatedAt: t0}}, KindConflict); err.Msg != "QoS Specs gold already exists." {
		t.Fatalf("dup message %q", err.Msg)
	}
	refusedUnchanged(t, s, CreateQoSSpecs{Specs: QoSSpecs{ID: qid(2), Name: "x", Consumer: "middle"}}, KindInvalid)
	refusedUnchanged(t, s, CreateQoSSpecs{Specs: QoSSpecs{ID: qid(2)}}, KindInvalid)
	mustApply(t, s, CreateQoSSpecs{Specs: QoSSpecs{ID: qid(2), Name: "silver", Consumer: QoSFrontEnd, CreatedAt: t0.Add(time.Second)}})
	if all := s.AllQoSSpecs(); len(all) != 2 || all[0].ID != qid(1) {
		t.Fatalf("all %v", all)
	}

	// Update merges keys and may change the consumer.
	mustApply(t, s, UpdateQoSSpecs{ID: qid(1), Consumer: QoSBoth, Specs: map[string]string{"read_iops_sec": "5"}, At: t0.Add(time.Hour)})
	q = s.QoSSpec(qid(1))
	if q.Consumer != QoSBoth || len(q.Specs) != 2 || !q.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("updated %+v", q)
	}
	refusedUnchanged(t, s, UpdateQoSSpecs{ID: qid(1), Consumer: "nobody"}, KindInvalid)
	refusedUnchanged(t, s, UpdateQoSSpecs{ID: qid(9)}, KindNotFound)

	// Delete keys: all must exist.
	refusedUnchanged(t, s, DeleteQoSSpecsKeys{ID: qid(1), Keys: []string{"read_iops_sec", "nope"}}, KindInvalid)
	refusedUnchanged(t, s, DeleteQoSSpecsKeys{ID: qid(9), Keys: []string{"a"}}, KindNotFound)
	mustApply(t, s, DeleteQoSSpecsKeys{ID: qid(1), Keys: []string{"read_iops_sec"}, At: t0})
	if _, ok := s.QoSSpec(qid(1)).Specs["read_iops_sec"]; ok {
		t.Fatal("key not deleted")
	}

	// Associations.
	mustApply(t, s, AssociateQoSSpecs{ID: qid(1), TypeID: "t1", At: t0})
	mustApply(t, s, AssociateQoSSpecs{ID: qid(1), TypeID: "t1", At: t0}) // again: nothing to do
	mustApply(t, s, AssociateQoSSpecs{ID: qid(1), TypeID: "t2", At: t0})
	if s.Type("t1").QoSSpecsID != qid(1) || len(s.QoSAssociations(qid(1))) != 2 {
		t.Fatalf("associations %v", s.QoSAssociations(qid(1)))
	}
	refusedUnchanged(t, s, AssociateQoSSpecs{ID: qid(2), TypeID: "t1"}, KindInvalid)
	refusedUnchanged(t, s, AssociateQoSSpecs{ID: qid(1), TypeID: "nope"}, KindNotFound)
	refusedUnchanged(t, s, AssociateQoSSpecs{ID: qid(9), TypeID: "t1"}, KindNotFound)
	refusedUnchanged(t, s, DisassociateQoSSpecs{ID: qid(9), TypeID: "t1"}, KindNotFound)
	refusedUnchanged(t, s, DisassociateQoSSpecs{ID: qid(1), TypeID: "nope"}, KindNotFound)
	refusedUnchanged(t, s, DisassociateAllQoSSpecs{ID: qid(9)}, KindNotFound)
	// Renaming a type keeps its association.
	name := "faster"
	mustApply(t, s, UpdateType{ID: "t1", Name: &name, At: t0})
	if s.Type("t1").QoSSpecsID != qid(1) {
		t.Fatal("rename lost the association")
	}
	mustApply(t, s, DisassociateQoSSpecs{ID: qid(1), TypeID: "t2", At: t0})
	mustApply(t, s, DisassociateQoSSpecs{ID: qid(2), TypeID: "t1", At: t0}) // not associated: nothing to do
	if s.Type("t2").QoSSpecsID != "" || s.Type("t1").QoSSpecsID != qid(1) {
		t.Fatal("disassociate")
	}
	// An associated spec is deleted only with force, which disassociates.
	if err := refusedUnchanged(t, s, DeleteQoSSpecs{ID: qid(1)}, KindInvalid); err.Msg != "Qos specs still in use." {
		t.Fatalf("in use message %q", err.Msg)
	}
	mustApply(t, s, DisassociateAllQoSSpecs{ID: qid(1), At: t0})
	if len(s.QoSAssociations(qid(1))) != 0 {
		t.Fatal("disassociate_all")
	}
	mustApply(t, s, AssociateQoSSpecs{ID: qid(1), TypeID: "t2", At: t0})
	mustApply(t, s, DeleteQoSSpecs{ID: qid(1), Force: true})
	if s.QoSSpec(qid(1)) != nil || s.Type("t2").QoSSpecsID != "" {
		t.Fatal("forced delete")
	}
	refusedUnchanged(t, s, DeleteQoSSpecs{ID: qid(1)}, KindNotFound)
	mustApply(t, s, DeleteQoSSpecs{ID: qid(2)})

	// QoS specs and associations survive a snapshot.
	mustApply(t, s, CreateQoSSpecs{Specs: QoSSpecs{ID: qid(3), Name: "bronze", Specs: map[string]string{"a": "b"}, CreatedAt: t0}})
	mustApply(t, s, AssociateQoSSpecs{ID: qid(3), TypeID: "t2", At: t0})
	f := NewFSM()
	if err := restore(f, persist(t, &FSM{State: s})); err != nil {
		t.Fatal(err)
	}
	if q := f.State.QoSSpec(qid(3)); q == nil || q.Specs["a"] != "b" || f.State.Type("t2").QoSSpecsID != qid(3) {
		t.Fatalf("restored %+v", q)
	}
}

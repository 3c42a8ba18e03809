package state

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

func aid(n int) string { return fmt.Sprintf("a7000000-0000-4000-8000-%012d", n) }

const inst1 = "11111111-1111-4111-8111-111111111111"

// attachFixture is volume 1 of project p on a pool in status status (with
// attach status attached for in-use and detaching), multiattach or not.
func attachFixture(t *testing.T, status string, multi bool) *State {
	t.Helper()
	s := New()
	pool := registerPool(t, s, "a1", true)
	v := newVolume(1, "p", 1)
	v.Multiattach = multi
	mustApply(t, s, CreateVolume{Volume: v})
	mustApply(t, s, ScheduleVolume{ID: vid(1), Pool: pool, TotalGB: 1000, FreeGB: 1000, At: t0})
	mustApply(t, s, VolumeCreated{ID: vid(1), Pool: pool, At: t0})
	nv := cloneVolume(s.d.Volumes[vid(1)])
	nv.Status = status
	if status == StatusInUse || status == StatusDetaching {
		nv.AttachStatus = AttachAttached
	}
	s.put(nv)
	return s
}

// attachFromStatuses are the volume statuses the attach table runs from.
var attachFromStatuses = []string{StatusAvailable, StatusInUse, StatusAttaching, StatusDetaching, StatusReserved,
	StatusMaintenance, StatusDownloading, StatusCreating, StatusDeleting, StatusError, StatusErrorExtend,
	StatusExtending, StatusReverting, "backing-up", "uploading", "retyping", "error_restoring"}

type attachCase struct {
	name string
	cmd  func(at time.Time) Command
	// want returns the resulting (status, attach status), or ok=false when
	// Cinder refuses the action from status (with kind); noop means the
	// action is accepted but changes nothing.
	want func(status string, multi bool) (st, as string, ok, noop bool, kind ErrorKind)
}

var conn = &storage.Connector{Host: "h1", Initiator: "iqn.x"}

var attachCases = []attachCase{
	{"os-reserve", func(at time.Time) Command { return ReserveVolume{ID: vid(1), ProjectID: "p", At: at} },
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if f == StatusAvailable || (m && f == StatusInUse) {
				return StatusAttaching, "", true, false, 0
			}
			return "", "", false, false, KindInvalid
		}},
	{"os-unreserve", func(at time.Time) Command { return UnreserveVolume{ID: vid(1), ProjectID: "p", At: at} },
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if f == StatusAttaching {
				return StatusAvailable, "", true, false, 0
			}
			return "", "", true, true, 0
		}},
	{"os-attach", func(at time.Time) Command {
		return AttachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(9), InstanceUUID: inst1, Mountpoint: "/dev/vdb", Mode: "rw", At: at}
	},
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if f == StatusInUse && !m {
				return "", "", false, false, KindInvalid
			}
			if slices.Contains([]string{StatusAvailable, StatusAttaching, StatusReserved, StatusInUse}, f) {
				return StatusInUse, AttachAttached, true, false, 0
			}
			return "", "", false, false, KindInvalid
		}},
	{"os-begin_detaching", func(at time.Time) Command { return BeginDetaching{ID: vid(1), ProjectID: "p", At: at} },
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if f == StatusInUse {
				return StatusDetaching, AttachAttached, true, false, 0
			}
			return "", "", false, false, KindInvalid
		}},
	{"os-roll_detaching", func(at time.Time) Command { return RollDetaching{ID: vid(1), ProjectID: "p", At: at} },
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if f == StatusDetaching {
				return StatusInUse, AttachAttached, true, false, 0
			}
			return "", "", true, true, 0
		}},
	{"os-detach", func(at time.Time) Command { return DetachVolume{ID: vid(1), ProjectID: "p", At: at} },
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if f == StatusMaintenance {
				return "", "", false, false, KindInvalid
			}
			if f == StatusAvailable {
				return "", "", true, true, 0
			}
			return StatusAvailable, AttachDetached, true, false, 0
		}},
	{"attachment create", func(at time.Time) Command {
		return CreateAttachment{Attachment: Attachment{ID: aid(9), VolumeID: vid(1), ProjectID: "p", InstanceUUID: inst1, CreatedAt: at}}
	},
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if strings.Contains(f, "error") {
				return "", "", false, false, KindInvalid
			}
			if f == StatusAvailable || f == StatusDownloading || (m && f == StatusInUse) {
				if f == StatusInUse {
					return StatusReserved, AttachAttached, true, false, 0
				}
				return StatusReserved, AttachReserved, true, false, 0
			}
			return "", "", false, false, KindInvalid
		}},
	{"attachment create with connector", func(at time.Time) Command {
		return CreateAttachment{Attachment: Attachment{ID: aid(9), VolumeID: vid(1), ProjectID: "p", InstanceUUID: inst1,
			Connector: conn, ConnectionInfo: `{"driver_volume_type":"local"}`, CreatedAt: at}}
	},
		func(f string, m bool) (string, string, bool, bool, ErrorKind) {
			if strings.Contains(f, "error") {
				return "", "", false, false, KindInvalid
			}
			if f == StatusAvailable || f == StatusDownloading || (m && f == StatusInUse) {
				// The fixture has no attachment records: the new attaching
				// one decides the statuses.
				return StatusAttaching, AttachAttaching, true, false, 0
			}
			return "", "", false, false, KindInvalid
		}},
}

// TestAttachActionsFromEveryStatus is the status-machine table of the
// attach actions: every action from every relevant status, multiattach or
// not; refusals carry Cinder's error kind and change nothing.
func TestAttachActionsFromEveryStatus(t *testing.T) {
	n := 0
	for _, tc := range attachCases {
		for _, multi := range []bool{false, true} {
			for _, f := range attachFromStatuses {
				n++
				t.Run(fmt.Sprintf("%s/multi=%v/%s", tc.name, multi, f), func(t *testing.T) {
					s := attachFixture(t, f, multi)
					at := t0.Add(time.Hour)
					wantSt, wantAs, ok, noop, kind := tc.want(f, multi)
					if !ok {
						refusedUnchanged(t, s, tc.cmd(at), kind)
						return
					}
					before := persist(t, &FSM{State: s})
					mustApply(t, s, tc.cmd(at))
					if noop {
						if !bytes.Equal(before, persist(t, &FSM{State: s})) {
							t.Fatal("a no-op changed the state")
						}
						return
					}
					v := s.Volume(vid(1))
					if v.Status != wantSt || (wantAs != "" && v.AttachStatus != wantAs) {
						t.Fatalf("status %s/%s, want %s/%s", v.Status, v.AttachStatus, wantSt, wantAs)
					}
					if !v.UpdatedAt.Equal(at) {
						t.Fatalf("updated_at %v", v.UpdatedAt)
					}
				})
			}
		}
	}
	t.Logf("%d attach status-machine cases", n)
}

func TestStatusesFromAttachments(t *testing.T) {
	mk := func(ss ...string) []*Attachment {
		var out []*Attachment
		for _, s := range ss {
			out = append(out, &Attachment{AttachStatus: s})
		}
		return out
	}
	for _, tc := range []struct {
		in         []string
		st, attach string
	}{
		{nil, StatusAvailable, AttachDetached},
		{[]string{AttachReserved}, StatusReserved, AttachReserved},
		{[]string{AttachReserved, AttachAttaching}, StatusAttaching, AttachAttaching},
		{[]string{AttachReserved, AttachDetaching}, StatusDetaching, AttachDetaching},
		{[]string{AttachDetaching, AttachAttached, AttachReserved}, StatusInUse, AttachAttached},
		{[]string{AttachErrorAttaching}, StatusAvailable, AttachDetached},
		{[]string{AttachErrorAttaching, AttachReserved}, StatusReserved, AttachReserved},
		{[]string{AttachErrorDetaching, AttachAttaching}, StatusAttaching, AttachAttaching},
	} {
		st, as := StatusesFromAttachments(mk(tc.in...))
		if st != tc.st || as != tc.attach {
			t.Errorf("%v: %s/%s, want %s/%s", tc.in, st, as, tc.st, tc.attach)
		}
	}
}

// TestMultiattachRecomputation drives several attachments of a multiattach
// volume and checks the statuses after each step.
func TestMultiattachRecomputation(t *testing.T) {
	s := attachFixture(t, StatusAvailable, true)
	want := func(st, as string) {
		t.Helper()
		v := s.Volume(vid(1))
		if v.Status != st || v.AttachStatus != as {
			t.Fatalf("volume %s/%s, want %s/%s", v.Status, v.AttachStatus, st, as)
		}
	}
	create := func(n int, c *storage.Connector) {
		t.Helper()
		mustApply(t, s, CreateAttachment{Attachment: Attachment{ID: aid(n), VolumeID: vid(1), ProjectID: "p",
			InstanceUUID: fmt.Sprintf("22222222-2222-4222-8222-%012d", n), Connector: c, CreatedAt: t0.Add(time.Duration(n) * time.Minute)}})
	}
	create(1, nil)
	want(StatusReserved, AttachReserved)
	if a := s.Attachment(aid(1)); a.AttachStatus != AttachReserved || a.AttachMode != AttachModeNull {
		t.Fatalf("attachment 1: %+v", a)
	}
	mustApply(t, s, UpdateAttachment{ID: aid(1), ProjectID: "p", Connector: *conn, ConnectionInfo: "{}", At: t0.Add(time.Hour)})
	want(StatusAttaching, AttachAttaching)
	if a := s.Attachment(aid(1)); a.AttachMode != AttachModeRW || a.Connector.Host != "h1" {
		t.Fatalf("attachment 1 after update: %+v", a)
	}
	mustApply(t, s, CompleteAttachment{ID: aid(1), ProjectID: "p", At: t0.Add(2 * time.Hour)})
	want(StatusInUse, AttachAttached)
	if a := s.Attachment(aid(1)); !a.AttachedAt.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("attached_at %v", a.AttachedAt)
	}
	// A second attachment of the in-use multiattach volume reserves it.
	create(2, nil)
	want(StatusReserved, AttachAttached)
	mustApply(t, s, UpdateAttachment{ID: aid(2), ProjectID: "p", Connector: *conn, At: t0.Add(3 * time.Hour)})
	want(StatusInUse, AttachAttached)
	create(3, conn)
	want(StatusInUse, AttachAttached)
	mustApply(t, s, CompleteAttachment{ID: aid(2), ProjectID: "p", At: t0.Add(4 * time.Hour)})
	// Deleting the first attached one leaves another attached.
	mustApply(t, s, DeleteAttachment{ID: aid(1), ProjectID: "p", At: t0.Add(5 * time.Hour)})
	want(StatusInUse, AttachAttached)
	mustApply(t, s, DeleteAttachment{ID: aid(2), ProjectID: "p", At: t0.Add(6 * time.Hour)})
	want(StatusAttaching, AttachAttaching)
	// Legacy os-attach on top, then os-detach of a named attachment.
	mustApply(t, s, AttachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(4), HostName: "h2", Mountpoint: "/dev/vdc", At: t0.Add(7 * time.Hour)})
	want(StatusInUse, AttachAttached)
	refusedUnchanged(t, s, DetachVolume{ID: vid(1), ProjectID: "p", At: t0}, KindInvalid) // several: needs an ID
	refusedUnchanged(t, s, DetachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(77), At: t0}, KindNotFound)
	mustApply(t, s, DetachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(4), At: t0.Add(8 * time.Hour)})
	want(StatusAttaching, AttachAttaching)
	mustApply(t, s, DeleteAttachment{ID: aid(3), ProjectID: "p", At: t0.Add(9 * time.Hour)})
	want(StatusAvailable, AttachDetached)
	if n := len(s.Attachments(AttachmentFilter{})); n != 0 {
		t.Fatalf("%d attachments left", n)
	}
}

func TestAttachmentRules(t *testing.T) {
	s := attachFixture(t, StatusAvailable, false)
	a := Attachment{ID: aid(1), VolumeID: vid(1), ProjectID: "p", InstanceUUID: inst1, CreatedAt: t0}
	// Other projects see neither the volume nor the attachment.
	other := a
	other.ProjectID = "q"
	refusedUnchanged(t, s, CreateAttachment{Attachment: other}, KindNotFound)
	bad := a
	bad.AttachMode = "rx"
	refusedUnchanged(t, s, CreateAttachment{Attachment: bad}, KindInvalid)
	mustApply(t, s, CreateAttachment{Attachment: a})
	mustApply(t, s, CreateAttachment{Attachment: a}) // retried: no change
	dup := a
	dup.CreatedAt = t0.Add(time.Second)
	refusedUnchanged(t, s, CreateAttachment{Attachment: dup}, KindConflict)
	// A second attachment of a reserved non-multiattach volume is refused,
	// unless for the same instance (a move).
	second := Attachment{ID: aid(2), VolumeID: vid(1), ProjectID: "p", InstanceUUID: "33333333-3333-4333-8333-333333333333", CreatedAt: t0}
	if err := refusedUnchanged(t, s, CreateAttachment{Attachment: second}, KindInvalid); !strings.Contains(err.Msg, "status must be available or downloading") {
		t.Fatalf("message %q", err.Msg)
	}
	same := second
	same.InstanceUUID = inst1
	mustApply(t, s, CreateAttachment{Attachment: same})
	mustApply(t, s, DeleteAttachment{ID: aid(2), ProjectID: "p", At: t0})
	refusedUnchanged(t, s, UpdateAttachment{ID: aid(1), ProjectID: "q", Connector: *conn, At: t0}, KindNotFound)
	refusedUnchanged(t, s, CompleteAttachment{ID: aid(5), ProjectID: "p", At: t0}, KindNotFound)
	refusedUnchanged(t, s, DeleteAttachment{ID: aid(1), ProjectID: "q", At: t0}, KindNotFound)
	// Update of an attachment whose volume is in error: 409.
	setVolumeStatus(s, vid(1), StatusError)
	refusedUnchanged(t, s, UpdateAttachment{ID: aid(1), ProjectID: "p", Connector: *conn, At: t0}, KindConflict)
	setVolumeStatus(s, vid(1), StatusReserved)
	// A read-only volume resolves the null mode to ro.
	ro := cloneVolume(s.d.Volumes[vid(1)])
	ro.ReadOnly = true
	s.put(ro)
	mustApply(t, s, UpdateAttachment{ID: aid(1), ProjectID: "p", Connector: *conn, At: t0})
	if m := s.Attachment(aid(1)).AttachMode; m != AttachModeRO {
		t.Fatalf("mode %s", m)
	}
	// os-attach of a read-only volume must be ro.
	refusedUnchanged(t, s, AttachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(3), HostName: "h", Mode: "rw", At: t0}, KindInvalid)
	refusedUnchanged(t, s, AttachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(3), Mode: "ro", At: t0}, KindInvalid)
	mustApply(t, s, CompleteAttachment{ID: aid(1), ProjectID: "p", At: t0})
	mustApply(t, s, CompleteAttachment{ID: aid(1), ProjectID: "p", At: t0.Add(time.Hour)}) // already attached
	if v := s.Volume(vid(1)); v.Status != StatusInUse || v.AttachStatus != AttachAttached {
		t.Fatalf("volume %s/%s", v.Status, v.AttachStatus)
	}
}

func TestAttachedVolumeDeleteAndReset(t *testing.T) {
	s := attachFixture(t, StatusAvailable, false)
	// No attachments: reset to in-use refused.
	refusedUnchanged(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusInUse, At: t0}, KindInvalid)
	mustApply(t, s, AttachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(1), InstanceUUID: inst1, Mountpoint: "/dev/vdb", At: t0})
	// An attached volume cannot be deleted, not even with force.
	refusedUnchanged(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", At: t0}, KindInvalid)
	refusedUnchanged(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", Force: true, At: t0}, KindInvalid)
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusAvailable, At: t0})
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusInUse, At: t0})
	if len(s.VolumeAttachments(vid(1))) != 1 {
		t.Fatal("attachment lost")
	}
	// attach_status detached clears the attachments.
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusAvailable, AttachStatus: AttachDetached, At: t0})
	if n := len(s.VolumeAttachments(vid(1))); n != 0 {
		t.Fatalf("%d attachments after reset to detached", n)
	}
	// Removing a volume removes its (reserved) attachments.
	mustApply(t, s, CreateAttachment{Attachment: Attachment{ID: aid(2), VolumeID: vid(1), ProjectID: "p", CreatedAt: t0}})
	mustApply(t, s, ResetVolumeStatus{ID: vid(1), ProjectID: "p", Status: StatusAvailable, At: t0})
	mustApply(t, s, DeleteVolume{ID: vid(1), ProjectID: "p", At: t0})
	mustApply(t, s, VolumeDeleted{ID: vid(1), At: t0})
	if s.Attachment(aid(2)) != nil {
		t.Fatal("attachment of a deleted volume kept")
	}
}

func TestAttachmentsSurviveSnapshot(t *testing.T) {
	f := NewFSM()
	s := f.State
	pool := registerPool(t, s, "a1", true)
	availableVolume(t, s, 1, "p", pool, 1)
	mustApply(t, s, CreateAttachment{Attachment: Attachment{ID: aid(1), VolumeID: vid(1), ProjectID: "p", InstanceUUID: inst1,
		Connector: conn, ConnectionInfo: `{"a":1}`, CreatedAt: t0}})
	b := persist(t, f)
	g := NewFSM()
	if err := restore(g, b); err != nil {
		t.Fatal(err)
	}
	if a := g.State.Attachment(aid(1)); a == nil || a.Connector.Initiator != "iqn.x" || a.ConnectionInfo != `{"a":1}` {
		t.Fatalf("restored %+v", a)
	}
	if dump(t, f) != dump(t, g) {
		t.Fatal("restored state differs")
	}
}

// TestForceDetach is os-force_detach: a named attachment, or every one,
// goes whatever the volume's status; the statuses are recomputed from the
// attachments left. Refusals change nothing.
func TestForceDetach(t *testing.T) {
	at := t0.Add(time.Hour)
	for _, status := range []string{StatusAttaching, StatusInUse, StatusDetaching, StatusError, StatusMaintenance} {
		t.Run(status, func(t *testing.T) {
			s := attachFixture(t, StatusAvailable, true)
			mustApply(t, s, AttachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(1), InstanceUUID: inst1, Mountpoint: "/dev/vdb", At: t0})
			mustApply(t, s, CreateAttachment{Attachment: Attachment{ID: aid(2), VolumeID: vid(1), ProjectID: "p",
				InstanceUUID: "22222222-2222-4222-8222-222222222222", Connector: conn, CreatedAt: t0.Add(time.Minute)}})
			setVolumeStatus(s, vid(1), status)
			refusedUnchanged(t, s, ForceDetachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(77), At: at}, KindNotFound)
			refusedUnchanged(t, s, ForceDetachVolume{ID: vid(1), ProjectID: "q", AttachmentID: aid(1), At: at}, KindNotFound)
			refusedUnchanged(t, s, ForceDetachVolume{ID: vid(2), ProjectID: "p", At: at}, KindNotFound)
			// Detaching the attached one leaves the attaching one.
			mustApply(t, s, ForceDetachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(1), At: at})
			v := s.Volume(vid(1))
			if v.Status != StatusAttaching || v.AttachStatus != AttachAttaching || !v.UpdatedAt.Equal(at) {
				t.Fatalf("after one: %s/%s %v", v.Status, v.AttachStatus, v.UpdatedAt)
			}
			if s.Attachment(aid(1)) != nil || s.Attachment(aid(2)) == nil {
				t.Fatal("wrong attachment removed")
			}
			mustApply(t, s, AttachVolume{ID: vid(1), ProjectID: "p", AttachmentID: aid(3), HostName: "h", Mountpoint: "/dev/vdc", At: t0})
			setVolumeStatus(s, vid(1), status)
			// Without an ID every attachment goes.
			mustApply(t, s, ForceDetachVolume{ID: vid(1), ProjectID: "p", At: at})
			if v := s.Volume(vid(1)); v.Status != StatusAvailable || v.AttachStatus != AttachDetached {
				t.Fatalf("after all: %s/%s", v.Status, v.AttachStatus)
			}
			if n := len(s.VolumeAttachments(vid(1))); n != 0 {
				t.Fatalf("%d attachments left", n)
			}
			// Again with nothing attached: still available.
			mustApply(t, s, ForceDetachVolume{ID: vid(1), ProjectID: "p", At: at.Add(time.Hour)})
			if v := s.Volume(vid(1)); v.Status != StatusAvailable || v.AttachStatus != AttachDetached {
				t.Fatalf("after none: %s/%s", v.Status, v.AttachStatus)
			}
		})
	}
}

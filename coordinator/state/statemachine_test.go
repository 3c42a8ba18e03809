package state

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// snapshotBytes is the state's own serialization, to prove a refusal
// changed nothing.
func snapshotBytes(t *testing.T, s *State) []byte {
	t.Helper()
	f := &FSM{State: s}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestDeleteAndRevertFromEveryStatus is the status-machine table for DELETE
// (plain, force) and revert: from every Cinder volume status, allowed or
// refused with Cinder's rule, and a refusal changes nothing.
func TestDeleteAndRevertFromEveryStatus(t *testing.T) {
	deletable := []string{StatusAvailable, StatusError, "error_restoring", StatusErrorExtend, "error_managing"}
	for _, status := range VolumeStatuses {
		for _, tc := range []struct {
			action string
			cmd    func() Command
			ok     func() bool
		}{
			{"delete", func() Command { return DeleteVolume{ID: vid(1), ProjectID: "p", At: t0} },
				func() bool { return slices.Contains(deletable, status) || status == StatusDeleting }},
			{"force-delete", func() Command { return DeleteVolume{ID: vid(1), ProjectID: "p", Force: true, At: t0} },
				func() bool { return true }},
			{"revert", func() Command { return RevertVolume{ID: vid(1), ProjectID: "p", SnapshotID: sid(1), At: t0} },
				func() bool { return status == StatusAvailable }},
		} {
			t.Run(fmt.Sprintf("%s/%s", tc.action, status), func(t *testing.T) {
				s := New()
				pool := registerPool(t, s, "a1", true)
				availableVolume(t, s, 1, "p", pool, 1)
				if tc.action == "revert" {
					mustApply(t, s, CreateSnapshot{Snapshot: newSnap(1, 1, "p")})
					mustApply(t, s, SnapshotCreated{ID: sid(1)})
				}
				setVolumeStatus(s, vid(1), status)
				before := snapshotBytes(t, s)
				err := apply(t, s, tc.cmd())
				if want := tc.ok(); want != (err == nil) {
					t.Fatalf("allowed=%v, err=%v", want, err)
				}
				if err != nil {
					if err.Kind != KindInvalid {
						t.Fatalf("refusal kind %v: %v", err.Kind, err)
					}
					if !bytes.Equal(before, snapshotBytes(t, s)) {
						t.Fatal("a refused command changed the state")
					}
				}
			})
		}
	}
}

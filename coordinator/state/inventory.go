package state

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Inventory commands: the leader compares what a pool holds (the agent's
// lists) with what Raft places there. Objects Raft expects but the pool
// lacks are marked error (MarkMissing); objects the pool holds that Raft
// does not place there are recorded on the pool record as orphans
// (SetPoolOrphans) and never deleted.

// MaxOrphanIDs bounds the orphan IDs kept per kind on a pool record; the
// counts go on past it.
const MaxOrphanIDs = 100

// maxMissingIDs bounds the IDs of one MarkMissing command (the leader sends
// more in several), so a pool that lost everything does not make one huge
// log entry.
const maxMissingIDs = 1000

// PoolOrphans are the objects a pool holds that Raft does not place there,
// as the leader's last inventory of the pool found them. Kiln never deletes
// them: an operator decides (see docs/operations.md).
type PoolOrphans struct {
	// Volumes is how many volumes are orphans; VolumeIDs lists up to
	// MaxOrphanIDs of them, sorted.
	Volumes   int      `json:"volumes"`
	VolumeIDs []string `json:"volume_ids,omitempty"`
	// Snapshots and SnapshotIDs are the same for snapshots.
	Snapshots   int      `json:"snapshots"`
	SnapshotIDs []string `json:"snapshot_ids,omitempty"`
	// At is when the inventory that found this set ran.
	At time.Time `json:"at"`
}

// MarkMissing marks volumes and snapshots placed on Pool that the pool's
// agent reported absent: status error, with the reason. Apply re-checks
// every record and skips one that is not (or no longer) a settled object
// on Pool last changed before ListedAt (see Checkable), so an object whose
// state moved on since the list was taken is never marked.
type MarkMissing struct {
	Pool        string   `json:"pool"`
	VolumeIDs   []string `json:"volume_ids,omitempty"`
	SnapshotIDs []string `json:"snapshot_ids,omitempty"`
	// ListedAt is when the leader asked the agent for its lists.
	ListedAt time.Time `json:"listed_at"`
	At       time.Time `json:"at"`
}

// SetPoolOrphans records the orphans an inventory of Pool found; zero
// counts clear them. Apply drops listed IDs that Raft places on Pool by
// then (an object created meanwhile is not an orphan).
type SetPoolOrphans struct {
	Pool        string    `json:"pool"`
	Volumes     int       `json:"volumes"`
	VolumeIDs   []string  `json:"volume_ids,omitempty"`
	Snapshots   int       `json:"snapshots"`
	SnapshotIDs []string  `json:"snapshot_ids,omitempty"`
	At          time.Time `json:"at"`
}

// CommandType of MarkMissing is not ignorable: a coordinator that skipped
// it would show the volumes with another status than its peers.
func (MarkMissing) CommandType() CommandType { return CmdMarkMissing }

// CommandType of SetPoolOrphans carries IgnorableFlag: it only informs
// operators, so a coordinator from before it (during a rolling upgrade)
// skips it instead of stopping.
func (SetPoolOrphans) CommandType() CommandType { return CmdSetPoolOrphans | IgnorableFlag }

// checkedCommand is a command that can refuse bad input before Apply sees
// it (in Validate, for entries forwarded to the leader) and again in Apply.
type checkedCommand interface {
	check() *Error
}

// regChecked builds a registry entry whose validator also runs the
// command's check.
func regChecked[C any, PC interface {
	*C
	checkedCommand
}](fn func(s *State, c PC) *Error) entry {
	return entry{
		apply: decode(func(s *State, c *C) *Error {
			if err := PC(c).check(); err != nil {
				return err
			}
			return fn(s, c)
		}),
		validate: func(body []byte) error {
			var c C
			if err := json.Unmarshal(body, &c); err != nil {
				return fmt.Errorf("decode %T: %w", c, err)
			}
			if err := PC(&c).check(); err != nil {
				return err
			}
			return nil
		},
	}
}

// checkIDs refuses anything but distinct canonical UUIDs.
func checkIDs(what string, ids []string) *Error {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if storage.ValidateID(id) != nil {
			return errorf(KindInvalid, "%s: %q is not a canonical lowercase UUID", what, id)
		}
		if seen[id] {
			return errorf(KindInvalid, "%s: %s is listed twice", what, id)
		}
		seen[id] = true
	}
	return nil
}

func (c *MarkMissing) check() *Error {
	switch {
	case c.Pool == "":
		return errorf(KindInvalid, "mark missing: no pool")
	case c.ListedAt.IsZero() || c.At.IsZero():
		return errorf(KindInvalid, "mark missing: listed_at and at are required")
	case c.At.Before(c.ListedAt):
		return errorf(KindInvalid, "mark missing: at %s is before listed_at %s", c.At, c.ListedAt)
	case len(c.VolumeIDs)+len(c.SnapshotIDs) == 0:
		return errorf(KindInvalid, "mark missing: no IDs")
	case len(c.VolumeIDs)+len(c.SnapshotIDs) > maxMissingIDs:
		return errorf(KindInvalid, "mark missing: %d IDs, at most %d per command", len(c.VolumeIDs)+len(c.SnapshotIDs), maxMissingIDs)
	}
	if err := checkIDs("mark missing: volume", c.VolumeIDs); err != nil {
		return err
	}
	return checkIDs("mark missing: snapshot", c.SnapshotIDs)
}

func (c *SetPoolOrphans) check() *Error {
	switch {
	case c.Pool == "":
		return errorf(KindInvalid, "set pool orphans: no pool")
	case c.At.IsZero():
		return errorf(KindInvalid, "set pool orphans: at is required")
	case len(c.VolumeIDs) > MaxOrphanIDs || len(c.SnapshotIDs) > MaxOrphanIDs:
		return errorf(KindInvalid, "set pool orphans: at most %d IDs per kind", MaxOrphanIDs)
	case c.Volumes < len(c.VolumeIDs) || c.Snapshots < len(c.SnapshotIDs):
		return errorf(KindInvalid, "set pool orphans: a count is below the number of IDs listed")
	case !slices.IsSorted(c.VolumeIDs) || !slices.IsSorted(c.SnapshotIDs):
		return errorf(KindInvalid, "set pool orphans: IDs must be sorted")
	}
	if err := checkIDs("set pool orphans: volume", c.VolumeIDs); err != nil {
		return err
	}
	return checkIDs("set pool orphans: snapshot", c.SnapshotIDs)
}

// inventoryStatuses are the volume statuses in which a volume's data must
// exist on its pool and no task of the leader is changing it. Transitional
// statuses (creating, deleting, extending, reverting) have agent calls in
// flight; error statuses may legitimately have no data; attach states and
// maintenance are left to the client or operator that started them.
var inventoryStatuses = []string{StatusAvailable, StatusInUse}

// CheckableVolume reports whether an inventory of pool listed at listedAt
// may call v missing when the list lacks it: v is placed on pool, settled
// (available or in-use), and last changed before the list was asked for.
// The leader and MarkMissing's Apply use the same rule.
func CheckableVolume(v *Volume, pool string, listedAt time.Time) bool {
	return v.Pool == pool && slices.Contains(inventoryStatuses, v.Status) && v.UpdatedAt.Before(listedAt)
}

// CheckableSnapshot is CheckableVolume for snapshots (status available).
func CheckableSnapshot(sn *Snapshot, pool string, listedAt time.Time) bool {
	return sn.Pool == pool && sn.Status == SnapAvailable && sn.UpdatedAt.Before(listedAt)
}

// MissingReason is the error message of an object an inventory found
// missing; kind is "volume" or "snapshot" (the driver's object names).
func MissingReason(kind, id, pool string, listedAt time.Time) string {
	return fmt.Sprintf("%s-%s is missing on pool %s: the agent reported it absent at %s",
		kind, id, pool, listedAt.UTC().Format(time.RFC3339))
}

func (s *State) applyMarkMissing(c *MarkMissing) *Error {
	if s.d.Pools[c.Pool] == nil {
		return errorf(KindNotFound, "pool %s is not registered", c.Pool)
	}
	for _, id := range c.VolumeIDs {
		v := s.d.Volumes[id]
		if v == nil || !CheckableVolume(v, c.Pool, c.ListedAt) {
			continue // gone or changed since the list: not this command's to judge
		}
		nv := cloneVolume(v)
		nv.Status = StatusError
		nv.ErrorMessage = MissingReason("volume", id, c.Pool, c.ListedAt)
		touch(nv, c.At)
		s.put(nv)
	}
	for _, id := range c.SnapshotIDs {
		sn := s.d.Snapshots[id]
		if sn == nil || !CheckableSnapshot(sn, c.Pool, c.ListedAt) {
			continue
		}
		n := cloneSnap(sn)
		n.Status = SnapError
		n.ErrorMessage = MissingReason("snapshot", id, c.Pool, c.ListedAt)
		n.UpdatedAt = c.At
		s.putSnap(n)
	}
	return nil
}

func (s *State) applySetPoolOrphans(c *SetPoolOrphans) *Error {
	p := s.d.Pools[c.Pool]
	if p == nil {
		return errorf(KindNotFound, "pool %s is not registered", c.Pool)
	}
	o := PoolOrphans{Volumes: c.Volumes, Snapshots: c.Snapshots, At: c.At}
	for _, id := range c.VolumeIDs {
		if v := s.d.Volumes[id]; v != nil && v.Pool == c.Pool {
			o.Volumes--
			continue
		}
		o.VolumeIDs = append(o.VolumeIDs, id)
	}
	for _, id := range c.SnapshotIDs {
		if sn := s.d.Snapshots[id]; sn != nil && sn.Pool == c.Pool {
			o.Snapshots--
			continue
		}
		o.SnapshotIDs = append(o.SnapshotIDs, id)
	}
	np := *p
	np.Orphans = nil
	if o.Volumes > 0 || o.Snapshots > 0 {
		np.Orphans = &o
	}
	s.d.Pools[c.Pool] = &np
	return nil
}

// SameOrphans reports whether a pool's recorded orphans are those given
// (nil and zero counts are the same), so the leader proposes only changes.
func SameOrphans(o *PoolOrphans, volumes int, volumeIDs []string, snapshots int, snapshotIDs []string) bool {
	if o == nil {
		return volumes == 0 && snapshots == 0
	}
	return o.Volumes == volumes && o.Snapshots == snapshots &&
		slices.Equal(o.VolumeIDs, volumeIDs) && slices.Equal(o.SnapshotIDs, snapshotIDs)
}

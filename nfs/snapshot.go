package nfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kilnstore/kiln/internal/storage"
)

// metaVersion is the format of the snapshot sidecar.
const (
	metaVersion  = 1
	maxMetaBytes = 4096
)

// snapshotMeta is the sidecar snapshot-<id>.meta: which volume the snapshot
// was taken of. The snapshot's size is its data file's size.
type snapshotMeta struct {
	Version    int    `json:"version"`
	SnapshotID string `json:"snapshot_id"`
	VolumeID   string `json:"volume_id"`
}

// CreateSnapshot copies volume volumeID into snapshot snapshotID: a file
// snapshot-<snapshotID> holding the volume's data at its current size,
// copied sparsely (only data extents are read, all-zero blocks stay holes),
// with the sidecar snapshot-<snapshotID>.meta recording volumeID. If the
// snapshot exists as a snapshot of volumeID it is returned as is; as a
// snapshot of another volume (or with a sidecar that cannot be read) the
// error wraps storage.ErrExists. A missing volume wraps storage.ErrNotFound.
// In a thick pool the snapshot's full size is accounted and reserved like a
// volume's (storage.ErrNoSpace when it does not fit). The copy is as
// consistent as the volume is while it runs: the caller quiesces an
// attached volume, as Cinder's force snapshot of an in-use volume assumes.
func (d *Driver) CreateSnapshot(ctx context.Context, snapshotID, volumeID string) (storage.Snapshot, error) {
	if err := storage.ValidateID(snapshotID); err != nil {
		return storage.Snapshot{}, fmt.Errorf("nfs: create snapshot: %w", err)
	}
	if err := storage.ValidateID(volumeID); err != nil {
		return storage.Snapshot{}, fmt.Errorf("nfs: create snapshot %s: volume: %w", snapshotID, err)
	}
	fail := func(err error) (storage.Snapshot, error) {
		return storage.Snapshot{}, fmt.Errorf("nfs: create snapshot %s of volume %s in pool %q: %w", snapshotID, volumeID, d.cfg.Name, err)
	}
	unlock, err := d.lockIDs(ctx, snapKey(snapshotID), volKey(volumeID))
	if err != nil {
		return fail(err)
	}
	defer unlock()

	if d.chain {
		snap, err := d.chainSnapshot(ctx, snapshotID, volumeID)
		if err != nil {
			return fail(err)
		}
		return snap, nil
	}
	path := d.snapPath(snapshotID)
	snap := storage.Snapshot{ID: snapshotID, VolumeID: volumeID, Location: path}
	size, found, err := d.existingSnapshot(snapshotID, volumeID)
	if err != nil {
		return fail(err)
	}
	if found {
		// As for volumes: the rename may not have been made durable yet.
		if err := syncDir(d.cfg.Dir); err != nil {
			return fail(err)
		}
		snap.SizeBytes = size
		return snap, nil
	}

	src, fi, err := openRegular(d.path(volumeID))
	if errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("volume %s does not exist: %w", volumeID, storage.ErrNotFound))
	}
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	size = fi.Size()
	res, err := d.reserve(ctx, size)
	if err != nil {
		return fail(err)
	}
	defer res.release()

	// The sidecar goes first, so a snapshot file never exists without it.
	if err := d.writeMeta(ctx, snapshotID, volumeID); err != nil {
		return fail(err)
	}
	err = d.buildFile(ctx, snapshotPrefix, snapshotID, path, size, res, func(f *os.File) error {
		return copySparse(ctx, f, src, size)
	})
	if err != nil {
		// Without its snapshot the sidecar means nothing; Cleanup would
		// remove it too.
		if rerr := os.Remove(d.metaPath(snapshotID)); rerr == nil {
			_ = syncDir(d.cfg.Dir)
		}
		return fail(err)
	}
	snap.SizeBytes = size
	return snap, nil
}

// existingSnapshot reports whether snapshot id exists as a snapshot of
// volumeID, and its size. Anything else at its path is a conflict.
func (d *Driver) existingSnapshot(id, volumeID string) (int64, bool, error) {
	path := d.snapPath(id)
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	case !fi.Mode().IsRegular():
		return 0, false, fmt.Errorf("%s exists and is not a regular file (mode %s): %w", path, fi.Mode(), storage.ErrExists)
	}
	m, err := d.readMeta(id)
	if err != nil {
		return 0, false, fmt.Errorf("%s exists but the volume it was taken of cannot be confirmed (%w): %w", path, err, storage.ErrExists)
	}
	if m.VolumeID != volumeID {
		return 0, false, fmt.Errorf("%s exists as a snapshot of volume %s: %w", path, m.VolumeID, storage.ErrExists)
	}
	return fi.Size(), true, nil
}

// writeMeta writes the sidecar of snapshot id atomically, replacing one a
// failed attempt may have left.
func (d *Driver) writeMeta(ctx context.Context, id, volumeID string) error {
	b, err := json.Marshal(snapshotMeta{Version: metaVersion, SnapshotID: id, VolumeID: volumeID})
	if err != nil {
		return fmt.Errorf("encode snapshot metadata: %w", err)
	}
	b = append(b, '\n')
	return d.buildFile(ctx, snapshotPrefix, id, d.metaPath(id), int64(len(b)), nil, func(f *os.File) error {
		_, err := f.WriteAt(b, 0)
		return noSpace(err)
	})
}

// readMeta reads and checks the sidecar of snapshot id. A missing sidecar
// wraps fs.ErrNotExist.
func (d *Driver) readMeta(id string) (snapshotMeta, error) {
	path := d.metaPath(id)
	var m snapshotMeta
	if err := readJSON(path, maxMetaBytes, &m); err != nil {
		return snapshotMeta{}, err
	}
	switch {
	case m.Version != metaVersion:
		return snapshotMeta{}, fmt.Errorf("%s: format version %d, want %d", path, m.Version, metaVersion)
	case m.SnapshotID != id:
		return snapshotMeta{}, fmt.Errorf("%s names snapshot %q", path, m.SnapshotID)
	}
	if err := storage.ValidateID(m.VolumeID); err != nil {
		return snapshotMeta{}, fmt.Errorf("%s: volume: %w", path, err)
	}
	return m, nil
}

// removeOrphanMeta removes the sidecar of snapshot id if the snapshot file
// does not exist. The caller holds the snapshot's lock.
func (d *Driver) removeOrphanMeta(id string) (int, error) {
	if _, err := os.Lstat(d.snapPath(id)); !errors.Is(err, fs.ErrNotExist) {
		return 0, err // exists (nil) or cannot tell
	}
	err := os.Remove(d.metaPath(id))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil
	case err != nil:
		return 0, err
	}
	return 1, nil
}

// DeleteSnapshot removes snapshot id, its sidecar and any temp files a
// crashed create left for it. A missing snapshot is not an error. Volumes
// created from the snapshot are independent copies and are not affected.
func (d *Driver) DeleteSnapshot(ctx context.Context, id string) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("nfs: delete snapshot: %w", err)
	}
	fail := func(err error) error {
		return fmt.Errorf("nfs: delete snapshot %s in pool %q: %w", id, d.cfg.Name, err)
	}
	if err := d.ready(ctx); err != nil {
		return fail(err) // never "gone" because the share is not mounted
	}
	if d.chain {
		vol, err := d.snapshotVolume(id)
		if err != nil {
			return fail(err)
		}
		if vol == "" {
			return nil // no chain has it: gone already
		}
		unlock, err := d.lockIDs(ctx, snapKey(id), volKey(vol))
		if err != nil {
			return fail(err)
		}
		defer unlock()
		if err := d.chainDeleteSnapshot(ctx, id, vol); err != nil {
			return fail(err)
		}
		return nil
	}
	unlock, err := d.lockIDs(ctx, snapKey(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()

	// The data file goes first and durably, so a crash in between leaves a
	// sidecar without a snapshot (which means nothing), never a snapshot
	// without its sidecar.
	for _, path := range []string{d.snapPath(id), d.metaPath(id)} {
		removed, err := removeIfRegular(path)
		if err != nil {
			return fail(err)
		}
		if !removed {
			continue
		}
		if err := syncDir(d.cfg.Dir); err != nil {
			return fail(err)
		}
	}
	n, err := d.removeTemps(snapshotPrefix, id)
	if err != nil {
		return fail(err)
	}
	if n > 0 {
		if err := syncDir(d.cfg.Dir); err != nil {
			return fail(err)
		}
	}
	return nil
}

// ListSnapshots reports the snapshots in the pool, sorted by ID: the
// regular files named snapshot-<canonical uuid>, with the volume each was
// taken of read from its sidecar. A snapshot whose sidecar cannot be read is
// listed with an empty VolumeID, so that a reconcile sees it.
func (d *Driver) ListSnapshots(ctx context.Context) ([]storage.Snapshot, error) {
	if err := d.ready(ctx); err != nil {
		return nil, fmt.Errorf("nfs: list snapshots of pool %q: %w", d.cfg.Name, err)
	}
	h, err := d.scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("nfs: list snapshots of pool %q: %w", d.cfg.Name, err)
	}
	if d.chain {
		return d.chainSnapshots(h.volumes), nil
	}
	out := h.snapshots[:0]
	for _, s := range h.snapshots {
		m, err := d.readMeta(s.ID)
		if err == nil {
			s.VolumeID = m.VolumeID
		} else if _, serr := os.Lstat(s.Location); errors.Is(serr, fs.ErrNotExist) {
			continue // deleted since the scan
		}
		out = append(out, s)
	}
	return out, nil
}

// RevertToSnapshot restores volume volumeID to the data of its snapshot
// snapshotID, as Cinder's generic revert does (a temporary volume of the
// volume's current size created from the snapshot, copied over the volume):
// the volume keeps its current size, and if it was extended after the
// snapshot the part beyond the snapshot's size reads as zeros. The new data
// is built in a temp file and renamed over the volume, so a crash leaves
// either the old or the reverted volume, never a mix; a consumer that keeps
// the old file open does not see the revert, which is why Cinder only
// reverts volumes that are not attached.
//
// A missing volume or snapshot wraps storage.ErrNotFound; a snapshot of
// another volume wraps storage.ErrInvalid. Repeating a revert is harmless.
// In a thick pool the temp file's blocks are reserved on the file system
// for the duration of the copy but not accounted, since the pool's
// provisioned size does not change.
func (d *Driver) RevertToSnapshot(ctx context.Context, volumeID, snapshotID string) error {
	if err := storage.ValidateID(volumeID); err != nil {
		return fmt.Errorf("nfs: revert volume: %w", err)
	}
	if err := storage.ValidateID(snapshotID); err != nil {
		return fmt.Errorf("nfs: revert volume %s: snapshot: %w", volumeID, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("nfs: revert volume %s to snapshot %s in pool %q: %w", volumeID, snapshotID, d.cfg.Name, err)
	}
	unlock, err := d.lockIDs(ctx, volKey(volumeID), snapKey(snapshotID))
	if err != nil {
		return fail(err)
	}
	defer unlock()

	if d.chain {
		if err := d.chainRevert(ctx, volumeID, snapshotID); err != nil {
			return fail(err)
		}
		return nil
	}
	path, vfi, err := d.volumeFile(volumeID)
	if err != nil {
		return fail(err)
	}
	src, sfi, err := openRegular(d.snapPath(snapshotID))
	if errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("snapshot %s does not exist: %w", snapshotID, storage.ErrNotFound))
	}
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	m, err := d.readMeta(snapshotID)
	if err != nil {
		return fail(fmt.Errorf("cannot confirm which volume the snapshot was taken of: %w", err))
	}
	if m.VolumeID != volumeID {
		return fail(fmt.Errorf("%w: snapshot %s was taken of volume %s", storage.ErrInvalid, snapshotID, m.VolumeID))
	}
	size, snapSize := vfi.Size(), sfi.Size()
	if snapSize > size {
		return fail(fmt.Errorf("%w: the volume (%d bytes) is smaller than the snapshot (%d bytes)", storage.ErrInvalid, size, snapSize))
	}
	err = d.buildFile(ctx, volumePrefix, volumeID, path, size, nil, func(f *os.File) error {
		return copySparse(ctx, f, src, snapSize)
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

// openRegular opens path for reading if it is a regular file (not a
// symlink, directory or device). A missing file wraps fs.ErrNotExist.
func openRegular(path string) (*os.File, fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file (mode %s)", path, fi.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	ofi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !os.SameFile(fi, ofi) {
		f.Close()
		return nil, nil, fmt.Errorf("%s was replaced while being opened", path)
	}
	return f, ofi, nil
}

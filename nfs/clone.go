package nfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kilnstore/kiln/internal/storage"
)

// chainCreateFrom is createFrom in the qcow2 mode (all locks held): the
// source is a volume's active image, or a snapshot's data file in its
// volume's chain (srcVol, "" if no chain has the snapshot).
func (d *Driver) chainCreateFrom(ctx context.Context, id string, size int64, kind, srcPrefix, srcID, srcVol string) error {
	exists, err := d.existingChain(id, size)
	if err != nil || exists {
		return err
	}
	if srcVol == "" {
		return fmt.Errorf("%s %s does not exist: %w", kind, srcID, storage.ErrNotFound)
	}
	ci, err := d.chainVolume(srcVol)
	if errors.Is(err, storage.ErrNotFound) && srcPrefix == volumePrefix {
		return fmt.Errorf("%s %s does not exist: %w", kind, srcID, storage.ErrNotFound)
	}
	if err != nil {
		return err
	}
	src := ci.Active
	if srcPrefix == snapshotPrefix {
		if _, ok := ci.Snapshots[srcID]; !ok {
			return fmt.Errorf("%s %s does not exist: %w", kind, srcID, storage.ErrNotFound)
		}
		if src, err = d.backingOf(ci, srcID); err != nil {
			return err
		}
	}
	return d.chainCopy(ctx, id, size, d.file(src), ci.format(src), srcVol, kind)
}

// CreateVolumeFromSnapshot creates volume id holding the data of snapshot
// snapshotID, with a size of sizeGiB GiB (at least the snapshot's size; the
// part beyond it reads as zeros). The copy is sparse and the volume appears
// atomically, as CreateVolume's does. An existing volume id of that size is
// returned as is, even if the snapshot is gone since; with another size the
// error wraps storage.ErrExists. A missing snapshot wraps
// storage.ErrNotFound and creates nothing; a size smaller than the
// snapshot's wraps storage.ErrInvalid. In a thick pool the volume's full
// size is accounted and reserved (storage.ErrNoSpace when it does not fit).
func (d *Driver) CreateVolumeFromSnapshot(ctx context.Context, id, snapshotID string, sizeGiB int64) (storage.Volume, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: create volume from snapshot: %w", err)
	}
	if err := storage.ValidateID(snapshotID); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: create volume %s from snapshot: %w", id, err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: create volume %s from snapshot %s: %w", id, snapshotID, err)
	}
	return d.createFrom(ctx, id, snapshotPrefix, snapshotID, sizeGiB)
}

// CloneVolume creates volume id as a copy of volume sourceID, with a size of
// sizeGiB GiB (at least the source's). It behaves as
// CreateVolumeFromSnapshot does, reading the source volume under its lock so
// that no other driver operation changes it during the copy; writes by a
// consumer of an attached source are the caller's to quiesce. A volume
// cannot be cloned onto itself (storage.ErrInvalid).
func (d *Driver) CloneVolume(ctx context.Context, id, sourceID string, sizeGiB int64) (storage.Volume, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: clone volume: %w", err)
	}
	if err := storage.ValidateID(sourceID); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: clone volume %s: source: %w", id, err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: clone volume %s from %s: %w", id, sourceID, err)
	}
	if id == sourceID {
		return storage.Volume{}, fmt.Errorf("nfs: clone volume %s: %w: a volume cannot be its own source", id, storage.ErrInvalid)
	}
	return d.createFrom(ctx, id, volumePrefix, sourceID, sizeGiB)
}

// createFrom creates volume id as a sparse copy of the object srcPrefix+srcID
// (a volume or a snapshot), sized sizeGiB. IDs and size are validated.
func (d *Driver) createFrom(ctx context.Context, id, srcPrefix, srcID string, sizeGiB int64) (storage.Volume, error) {
	kind, srcPath := "volume", d.path(srcID)
	if srcPrefix == snapshotPrefix {
		kind, srcPath = "snapshot", d.snapPath(srcID)
	}
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("nfs: create volume %s from %s %s in pool %q: %w", id, kind, srcID, d.cfg.Name, err)
	}
	keys := []string{volKey(id), srcPrefix + srcID}
	srcVol := srcID
	if d.chain && srcPrefix == snapshotPrefix {
		// The snapshot lives in its volume's chain, which must not change
		// during the copy.
		if err := d.ready(ctx); err != nil {
			return fail(err)
		}
		var err error
		if srcVol, err = d.snapshotVolume(srcID); err != nil {
			return fail(err)
		}
		if srcVol != "" {
			keys = append(keys, volKey(srcVol))
		}
	}
	unlock, err := d.lockIDs(ctx, keys...)
	if err != nil {
		return fail(err)
	}
	defer unlock()

	path := d.path(id)
	size := sizeGiB * storage.GiB
	vol := storage.Volume{ID: id, SizeBytes: size, Location: path}
	if d.chain {
		if err := d.chainCreateFrom(ctx, id, size, kind, srcPrefix, srcID, srcVol); err != nil {
			return fail(err)
		}
		return d.chainLocated(vol)
	}
	exists, err := d.existingSynced(path, size)
	if err != nil {
		return fail(err)
	}
	if exists {
		return vol, nil
	}

	src, fi, err := openRegular(srcPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("%s %s does not exist: %w", kind, srcID, storage.ErrNotFound))
	}
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	srcSize := fi.Size()
	if srcSize > size {
		return fail(fmt.Errorf("%w: %d GiB is smaller than the %s's %s", storage.ErrInvalid, sizeGiB, kind, sizeString(srcSize)))
	}
	res, err := d.reserve(ctx, size)
	if err != nil {
		return fail(err)
	}
	defer res.release()
	err = d.buildFile(ctx, volumePrefix, id, path, size, res, func(f *os.File) error {
		return copySparse(ctx, f, src, srcSize)
	})
	if err != nil {
		return fail(err)
	}
	return vol, nil
}

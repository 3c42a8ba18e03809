package rbd

import (
	"context"
	"errors"
	"fmt"

	"github.com/kilnstore/kiln/internal/storage"
)

// CreateSnapshot takes snapshot-<snapshotID> of volume-<volumeID> and
// protects it (so that volumes can be cloned from it). An existing snapshot
// of that volume is returned; the ID taken on another volume is
// storage.ErrExists.
func (d *Driver) CreateSnapshot(ctx context.Context, snapshotID, volumeID string) (storage.Snapshot, error) {
	if err := storage.ValidateID(snapshotID); err != nil {
		return storage.Snapshot{}, fmt.Errorf("rbd: create snapshot: %w", err)
	}
	if err := storage.ValidateID(volumeID); err != nil {
		return storage.Snapshot{}, fmt.Errorf("rbd: create snapshot %s: volume: %w", snapshotID, err)
	}
	fail := func(err error) (storage.Snapshot, error) {
		return storage.Snapshot{}, fmt.Errorf("rbd: create snapshot %s of volume %s in pool %q: %w", snapshotID, volumeID, d.cfg.Name, err)
	}
	unlock, err := d.ids.LockAll(ctx, imageName(volumeID), snapName(snapshotID))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	owner, size, err := d.findSnapshot(ctx, snapshotID)
	if err != nil {
		return fail(err)
	}
	image := imageName(volumeID)
	if owner != "" && owner != volumeID {
		return fail(fmt.Errorf("snapshot %s exists as a snapshot of volume %s: %w", snapshotID, owner, storage.ErrExists))
	}
	if owner == "" {
		_, err = d.r.rbd(ctx, false, "snap", "create", "--no-progress", d.spec(image, snapName(snapshotID)))
		if err != nil && !errors.Is(err, ErrImageExists) {
			return fail(err)
		}
		info, err := d.imageInfo(ctx, image)
		if err != nil {
			return fail(err)
		}
		size = *info.Size
	}
	if err := d.protect(ctx, image, snapName(snapshotID)); err != nil {
		return fail(err)
	}
	return storage.Snapshot{ID: snapshotID, VolumeID: volumeID, SizeBytes: size, Location: d.spec(image, snapName(snapshotID))}, nil
}

// protect protects a snapshot; already protected is fine.
func (d *Driver) protect(ctx context.Context, image, snap string) error {
	_, err := d.r.rbd(ctx, false, "snap", "protect", d.spec(image, snap))
	if errors.Is(err, ErrBusy) { // EBUSY: already protected
		return nil
	}
	return err
}

// findSnapshot returns the volume holding snapshot id ("" if none) and the
// snapshot's size.
func (d *Driver) findSnapshot(ctx context.Context, id string) (string, int64, error) {
	_, snaps, err := d.list(ctx)
	if err != nil {
		return "", 0, err
	}
	for image, ss := range snaps {
		vol, ok := volumeID(image)
		if !ok {
			continue
		}
		for _, s := range ss {
			if s.Name == snapName(id) {
				return vol, s.Size, nil
			}
		}
	}
	return "", 0, nil
}

// DeleteSnapshot removes snapshot id; volumes cloned from it are flattened
// first and keep their data. A missing snapshot is a success.
func (d *Driver) DeleteSnapshot(ctx context.Context, id string) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("rbd: delete snapshot: %w", err)
	}
	fail := func(err error) error {
		return fmt.Errorf("rbd: delete snapshot %s in pool %q: %w", id, d.cfg.Name, err)
	}
	vol, _, err := d.findSnapshot(ctx, id)
	if err != nil || vol == "" {
		if err != nil {
			return fail(err)
		}
		return nil
	}
	unlock, err := d.ids.LockAll(ctx, imageName(vol), snapName(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if err := d.removeSnap(ctx, imageName(vol), snapName(id), true); err != nil {
		return fail(err)
	}
	return nil
}

// RevertToSnapshot rolls the volume back to its snapshot and grows it back
// to its current size if it was extended since, as Cinder's RBD driver
// does.
func (d *Driver) RevertToSnapshot(ctx context.Context, volumeID, snapshotID string) error {
	if err := storage.ValidateID(volumeID); err != nil {
		return fmt.Errorf("rbd: revert volume: %w", err)
	}
	if err := storage.ValidateID(snapshotID); err != nil {
		return fmt.Errorf("rbd: revert volume %s: snapshot: %w", volumeID, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("rbd: revert volume %s to snapshot %s in pool %q: %w", volumeID, snapshotID, d.cfg.Name, err)
	}
	unlock, err := d.ids.LockAll(ctx, imageName(volumeID), snapName(snapshotID))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	owner, _, err := d.findSnapshot(ctx, snapshotID)
	switch {
	case err != nil:
		return fail(err)
	case owner == "":
		return fail(fmt.Errorf("snapshot %s does not exist: %w", snapshotID, storage.ErrNotFound))
	case owner != volumeID:
		return fail(fmt.Errorf("%w: snapshot %s was taken of volume %s", storage.ErrInvalid, snapshotID, owner))
	}
	image := imageName(volumeID)
	info, err := d.imageInfo(ctx, image)
	if err != nil {
		return fail(err)
	}
	if _, err := d.r.rbd(ctx, true, "snap", "rollback", "--no-progress", d.spec(image, snapName(snapshotID))); err != nil {
		return fail(err)
	}
	after, err := d.imageInfo(ctx, image)
	if err != nil {
		return fail(err)
	}
	if *after.Size < *info.Size {
		if _, err := d.r.rbd(ctx, false, "resize", "--size", sizeArg(*info.Size), d.spec(image)); err != nil {
			return fail(err)
		}
	}
	return nil
}

// CreateVolumeFromSnapshot clones the snapshot (copy-on-write) into
// volume-<id>, grown to sizeGiB; the clone is flattened when configured or
// when its chain of parents would exceed MaxCloneDepth.
func (d *Driver) CreateVolumeFromSnapshot(ctx context.Context, id, snapshotID string, sizeGiB int64) (storage.Volume, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: create volume from snapshot: %w", err)
	}
	if err := storage.ValidateID(snapshotID); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: create volume %s from snapshot: %w", id, err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: create volume %s from snapshot %s: %w", id, snapshotID, err)
	}
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("rbd: create volume %s from snapshot %s in pool %q: %w", id, snapshotID, d.cfg.Name, err)
	}
	owner, snapSize, err := d.findSnapshot(ctx, snapshotID)
	if err != nil {
		return fail(err)
	}
	if owner == "" {
		// A repeated create whose snapshot is gone since: the volume is
		// there.
		if err := d.sameSize(ctx, imageName(id), sizeGiB*storage.GiB); err == nil {
			return storage.Volume{ID: id, SizeBytes: sizeGiB * storage.GiB, Location: d.spec(imageName(id))}, nil
		}
		return fail(fmt.Errorf("snapshot %s does not exist: %w", snapshotID, storage.ErrNotFound))
	}
	unlock, err := d.ids.LockAll(ctx, imageName(id), imageName(owner), snapName(snapshotID))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	vol, err := d.cloneFrom(ctx, id, imageName(owner), snapName(snapshotID), snapSize, sizeGiB, d.cfg.FlattenFromSnapshot)
	if err != nil {
		return fail(err)
	}
	return vol, nil
}

// CloneVolume copies volume sourceID into volume-<id>: a temporary snapshot
// clone-<id> of the source, a clone of it, flattened so the new volume does
// not depend on the source, and the temporary snapshot removed.
func (d *Driver) CloneVolume(ctx context.Context, id, sourceID string, sizeGiB int64) (storage.Volume, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: clone volume: %w", err)
	}
	if err := storage.ValidateID(sourceID); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: clone volume %s: source: %w", id, err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: clone volume %s from %s: %w", id, sourceID, err)
	}
	if id == sourceID {
		return storage.Volume{}, fmt.Errorf("rbd: clone volume %s: %w: a volume cannot be its own source", id, storage.ErrInvalid)
	}
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("rbd: clone volume %s from %s in pool %q: %w", id, sourceID, d.cfg.Name, err)
	}
	unlock, err := d.ids.LockAll(ctx, imageName(id), imageName(sourceID))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	src, temp := imageName(sourceID), cloneSnapPrefix+id
	info, err := d.imageInfo(ctx, src)
	if errors.Is(err, ErrImageNotFound) {
		if err := d.sameSize(ctx, imageName(id), sizeGiB*storage.GiB); err == nil {
			return storage.Volume{ID: id, SizeBytes: sizeGiB * storage.GiB, Location: d.spec(imageName(id))}, nil
		}
		return fail(fmt.Errorf("volume %s does not exist: %w", sourceID, storage.ErrNotFound))
	}
	if err != nil {
		return fail(err)
	}
	if _, err := d.r.rbd(ctx, false, "snap", "create", "--no-progress", d.spec(src, temp)); err != nil && !errors.Is(err, ErrImageExists) {
		return fail(err)
	}
	if err := d.protect(ctx, src, temp); err != nil {
		return fail(err)
	}
	vol, err := d.cloneFrom(ctx, id, src, temp, *info.Size, sizeGiB, true)
	// The temporary snapshot goes either way; the flattened clone does not
	// need it.
	if rerr := d.removeSnap(ctx, src, temp, true); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fail(err)
	}
	return vol, nil
}

// cloneFrom clones image@snap (srcSize bytes) into volume-<id> of sizeGiB,
// flattening it when flatten is set or the parent chain is too deep. An
// existing volume-<id> of that size is a repeated request.
func (d *Driver) cloneFrom(ctx context.Context, id, image, snap string, srcSize, sizeGiB int64, flatten bool) (storage.Volume, error) {
	size := sizeGiB * storage.GiB
	vol := storage.Volume{ID: id, SizeBytes: size, Location: d.spec(imageName(id))}
	if srcSize > size {
		return storage.Volume{}, fmt.Errorf("%w: %d GiB is smaller than the source's %d bytes", storage.ErrInvalid, sizeGiB, srcSize)
	}
	_, err := d.r.rbd(ctx, false, "clone", d.spec(image, snap), d.spec(imageName(id)))
	if errors.Is(err, ErrImageExists) {
		return vol, d.sameSize(ctx, imageName(id), size)
	}
	if err != nil {
		return storage.Volume{}, err
	}
	undo := func(err error) (storage.Volume, error) {
		if rerr := d.removeImage(context.WithoutCancel(ctx), imageName(id)); rerr != nil {
			d.log.Error("could not remove a half-made clone", "volume_id", id, "err", rerr)
		}
		return storage.Volume{}, err
	}
	if !flatten {
		depth, err := d.depth(ctx, imageName(id))
		if err != nil {
			return undo(err)
		}
		flatten = depth > d.cfg.MaxCloneDepth
	}
	if flatten {
		progress := storage.Progress(ctx)
		progress(0, size)
		if _, err := d.r.rbd(ctx, true, "flatten", "--no-progress", d.spec(imageName(id))); err != nil {
			return undo(err)
		}
		progress(size, size)
	}
	if size > srcSize {
		if _, err := d.r.rbd(ctx, false, "resize", "--size", sizeArg(size), d.spec(imageName(id))); err != nil {
			return undo(err)
		}
	}
	return vol, nil
}

// depth counts the parents of image (0: not a clone).
func (d *Driver) depth(ctx context.Context, image string) (int, error) {
	n := 0
	for cur := image; ; n++ {
		info, err := d.imageInfo(ctx, cur)
		if err != nil {
			return 0, err
		}
		if info.Parent == nil {
			return n, nil
		}
		if info.Parent.Pool != d.cfg.Pool || n > 64 {
			return n + 1, nil // another pool's chain: count it as deep
		}
		cur = info.Parent.Image
	}
}

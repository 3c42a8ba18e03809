package lvm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// snapshotOrigin returns the volume ID a snapshot LV was taken of, from
// its origin tag (the origin field is empty once a thin origin is gone).
func snapshotOrigin(lv lvRow) string {
	for _, t := range lv.Tags {
		if id, ok := strings.CutPrefix(t, originTagPrefix); ok && storage.ValidateID(id) == nil {
			return id
		}
	}
	if id, ok := volumeID(lv.Origin); ok {
		return id
	}
	return ""
}

// CreateSnapshot takes snapshot LV _snapshot-<snapshotID> of volume
// volumeID: a thin snapshot in a thin pool, a copy-on-write snapshot of
// SnapshotPercent of the origin's size in a thick one.
func (d *Driver) CreateSnapshot(ctx context.Context, snapshotID, volumeID string) (storage.Snapshot, error) {
	fail := func(err error) (storage.Snapshot, error) {
		return storage.Snapshot{}, fmt.Errorf("lvm: create snapshot %s of volume %s: %w", snapshotID, volumeID, err)
	}
	if err := storage.ValidateID(snapshotID); err != nil {
		return fail(err)
	}
	unlockVol, err := d.lockVolume(ctx, "create snapshot", volumeID)
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlockVol()
	unlock, err := d.ids.Lock(ctx, snapKey(snapshotID))
	if err != nil {
		return storage.Snapshot{}, err
	}
	defer unlock()

	if existing, err := d.lv(ctx, snapshotPrefix+snapshotID); err == nil {
		if snapshotOrigin(existing) != volumeID {
			return fail(fmt.Errorf("LV %s exists for another volume: %w", existing.Name, storage.ErrExists))
		}
		return d.snapshot(snapshotID, existing), nil
	} else if !errors.Is(err, ErrLVNotFound) {
		return fail(err)
	}
	origin, err := d.lv(ctx, volumePrefix+volumeID)
	if err != nil {
		return fail(err)
	}
	if err := d.snapshotLV(ctx, snapshotPrefix+snapshotID, origin, originTagPrefix+volumeID); err != nil {
		return fail(err)
	}
	lv, err := d.lv(ctx, snapshotPrefix+snapshotID)
	if err != nil {
		return fail(err)
	}
	d.log.Info("created snapshot", "snapshot_id", snapshotID, "volume_id", volumeID, "thin", origin.PoolLV != "")
	return d.snapshot(snapshotID, lv), nil
}

// snapshotLV creates LV name as a snapshot of origin: thin when the origin
// is thin, else copy-on-write with SnapshotPercent of the origin's size.
func (d *Driver) snapshotLV(ctx context.Context, name string, origin lvRow, tags ...string) error {
	args := []string{"--yes", "-s", "-n", name}
	for _, t := range tags {
		args = append(args, "--addtag", t)
	}
	if origin.PoolLV == "" {
		cow := d.roundUp(origin.SizeBytes * int64(d.cfg.SnapshotPercent) / 100)
		args = append(args, "-L", bytesArg(cow))
	}
	args = append(args, d.ref(origin.Name))
	return d.locked(ctx, "lvcreate", args...)
}

// snapshot reports a snapshot LV; Location names the LV (a thick
// snapshot's LV size is its copy-on-write area, see dataSize).
func (d *Driver) snapshot(id string, lv lvRow) storage.Snapshot {
	return storage.Snapshot{ID: id, VolumeID: snapshotOrigin(lv), SizeBytes: lv.SizeBytes, Location: d.ref(lv.Name)}
}

// DeleteSnapshot removes snapshot LV _snapshot-<id>; missing is success.
func (d *Driver) DeleteSnapshot(ctx context.Context, snapshotID string) error {
	if err := storage.ValidateID(snapshotID); err != nil {
		return fmt.Errorf("lvm: delete snapshot: %w", err)
	}
	unlock, err := d.ids.Lock(ctx, snapKey(snapshotID))
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.lvremove(ctx, snapshotPrefix+snapshotID); err != nil {
		return fmt.Errorf("lvm: delete snapshot %s: %w", snapshotID, err)
	}
	d.log.Info("deleted snapshot", "snapshot_id", snapshotID)
	return nil
}

// ListSnapshots reports the LVs named _snapshot-<uuid>.
func (d *Driver) ListSnapshots(ctx context.Context) ([]storage.Snapshot, error) {
	return heldLVs(ctx, d, "snapshots", snapshotID, d.snapshot)
}

// CreateVolumeFromSnapshot creates volume id from snapshot snapshotID: a
// thin snapshot of the snapshot in a thin pool (instant, shares blocks), a
// new LV and a data copy in a thick one.
func (d *Driver) CreateVolumeFromSnapshot(ctx context.Context, id, snapshotID string, sizeGiB int64) (storage.Volume, error) {
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("lvm: create volume %s from snapshot %s: %w", id, snapshotID, err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return fail(err)
	}
	if err := storage.ValidateID(snapshotID); err != nil {
		return fail(err)
	}
	unlock, err := d.lockVolume(ctx, "create volume from snapshot", id)
	if err != nil {
		return storage.Volume{}, err
	}
	defer unlock()
	unlockSnap, err := d.ids.Lock(ctx, snapKey(snapshotID))
	if err != nil {
		return storage.Volume{}, err
	}
	defer unlockSnap()
	src, err := d.lv(ctx, snapshotPrefix+snapshotID)
	if err != nil {
		return fail(err)
	}
	if src.SizeBytes, err = d.dataSize(ctx, src); err != nil {
		return fail(err)
	}
	v, err := d.createFrom(ctx, id, src, sizeGiB)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

// CloneVolume creates volume id as a copy of volume sourceID: a thin
// snapshot in a thin pool; in a thick one, as Cinder does, a temporary
// snapshot of the source is copied into a new LV and then removed, so the
// source may stay in use.
func (d *Driver) CloneVolume(ctx context.Context, id, sourceID string, sizeGiB int64) (storage.Volume, error) {
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("lvm: clone volume %s into %s: %w", sourceID, id, err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return fail(err)
	}
	if err := storage.ValidateID(sourceID); err != nil {
		return fail(err)
	}
	unlock, err := d.lockVolume(ctx, "clone volume", id)
	if err != nil {
		return storage.Volume{}, err
	}
	defer unlock()
	unlockSrc, err := d.ids.Lock(ctx, volKey(sourceID))
	if err != nil {
		return storage.Volume{}, err
	}
	defer unlockSrc()
	src, err := d.lv(ctx, volumePrefix+sourceID)
	if err != nil {
		return fail(err)
	}
	if src.PoolLV != "" {
		v, err := d.createFrom(ctx, id, src, sizeGiB)
		if err != nil {
			return fail(err)
		}
		return v, nil
	}
	tmp := clonePrefix + id
	if err := d.lvremove(ctx, tmp); err != nil { // left by an interrupted clone
		return fail(err)
	}
	if err := d.snapshotLV(ctx, tmp, src); err != nil {
		return fail(fmt.Errorf("temporary snapshot: %w", err))
	}
	defer func() {
		if err := d.lvremove(context.WithoutCancel(ctx), tmp); err != nil {
			d.log.Error("remove temporary clone snapshot failed", "lv", tmp, "volume_id", id, "err", err)
		}
	}()
	snap, err := d.lv(ctx, tmp)
	if err != nil {
		return fail(err)
	}
	snap.SizeBytes = src.SizeBytes // the data to copy is the origin's, not the COW area's
	v, err := d.createFrom(ctx, id, snap, sizeGiB)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

// createFrom creates volume id holding src's data, grown to sizeGiB. A
// thin src becomes a thin snapshot (then extended); a thick one is copied
// into a new LV tagged copyingTag until the copy is complete, so a retry
// after a crash redoes the copy instead of trusting half-copied data.
func (d *Driver) createFrom(ctx context.Context, id string, src lvRow, sizeGiB int64) (storage.Volume, error) {
	name := volumePrefix + id
	size := d.roundUp(sizeGiB * storage.GiB)
	if size < src.SizeBytes {
		return storage.Volume{}, fmt.Errorf("%w: %d GiB is smaller than the source's %d bytes", storage.ErrInvalid, sizeGiB, src.SizeBytes)
	}
	if src.PoolLV != "" {
		if existing, err := d.lv(ctx, name); err == nil {
			return d.finishThin(ctx, id, existing, size)
		} else if !errors.Is(err, ErrLVNotFound) {
			return storage.Volume{}, err
		}
		if err := d.thinSnapshot(ctx, name, src); err != nil {
			return storage.Volume{}, err
		}
		lv, err := d.lv(ctx, name)
		if err != nil {
			return storage.Volume{}, err
		}
		return d.finishThin(ctx, id, lv, size)
	}

	existing, err := d.lv(ctx, name)
	switch {
	case err == nil && !hasTag(existing, copyingTag):
		if existing.SizeBytes != size {
			return storage.Volume{}, fmt.Errorf("LV %s exists with %d bytes, not %d: %w", name, existing.SizeBytes, size, storage.ErrExists)
		}
		return storage.Volume{ID: id, SizeBytes: size, Location: d.location(id)}, nil
	case err == nil:
		d.log.Warn("redoing an interrupted copy", "volume_id", id)
	case errors.Is(err, ErrLVNotFound):
		if err := d.lvcreate(ctx, name, size, copyingTag); err != nil {
			return storage.Volume{}, err
		}
		if existing, err = d.lv(ctx, name); err != nil {
			return storage.Volume{}, err
		}
	default:
		return storage.Volume{}, err
	}
	srcDev, err := d.device(ctx, src)
	if err != nil {
		return storage.Volume{}, err
	}
	dstDev, err := d.device(ctx, existing)
	if err != nil {
		return storage.Volume{}, err
	}
	d.log.Info("copying data", "volume_id", id, "from", src.Name, "bytes", src.SizeBytes)
	if err := copyDevice(ctx, srcDev, dstDev, src.SizeBytes, existing.SizeBytes, existing.PoolLV != ""); err != nil {
		return storage.Volume{}, err
	}
	if _, err := d.r.run(ctx, "lvchange", "--deltag", copyingTag, d.ref(name)); err != nil {
		return storage.Volume{}, fmt.Errorf("mark %s copied: %w", name, err)
	}
	d.log.Info("created volume from copy", "volume_id", id, "from", src.Name)
	return storage.Volume{ID: id, SizeBytes: existing.SizeBytes, Location: d.location(id)}, nil
}

// thinSnapshot creates LV name as an active thin snapshot of src (without
// the activation-skip flag lvm sets on snapshots by default).
func (d *Driver) thinSnapshot(ctx context.Context, name string, src lvRow) error {
	return d.locked(ctx, "lvcreate", "--yes", "-s", "-kn", "-n", name, d.ref(src.Name))
}

func (d *Driver) finishThin(ctx context.Context, id string, lv lvRow, size int64) (storage.Volume, error) {
	if lv.SizeBytes > size {
		return storage.Volume{}, fmt.Errorf("LV %s exists with %d bytes, more than %d: %w", lv.Name, lv.SizeBytes, size, storage.ErrExists)
	}
	if err := d.extend(ctx, lv.Name, size); err != nil {
		return storage.Volume{}, err
	}
	d.log.Info("created volume as a thin snapshot", "volume_id", id, "bytes", size)
	return storage.Volume{ID: id, SizeBytes: size, Location: d.location(id)}, nil
}

// RevertToSnapshot restores volume volumeID to snapshot snapshotID. A
// thick snapshot of a volume that has not been resized since is merged
// back (lvconvert --merge) and then taken again, as Cinder's LVM driver
// does; otherwise (thin pools, resized volumes) the snapshot's data is
// copied over the volume and the rest of the volume zeroed.
func (d *Driver) RevertToSnapshot(ctx context.Context, volumeID, snapshotID string) error {
	fail := func(err error) error {
		return fmt.Errorf("lvm: revert volume %s to snapshot %s: %w", volumeID, snapshotID, err)
	}
	if err := storage.ValidateID(snapshotID); err != nil {
		return fail(err)
	}
	unlock, err := d.lockVolume(ctx, "revert volume", volumeID)
	if err != nil {
		return err
	}
	defer unlock()
	unlockSnap, err := d.ids.Lock(ctx, snapKey(snapshotID))
	if err != nil {
		return err
	}
	defer unlockSnap()
	snap, err := d.lv(ctx, snapshotPrefix+snapshotID)
	if err != nil {
		return fail(err)
	}
	if snapshotOrigin(snap) != volumeID {
		return fail(fmt.Errorf("%w: %w", storage.ErrInvalid, errNotOrigin))
	}
	vol, err := d.lv(ctx, volumePrefix+volumeID)
	if err != nil {
		return fail(err)
	}
	if snap.SizeBytes, err = d.dataSize(ctx, snap); err != nil {
		return fail(err)
	}
	if snap.PoolLV == "" && snap.Origin == vol.Name && snap.SizeBytes == vol.SizeBytes {
		if err := d.merge(ctx, snap, vol, volumeID); err != nil {
			return fail(err)
		}
		d.log.Info("reverted volume by merging its snapshot", "volume_id", volumeID, "snapshot_id", snapshotID)
		return nil
	}
	srcDev, err := d.device(ctx, snap)
	if err != nil {
		return fail(err)
	}
	dstDev, err := d.device(ctx, vol)
	if err != nil {
		return fail(err)
	}
	if err := copyDevice(ctx, srcDev, dstDev, min(snap.SizeBytes, vol.SizeBytes), vol.SizeBytes, vol.PoolLV != ""); err != nil {
		return fail(err)
	}
	d.log.Info("reverted volume by copying its snapshot", "volume_id", volumeID, "snapshot_id", snapshotID)
	return nil
}

// dataSize is how many bytes of data an LV holds: its size, except for a
// thick snapshot, whose LV size is its copy-on-write area while its device
// is as large as the origin was when the snapshot was taken.
func (d *Driver) dataSize(ctx context.Context, lv lvRow) (int64, error) {
	if lv.PoolLV != "" || lv.Origin == "" {
		return lv.SizeBytes, nil
	}
	dev, err := d.device(ctx, lv)
	if err != nil {
		return 0, err
	}
	n, err := deviceSize(dev)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	return n, nil
}

// merge merges a thick snapshot into its origin and takes the snapshot
// again, so the snapshot the user reverted to still exists afterwards.
func (d *Driver) merge(ctx context.Context, snap, vol lvRow, volumeID string) error {
	unlock, err := d.cfg.Locks.lock(ctx, d.cfg.VG)
	if err != nil {
		return err
	}
	if _, err := d.r.run(ctx, "lvconvert", "--merge", d.ref(snap.Name)); err != nil {
		unlock()
		return fmt.Errorf("merge: %w", err)
	}
	// An origin that was active merges on its next activation.
	_, _ = d.r.run(ctx, "lvchange", "-an", d.ref(vol.Name))
	_, err = d.r.run(ctx, "lvchange", "-ay", d.ref(vol.Name))
	unlock()
	if err != nil {
		return fmt.Errorf("reactivate %s after merge: %w", vol.Name, err)
	}
	if err := d.snapshotLV(ctx, snap.Name, vol, originTagPrefix+volumeID); err != nil {
		return fmt.Errorf("take snapshot %s again after the merge: %w", snap.Name, err)
	}
	return nil
}

package lvm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

func volKey(id string) string  { return "volume/" + id }
func snapKey(id string) string { return "snapshot/" + id }

// lockVolume validates id and takes its per-ID lock.
func (d *Driver) lockVolume(ctx context.Context, op, id string) (func(), error) {
	if err := storage.ValidateID(id); err != nil {
		return nil, fmt.Errorf("lvm: %s: %w", op, err)
	}
	return d.ids.Lock(ctx, volKey(id))
}

// Stats measures the pool the way Cinder's LVM driver reports it. Thick:
// total and free are the VG's, provisioned is total - free. Thin: total is
// the thin pool's size, free what its data usage leaves, provisioned the
// sum of the thin LVs' virtual sizes.
func (d *Driver) Stats(ctx context.Context) (storage.PoolStats, error) {
	rows, err := d.lvs(ctx, "")
	if err != nil {
		return storage.PoolStats{}, fmt.Errorf("lvm: pool %q: stats: %w", d.cfg.Name, err)
	}
	var st storage.PoolStats
	for _, r := range rows {
		if _, ok := volumeID(r.Name); ok {
			st.Volumes++
		}
	}
	if d.thin {
		var pool *lvRow
		for i := range rows {
			if rows[i].Name == d.cfg.ThinPool {
				pool = &rows[i]
			}
		}
		if pool == nil {
			return storage.PoolStats{}, fmt.Errorf("lvm: pool %q: thin pool %s/%s: %w", d.cfg.Name, d.cfg.VG, d.cfg.ThinPool, ErrLVNotFound)
		}
		var provisioned int64
		for _, r := range rows {
			if r.PoolLV == d.cfg.ThinPool {
				provisioned += r.SizeBytes
			}
		}
		total := float64(pool.SizeBytes)
		st.TotalGB = gb(total)
		st.FreeGB = gb(total * (100 - pool.DataPercent) / 100)
		st.ProvisionedGB = gb(float64(provisioned))
		return st, nil
	}
	vg, err := d.vg(ctx)
	if err != nil {
		return storage.PoolStats{}, fmt.Errorf("lvm: pool %q: stats: %w", d.cfg.Name, err)
	}
	d.extent.Store(vg.ExtentSize)
	st.TotalGB = gb(float64(vg.SizeBytes))
	st.FreeGB = gb(float64(vg.FreeBytes))
	st.ProvisionedGB = gb(float64(vg.SizeBytes - vg.FreeBytes))
	return st, nil
}

// gb converts bytes to GiB rounded to 2 decimals, as Cinder reports.
func gb(bytes float64) float64 {
	v := bytes / float64(storage.GiB)
	return float64(int64(v*100+0.5)) / 100
}

// volumeID returns the ID of an LV named volume-<uuid>.
func volumeID(lvName string) (string, bool) {
	id, ok := strings.CutPrefix(lvName, volumePrefix)
	return id, ok && storage.ValidateID(id) == nil
}

// snapshotID returns the ID of an LV named _snapshot-<uuid>.
func snapshotID(lvName string) (string, bool) {
	id, ok := strings.CutPrefix(lvName, snapshotPrefix)
	return id, ok && storage.ValidateID(id) == nil
}

// CreateVolume creates LV volume-<id>. The size is rounded up to whole
// extents from the VG's extent size (refreshed by every Stats), which is
// what lvcreate does; the LV's real size is read back by ListVolumes and
// by a retried create.
func (d *Driver) CreateVolume(ctx context.Context, id string, sizeGiB int64) (storage.Volume, error) {
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return storage.Volume{}, fmt.Errorf("lvm: create volume %s: %w", id, err)
	}
	unlock, err := d.lockVolume(ctx, "create volume", id)
	if err != nil {
		return storage.Volume{}, err
	}
	defer unlock()
	size := d.roundUp(sizeGiB * storage.GiB)
	if err := d.lvcreate(ctx, volumePrefix+id, size); err != nil {
		if errors.Is(err, ErrLVExists) {
			return d.existingVolume(ctx, id, size)
		}
		return storage.Volume{}, fmt.Errorf("lvm: create volume %s: %w", id, err)
	}
	d.log.Info("created volume", "volume_id", id, "bytes", size, "thin", d.thin)
	return storage.Volume{ID: id, SizeBytes: size, Location: d.location(id)}, nil
}

// lvcreate creates a blank LV of size bytes: thin in the thin pool, or
// thick from the VG's free extents.
func (d *Driver) lvcreate(ctx context.Context, name string, size int64, tags ...string) error {
	args := []string{"--yes", "-n", name}
	for _, t := range tags {
		args = append(args, "--addtag", t)
	}
	if d.thin {
		args = append(args, "-V", bytesArg(size), "-T", d.ref(d.cfg.ThinPool))
	} else {
		args = append(args, "-L", bytesArg(size), d.cfg.VG)
	}
	return d.locked(ctx, "lvcreate", args...)
}

// existingVolume answers a create whose LV exists: the same size is the
// retried create's success, another size is storage.ErrExists.
func (d *Driver) existingVolume(ctx context.Context, id string, size int64) (storage.Volume, error) {
	lv, err := d.lv(ctx, volumePrefix+id)
	if err != nil {
		return storage.Volume{}, fmt.Errorf("lvm: create volume %s: %w", id, err)
	}
	if lv.SizeBytes != size {
		return storage.Volume{}, fmt.Errorf("lvm: create volume %s: LV %s exists with %d bytes, not %d: %w", id, lv.Name, lv.SizeBytes, size, storage.ErrExists)
	}
	if hasTag(lv, copyingTag) {
		return storage.Volume{}, fmt.Errorf("lvm: create volume %s: LV %s holds an unfinished copy: %w", id, lv.Name, storage.ErrExists)
	}
	return storage.Volume{ID: id, SizeBytes: lv.SizeBytes, Location: d.location(id)}, nil
}

// DeleteVolume removes LV volume-<id>; a missing LV is a success. A thick
// LV is cleared first (VolumeClear), so its extents never hand old data
// to the next volume.
func (d *Driver) DeleteVolume(ctx context.Context, id string) error {
	unlock, err := d.lockVolume(ctx, "delete volume", id)
	if err != nil {
		return err
	}
	defer unlock()
	name := volumePrefix + id
	if d.cfg.VolumeClear == ClearZero && !d.thin {
		lv, err := d.lv(ctx, name)
		if errors.Is(err, ErrLVNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("lvm: delete volume %s: %w", id, err)
		}
		if lv.PoolLV == "" { // a thin LV in a thick pool's VG is not ours to clear
			if err := d.clear(ctx, lv); err != nil {
				return fmt.Errorf("lvm: delete volume %s: clear before removal: %w", id, err)
			}
		}
	}
	if err := d.lvremove(ctx, name); err != nil {
		return fmt.Errorf("lvm: delete volume %s: %w", id, err)
	}
	d.log.Info("deleted volume", "volume_id", id)
	return nil
}

// lvremove removes an LV (and, for an origin, its thick snapshots); a
// missing LV is a success.
func (d *Driver) lvremove(ctx context.Context, name string) error {
	err := d.locked(ctx, "lvremove", "-f", d.ref(name))
	if errors.Is(err, ErrLVNotFound) {
		return nil
	}
	return err
}

// ExtendVolume grows LV volume-<id> to newSizeGiB.
func (d *Driver) ExtendVolume(ctx context.Context, id string, newSizeGiB int64) error {
	if err := storage.ValidateSize(newSizeGiB); err != nil {
		return fmt.Errorf("lvm: extend volume %s: %w", id, err)
	}
	unlock, err := d.lockVolume(ctx, "extend volume", id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.extend(ctx, volumePrefix+id, d.roundUp(newSizeGiB*storage.GiB)); err != nil {
		return fmt.Errorf("lvm: extend volume %s: %w", id, err)
	}
	d.log.Info("extended volume", "volume_id", id, "gib", newSizeGiB)
	return nil
}

// extend grows an LV to size bytes: the same size is a success, a smaller
// one storage.ErrInvalid.
func (d *Driver) extend(ctx context.Context, name string, size int64) error {
	lv, err := d.lv(ctx, name)
	if err != nil {
		return err
	}
	switch {
	case lv.SizeBytes == size:
		return nil
	case lv.SizeBytes > size:
		return fmt.Errorf("%w: %s is %d bytes, larger than the requested %d (shrinking is not supported)", storage.ErrInvalid, name, lv.SizeBytes, size)
	}
	err = d.locked(ctx, "lvextend", "-L", bytesArg(size), d.ref(name))
	if err == nil || !strings.Contains(err.Error(), "can be resized only while inactive") {
		return err
	}
	// LVM resizes a thick origin that has snapshots only while it is
	// inactive: deactivate (refused while the LV is open, i.e. attached or
	// exported), extend, activate again.
	if derr := d.locked(ctx, "lvchange", "-an", d.ref(name)); derr != nil {
		return fmt.Errorf("%w: %s has snapshots, and LVM extends such a volume only while it is not in use (detach it first): %w", storage.ErrInvalid, name, derr)
	}
	err = d.locked(ctx, "lvextend", "-L", bytesArg(size), d.ref(name))
	if aerr := d.locked(ctx, "lvchange", "-ay", d.ref(name)); aerr != nil && err == nil {
		err = fmt.Errorf("activate %s after extending it: %w", name, aerr)
	}
	return err
}

// ListVolumes reports the LVs named volume-<uuid>, with their real sizes.
func (d *Driver) ListVolumes(ctx context.Context) ([]storage.Volume, error) {
	return heldLVs(ctx, d, "volumes", volumeID, func(id string, r lvRow) storage.Volume {
		return storage.Volume{ID: id, SizeBytes: r.SizeBytes, Location: d.location(id)}
	})
}

func hasTag(lv lvRow, tag string) bool {
	for _, t := range lv.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

package nfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/kilnstore/kiln/internal/qemuimg"
	"github.com/kilnstore/kiln/internal/storage"
)

// The qcow2 mode (Config.Snapshots = SnapshotsQCOW2) keeps each volume as a
// chain of images, the way Cinder's remotefs driver does:
//
//	volume-<V>             the base: raw or qcow2 (chainInfo.Format)
//	volume-<V>.<S>         the qcow2 overlay made when snapshot S was taken
//	volume-<V>.info        the chain record (chainInfo, JSON)
//
// Taking snapshot S makes a new overlay on the active image and makes it
// active: the image that was active is frozen and is S's data. Deleting S
// commits S's overlay into S's data file and points the image above the
// overlay (if any) at that file; if the overlay was active, the file
// becomes active. The info file is the commit point of every change:
// files it does not reference are leftovers that Cleanup removes.

const (
	chainVersion  = 1
	infoSuffix    = ".info"
	maxInfoBytes  = 1 << 20
	infoSeparator = "."
)

// maxVolumeBytes is the largest virtual size a header may claim.
const maxVolumeBytes = storage.MaxVolumeGiB * storage.GiB

// chainInfo is volume-<V>.info.
type chainInfo struct {
	Version  int    `json:"version"`
	VolumeID string `json:"volume_id"`
	// Format of the base file volume-<V>; overlays are always qcow2.
	Format string `json:"format"`
	// Active is the file name of the image the volume reads and writes.
	Active string `json:"active"`
	// Snapshots maps each snapshot ID to the overlay made when it was
	// taken; the snapshot's data is that overlay's backing file.
	Snapshots map[string]string `json:"snapshots"`
}

func baseName(vol string) string          { return volumePrefix + vol }
func overlayName(vol, snap string) string { return volumePrefix + vol + infoSeparator + snap }

// infoPath is the chain record of volume id (validated).
func (d *Driver) infoPath(id string) string {
	return filepath.Join(d.cfg.Dir, volumePrefix+id+infoSuffix)
}

// file is the path of a chain file name (checked by validate).
func (d *Driver) file(name string) string { return filepath.Join(d.cfg.Dir, name) }

// format is the format of file name in the chain.
func (ci chainInfo) format(name string) string {
	if name == baseName(ci.VolumeID) {
		return ci.Format
	}
	return formatQCOW2
}

// member reports whether name is a file of the chain: the base or the
// overlay of one of its snapshots.
func (ci chainInfo) member(name string) bool {
	if name == baseName(ci.VolumeID) {
		return true
	}
	snap, ok := strings.CutPrefix(name, baseName(ci.VolumeID)+infoSeparator)
	return ok && ci.Snapshots[snap] == name
}

func (ci chainInfo) validate(id string) error {
	switch {
	case ci.Version != chainVersion:
		return fmt.Errorf("format version %d, want %d", ci.Version, chainVersion)
	case ci.VolumeID != id:
		return fmt.Errorf("names volume %q", ci.VolumeID)
	case ci.Format != formatRaw && ci.Format != formatQCOW2:
		return fmt.Errorf("base format %q is not raw or qcow2", ci.Format)
	}
	for snap, name := range ci.Snapshots {
		if err := storage.ValidateID(snap); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if name != overlayName(id, snap) {
			return fmt.Errorf("snapshot %s has overlay %q, want %q", snap, name, overlayName(id, snap))
		}
	}
	if !ci.member(ci.Active) {
		return fmt.Errorf("active image %q is not in the chain", ci.Active)
	}
	return nil
}

// sortedSnapshots returns the chain's snapshot IDs in a stable order.
func (ci chainInfo) sortedSnapshots() []string {
	ids := make([]string, 0, len(ci.Snapshots))
	for id := range ci.Snapshots {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// readChain reads the chain record of volume id. A volume without one (made
// before the pool kept records) is its base file in the pool's format.
func (d *Driver) readChain(id string) (chainInfo, error) {
	if ci, ok := d.records.get(id); ok {
		return ci, nil
	}
	path := d.infoPath(id)
	var ci chainInfo
	err := readJSON(path, maxInfoBytes, &ci)
	if errors.Is(err, fs.ErrNotExist) {
		return chainInfo{Version: chainVersion, VolumeID: id, Format: d.format, Active: baseName(id), Snapshots: map[string]string{}}, nil
	}
	if err != nil {
		return chainInfo{}, err
	}
	if ci.Snapshots == nil {
		ci.Snapshots = map[string]string{}
	}
	if err := ci.validate(id); err != nil {
		return chainInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	d.records.put(ci)
	return ci, nil
}

// writeChain replaces volume ci.VolumeID's chain record atomically and
// durably.
func (d *Driver) writeChain(ctx context.Context, ci chainInfo) error {
	if err := d.placeChain(ctx, ci); err != nil {
		return err
	}
	return syncDir(d.cfg.Dir)
}

// placeChain is writeChain without the directory fsync.
func (d *Driver) placeChain(ctx context.Context, ci chainInfo) error {
	b, err := json.MarshalIndent(ci, "", "  ")
	if err != nil {
		return fmt.Errorf("encode chain record: %w", err)
	}
	b = append(b, '\n')
	d.records.drop(ci.VolumeID)
	err = d.placeFile(ctx, volumePrefix, ci.VolumeID, d.infoPath(ci.VolumeID), int64(len(b)), nil, func(f *os.File) error {
		_, err := f.WriteAt(b, 0)
		return noSpace(err)
	})
	if err == nil {
		d.records.put(ci)
	}
	return err
}

// recordCache holds validated chain records by volume ID; entries are
// copied in and out, so callers may change what they get.
type recordCache struct {
	mu sync.Mutex
	m  map[string]chainInfo
}

func (c *recordCache) get(id string) (chainInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci, ok := c.m[id]
	ci.Snapshots = maps.Clone(ci.Snapshots)
	return ci, ok
}

func (c *recordCache) put(ci chainInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]chainInfo{}
	}
	ci.Snapshots = maps.Clone(ci.Snapshots)
	c.m[ci.VolumeID] = ci
}

func (c *recordCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// chainVolume reads volume id's chain: it must exist (storage.ErrNotFound).
func (d *Driver) chainVolume(id string) (chainInfo, error) {
	if _, _, err := d.volumeFile(id); err != nil {
		return chainInfo{}, err
	}
	return d.readChain(id)
}

// activeSize is the virtual size of the volume's active image.
func (d *Driver) activeSize(ci chainInfo) (int64, error) {
	return imageSize(d.file(ci.Active), ci.format(ci.Active))
}

// backingOf returns the file holding snapshot snap's data: the backing file
// of its overlay, which must be a file of the chain.
func (d *Driver) backingOf(ci chainInfo, snap string) (string, error) {
	overlay := ci.Snapshots[snap]
	h, err := readQCOW2Header(d.file(overlay))
	if err != nil {
		return "", fmt.Errorf("overlay of snapshot %s: %w", snap, err)
	}
	if h.backing == "" || !ci.member(h.backing) || h.backing == overlay {
		return "", fmt.Errorf("overlay %s of snapshot %s has backing file %q, which is not in volume %s's chain", overlay, snap, h.backing, ci.VolumeID)
	}
	return h.backing, nil
}

// refuseInUse fails with storage.ErrInvalid if a writer (a running VM) holds
// the volume's active image: its chain cannot change under it.
func (d *Driver) refuseInUse(ctx context.Context, ci chainInfo, what string) error {
	busy, err := d.img.InUse(ctx, d.file(ci.Active), ci.format(ci.Active))
	if err != nil {
		return fmt.Errorf("check whether volume %s is in use: %w", ci.VolumeID, err)
	}
	if busy {
		return inUse(ci.VolumeID, what)
	}
	return nil
}

func inUse(vol, what string) error {
	return fmt.Errorf("%w: volume %s is in use (a running instance holds its image's lock): %s needs it detached, since Kiln does not coordinate qcow2 chain changes with the hypervisor",
		storage.ErrInvalid, vol, what)
}

// mapInUse turns qemu-img's lock failure into the driver's clear error.
func mapInUse(err error, vol, what string) error {
	if errors.Is(err, qemuimg.ErrInUse) {
		return fmt.Errorf("%w (%w)", inUse(vol, what), err)
	}
	return err
}

// newImage makes path appear atomically as an image that mk writes to a
// temp file of the object prefix+id: mode set, flushed, renamed into place
// (committing res), directory synced. On error nothing is left behind.
func (d *Driver) newImage(ctx context.Context, prefix, id, path string, res *reservation, mk func(tmp string) error) (err error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(d.cfg.Dir, tempPattern(prefix, id)+hex.EncodeToString(rnd[:]))
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := mk(tmp); err != nil {
		return noSpace(err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := syncFile(tmp, d.cfg.FileMode); err != nil {
		return noSpace(err)
	}
	if err := res.commit(func() error { return os.Rename(tmp, path) }); err != nil {
		return err
	}
	return syncDir(d.cfg.Dir)
}

// syncFile sets path's mode and flushes it (qemu-img does not flush a new
// raw file).
func syncFile(path string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// prealloc is the preallocation of new images and growth.
func (d *Driver) prealloc() string {
	if d.thick {
		return qemuimg.PreallocFalloc
	}
	return ""
}

// existingChain reports whether volume id exists with size bytes; any other
// size is a conflict.
func (d *Driver) existingChain(id string, size int64) (bool, error) {
	path := d.path(id)
	if fi, err := lstatExisting(path); err != nil || fi == nil {
		return false, err
	}
	ci, err := d.readChain(id)
	if err != nil {
		return false, fmt.Errorf("volume %s exists but its chain cannot be read (%w): %w", id, err, storage.ErrExists)
	}
	cur, err := d.activeSize(ci)
	if err != nil {
		return false, fmt.Errorf("volume %s exists but its size cannot be read (%w): %w", id, err, storage.ErrExists)
	}
	if cur != size {
		return false, fmt.Errorf("%s exists with %d bytes (%.2f GiB), requested %d bytes (%d GiB): %w",
			path, cur, gib(cur), size, size/storage.GiB, storage.ErrExists)
	}
	return true, syncDir(d.cfg.Dir)
}

// buildChainVolume creates volume id (new, locked by the caller) with place
// making its base image in the pool's format (and syncing the directory):
// the chain record goes first, so the base never exists without it; if the
// base cannot be made the record is removed again.
func (d *Driver) buildChainVolume(ctx context.Context, id string, place func() error) error {
	ci := chainInfo{Version: chainVersion, VolumeID: id, Format: d.format, Active: baseName(id), Snapshots: map[string]string{}}
	// One directory fsync, after the base, makes both renames durable; a
	// record whose base did not survive a crash is a leftover Cleanup
	// removes.
	if err := d.placeChain(ctx, ci); err != nil {
		return err
	}
	if err := place(); err != nil {
		d.records.drop(id)
		if rerr := os.Remove(d.infoPath(id)); rerr == nil {
			_ = syncDir(d.cfg.Dir)
		}
		return err
	}
	return nil
}

func (d *Driver) chainCreateVolume(ctx context.Context, id string, size int64) error {
	exists, err := d.existingChain(id, size)
	if err != nil || exists {
		return err
	}
	res, err := d.reserve(ctx, size)
	if err != nil {
		return err
	}
	defer res.release()
	if d.format == formatRaw {
		// A raw image is a plain file: made in-process (sparse, or with
		// its blocks reserved in a thick pool) as Cinder's NFS driver does
		// with truncate / fallocate, rather than by a qemu-img process
		// doing the same two system calls.
		return d.buildChainVolume(ctx, id, func() error {
			return d.buildFile(ctx, volumePrefix, id, d.path(id), size, res, nil)
		})
	}
	return d.buildChainVolume(ctx, id, func() error {
		return d.newImage(ctx, volumePrefix, id, d.path(id), res, func(tmp string) error {
			return d.img.Create(ctx, tmp, d.format, size, qemuimg.CreateOpts{Preallocation: d.prealloc()})
		})
	})
}

// chainDeleteVolume removes volume id's whole chain (its snapshots with it),
// overlays first, the record last. The caller holds the volume's lock.
func (d *Driver) chainDeleteVolume(id string) (int, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return 0, err
	}
	var overlays []string
	for _, e := range entries {
		if snap, ok := strings.CutPrefix(e.Name(), baseName(id)+infoSeparator); ok && storage.ValidateID(snap) == nil && e.Type().IsRegular() {
			overlays = append(overlays, e.Name())
		}
	}
	d.records.drop(id)
	removed := 0
	for _, name := range append(overlays, baseName(id), filepath.Base(d.infoPath(id))) {
		ok, err := removeIfRegular(d.file(name))
		if err != nil {
			return removed, err
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

// chainExtend grows the volume's active image. A raw active image is a
// plain file and grows like one, even while attached; a qcow2 one is
// resized by qemu-img, which a running VM's lock prevents.
func (d *Driver) chainExtend(ctx context.Context, id string, size int64) error {
	ci, err := d.chainVolume(id)
	if err != nil {
		return err
	}
	active, format := d.file(ci.Active), ci.format(ci.Active)
	cur, err := imageSize(active, format)
	if err != nil {
		return err
	}
	if cur > size {
		return fmt.Errorf("%w: the volume is %s; shrinking is not supported", storage.ErrInvalid, sizeString(cur))
	}
	if cur == size {
		return nil
	}
	if d.thick {
		if err := d.pool.lock(ctx); err != nil {
			return err
		}
		defer d.pool.unlock()
		if err := d.checkFree(ctx, size-cur); err != nil {
			return err
		}
	}
	if format == formatRaw {
		return growFile(active, cur, size, d.thick)
	}
	prealloc := d.prealloc()
	if ci.Active != baseName(id) {
		prealloc = "" // an overlay only holds what is written to it
	}
	err = d.img.Resize(ctx, active, format, size, qemuimg.ResizeOpts{Preallocation: prealloc})
	return noSpace(mapInUse(err, id, "extending a qcow2 image"))
}

// chainSnapshot takes snapshot snap of volume vol (both locked).
func (d *Driver) chainSnapshot(ctx context.Context, snap, vol string) (storage.Snapshot, error) {
	ci, err := d.chainVolume(vol)
	if err != nil {
		return storage.Snapshot{}, err
	}
	s := storage.Snapshot{ID: snap, VolumeID: vol, Location: d.file(overlayName(vol, snap))}
	if _, ok := ci.Snapshots[snap]; ok {
		backing, err := d.backingOf(ci, snap)
		if err != nil {
			return storage.Snapshot{}, err
		}
		if s.SizeBytes, err = imageSize(d.file(backing), ci.format(backing)); err != nil {
			return storage.Snapshot{}, err
		}
		return s, syncDir(d.cfg.Dir)
	}
	if other, err := d.snapshotVolume(snap); err != nil {
		return storage.Snapshot{}, err
	} else if other != "" {
		return storage.Snapshot{}, fmt.Errorf("snapshot %s exists as a snapshot of volume %s: %w", snap, other, storage.ErrExists)
	}
	if err := d.refuseInUse(ctx, ci, "a qcow2 snapshot"); err != nil {
		return storage.Snapshot{}, err
	}
	size, err := d.activeSize(ci)
	if err != nil {
		return storage.Snapshot{}, err
	}
	overlay := overlayName(vol, snap)
	// A leftover of an attempt that died before its record was written.
	if err := removeRegular(d.file(overlay)); err != nil {
		return storage.Snapshot{}, err
	}
	err = d.newImage(ctx, volumePrefix, vol, d.file(overlay), nil, func(tmp string) error {
		return d.img.Create(ctx, tmp, formatQCOW2, 0, qemuimg.CreateOpts{BackingFile: ci.Active, BackingFormat: ci.format(ci.Active)})
	})
	if err != nil {
		return storage.Snapshot{}, err
	}
	ci.Snapshots[snap] = overlay
	ci.Active = overlay
	if err := d.writeChain(ctx, ci); err != nil {
		_ = os.Remove(d.file(overlay))
		return storage.Snapshot{}, err
	}
	s.SizeBytes = size
	return s, nil
}

// snapshotVolume finds the volume whose chain has an overlay for snapshot
// snap: "" if none.
func (d *Driver) snapshotVolume(snap string) (string, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), volumePrefix)
		if !ok || len(rest) != 2*uuidLen+len(infoSeparator) || rest[uuidLen:uuidLen+len(infoSeparator)] != infoSeparator {
			continue
		}
		vol, s := rest[:uuidLen], rest[uuidLen+len(infoSeparator):]
		if s == snap && storage.ValidateID(vol) == nil {
			return vol, nil
		}
	}
	return "", nil
}

// chainDeleteSnapshot removes snapshot snap of volume vol (both locked),
// merging its data into the chain as Cinder's _delete_snapshot does.
func (d *Driver) chainDeleteSnapshot(ctx context.Context, snap, vol string) error {
	ci, err := d.readChain(vol)
	if err != nil {
		return err
	}
	overlay, ok := ci.Snapshots[snap]
	if !ok {
		// Gone already; an overlay left by an interrupted delete or
		// create is not part of the chain.
		if name := overlayName(vol, snap); ci.Active != name {
			return removeRegular(d.file(name))
		}
		return nil
	}
	if err := d.refuseInUse(ctx, ci, "deleting a qcow2 snapshot (merging the chain)"); err != nil {
		return err
	}
	backing, err := d.backingOf(ci, snap)
	if err != nil {
		return err
	}
	// The overlay holds what was written after the snapshot; its backing
	// file is the snapshot's data, which nothing needs once it is gone.
	if err := d.img.Commit(ctx, d.file(overlay), formatQCOW2, qemuimg.CommitOpts{}); err != nil {
		return noSpace(mapInUse(err, vol, "deleting a qcow2 snapshot"))
	}
	if ci.Active == overlay {
		ci.Active = backing
	} else {
		higher, err := d.imageAbove(ci, overlay)
		if err != nil {
			return err
		}
		// "" : an earlier attempt rebased it already.
		if higher != "" {
			if err := d.img.Rebase(ctx, d.file(higher), formatQCOW2, backing, ci.format(backing), qemuimg.RebaseOpts{Unsafe: true}); err != nil {
				return mapInUse(err, vol, "deleting a qcow2 snapshot")
			}
		}
	}
	delete(ci.Snapshots, snap)
	if err := d.writeChain(ctx, ci); err != nil {
		return err
	}
	return removeRegular(d.file(overlay))
}

// imageAbove returns the chain file whose backing file is name, "" if none.
func (d *Driver) imageAbove(ci chainInfo, name string) (string, error) {
	for _, snap := range ci.sortedSnapshots() {
		o := ci.Snapshots[snap]
		if o == name {
			continue
		}
		h, err := readQCOW2Header(d.file(o))
		if err != nil {
			return "", err
		}
		if h.backing == name {
			return o, nil
		}
	}
	return "", nil
}

// chainCopy creates volume id (locked, new) of size bytes from src, an
// image of the pool (with its backing chain) in srcFormat: qemu-img convert
// into the pool's format, then grown to size. Progress goes to the
// context's storage.ProgressFunc.
func (d *Driver) chainCopy(ctx context.Context, id string, size int64, src, srcFormat, srcVolume, what string) error {
	srcSize, err := imageSize(src, srcFormat)
	if err != nil {
		return err
	}
	if srcSize > size {
		return fmt.Errorf("%w: %s is smaller than the %s's %s", storage.ErrInvalid, sizeString(size), what, sizeString(srcSize))
	}
	res, err := d.reserve(ctx, size)
	if err != nil {
		return err
	}
	defer res.release()
	return d.buildChainVolume(ctx, id, func() error {
		return d.newImage(ctx, volumePrefix, id, d.path(id), res, func(tmp string) error {
			err := d.img.Convert(ctx, src, srcFormat, tmp, d.format, qemuimg.ConvertOpts{Preallocation: d.prealloc()})
			if err != nil {
				return mapInUse(err, srcVolume, "copying it")
			}
			if size > srcSize {
				return d.img.Resize(ctx, tmp, d.format, size, qemuimg.ResizeOpts{Preallocation: d.prealloc()})
			}
			return nil
		})
	})
}

// chainRevert reverts volume vol to snapshot snap (both locked): only the
// latest snapshot, as Cinder's API allows, by replacing the active overlay
// with an empty one on the same backing file, at the volume's current size.
func (d *Driver) chainRevert(ctx context.Context, vol, snap string) error {
	ci, err := d.chainVolume(vol)
	if err != nil {
		return err
	}
	overlay, ok := ci.Snapshots[snap]
	if !ok {
		if other, err := d.snapshotVolume(snap); err == nil && other != "" && other != vol {
			return fmt.Errorf("%w: snapshot %s was taken of volume %s", storage.ErrInvalid, snap, other)
		}
		return fmt.Errorf("snapshot %s of volume %s does not exist: %w", snap, vol, storage.ErrNotFound)
	}
	if ci.Active != overlay {
		return fmt.Errorf("%w: snapshot %s is not the volume's latest snapshot; only the latest can be reverted to", storage.ErrInvalid, snap)
	}
	if err := d.refuseInUse(ctx, ci, "reverting to a snapshot"); err != nil {
		return err
	}
	backing, err := d.backingOf(ci, snap)
	if err != nil {
		return err
	}
	size, err := d.activeSize(ci)
	if err != nil {
		return err
	}
	return d.newImage(ctx, volumePrefix, vol, d.file(overlay), nil, func(tmp string) error {
		return d.img.Create(ctx, tmp, formatQCOW2, size, qemuimg.CreateOpts{BackingFile: backing, BackingFormat: ci.format(backing)})
	})
}

// chainSnapshots lists the snapshots of every volume's chain.
func (d *Driver) chainSnapshots(volumes []storage.Volume) []storage.Snapshot {
	out := []storage.Snapshot{}
	for _, v := range volumes {
		ci, err := d.readChain(v.ID)
		if err != nil {
			continue // the volume is listed; its chain is reported by operations on it
		}
		for _, snap := range ci.sortedSnapshots() {
			s := storage.Snapshot{ID: snap, VolumeID: v.ID, Location: d.file(ci.Snapshots[snap])}
			if backing, err := d.backingOf(ci, snap); err == nil {
				s.SizeBytes, _ = imageSize(d.file(backing), ci.format(backing))
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// chainCleanup removes chain files no record references: records and
// overlays of volumes whose base is gone, overlays their record does not
// list. It takes each volume's lock.
func (d *Driver) chainCleanup(ctx context.Context, entries []os.DirEntry) (int, error) {
	vols := map[string]bool{}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), volumePrefix)
		if !ok || len(rest) <= uuidLen || rest[uuidLen:uuidLen+1] != infoSeparator {
			continue
		}
		if id := rest[:uuidLen]; storage.ValidateID(id) == nil {
			vols[id] = true
		}
	}
	ids := make([]string, 0, len(vols))
	for id := range vols {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	removed := 0
	for _, id := range ids {
		unlock, err := d.ids.Lock(ctx, volKey(id))
		if err != nil {
			return removed, err
		}
		n, err := d.cleanChain(id)
		unlock()
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// cleanChain removes volume id's unreferenced chain files (locked).
func (d *Driver) cleanChain(id string) (int, error) {
	if _, err := os.Lstat(d.path(id)); errors.Is(err, fs.ErrNotExist) {
		return d.chainDeleteVolume(id)
	} else if err != nil {
		return 0, err
	}
	ci, err := d.readChain(id)
	if err != nil {
		return 0, nil // never guess with an unreadable record
	}
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		snap, ok := strings.CutPrefix(e.Name(), baseName(id)+infoSeparator)
		if !ok || storage.ValidateID(snap) != nil || ci.member(e.Name()) {
			continue
		}
		if err := removeRegular(d.file(e.Name())); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// removeRegular removes path if it is a regular file; missing is fine.
func removeRegular(path string) error {
	removed, err := removeIfRegular(path)
	if err != nil || !removed {
		return err
	}
	return syncDir(filepath.Dir(path))
}

package nfs

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/keyedlock"
	"github.com/kilnstore/kiln/internal/qemuimg"
	"github.com/kilnstore/kiln/internal/storage"
)

// Identity reported in Info.
const (
	DriverName    = "nfs"
	DriverVersion = "1.1.0"
	// ProtocolLocal is the storage_protocol of a local-directory pool: a
	// volume is reached by its path on the agent's host and is not exported.
	ProtocolLocal = "local"
	// ProtocolNFS is the storage_protocol of a pool exported over NFS.
	ProtocolNFS = "nfs"
)

const (
	dirPerm        = 0o750
	volumePrefix   = "volume-"
	snapshotPrefix = "snapshot-"
	// metaSuffix names a snapshot's sidecar: snapshot-<id>.meta.
	metaSuffix = ".meta"
	// A temp file is "." + volumePrefix or snapshotPrefix + id + tempInfix +
	// random; see tempPattern.
	tempInfix = ".tmp-"
	uuidLen   = 36
)

// fsUsage is what statfs reports for the file system holding a pool, in bytes.
type fsUsage struct {
	total int64
	avail int64
}

// Driver serves one local-directory pool. It is safe for concurrent use.
type Driver struct {
	cfg      Config // defaulted and validated
	thick    bool
	capBytes int64 // 0: no cap
	info     storage.PoolInfo
	// chain: qcow2 mode (chain.go); format is the format of new volumes;
	// img runs qemu-img (qcow2 mode only).
	chain  bool
	format string
	img    *qemuimg.Tool
	// records caches the chain records this driver wrote or read (it owns
	// the directory), so that listing a pool does not read every record.
	records recordCache
	// mount is the remote share's mounter (nil for a local directory);
	// modeChecked records that checkMode passed on the mounted share.
	mount       *Mounter
	modeChecked atomic.Bool

	ids  keyedlock.Map // serializes operations per volume and snapshot (volKey, snapKey)
	pool ctxMutex      // thick: makes free-space check + reservation atomic
	// reserved is the space thick operations in flight have claimed and not
	// yet turned into files (see reserve).
	reserved atomic.Int64

	fsStat func(dir string) (fsUsage, error) // statfs; replaced in tests
	// published, if set, runs after a thick pool's file is renamed into
	// place and before its claim is given back (tests widen the window).
	published func()
}

// New validates cfg (errors wrap storage.ErrInvalid), applies defaults and
// creates cfg.Dir if it is missing.
func New(cfg Config) (*Driver, error) {
	cfg = cfg.withDefaults()
	var mount *Mounter
	if cfg.Share != nil {
		if cfg.Dir != "" {
			return nil, fmt.Errorf("%w: nfs: pool %q: dir and a share are exclusive (the pool's directory is the share's mount point)", storage.ErrInvalid, cfg.Name)
		}
		m, err := NewMounter(*cfg.Share, cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("nfs: pool %q: %w", cfg.Name, err)
		}
		mount, cfg.Dir = m, m.Dir()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Capabilities = maps.Clone(cfg.Capabilities)
	caps := maps.Clone(cfg.Capabilities)
	if caps == nil {
		caps = map[string]string{}
	}
	// A file grows while it is open, so an attached volume can be extended.
	// In the qcow2 mode a qcow2 image is resized by qemu-img, which a
	// running VM's lock prevents.
	caps[agentrpc.CapabilityOnlineExtend] = "True"
	chain := cfg.Snapshots == SnapshotsQCOW2
	format := formatRaw
	if cfg.QCOW2Volumes {
		format = formatQCOW2
	}
	var img *qemuimg.Tool
	if chain {
		caps[agentrpc.CapabilityOnlineExtend] = "False"
		if _, err := exec.LookPath(cmp.Or(cfg.QemuImg, "qemu-img")); err != nil {
			return nil, fmt.Errorf("nfs: pool %q: qcow2 snapshots and volumes need qemu-img (apt-get install qemu-utils): %w", cfg.Name, err)
		}
		var err error
		if img, err = qemuimg.New(qemuimg.Config{Binary: cfg.QemuImg}); err != nil {
			return nil, fmt.Errorf("nfs: pool %q: %w", cfg.Name, err)
		}
	}

	fi, err := os.Stat(cfg.Dir)
	switch {
	case mount != nil:
		// The share is mounted (and the mode checked) by the first
		// operation: an agent starts while its NFS server is down, and
		// the directory under an unmounted mount point is never used.
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(cfg.Dir, dirPerm); err != nil {
			return nil, fmt.Errorf("nfs: pool %q: create directory: %w", cfg.Name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("nfs: pool %q: %w", cfg.Name, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: nfs: pool %q: %s exists and is not a directory", storage.ErrInvalid, cfg.Name, cfg.Dir)
	}

	if mount == nil {
		if err := checkMode(cfg.Dir, chain); err != nil {
			return nil, fmt.Errorf("%w: nfs: pool %q: %w", storage.ErrInvalid, cfg.Name, err)
		}
	}

	thick := cfg.Provisioning == ProvisioningThick
	return &Driver{
		cfg:      cfg,
		thick:    thick,
		chain:    chain,
		format:   format,
		img:      img,
		mount:    mount,
		capBytes: int64(cfg.CapacityGB * float64(storage.GiB)),
		info: storage.PoolInfo{
			Name:                     cfg.Name,
			Backend:                  cfg.Backend,
			Driver:                   DriverName,
			DriverVersion:            DriverVersion,
			Protocol:                 protocol(cfg),
			ThinProvisioning:         !thick,
			ThickProvisioning:        thick,
			ReservedPercentage:       cfg.ReservedPercentage,
			MaxOverSubscriptionRatio: cfg.MaxOverSubscriptionRatio,
			Capabilities:             caps,
		},
		pool:   newCtxMutex(),
		fsStat: statfs,
	}, nil
}

func protocol(cfg Config) string {
	if cfg.Exporter != nil || cfg.Share != nil {
		return ProtocolNFS
	}
	return ProtocolLocal
}

// Info returns the pool's static facts. The capabilities map is a copy.
func (d *Driver) Info() storage.PoolInfo {
	info := d.info
	info.Capabilities = maps.Clone(d.info.Capabilities)
	return info
}

// Path returns the file that holds (or would hold) volume id.
func (d *Driver) Path(id string) (string, error) {
	if err := storage.ValidateID(id); err != nil {
		return "", fmt.Errorf("nfs: volume path: %w", err)
	}
	return d.path(id), nil
}

// path must only be called with a validated ID.
func (d *Driver) path(id string) string {
	return filepath.Join(d.cfg.Dir, volumePrefix+id)
}

// snapPath is the data file of snapshot id (validated).
func (d *Driver) snapPath(id string) string {
	return filepath.Join(d.cfg.Dir, snapshotPrefix+id)
}

// metaPath is the sidecar of snapshot id (validated).
func (d *Driver) metaPath(id string) string {
	return filepath.Join(d.cfg.Dir, snapshotPrefix+id+metaSuffix)
}

// volKey and snapKey are the lock keys of a volume and a snapshot: distinct
// even if a volume and a snapshot share a UUID.
func volKey(id string) string  { return volumePrefix + id }
func snapKey(id string) string { return snapshotPrefix + id }

// tempPattern is the prefix of the temp files built for the object named
// prefix+id (prefix is volumePrefix or snapshotPrefix).
func tempPattern(prefix, id string) string { return "." + prefix + id + tempInfix }

// Stats measures the pool now. Total is the file system's size, capped by
// CapacityGB. Free is statfs's available space; in thick mode it is also at
// most total minus the sizes of the volumes, the snapshots and the space
// claimed by operations in flight, and in a capped thin pool at most total
// minus the blocks the volumes and snapshots really occupy. Provisioned is
// the sum of the volumes' sizes (snapshots are not volumes).
func (d *Driver) Stats(ctx context.Context) (storage.PoolStats, error) {
	if err := ctx.Err(); err != nil {
		return storage.PoolStats{}, fmt.Errorf("nfs: stats of pool %q: %w", d.cfg.Name, err)
	}
	c, err := d.measure(ctx)
	if err != nil {
		return storage.PoolStats{}, fmt.Errorf("nfs: stats of pool %q: %w", d.cfg.Name, err)
	}
	return storage.PoolStats{
		TotalKind:     storage.Known,
		TotalGB:       gib(c.total),
		FreeKind:      storage.Known,
		FreeGB:        gib(c.free),
		ProvisionedGB: gib(c.provisioned),
		Volumes:       len(c.volumes),
	}, nil
}

// capacity is one measurement of the pool, in bytes.
type capacity struct {
	fs          fsUsage
	total       int64
	free        int64
	provisioned int64 // sum of the volumes' apparent sizes
	snapshots   int64 // sum of the snapshots' apparent sizes
	reserved    int64 // thick: claimed by operations in flight
	allocated   int64 // sum of blocks in use by volumes and snapshots
	volumes     []storage.Volume
}

func (d *Driver) measure(ctx context.Context) (capacity, error) {
	if err := d.ready(ctx); err != nil {
		return capacity{}, err
	}
	u, err := d.fsStat(d.cfg.Dir)
	if err != nil {
		return capacity{}, err
	}
	// Claims are read before the directory: a claim is given back only after
	// its file appeared, so a measurement without the pool lock may count an
	// operation twice (briefly reporting less free space), never not at all.
	var reserved int64
	if d.thick {
		reserved = d.reserved.Load()
	}
	h, err := d.scan(ctx)
	if err != nil {
		return capacity{}, err
	}
	c := capacity{fs: u, total: u.total, reserved: reserved, allocated: h.allocated, volumes: h.volumes}
	for _, v := range h.volumes {
		c.provisioned += v.SizeBytes
	}
	for _, s := range h.snapshots {
		c.snapshots += s.SizeBytes
	}
	c.snapshots += h.overlays
	if d.capBytes > 0 {
		c.total = min(c.total, d.capBytes)
	}
	switch {
	case d.thick:
		c.free = min(u.avail, c.total-c.provisioned-c.snapshots-c.reserved)
	case d.capBytes > 0:
		c.free = min(u.avail, c.total-c.allocated)
	default:
		c.free = min(u.avail, c.total)
	}
	c.free = max(c.free, 0)
	return c, nil
}

// ListVolumes reports the volumes in the pool, sorted by ID: the regular
// files named volume-<canonical uuid>. Anything else in the directory,
// including the temp files of unfinished creates, is ignored.
func (d *Driver) ListVolumes(ctx context.Context) ([]storage.Volume, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nfs: list volumes of pool %q: %w", d.cfg.Name, err)
	}
	if err := d.ready(ctx); err != nil {
		return nil, fmt.Errorf("nfs: list volumes of pool %q: %w", d.cfg.Name, err)
	}
	h, err := d.scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("nfs: list volumes of pool %q: %w", d.cfg.Name, err)
	}
	return h.volumes, nil
}

// holdings is what one scan of the pool directory found.
type holdings struct {
	volumes   []storage.Volume   // sorted by ID, never nil
	snapshots []storage.Snapshot // sorted by ID, never nil; VolumeID not read
	allocated int64              // bytes the volumes and snapshots occupy
	overlays  int64              // qcow2 mode: bytes the overlays occupy
}

// scan reads the pool directory: the regular files named volume-<uuid> and
// snapshot-<uuid>. Temp files and snapshot sidecars are not objects.
func (d *Driver) scan(ctx context.Context) (holdings, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return holdings{}, err
	}
	h := holdings{volumes: []storage.Volume{}, snapshots: []storage.Snapshot{}}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return holdings{}, err
		}
		name := e.Name()
		prefix := volumePrefix
		id, ok := strings.CutPrefix(name, volumePrefix)
		if !ok {
			prefix = snapshotPrefix
			id, ok = strings.CutPrefix(name, snapshotPrefix)
		}
		if !ok || storage.ValidateID(id) != nil || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return holdings{}, fmt.Errorf("stat %s: %w", filepath.Join(d.cfg.Dir, name), err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if prefix == volumePrefix {
			h.volumes = append(h.volumes, storage.Volume{ID: id, SizeBytes: fi.Size(), Location: d.path(id)})
		} else {
			h.snapshots = append(h.snapshots, storage.Snapshot{ID: id, SizeBytes: fi.Size(), Location: d.snapPath(id)})
		}
		h.allocated += allocatedBytes(fi)
	}
	if d.chain {
		return d.scanChains(entries, h)
	}
	return h, nil
}

// scanChains completes a scan in the qcow2 mode: a volume's size is its
// active image's virtual size and its location the active image; overlays
// count as snapshot space.
func (d *Driver) scanChains(entries []os.DirEntry, h holdings) (holdings, error) {
	for i, v := range h.volumes {
		ci, err := d.readChain(v.ID)
		if err != nil {
			continue // listed as the base file; operations report the record
		}
		size, err := d.activeSize(ci)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return holdings{}, fmt.Errorf("volume %s: %w", v.ID, err)
		}
		h.volumes[i].SizeBytes, h.volumes[i].Location = size, d.file(ci.Active)
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), volumePrefix)
		if !ok || len(rest) != 2*uuidLen+len(infoSeparator) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return holdings{}, err
		}
		h.allocated += allocatedBytes(fi)
		h.overlays += allocatedBytes(fi)
	}
	return h, nil
}

// checkMode refuses a pool directory holding snapshots of the other mode:
// copies (snapshot-<id>) in the qcow2 mode, chains in the copy mode.
func checkMode(dir string, chain bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if chain {
			if id, ok := strings.CutPrefix(name, snapshotPrefix); ok && storage.ValidateID(id) == nil {
				return fmt.Errorf("%s holds copy-mode snapshots (%s); the qcow2 snapshot mode cannot be enabled until they are deleted", dir, name)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(name, volumePrefix); ok && len(rest) > uuidLen && rest[uuidLen:uuidLen+1] == infoSeparator {
			return fmt.Errorf("%s holds qcow2 chains (%s); the copy snapshot mode cannot be used on it", dir, name)
		}
	}
	return nil
}

// CreateVolume creates volume id as a file of exactly sizeGiB GiB. If the
// file exists with that size it is returned as is; with another size (or as
// something other than a regular file) the error wraps storage.ErrExists. In
// thick mode a volume that does not fit wraps storage.ErrNoSpace and leaves
// nothing behind.
func (d *Driver) CreateVolume(ctx context.Context, id string, sizeGiB int64) (storage.Volume, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: create volume: %w", err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: create volume %s: %w", id, err)
	}
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("nfs: create volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	unlock, err := d.lockIDs(ctx, volKey(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()

	path := d.path(id)
	size := sizeGiB * storage.GiB
	vol := storage.Volume{ID: id, SizeBytes: size, Location: path}
	if d.chain {
		if err := d.chainCreateVolume(ctx, id, size); err != nil {
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

	res, err := d.reserve(ctx, size)
	if err != nil {
		return fail(err)
	}
	defer res.release()
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := d.buildFile(ctx, volumePrefix, id, path, size, res, nil); err != nil {
		return fail(err)
	}
	return vol, nil
}

// existingSynced is existing for a volume about to be acknowledged: when it
// is there, a previous attempt may have died between rename and directory
// fsync, so the directory entry is made durable first.
func (d *Driver) existingSynced(path string, size int64) (bool, error) {
	exists, err := existing(path, size)
	if err != nil || !exists {
		return exists, err
	}
	return true, syncDir(d.cfg.Dir)
}

// existing reports whether path already holds a volume of size bytes; any
// other thing at path is a conflict.
func existing(path string, size int64) (bool, error) {
	fi, err := lstatExisting(path)
	switch {
	case err != nil || fi == nil:
		return false, err
	case fi.Size() != size:
		return false, fmt.Errorf("%s exists with %d bytes (%.2f GiB), requested %d bytes (%d GiB): %w",
			path, fi.Size(), gib(fi.Size()), size, size/storage.GiB, storage.ErrExists)
	}
	return true, nil
}

// reservation is space of a thick pool claimed by an operation building a
// file (see reserve). A nil *reservation (thin pools) claims nothing.
type reservation struct {
	d    *Driver
	size int64
	done bool
}

// reserve claims size bytes of a thick pool for an operation that is about
// to build a file, failing with storage.ErrNoSpace when they do not fit.
// From the check until commit or release the claim counts as used, so
// concurrent operations can never provision past the capacity, and a long
// copy does not hold the pool lock. Thin pools claim nothing (nil).
func (d *Driver) reserve(ctx context.Context, size int64) (*reservation, error) {
	if !d.thick || size <= 0 {
		return nil, nil
	}
	if err := d.pool.lock(ctx); err != nil {
		return nil, err
	}
	defer d.pool.unlock()
	if err := d.checkFree(ctx, size); err != nil {
		return nil, err
	}
	d.reserved.Add(size)
	return &reservation{d: d, size: size}, nil
}

// commit runs publish (the rename that makes the file count in measure) and
// gives the claim back in one step under the pool lock, so no free-space
// check ever sees the space twice (as the file and as the claim) or not at
// all.
func (r *reservation) commit(publish func() error) error {
	if r == nil {
		return publish()
	}
	_ = r.d.pool.lock(context.Background()) // held briefly by everyone
	defer r.d.pool.unlock()
	err := publish()
	if r.d.published != nil {
		r.d.published()
	}
	r.release()
	return err
}

// release gives the claim back if commit did not; the owner defers it.
func (r *reservation) release() {
	if r == nil || r.done {
		return
	}
	r.done = true
	r.d.reserved.Add(-r.size)
}

// checkFree fails with storage.ErrNoSpace when size bytes do not fit in a
// thick pool. The caller holds d.pool.
func (d *Driver) checkFree(ctx context.Context, size int64) error {
	c, err := d.measure(ctx)
	if err != nil {
		return fmt.Errorf("measure free space: %w", err)
	}
	if size > c.free {
		return fmt.Errorf("%s does not fit in thick pool: %.2f GiB free (total %.2f GiB, provisioned %.2f GiB, snapshots %.2f GiB, in flight %.2f GiB, file system available %.2f GiB): %w",
			sizeString(size), gib(c.free), gib(c.total), gib(c.provisioned), gib(c.snapshots), gib(c.reserved), gib(c.fs.avail), storage.ErrNoSpace)
	}
	return nil
}

// sizeString prints whole GiB as "N GiB", anything else with decimals.
func sizeString(size int64) string {
	if size%storage.GiB == 0 {
		return fmt.Sprintf("%d GiB", size/storage.GiB)
	}
	return fmt.Sprintf("%.2f GiB", gib(size))
}

// buildFile makes path appear atomically holding size bytes: it builds a
// temp file named after the object (prefix+id), reserves its blocks in a
// thick pool, lets fill write the data (fill may be nil for a blank file),
// sets the size, fsyncs, renames it over path (committing res, which may be
// nil) and fsyncs the directory. On error nothing is left behind and path is
// untouched.
func (d *Driver) buildFile(ctx context.Context, prefix, id, path string, size int64, res *reservation, fill func(f *os.File) error) error {
	if err := d.placeFile(ctx, prefix, id, path, size, res, fill); err != nil {
		return err
	}
	return syncDir(d.cfg.Dir)
}

// placeFile is buildFile without the directory fsync: the caller syncs the
// directory after placing the files that belong together.
func (d *Driver) placeFile(ctx context.Context, prefix, id, path string, size int64, res *reservation, fill func(f *os.File) error) (err error) {
	f, err := os.CreateTemp(d.cfg.Dir, tempPattern(prefix, id)+"*")
	if err != nil {
		return noSpace(err)
	}
	tmp, closed := f.Name(), false
	defer func() {
		if err != nil {
			if !closed {
				_ = f.Close()
			}
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(d.cfg.FileMode); err != nil {
		return err
	}

	if d.thick {
		// Reserve the blocks so a thick volume cannot run out of space
		// later; where fallocate is unsupported the file stays sparse and
		// only the accounting in checkFree protects the pool.
		if _, err := preallocate(f, 0, size); err != nil {
			return noSpace(err)
		}
	}
	if fill != nil {
		if err := fill(f); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return noSpace(err)
	}
	if err := f.Sync(); err != nil {
		return noSpace(err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return noSpace(err)
	}
	return res.commit(func() error { return os.Rename(tmp, path) })
}

// DeleteVolume removes volume id and any temp files a crashed create left
// for it. A missing volume is not an error. Snapshots of the volume are
// independent copies and stay: whether a volume with snapshots may be
// deleted is the coordinator's rule, not the driver's.
func (d *Driver) DeleteVolume(ctx context.Context, id string) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("nfs: delete volume: %w", err)
	}
	fail := func(err error) error {
		return fmt.Errorf("nfs: delete volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	unlock, err := d.lockIDs(ctx, volKey(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()

	if d.cfg.Exporter != nil {
		// An export left by a connection that was never terminated must
		// not outlive the volume.
		if err := d.cfg.Exporter.UnexportVolume(ctx, id, storage.Connector{}); err != nil {
			return fail(fmt.Errorf("remove its NFS export: %w", err))
		}
	}
	path := d.path(id)
	changed := false
	if d.chain {
		n, err := d.chainDeleteVolume(id)
		if err != nil {
			return fail(err)
		}
		changed = n > 0
	}
	removed, err := removeIfRegular(path)
	if err != nil {
		return fail(err)
	}
	changed = changed || removed
	n, err := d.removeTemps(volumePrefix, id)
	if err != nil {
		return fail(err)
	}
	if changed || n > 0 {
		if err := syncDir(d.cfg.Dir); err != nil {
			return fail(err)
		}
	}
	return nil
}

// Cleanup removes what operations interrupted by a crash left in the pool
// directory: temp files of volumes and snapshots, and snapshot sidecars
// whose snapshot file never appeared. It reports how many files it removed.
// It takes each object's lock first, so it never touches an operation in
// progress; call it when the agent starts, or periodically.
func (d *Driver) Cleanup(ctx context.Context) (int, error) {
	fail := func(removed int, err error) (int, error) {
		return removed, fmt.Errorf("nfs: clean up pool %q: %w", d.cfg.Name, err)
	}
	if err := d.ready(ctx); err != nil {
		return fail(0, err)
	}
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return fail(0, err)
	}
	type object struct{ prefix, id string }
	var temps, metas []object
	seen := map[object]bool{}
	for _, e := range entries {
		if prefix, id, ok := tempOf(e.Name()); ok && !seen[object{prefix, id}] {
			seen[object{prefix, id}] = true
			temps = append(temps, object{prefix, id})
		}
		if id, ok := metaOf(e.Name()); ok {
			metas = append(metas, object{snapshotPrefix, id})
		}
	}
	removed := 0
	if d.chain {
		n, err := d.chainCleanup(ctx, entries)
		removed += n
		if err != nil {
			return fail(removed, err)
		}
	}
	for _, o := range temps {
		unlock, err := d.ids.Lock(ctx, o.prefix+o.id)
		if err != nil {
			return fail(removed, err)
		}
		n, err := d.removeTemps(o.prefix, o.id)
		unlock()
		removed += n
		if err != nil {
			return fail(removed, err)
		}
	}
	for _, o := range metas {
		unlock, err := d.ids.Lock(ctx, snapKey(o.id))
		if err != nil {
			return fail(removed, err)
		}
		n, err := d.removeOrphanMeta(o.id)
		unlock()
		removed += n
		if err != nil {
			return fail(removed, err)
		}
	}
	if removed > 0 {
		if err := syncDir(d.cfg.Dir); err != nil {
			return fail(removed, err)
		}
	}
	return removed, nil
}

// removeTemps removes the temp files of the object prefix+id. The caller
// holds its lock.
func (d *Driver) removeTemps(prefix, id string) (int, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return 0, err
	}
	pattern := tempPattern(prefix, id)
	removed := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), pattern) || !e.Type().IsRegular() {
			continue
		}
		err := os.Remove(filepath.Join(d.cfg.Dir, e.Name()))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// tempOf returns the object prefix (volumePrefix or snapshotPrefix) and ID
// in a temp file's name.
func tempOf(name string) (prefix, id string, ok bool) {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok {
		return "", "", false
	}
	for _, prefix := range []string{volumePrefix, snapshotPrefix} {
		r, ok := strings.CutPrefix(rest, prefix)
		if !ok || len(r) < uuidLen || !strings.HasPrefix(r[uuidLen:], tempInfix) {
			continue
		}
		id := r[:uuidLen]
		return prefix, id, storage.ValidateID(id) == nil
	}
	return "", "", false
}

// metaOf returns the snapshot ID in a sidecar's name.
func metaOf(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, snapshotPrefix)
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, metaSuffix)
	return id, ok && storage.ValidateID(id) == nil
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !dirSyncUnsupported(err) {
		return err
	}
	return nil
}

// noSpace marks a file system "full" error with storage.ErrNoSpace.
func noSpace(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %w", storage.ErrNoSpace, err)
	}
	return err
}

func gib(bytes int64) float64 { return float64(bytes) / float64(storage.GiB) }

// volumeFile returns the path and file info of volume id, which must exist
// as a regular file; a missing one wraps storage.ErrNotFound.
func (d *Driver) volumeFile(id string) (string, fs.FileInfo, error) {
	path := d.path(id)
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path, nil, fmt.Errorf("volume %s does not exist: %w", id, storage.ErrNotFound)
	case err != nil:
		return path, nil, err
	case !fi.Mode().IsRegular():
		return path, nil, fmt.Errorf("%s is not a regular file (mode %s)", path, fi.Mode())
	}
	return path, fi, nil
}

// chainLocated returns vol with its location set to its active image.
func (d *Driver) chainLocated(vol storage.Volume) (storage.Volume, error) {
	ci, err := d.readChain(vol.ID)
	if err != nil {
		return storage.Volume{}, fmt.Errorf("nfs: volume %s in pool %q: %w", vol.ID, d.cfg.Name, err)
	}
	vol.Location = d.file(ci.Active)
	return vol, nil
}

// lstatExisting returns the file info of path, nil if it does not exist;
// anything but a regular file there is a conflict (storage.ErrExists).
func lstatExisting(path string) (fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s exists and is not a regular file (mode %s): %w", path, fi.Mode(), storage.ErrExists)
	}
	return fi, nil
}

// removeIfRegular removes path if it is a regular file and reports whether
// it did; a missing file is fine, anything else is refused.
func removeIfRegular(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s is not a regular file (mode %s); refusing to remove it", path, fi.Mode())
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// readJSON decodes the regular file at path, at most limit bytes, into v,
// rejecting unknown fields. A missing file wraps fs.ErrNotExist.
func readJSON(path string, limit int64, v any) error {
	f, _, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ready makes sure a share pool's share is mounted (and, the first time,
// that it holds no snapshots of the other mode) before the pool's
// directory is touched; a local-directory pool is always ready.
func (d *Driver) ready(ctx context.Context) error {
	if d.mount == nil {
		return ctx.Err()
	}
	if err := d.mount.Ensure(ctx); err != nil {
		return err
	}
	if !d.modeChecked.Load() {
		if err := checkMode(d.cfg.Dir, d.chain); err != nil {
			return fmt.Errorf("%w: %w", storage.ErrInvalid, err)
		}
		d.modeChecked.Store(true)
	}
	return nil
}

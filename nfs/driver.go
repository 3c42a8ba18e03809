package nfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// Identity reported in Info.
const (
	DriverName    = "nfs"
	DriverVersion = "1.0.0"
	// ProtocolLocal is the storage_protocol of a local-directory pool: a
	// volume is reached by its path on the agent's host and is not exported.
	// Pools on NFS shares will report "nfs".
	ProtocolLocal = "local"
)

const (
	dirPerm      = 0o750
	volumePrefix = "volume-"
	// A temp file is tempPrefix + id + tempInfix + random.
	tempPrefix = ".volume-"
	tempInfix  = ".tmp-"
	uuidLen    = 36
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

	ids  *keyedMutex // serializes operations per volume ID
	pool ctxMutex    // thick: makes free-space check + create atomic

	fsStat func(dir string) (fsUsage, error) // statfs; replaced in tests
}

// New validates cfg (errors wrap storage.ErrInvalid), applies defaults and
// creates cfg.Dir if it is missing.
func New(cfg Config) (*Driver, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Capabilities = maps.Clone(cfg.Capabilities)

	fi, err := os.Stat(cfg.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(cfg.Dir, dirPerm); err != nil {
			return nil, fmt.Errorf("nfs: pool %q: create directory: %w", cfg.Name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("nfs: pool %q: %w", cfg.Name, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: nfs: pool %q: %s exists and is not a directory", storage.ErrInvalid, cfg.Name, cfg.Dir)
	}

	thick := cfg.Provisioning == ProvisioningThick
	return &Driver{
		cfg:      cfg,
		thick:    thick,
		capBytes: int64(cfg.CapacityGB * float64(storage.GiB)),
		info: storage.PoolInfo{
			Name:                     cfg.Name,
			Backend:                  cfg.Backend,
			Driver:                   DriverName,
			DriverVersion:            DriverVersion,
			Protocol:                 ProtocolLocal,
			ThinProvisioning:         !thick,
			ThickProvisioning:        thick,
			ReservedPercentage:       cfg.ReservedPercentage,
			MaxOverSubscriptionRatio: cfg.MaxOverSubscriptionRatio,
			Capabilities:             cfg.Capabilities,
		},
		ids:    newKeyedMutex(),
		pool:   newCtxMutex(),
		fsStat: statfs,
	}, nil
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

// Stats measures the pool now. Total is the file system's size, capped by
// CapacityGB. Free is statfs's available space; in thick mode it is also at
// most total minus provisioned, and in a capped thin pool at most total
// minus the blocks the volumes really occupy. Provisioned is the sum of the
// volumes' sizes.
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
	provisioned int64 // sum of apparent sizes
	allocated   int64 // sum of blocks in use
	volumes     []storage.Volume
}

func (d *Driver) measure(ctx context.Context) (capacity, error) {
	u, err := d.fsStat(d.cfg.Dir)
	if err != nil {
		return capacity{}, err
	}
	vols, allocated, err := d.scan(ctx)
	if err != nil {
		return capacity{}, err
	}
	c := capacity{fs: u, total: u.total, allocated: allocated, volumes: vols}
	for _, v := range vols {
		c.provisioned += v.SizeBytes
	}
	if d.capBytes > 0 {
		c.total = min(c.total, d.capBytes)
	}
	switch {
	case d.thick:
		c.free = min(u.avail, c.total-c.provisioned)
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
	vols, _, err := d.scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("nfs: list volumes of pool %q: %w", d.cfg.Name, err)
	}
	return vols, nil
}

// scan reads the pool directory and returns its volumes sorted by ID (never
// nil) and the bytes they occupy.
func (d *Driver) scan(ctx context.Context) ([]storage.Volume, int64, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return nil, 0, err
	}
	vols := []storage.Volume{}
	var allocated int64
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		id, ok := strings.CutPrefix(e.Name(), volumePrefix)
		if !ok || storage.ValidateID(id) != nil || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return nil, 0, fmt.Errorf("stat %s: %w", filepath.Join(d.cfg.Dir, e.Name()), err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		vols = append(vols, storage.Volume{ID: id, SizeBytes: fi.Size(), Location: d.path(id)})
		allocated += allocatedBytes(fi)
	}
	return vols, allocated, nil
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
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	unlock, err := d.ids.lock(ctx, id)
	if err != nil {
		return fail(err)
	}
	defer unlock()

	path := d.path(id)
	size := sizeGiB * storage.GiB
	vol := storage.Volume{ID: id, SizeBytes: size, Location: path}
	exists, err := existing(path, size)
	if err != nil {
		return fail(err)
	}
	if exists {
		// A previous attempt may have died between rename and directory
		// fsync; make sure the entry is durable before acknowledging.
		if err := syncDir(d.cfg.Dir); err != nil {
			return fail(err)
		}
		return vol, nil
	}

	if d.thick {
		if err := d.pool.lock(ctx); err != nil {
			return fail(err)
		}
		defer d.pool.unlock()
		if err := d.checkFree(ctx, size); err != nil {
			return fail(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := d.createFile(id, path, size); err != nil {
		return fail(err)
	}
	return vol, nil
}

// existing reports whether path already holds a volume of size bytes; any
// other thing at path is a conflict.
func existing(path string, size int64) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s exists and is not a regular file (mode %s): %w", path, fi.Mode(), storage.ErrExists)
	case fi.Size() != size:
		return false, fmt.Errorf("%s exists with %d bytes (%.2f GiB), requested %d bytes (%d GiB): %w",
			path, fi.Size(), gib(fi.Size()), size, size/storage.GiB, storage.ErrExists)
	}
	return true, nil
}

// checkFree fails with storage.ErrNoSpace when size bytes do not fit in a
// thick pool. The caller holds d.pool.
func (d *Driver) checkFree(ctx context.Context, size int64) error {
	c, err := d.measure(ctx)
	if err != nil {
		return fmt.Errorf("measure free space: %w", err)
	}
	if size > c.free {
		return fmt.Errorf("%d GiB does not fit in thick pool: %.2f GiB free (total %.2f GiB, provisioned %.2f GiB, file system available %.2f GiB): %w",
			size/storage.GiB, gib(c.free), gib(c.total), gib(c.provisioned), gib(c.fs.avail), storage.ErrNoSpace)
	}
	return nil
}

// createFile builds the volume in a temp file next to path and renames it
// into place, so path only ever holds a complete volume. On error nothing is
// left behind.
func (d *Driver) createFile(id, path string, size int64) (err error) {
	f, err := os.CreateTemp(d.cfg.Dir, tempPrefix+id+tempInfix+"*")
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

	if d.thick {
		// Reserve the blocks so a thick volume cannot run out of space
		// later; where fallocate is unsupported the file stays sparse and
		// only the accounting in checkFree protects the pool.
		if _, err := preallocate(f, size); err != nil {
			return noSpace(err)
		}
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
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(d.cfg.Dir)
}

// DeleteVolume removes volume id and any temp files a crashed create left
// for it. A missing volume is not an error.
func (d *Driver) DeleteVolume(ctx context.Context, id string) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("nfs: delete volume: %w", err)
	}
	fail := func(err error) error {
		return fmt.Errorf("nfs: delete volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	unlock, err := d.ids.lock(ctx, id)
	if err != nil {
		return fail(err)
	}
	defer unlock()

	path := d.path(id)
	changed := false
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fail(err)
	case !fi.Mode().IsRegular():
		return fail(fmt.Errorf("%s is not a regular file (mode %s); refusing to remove it", path, fi.Mode()))
	default:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
		changed = true
	}
	n, err := d.removeTemps(id)
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

// Cleanup removes the temp files that creates interrupted by a crash left
// in the pool directory, and reports how many it removed. It takes each
// volume's lock first, so it never touches a create in progress; call it
// when the agent starts, or periodically.
func (d *Driver) Cleanup(ctx context.Context) (int, error) {
	fail := func(err error) (int, error) {
		return 0, fmt.Errorf("nfs: clean up pool %q: %w", d.cfg.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return fail(err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := tempID(e.Name()); ok && (len(ids) == 0 || ids[len(ids)-1] != id) {
			ids = append(ids, id) // entries are sorted, so an ID's temps are adjacent
		}
	}
	removed := 0
	for _, id := range ids {
		unlock, err := d.ids.lock(ctx, id)
		if err != nil {
			return removed, fmt.Errorf("nfs: clean up pool %q: %w", d.cfg.Name, err)
		}
		n, err := d.removeTemps(id)
		unlock()
		removed += n
		if err != nil {
			return removed, fmt.Errorf("nfs: clean up pool %q: %w", d.cfg.Name, err)
		}
	}
	if removed > 0 {
		if err := syncDir(d.cfg.Dir); err != nil {
			return removed, fmt.Errorf("nfs: clean up pool %q: %w", d.cfg.Name, err)
		}
	}
	return removed, nil
}

// removeTemps removes the temp files of volume id. The caller holds id's lock.
func (d *Driver) removeTemps(id string) (int, error) {
	entries, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return 0, err
	}
	prefix := tempPrefix + id + tempInfix
	removed := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
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

// tempID returns the volume ID in a temp file's name.
func tempID(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, tempPrefix)
	if !ok || len(rest) < uuidLen || !strings.HasPrefix(rest[uuidLen:], tempInfix) {
		return "", false
	}
	id := rest[:uuidLen]
	return id, storage.ValidateID(id) == nil
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

package rbd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/keyedlock"
	"github.com/kilnstore/kiln/internal/storage"
)

// Identity reported in Info.
const (
	DriverName    = "rbd"
	DriverVersion = "1.0.0"
	// Protocol is Cinder's storage_protocol for RBD.
	Protocol = "ceph"
	// DriverVolumeType is connection_info's driver_volume_type.
	DriverVolumeType = "rbd"
)

const (
	volumePrefix   = "volume-"
	snapshotPrefix = "snapshot-"
	// cloneSnapPrefix names the temporary snapshot a volume clone is taken
	// from: clone-<new volume id>, on the source image.
	cloneSnapPrefix = "clone-"
	mib             = 1 << 20
)

// Driver serves one Ceph pool through the rbd and ceph command-line tools.
// It is safe for concurrent use.
type Driver struct {
	cfg  Config
	r    *runner
	info storage.PoolInfo
	log  *slog.Logger
	ids  keyedlock.Map

	monsMu sync.Mutex
	mons   []monitor // cached for connection info
}

// New validates cfg (errors wrap storage.ErrInvalid) and returns a driver.
// It does not contact the cluster: a pool whose cluster is down reports
// unknown capacity and its operations fail clearly until it is back.
func New(cfg Config, log *slog.Logger) (*Driver, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, bin := range []string{cfg.RBD, cfg.Ceph} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("rbd: pool %q needs %s (apt-get install ceph-common): %w", cfg.Name, bin, err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "rbd", "pool", cfg.Name, "ceph_pool", cfg.Pool)
	cfg.Capabilities = maps.Clone(cfg.Capabilities)
	caps := maps.Clone(cfg.Capabilities)
	if caps == nil {
		caps = map[string]string{}
	}
	caps[agentrpc.CapabilityOnlineExtend] = "True" // rbd resize works under a running client
	return &Driver{
		cfg: cfg,
		r:   newRunner(cfg, log),
		log: log,
		info: storage.PoolInfo{
			Name: cfg.Name, Backend: cfg.Backend, Driver: DriverName, DriverVersion: DriverVersion,
			Protocol: Protocol, ThinProvisioning: true,
			ReservedPercentage: cfg.ReservedPercentage, MaxOverSubscriptionRatio: cfg.MaxOverSubscriptionRatio,
			Capabilities: caps,
		},
	}, nil
}

// Info returns the pool's static facts.
func (d *Driver) Info() storage.PoolInfo {
	info := d.info
	info.Capabilities = maps.Clone(d.info.Capabilities)
	return info
}

func imageName(id string) string { return volumePrefix + id }
func snapName(id string) string  { return snapshotPrefix + id }

// spec is "pool/image" or "pool/image@snap" (names built from validated
// IDs and the validated pool only).
func (d *Driver) spec(image string, snap ...string) string {
	s := d.cfg.Pool + "/" + image
	if len(snap) > 0 {
		s += "@" + snap[0]
	}
	return s
}

func sizeArg(bytes int64) string { return strconv.FormatInt(bytes/mib, 10) + "M" }

// Stats: free is the pool's max_avail from `ceph df`, total stored +
// max_avail, provisioned the sum of the images' sizes, as Cinder's RBD
// driver reports them. A cluster that does not answer is an error, which
// the agent publishes as unknown capacity.
func (d *Driver) Stats(ctx context.Context) (storage.PoolStats, error) {
	fail := func(err error) (storage.PoolStats, error) {
		return storage.PoolStats{}, fmt.Errorf("rbd: stats of pool %q: %w", d.cfg.Name, err)
	}
	out, err := d.r.ceph(ctx, "df")
	if err != nil {
		return fail(err)
	}
	u, err := parseDF(out, d.cfg.Pool)
	if err != nil {
		return fail(err)
	}
	images, _, err := d.list(ctx)
	if err != nil {
		return fail(err)
	}
	var provisioned int64
	n := 0
	for name, size := range images {
		if _, ok := volumeID(name); ok {
			provisioned += size
			n++
		}
	}
	gib := func(b int64) float64 { return float64(b) / float64(storage.GiB) }
	return storage.PoolStats{
		TotalKind: storage.Known, TotalGB: gib(u.Stored + u.MaxAvail),
		FreeKind: storage.Known, FreeGB: gib(u.MaxAvail),
		ProvisionedGB: gib(provisioned), Volumes: n,
	}, nil
}

// list runs `rbd ls -l` on the pool.
func (d *Driver) list(ctx context.Context) (map[string]int64, map[string][]snapEntry, error) {
	out, err := d.r.rbd(ctx, false, "ls", "-l", "--format", "json", d.cfg.Pool)
	if err != nil {
		return nil, nil, err
	}
	return parseLs(out)
}

// volumeID returns the volume ID in an image name volume-<uuid>.
func volumeID(image string) (string, bool) {
	id, ok := strings.CutPrefix(image, volumePrefix)
	return id, ok && storage.ValidateID(id) == nil
}

// imageSize returns the image's size; ErrImageNotFound if missing.
func (d *Driver) imageInfo(ctx context.Context, image string) (imageInfo, error) {
	out, err := d.r.rbd(ctx, false, "info", "--format", "json", d.spec(image))
	if err != nil {
		return imageInfo{}, err
	}
	return parseInfo(out)
}

// CreateVolume creates image volume-<id> of sizeGiB. An image of that size
// is returned as is; of another size the error wraps storage.ErrExists.
func (d *Driver) CreateVolume(ctx context.Context, id string, sizeGiB int64) (storage.Volume, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: create volume: %w", err)
	}
	if err := storage.ValidateSize(sizeGiB); err != nil {
		return storage.Volume{}, fmt.Errorf("rbd: create volume %s: %w", id, err)
	}
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("rbd: create volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	unlock, err := d.ids.Lock(ctx, imageName(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	size := sizeGiB * storage.GiB
	vol := storage.Volume{ID: id, SizeBytes: size, Location: d.spec(imageName(id))}
	_, err = d.r.rbd(ctx, false, "create", "--size", sizeArg(size), d.spec(imageName(id)))
	if errors.Is(err, ErrImageExists) {
		err = d.sameSize(ctx, imageName(id), size)
	} else if err != nil {
		// The image was not there (we hold its ID's lock): whatever a
		// failed create left (a header without a directory entry) goes.
		if rerr := d.removeImage(context.WithoutCancel(ctx), imageName(id)); rerr != nil {
			d.log.Warn("could not remove what a failed create left", "volume_id", id, "err", rerr)
		}
	}
	if err != nil {
		return fail(err)
	}
	return vol, nil
}

// sameSize checks that an existing image has size bytes (a repeated
// create); another size is storage.ErrExists.
func (d *Driver) sameSize(ctx context.Context, image string, size int64) error {
	info, err := d.imageInfo(ctx, image)
	if err != nil {
		return err
	}
	if *info.Size != size {
		return fmt.Errorf("%s exists with %d bytes, requested %d: %w", d.spec(image), *info.Size, size, storage.ErrExists)
	}
	return nil
}

// ExtendVolume grows the image (works while it is mapped or attached).
func (d *Driver) ExtendVolume(ctx context.Context, id string, newSizeGiB int64) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("rbd: extend volume: %w", err)
	}
	if err := storage.ValidateSize(newSizeGiB); err != nil {
		return fmt.Errorf("rbd: extend volume %s: %w", id, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("rbd: extend volume %s to %d GiB in pool %q: %w", id, newSizeGiB, d.cfg.Name, err)
	}
	unlock, err := d.ids.Lock(ctx, imageName(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	info, err := d.imageInfo(ctx, imageName(id))
	if err != nil {
		return fail(err)
	}
	size := newSizeGiB * storage.GiB
	switch {
	case *info.Size == size:
		return nil
	case *info.Size > size:
		return fail(fmt.Errorf("%w: the volume is %d bytes; shrinking is not supported", storage.ErrInvalid, *info.Size))
	}
	if _, err := d.r.rbd(ctx, false, "resize", "--size", sizeArg(size), d.spec(imageName(id))); err != nil {
		return fail(err)
	}
	return nil
}

// DeleteVolume removes the image and its snapshots. Images cloned from its
// snapshots are flattened first, so they keep their data. A missing image
// is a success.
func (d *Driver) DeleteVolume(ctx context.Context, id string) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("rbd: delete volume: %w", err)
	}
	fail := func(err error) error {
		return fmt.Errorf("rbd: delete volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	unlock, err := d.ids.Lock(ctx, imageName(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if err := d.removeImage(ctx, imageName(id)); err != nil {
		return fail(err)
	}
	return nil
}

// removeImage removes image and every snapshot of it (flattening their
// clones); missing is fine.
func (d *Driver) removeImage(ctx context.Context, image string) error {
	out, err := d.r.rbd(ctx, false, "snap", "ls", "--format", "json", d.spec(image))
	if errors.Is(err, ErrImageNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	snaps, err := parseSnapLs(out)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if err := d.removeSnap(ctx, image, s.Name, s.Protected); err != nil {
			return err
		}
	}
	_, err = d.r.rbd(ctx, false, "rm", "--no-progress", d.spec(image))
	if errors.Is(err, ErrImageNotFound) {
		return nil
	}
	if errors.Is(err, ErrBusy) {
		return fmt.Errorf("%s is still open by a client (watchers): detach it first: %w", d.spec(image), err)
	}
	return err
}

// removeSnap flattens the snapshot's clones, unprotects and removes it.
func (d *Driver) removeSnap(ctx context.Context, image, snap string, protected bool) error {
	if protected {
		out, err := d.r.rbd(ctx, false, "children", "--format", "json", d.spec(image, snap))
		if err != nil && !errors.Is(err, ErrImageNotFound) {
			return err
		}
		if err == nil {
			children, err := parseChildren(out)
			if err != nil {
				return err
			}
			for _, c := range children {
				d.log.Info("flattening a clone so that its parent snapshot can go", "child", c, "snapshot", d.spec(image, snap))
				if _, err := d.r.rbd(ctx, true, "flatten", "--no-progress", c); err != nil && !errors.Is(err, ErrImageNotFound) {
					return err
				}
			}
		}
		if _, err := d.r.rbd(ctx, false, "snap", "unprotect", d.spec(image, snap)); err != nil &&
			!errors.Is(err, ErrImageNotFound) && !isNotProtected(err) {
			return err
		}
	}
	_, err := d.r.rbd(ctx, false, "snap", "rm", "--no-progress", d.spec(image, snap))
	if errors.Is(err, ErrImageNotFound) {
		return nil
	}
	return err
}

// isNotProtected: unprotecting a snapshot that is not protected fails with
// EINVAL; that is the state wanted.
func isNotProtected(err error) bool {
	var ce *CommandError
	return errors.As(err, &ce) && strings.Contains(ce.Stderr, "not protected")
}

// ListVolumes reports the images named volume-<uuid>.
func (d *Driver) ListVolumes(ctx context.Context) ([]storage.Volume, error) {
	images, _, err := d.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("rbd: list volumes of pool %q: %w", d.cfg.Name, err)
	}
	vols := []storage.Volume{}
	for name, size := range images {
		if id, ok := volumeID(name); ok {
			vols = append(vols, storage.Volume{ID: id, SizeBytes: size, Location: d.spec(name)})
		}
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].ID < vols[j].ID })
	return vols, nil
}

// ListSnapshots reports the snapshots named snapshot-<uuid> of volume
// images.
func (d *Driver) ListSnapshots(ctx context.Context) ([]storage.Snapshot, error) {
	_, snaps, err := d.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("rbd: list snapshots of pool %q: %w", d.cfg.Name, err)
	}
	out := []storage.Snapshot{}
	for image, ss := range snaps {
		vol, ok := volumeID(image)
		if !ok {
			continue
		}
		for _, s := range ss {
			if id, ok := strings.CutPrefix(s.Name, snapshotPrefix); ok && storage.ValidateID(id) == nil {
				out = append(out, storage.Snapshot{ID: id, VolumeID: vol, SizeBytes: s.Size, Location: d.spec(image, s.Name)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

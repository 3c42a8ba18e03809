package lvm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"strings"
	"sync/atomic"

	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/keyedlock"
	"github.com/kilnstore/kiln/internal/storage"
)

// Identity reported in Info.
const (
	DriverName    = "lvm"
	DriverVersion = "1.0.0"
	// ProtocolISCSI is Cinder's storage_protocol for iSCSI pools.
	ProtocolISCSI = "iSCSI"
)

// LV naming, as Cinder's LVM driver names them.
const (
	volumePrefix   = "volume-"
	snapshotPrefix = "_snapshot-"
	// clonePrefix names the temporary snapshot a thick clone reads from.
	clonePrefix = "_clone-"
	// originTagPrefix tags a snapshot LV with its volume's ID: a thin
	// snapshot loses its origin field when the origin is removed.
	originTagPrefix = "kiln-origin-"
	// copyingTag marks an LV whose data copy has not finished; a retried
	// create redoes the copy instead of trusting the LV.
	copyingTag = "kiln-copying"
)

// Exporter makes a volume's block device reachable for a connector (iSCSI
// through tgt, see internal/tgt) and builds Cinder's connection_info.
type Exporter interface {
	ExportVolume(ctx context.Context, volumeID, device string, c storage.Connector, auth storage.Credentials) (storage.ConnectionInfo, error)
	UnexportVolume(ctx context.Context, volumeID string, c storage.Connector) error
}

// Driver serves one LVM pool. It is safe for concurrent use.
type Driver struct {
	cfg  Config // defaulted and validated
	thin bool
	r    *runner
	log  *slog.Logger
	info storage.PoolInfo
	// extent is the VG's extent size in bytes; sizes are rounded up to it.
	extent atomic.Int64

	ids keyedlock.Map // per volume and snapshot ID
}

// New validates cfg, checks that the VG exists and, for a thin pool,
// that the thin pool exists (creating it when missing, as Cinder does).
func New(ctx context.Context, cfg Config) (*Driver, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Binary == DefaultBinary {
		if _, err := exec.LookPath(DefaultBinary); err != nil {
			return nil, fmt.Errorf("lvm: pool %q: the lvm command is not installed (Debian: apt-get install lvm2): %w", cfg.Name, err)
		}
	}
	cfg.Capabilities = maps.Clone(cfg.Capabilities)
	sysDir := ""
	if cfg.ConfFile != "" {
		sysDir = strings.TrimSuffix(cfg.ConfFile, "/lvm.conf")
	}
	d := &Driver{
		cfg: cfg,
		r:   newRunner(cfg.Binary, sysDir, cfg.ConfigOverride, cfg.CommandTimeout, cfg.Logger.With("pool", cfg.Name, "vg", cfg.VG)),
		log: cfg.Logger.With("pool", cfg.Name, "vg", cfg.VG),
	}
	vg, err := d.vg(ctx)
	if err != nil {
		if errors.Is(err, ErrVGNotFound) {
			return nil, fmt.Errorf("lvm: pool %q: volume group %q not found; create it with pvcreate + vgcreate (docs/backends/lvm.md): %w", cfg.Name, cfg.VG, err)
		}
		return nil, fmt.Errorf("lvm: pool %q: %w", cfg.Name, err)
	}
	d.extent.Store(vg.ExtentSize)

	switch cfg.Type {
	case TypeThin:
		if err := d.ensureThinPool(ctx, vg); err != nil {
			return nil, fmt.Errorf("lvm: pool %q: %w", cfg.Name, err)
		}
		d.thin = true
	case TypeAuto:
		err := d.ensureThinPool(ctx, vg)
		d.thin = err == nil
		if err != nil {
			d.log.Warn("lvm_type auto: no thin pool, the pool is thick", "thin_pool", cfg.ThinPool, "err", err)
		}
	}

	caps := maps.Clone(cfg.Capabilities)
	if caps == nil {
		caps = map[string]string{}
	}
	// lvextend grows an active LV under an open device; the initiator sees
	// the new size after a rescan, as with Cinder's LVM driver.
	caps[agentrpc.CapabilityOnlineExtend] = "True"
	d.info = storage.PoolInfo{
		Name:                     cfg.Name,
		Backend:                  cfg.Backend,
		Driver:                   DriverName,
		DriverVersion:            DriverVersion,
		Protocol:                 ProtocolISCSI,
		ThinProvisioning:         d.thin,
		ThickProvisioning:        !d.thin,
		ReservedPercentage:       cfg.ReservedPercentage,
		MaxOverSubscriptionRatio: cfg.MaxOverSubscriptionRatio,
		Capabilities:             caps,
	}
	return d, nil
}

// Info returns the pool's static facts. The capabilities map is a copy.
func (d *Driver) Info() storage.PoolInfo {
	info := d.info
	info.Capabilities = maps.Clone(d.info.Capabilities)
	return info
}

// Thin reports whether the pool provisions thin LVs.
func (d *Driver) Thin() bool { return d.thin }

func (d *Driver) vg(ctx context.Context) (vgRow, error) {
	out, err := d.r.run(ctx, "vgs", append(append([]string{}, reportArgs...), "-o", vgFields, d.cfg.VG)...)
	if err != nil {
		return vgRow{}, err
	}
	rows, err := parseVGs(out)
	if err != nil {
		return vgRow{}, err
	}
	if len(rows) != 1 || rows[0].Name != d.cfg.VG {
		return vgRow{}, fmt.Errorf("vgs %s returned %d rows", d.cfg.VG, len(rows))
	}
	return rows[0], nil
}

// lvs lists the VG's LVs, or only the named one (lvName != "").
func (d *Driver) lvs(ctx context.Context, lvName string) ([]lvRow, error) {
	target := d.cfg.VG
	if lvName != "" {
		target += "/" + lvName
	}
	out, err := d.r.run(ctx, "lvs", append(append([]string{}, reportArgs...), "-o", lvFields, target)...)
	if err != nil {
		return nil, err
	}
	return parseLVs(out)
}

// lv returns one LV; ErrLVNotFound if it does not exist.
func (d *Driver) lv(ctx context.Context, name string) (lvRow, error) {
	rows, err := d.lvs(ctx, name)
	if err != nil {
		return lvRow{}, err
	}
	for _, r := range rows {
		if r.Name == name {
			return r, nil
		}
	}
	return lvRow{}, fmt.Errorf("%s/%s: %w", d.cfg.VG, name, ErrLVNotFound)
}

func (d *Driver) ensureThinPool(ctx context.Context, vg vgRow) error {
	if _, err := d.lv(ctx, d.cfg.ThinPool); err == nil {
		return nil
	} else if !errors.Is(err, ErrLVNotFound) {
		return fmt.Errorf("look up thin pool %s: %w", d.cfg.ThinPool, err)
	}
	size := d.roundDown(int64(float64(vg.FreeBytes) * thinPoolShare))
	if size <= 0 {
		return fmt.Errorf("create thin pool %s: volume group %s has no free space: %w", d.cfg.ThinPool, d.cfg.VG, ErrInsufficientSpace)
	}
	if err := d.locked(ctx, "lvcreate", "--yes", "-T", "-L", bytesArg(size), d.ref(d.cfg.ThinPool)); err != nil {
		return fmt.Errorf("create thin pool %s: %w", d.cfg.ThinPool, err)
	}
	d.log.Info("created thin pool", "thin_pool", d.cfg.ThinPool, "bytes", size)
	return nil
}

// locked runs an lvm command that changes the VG under the VG lock.
func (d *Driver) locked(ctx context.Context, sub string, args ...string) error {
	unlock, err := d.cfg.Locks.lock(ctx, d.cfg.VG)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = d.r.run(ctx, sub, args...)
	return err
}

// heldLVs lists the LVs whose names parse with id (volumeID, snapshotID),
// converted by conv.
func heldLVs[T any](ctx context.Context, d *Driver, what string, id func(string) (string, bool), conv func(id string, lv lvRow) T) ([]T, error) {
	rows, err := d.lvs(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("lvm: pool %q: list %s: %w", d.cfg.Name, what, err)
	}
	var out []T
	for _, r := range rows {
		if id, ok := id(r.Name); ok {
			out = append(out, conv(id, r))
		}
	}
	return out, nil
}

func bytesArg(n int64) string { return fmt.Sprintf("%db", n) }

// roundUp rounds a byte size up to whole extents, as lvcreate does.
func (d *Driver) roundUp(n int64) int64 {
	e := d.extent.Load()
	return (n + e - 1) / e * e
}

func (d *Driver) roundDown(n int64) int64 {
	e := d.extent.Load()
	return n / e * e
}

// ref is "vg/lv" for a command line.
func (d *Driver) ref(lv string) string { return d.cfg.VG + "/" + lv }

// Location is the provider_location of a volume: "vg/volume-<id>".
func (d *Driver) location(id string) string { return d.ref(volumePrefix + id) }

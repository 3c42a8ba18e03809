package lvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/kilnstore/kiln/internal/storage"
)

// errNoExporter: the pool was configured without an iSCSI target.
var errNoExporter = errors.New("the pool has no iSCSI target configured (see [[agent.pool]] iscsi settings in docs/backends/lvm.md)")

// ExportVolume exports LV volume-<id> through the pool's iSCSI target to
// the connector's initiator, with the coordinator's CHAP credentials, and
// returns Cinder's iSCSI connection_info.
func (d *Driver) ExportVolume(ctx context.Context, id string, c storage.Connector, auth storage.Credentials) (storage.ConnectionInfo, error) {
	fail := func(err error) (storage.ConnectionInfo, error) {
		return storage.ConnectionInfo{}, fmt.Errorf("lvm: export volume %s: %w", id, err)
	}
	if d.cfg.Exporter == nil {
		return fail(errNoExporter)
	}
	unlock, err := d.lockVolume(ctx, "export volume", id)
	if err != nil {
		return storage.ConnectionInfo{}, err
	}
	defer unlock()
	lv, err := d.lv(ctx, volumePrefix+id)
	if err != nil {
		return fail(err)
	}
	dev, err := d.device(ctx, lv)
	if err != nil {
		return fail(err)
	}
	ci, err := d.cfg.Exporter.ExportVolume(ctx, id, dev, c, auth)
	if err != nil {
		return fail(err)
	}
	if ci.Data != nil {
		// Thin LVs pass discards down to the pool; Cinder reports discard
		// for thin LVM.
		ci.Data["discard"] = d.thin
	}
	d.log.Info("exported volume", "volume_id", id, "initiator", c.Initiator)
	return ci, nil
}

// UnexportVolume removes the connector's access (a zero connector: the
// whole export); a missing export is a success.
func (d *Driver) UnexportVolume(ctx context.Context, id string, c storage.Connector) error {
	if d.cfg.Exporter == nil {
		return nil // nothing can have been exported
	}
	unlock, err := d.lockVolume(ctx, "unexport volume", id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := d.cfg.Exporter.UnexportVolume(ctx, id, c); err != nil {
		return fmt.Errorf("lvm: unexport volume %s: %w", id, err)
	}
	d.log.Info("unexported volume", "volume_id", id, "initiator", c.Initiator)
	return nil
}

package rbd

import (
	"context"
	"fmt"

	"github.com/kilnstore/kiln/internal/storage"
)

// ExportVolume returns Cinder's RBD connection info: nothing is exported,
// the compute host's librbd (or krbd) reaches the image through the
// monitors as the pool's cephx user, whose key libvirt holds as secret
// SecretUUID:
//
//	{"driver_volume_type": "rbd",
//	 "data": {"name": "<pool>/volume-<id>", "hosts": [...], "ports": [...],
//	          "cluster_name": "ceph", "auth_enabled": true,
//	          "auth_username": "<user>", "secret_type": "ceph",
//	          "secret_uuid": "<uuid>", "volume_id": "<id>", "discard": true}}
//
// The monitors' v1 addresses come from `ceph mon dump` (cached after the
// first success). A missing image wraps storage.ErrNotFound.
func (d *Driver) ExportVolume(ctx context.Context, id string, _ storage.Connector, _ storage.Credentials) (storage.ConnectionInfo, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.ConnectionInfo{}, fmt.Errorf("rbd: export volume: %w", err)
	}
	fail := func(err error) (storage.ConnectionInfo, error) {
		return storage.ConnectionInfo{}, fmt.Errorf("rbd: export volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	if _, err := d.imageInfo(ctx, imageName(id)); err != nil {
		return fail(err)
	}
	mons, err := d.monitors(ctx)
	if err != nil {
		return fail(err)
	}
	hosts, ports := make([]string, len(mons)), make([]string, len(mons))
	for i, m := range mons {
		hosts[i], ports[i] = m.Host, m.Port
	}
	data := map[string]any{
		"name":          d.spec(imageName(id)),
		"hosts":         hosts,
		"ports":         ports,
		"cluster_name":  d.cfg.ClusterName,
		"auth_enabled":  true,
		"auth_username": d.cfg.User,
		"secret_type":   "ceph",
		"secret_uuid":   d.cfg.SecretUUID,
		"volume_id":     id,
		"discard":       true,
	}
	return storage.ConnectionInfo{DriverVolumeType: DriverVolumeType, Data: data}, nil
}

// UnexportVolume has nothing to undo: RBD access is the cephx user's, not
// per host.
func (d *Driver) UnexportVolume(ctx context.Context, id string, _ storage.Connector) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("rbd: unexport volume: %w", err)
	}
	return ctx.Err()
}

func (d *Driver) monitors(ctx context.Context) ([]monitor, error) {
	d.monsMu.Lock()
	defer d.monsMu.Unlock()
	if d.mons != nil {
		return d.mons, nil
	}
	out, err := d.r.ceph(ctx, "mon", "dump")
	if err != nil {
		return nil, err
	}
	mons, err := parseMonDump(out)
	if err != nil {
		return nil, err
	}
	d.mons = mons
	return mons, nil
}

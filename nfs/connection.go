package nfs

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/kilnstore/kiln/internal/storage"
)

// DriverVolumeTypeLocal is the driver_volume_type of a local-directory
// pool's connection info: os-brick's LocalConnector, which opens
// data.device_path on the host it runs on.
const DriverVolumeTypeLocal = "local"

// ExportVolume returns the connection info of volume id, naming its active
// image and that image's format. With an Exporter the pool's directory is
// exported over NFS to the connector's host (Cinder's "nfs" type: export,
// name, options, format). A pool on a remote share points the host at the
// same share, as Cinder's NFS driver does. A plain local directory exports
// nothing: the volume is reachable only on the agent's host, so the
// connection info is Cinder's "local" type with the file's absolute path as
// device_path, the same for every connector. It is idempotent; a missing
// volume wraps storage.ErrNotFound.
func (d *Driver) ExportVolume(ctx context.Context, id string, c storage.Connector, _ storage.Credentials) (storage.ConnectionInfo, error) {
	if err := storage.ValidateID(id); err != nil {
		return storage.ConnectionInfo{}, fmt.Errorf("nfs: export volume: %w", err)
	}
	fail := func(err error) (storage.ConnectionInfo, error) {
		return storage.ConnectionInfo{}, fmt.Errorf("nfs: export volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	unlock, err := d.lockIDs(ctx, volKey(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()

	path, _, err := d.volumeFile(id)
	if err != nil {
		return fail(err)
	}
	format := formatRaw
	if d.chain {
		ci, err := d.readChain(id)
		if err != nil {
			return fail(err)
		}
		path, format = d.file(ci.Active), ci.format(ci.Active)
	}
	if d.cfg.Exporter != nil {
		ci, err := d.cfg.Exporter.ExportVolume(ctx, id, d.cfg.Dir, c, filepath.Base(path), format)
		if err != nil {
			return fail(err)
		}
		return ci, nil
	}
	if d.cfg.Share != nil {
		// The compute host mounts the same share, as with Cinder's NFS
		// driver; access is the NFS server's business.
		data := map[string]any{"export": d.cfg.Share.Share, "name": filepath.Base(path), "format": format, "volume_id": id}
		if d.cfg.Share.MountOptions != "" {
			data["options"] = "-o " + d.cfg.Share.MountOptions
		}
		return storage.ConnectionInfo{DriverVolumeType: ProtocolNFS, Data: data, MountPointBase: filepath.Dir(d.mount.Dir())}, nil
	}
	return storage.ConnectionInfo{
		DriverVolumeType: DriverVolumeTypeLocal,
		Data:             map[string]any{"device_path": path},
	}, nil
}

// UnexportVolume undoes ExportVolume for connector c (a zero connector:
// every host): the exported pool drops c's host from the volume's export;
// a local-directory pool has no export to remove, so it only validates the
// ID. It succeeds for a volume that is missing or was never exported.
func (d *Driver) UnexportVolume(ctx context.Context, id string, c storage.Connector) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("nfs: unexport volume: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nfs: unexport volume %s in pool %q: %w", id, d.cfg.Name, err)
	}
	if d.cfg.Exporter != nil {
		if err := d.cfg.Exporter.UnexportVolume(ctx, id, c); err != nil {
			return fmt.Errorf("nfs: unexport volume %s in pool %q: %w", id, d.cfg.Name, err)
		}
	}
	return nil
}

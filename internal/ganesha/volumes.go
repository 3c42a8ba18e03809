package ganesha

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/kilnstore/kiln/internal/storage"
)

// DriverVolumeType is Cinder's driver_volume_type for NFS exports.
const DriverVolumeType = "nfs"

// Volumes exports volumes for the NFS driver: one export per volume (the
// directory holding its file), a client entry per attached host. It keeps
// the agent's records (Store) and ganesha (Manager) in step: the record is
// written before ganesha is changed, so an export is never live without a
// record the Keeper can re-add it from after ganesha restarts. Callers
// serialize operations on one volume (the drivers hold a per-volume lock).
type Volumes struct {
	m     *Manager
	store *Store
}

// NewVolumes returns the exporter over m, recording in store.
func NewVolumes(m *Manager, store *Store) *Volumes { return &Volumes{m: m, store: store} }

// ExportVolume lets connector c's host (c.IP, an address or prefix, see
// ValidateClient) mount dir, the directory holding volumeID's file, read
// and write. Hosts admitted before keep their access. A failure other than
// ErrUnavailable leaves the record as it was.
func (v *Volumes) ExportVolume(ctx context.Context, volumeID, dir string, c storage.Connector) (ExportInfo, error) {
	if c.IP == "" {
		return ExportInfo{}, fmt.Errorf("%w: the connector has no ip; an NFS export is restricted to the attaching host's address", storage.ErrInvalid)
	}
	client, err := ValidateClient(c.IP)
	if err != nil {
		return ExportInfo{}, fmt.Errorf("ganesha: export volume %s: %w", volumeID, err)
	}
	prev, recorded := v.store.Get(volumeID)
	e := prev.clone()
	if recorded && e.Path != dir {
		return ExportInfo{}, fmt.Errorf("ganesha: export volume %s: %w: it is exported from %s, not %s; unexport it first",
			volumeID, storage.ErrExists, e.Path, dir)
	}
	e.VolumeID, e.Path = volumeID, dir
	if !slices.Contains(e.Clients, client) {
		e.Clients = append(e.Clients, client)
	}
	e, err = v.store.Put(e) // validates, allocates the export ID
	if err != nil {
		return ExportInfo{}, fmt.Errorf("record export of volume %s: %w", volumeID, err)
	}
	info, err := v.m.Ensure(ctx, e)
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrUnavailable) {
		// ganesha refused this export (bad directory, clashing ID): do not
		// leave a record the Keeper would keep failing on.
		var undo error
		if recorded {
			_, undo = v.store.Put(prev)
		} else {
			undo = v.store.Delete(volumeID)
		}
		return ExportInfo{}, errors.Join(err, undo)
	}
	return info, err
}

// UnexportVolume removes connector c's host from the volume's clients; the
// export goes when no client is left, or at once for a connector without
// an IP. A volume that is not exported is a success.
func (v *Volumes) UnexportVolume(ctx context.Context, volumeID string, c storage.Connector) error {
	e, ok := v.store.Get(volumeID)
	if !ok {
		return nil
	}
	if c.IP != "" {
		client, err := ValidateClient(c.IP)
		if err != nil {
			return fmt.Errorf("ganesha: unexport volume %s: %w", volumeID, err)
		}
		e.Clients = slices.DeleteFunc(e.Clients, func(x string) bool { return x == client })
		if len(e.Clients) > 0 {
			if _, err := v.store.Put(e); err != nil {
				return fmt.Errorf("record export of volume %s: %w", volumeID, err)
			}
			_, err := v.m.Ensure(ctx, e)
			return err
		}
	}
	// The record first: once it is gone the Keeper no longer re-adds the
	// export, and an export left behind by a failed Remove below is an
	// orphan (its file has no record) that the Keeper removes.
	if err := v.store.Delete(volumeID); err != nil {
		return fmt.Errorf("forget export of volume %s: %w", volumeID, err)
	}
	return v.m.Remove(ctx, e)
}

// ConnectionInfo returns Cinder's NFS connection_info for a volume file
// named name (e.g. "volume-<id>") in the export info, served by ganesha at
// server, in format "raw" or "qcow2": what os-brick's NFS connector and
// Nova's libvirt NFS volume driver mount (`mount -t nfs -o OPTIONS
// EXPORT`).
func ConnectionInfo(server netip.AddrPort, info ExportInfo, name, format string) storage.ConnectionInfo {
	host := server.Addr().Unmap().String()
	if server.Addr().Unmap().Is6() {
		host = "[" + host + "]"
	}
	options := "-o vers=4,proto=tcp"
	if port := server.Port(); port != 0 && port != 2049 {
		options += ",port=" + strconv.Itoa(int(port))
	}
	return storage.ConnectionInfo{
		DriverVolumeType: DriverVolumeType,
		Data: map[string]any{
			"export":    host + ":" + info.Pseudo,
			"name":      name,
			"options":   options,
			"format":    format,
			"volume_id": info.VolumeID,
		},
	}
}

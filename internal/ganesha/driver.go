package ganesha

import (
	"context"
	"net/netip"

	"github.com/kilnstore/kiln/internal/storage"
)

// VolumeExporter is what the NFS driver exports volumes through: it
// exports the directory holding a volume's file to the connector's host
// (Volumes) and answers Cinder's NFS connection_info for it.
type VolumeExporter struct {
	Volumes *Volumes
	// Server is the address clients mount from (ganesha's NFS address).
	Server netip.AddrPort
	// MountPointBase is shown in the connection info as Cinder shows its
	// nfs_mount_point_base (a hint; empty leaves it out).
	MountPointBase string
}

// ExportVolume exports dir for c's host and returns the connection info of
// the file name (format "raw" or "qcow2") in it.
func (x VolumeExporter) ExportVolume(ctx context.Context, volumeID, dir string, c storage.Connector, name, format string) (storage.ConnectionInfo, error) {
	info, err := x.Volumes.ExportVolume(ctx, volumeID, dir, c)
	if err != nil {
		return storage.ConnectionInfo{}, err
	}
	ci := ConnectionInfo(x.Server, info, name, format)
	ci.MountPointBase = x.MountPointBase
	return ci, nil
}

// UnexportVolume removes c's host from the volume's export (the export
// when no host is left, or at once for a zero connector).
func (x VolumeExporter) UnexportVolume(ctx context.Context, volumeID string, c storage.Connector) error {
	return x.Volumes.UnexportVolume(ctx, volumeID, c)
}

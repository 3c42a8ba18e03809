package tgt

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kilnstore/kiln/internal/storage"
)

// DriverVolumeType is Cinder's driver_volume_type for iSCSI exports.
const DriverVolumeType = "iscsi"

// Volumes exports volumes for the storage drivers: one target per volume,
// an ACL entry per connector, the coordinator's CHAP credentials. It keeps
// the agent's records (Store) and tgtd (Manager) in step: the record is
// written before tgtd is changed, so an export is never live without a
// record the Keeper can re-create it from after tgtd restarts. Callers
// serialize operations on one volume (the drivers hold a per-volume lock).
type Volumes struct {
	m     *Manager
	store *Store
}

// NewVolumes returns the exporter over m, recording in store.
func NewVolumes(m *Manager, store *Store) *Volumes { return &Volumes{m: m, store: store} }

// ExportVolume allows connector c's initiator to log in to the target of
// volumeID, backed by device, with auth, and returns Cinder's iSCSI
// connection_info (as cinder.volume.targets.iscsi builds it).
func (v *Volumes) ExportVolume(ctx context.Context, volumeID, device string, c storage.Connector, auth storage.Credentials) (storage.ConnectionInfo, error) {
	if c.Initiator == "" {
		return storage.ConnectionInfo{}, fmt.Errorf("%w: the connector has no initiator name; an iSCSI export needs the host's initiator (/etc/iscsi/initiatorname.iscsi)", storage.ErrInvalid)
	}
	if err := ValidateInitiator(c.Initiator); err != nil {
		return storage.ConnectionInfo{}, err
	}
	if auth.Method != "CHAP" {
		return storage.ConnectionInfo{}, fmt.Errorf("%w: iSCSI exports require CHAP credentials from the coordinator, got auth method %q", storage.ErrInvalid, auth.Method)
	}
	e, _ := v.store.Get(volumeID)
	e.VolumeID = volumeID
	e.BackingStore = device
	e.CHAPUser, e.CHAPSecret = auth.Username, auth.Secret
	if !slices.Contains(e.Initiators, c.Initiator) {
		e.Initiators = append(e.Initiators, c.Initiator)
	}
	if err := v.store.Put(e); err != nil {
		return storage.ConnectionInfo{}, fmt.Errorf("record export of volume %s: %w", volumeID, err)
	}
	info, err := v.m.Ensure(ctx, e)
	if err != nil {
		return storage.ConnectionInfo{}, err
	}
	return connectionInfo(volumeID, info, auth), nil
}

func connectionInfo(volumeID string, info TargetInfo, auth storage.Credentials) storage.ConnectionInfo {
	iqns := make([]any, len(info.Portals))
	luns := make([]any, len(info.Portals))
	portals := make([]any, len(info.Portals))
	for i, p := range info.Portals {
		portals[i], iqns[i], luns[i] = p, info.IQN, info.LUN
	}
	data := map[string]any{
		"target_discovered": false,
		"target_portal":     info.Portals[0],
		"target_iqn":        info.IQN,
		"target_lun":        info.LUN,
		"volume_id":         volumeID,
		"auth_method":       auth.Method,
		"auth_username":     auth.Username,
		"auth_password":     auth.Secret,
		"encrypted":         false,
		"discard":           false,
		"qos_specs":         nil,
	}
	if len(info.Portals) > 1 {
		data["target_portals"], data["target_iqns"], data["target_luns"] = portals, iqns, luns
	}
	return storage.ConnectionInfo{DriverVolumeType: DriverVolumeType, Data: data}
}

// UnexportVolume removes connector c's initiator from the volume's ACL; the
// target goes when no initiator is left, or at once for a zero connector.
// A volume that is not exported is a success.
func (v *Volumes) UnexportVolume(ctx context.Context, volumeID string, c storage.Connector) error {
	e, ok := v.store.Get(volumeID)
	if ok && c.Initiator != "" {
		e.Initiators = slices.DeleteFunc(e.Initiators, func(i string) bool { return i == c.Initiator })
		if len(e.Initiators) > 0 {
			if err := v.store.Put(e); err != nil {
				return fmt.Errorf("record export of volume %s: %w", volumeID, err)
			}
			_, err := v.m.Ensure(ctx, e)
			return err
		}
	}
	// The record first: once it is gone the Keeper no longer re-creates
	// the target, and a failed Remove below is retried by the caller's
	// next unexport, which finds no record and goes straight to tgtd.
	if err := v.store.Delete(volumeID); err != nil {
		return fmt.Errorf("forget export of volume %s: %w", volumeID, err)
	}
	if err := v.m.Remove(ctx, volumeID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

//go:build linux

package nfs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

// TestShareThatDoesNotMount: a pool on a remote share whose mount fails
// starts (its NFS server may come back), reports the mount failure from
// Stats (published as unknown capacity), refuses operations with mount's
// message, never reports a delete as done, and never writes under the
// empty mount point.
func TestShareThatDoesNotMount(t *testing.T) {
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "mount")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'mount.nfs: access denied by server while mounting 192.0.2.7:/kiln' >&2\nexit 32\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	share := nfs.ShareConfig{Share: "192.0.2.7:/kiln", MountOptions: "vers=4.1", MountPointBase: base, MountBinary: bin}
	if _, err := nfs.New(nfs.Config{Name: "share", Dir: "/srv/x", Share: &share}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("dir and share together = %v", err)
	}
	d, err := nfs.New(nfs.Config{Name: "share", Share: &share})
	if err != nil {
		t.Fatal(err)
	}
	if d.Info().Protocol != "nfs" {
		t.Fatalf("protocol %q", d.Info().Protocol)
	}
	checks := map[string]error{}
	_, checks["stats"] = d.Stats(ctx)
	_, checks["create"] = d.CreateVolume(ctx, volID(1), 1)
	_, checks["list"] = d.ListVolumes(ctx)
	_, checks["snapshots"] = d.ListSnapshots(ctx)
	checks["delete snapshot"] = d.DeleteSnapshot(ctx, volID(2))
	checks["delete volume"] = d.DeleteVolume(ctx, volID(1))
	for what, err := range checks {
		if !errors.Is(err, nfs.ErrMountFailed) || !strings.Contains(err.Error(), "access denied by server") || !strings.Contains(err.Error(), "192.0.2.7:/kiln") {
			t.Errorf("%s on an unmounted share = %v", what, err)
		}
	}
	dir := nfs.MountPoint(base, share.Share)
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Fatalf("mount point %s: %v entries, %v; want it empty", dir, len(entries), err)
	}
}

package lvm_test

// Tests that need device-mapper: thin pools, snapshots, data copies,
// merges, clearing. This kernel lacks device-mapper; make test runs them
// in the qemu guest (scripts/test-guest.sh), with Debian's kernel.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/lvm"
	"github.com/kilnstore/kiln/lvm/lvmtest"
)

const mib = 1 << 20

func devPath(vg *lvmtest.VG, id string) string { return "/dev/" + vg.Name + "/volume-" + id }

// writePattern writes n bytes of b at off and syncs, so a snapshot taken
// next sees it.
func writePattern(t *testing.T, dev string, off int64, b byte, n int) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{b}, n), off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// checkPattern checks that n bytes at off all equal b.
func checkPattern(t *testing.T, what, dev string, off int64, b byte, n int) {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer f.Close()
	got := make([]byte, n)
	if _, err := f.ReadAt(got, off); err != nil {
		t.Fatalf("%s: read %s at %d: %v", what, dev, off, err)
	}
	for i, c := range got {
		if c != b {
			t.Fatalf("%s: %s at %d: byte %d is %#x, want %#x", what, dev, off, i, c, b)
		}
	}
}

func TestDMThinPoolSnapshotsClonesRevert(t *testing.T) {
	lvmtest.RequireDeviceMapper(t)
	ctx := context.Background()
	d, vg := newDriver(t, 3072, func(c *lvm.Config) { c.Type = lvm.TypeThin })
	if !d.Thin() || !d.Info().ThinProvisioning {
		t.Fatalf("lvm_type thin gave a thick pool: %+v", d.Info())
	}
	st0, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The thin pool takes 95% of the free space, as Cinder's does.
	if st0.TotalGB < 2.7 || st0.TotalGB > 2.9 || st0.ProvisionedGB != 0 {
		t.Fatalf("new thin pool stats = %+v", st0)
	}

	v1, v2, v3, s1 := volID(1), volID(2), volID(3), volID(50)
	if _, err := d.CreateVolume(ctx, v1, 1); err != nil {
		t.Fatal(err)
	}
	writePattern(t, devPath(vg, v1), 0, 0xa1, mib)
	writePattern(t, devPath(vg, v1), 700*mib, 0xa2, mib)
	snap, err := d.CreateSnapshot(ctx, s1, v1)
	if err != nil {
		t.Fatal(err)
	}
	if snap.VolumeID != v1 {
		t.Fatalf("snapshot = %+v", snap)
	}
	writePattern(t, devPath(vg, v1), 0, 0xb1, mib)

	// From the snapshot, larger than it: the old data, zeros beyond.
	if _, err := d.CreateVolumeFromSnapshot(ctx, v2, s1, 2); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "volume from snapshot", devPath(vg, v2), 0, 0xa1, mib)
	checkPattern(t, "volume from snapshot", devPath(vg, v2), 700*mib, 0xa2, mib)
	checkPattern(t, "volume from snapshot, extended part", devPath(vg, v2), 1500*mib, 0, mib)
	// A clone has the current data.
	if _, err := d.CloneVolume(ctx, v3, v1, 1); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "clone", devPath(vg, v3), 0, 0xb1, mib)
	checkPattern(t, "clone", devPath(vg, v3), 700*mib, 0xa2, mib)

	st1, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Provisioned: 1 + 1 (snapshot) + 2 + 1 GiB of thin LVs; a few MiB used.
	if st1.ProvisionedGB != 5 || st1.FreeGB > st0.FreeGB || st1.FreeGB < st0.FreeGB-0.1 || st1.Volumes != 3 {
		t.Fatalf("stats after thin copies = %+v (before %+v)", st1, st0)
	}

	// Revert by copy (thin): the snapshot's data comes back.
	if err := d.RevertToSnapshot(ctx, v1, s1); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "reverted", devPath(vg, v1), 0, 0xa1, mib)
	// Revert after an extend: the grown part reads zeros.
	if err := d.ExtendVolume(ctx, v1, 2); err != nil {
		t.Fatal(err)
	}
	writePattern(t, devPath(vg, v1), 1500*mib, 0xc1, mib)
	if err := d.RevertToSnapshot(ctx, v1, s1); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "reverted after extend", devPath(vg, v1), 700*mib, 0xa2, mib)
	checkPattern(t, "reverted after extend, grown part", devPath(vg, v1), 1500*mib, 0, mib)
	// Another volume's snapshot is refused.
	if err := d.RevertToSnapshot(ctx, v3, s1); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("revert to another volume's snapshot = %v, want ErrInvalid", err)
	}

	// Thin LVs are independent: deleting the origin keeps the snapshot,
	// which still knows its volume, and the volume made from it.
	if err := d.DeleteVolume(ctx, v1); err != nil {
		t.Fatal(err)
	}
	snaps, err := d.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].VolumeID != v1 {
		t.Fatalf("snapshots after the origin's delete = %+v, %v", snaps, err)
	}
	checkPattern(t, "volume from snapshot after origin delete", devPath(vg, v2), 0, 0xa1, mib)
	for _, err := range []error{d.DeleteSnapshot(ctx, s1), d.DeleteSnapshot(ctx, s1), d.DeleteVolume(ctx, v2), d.DeleteVolume(ctx, v3)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st, err := d.Stats(ctx); err != nil || st.ProvisionedGB != 0 || st.Volumes != 0 {
		t.Fatalf("stats after deleting everything = %+v, %v", st, err)
	}
}

func TestDMThickSnapshotsCopiesAndMerge(t *testing.T) {
	lvmtest.RequireDeviceMapper(t)
	ctx := context.Background()
	// A snapshot's COW area is half its origin: the data size must still
	// be the origin's.
	d, vg := newDriver(t, 6144, func(c *lvm.Config) { c.SnapshotPercent = 50 })
	v1, v2, v3, s1 := volID(1), volID(2), volID(3), volID(50)
	if _, err := d.CreateVolume(ctx, v1, 1); err != nil {
		t.Fatal(err)
	}
	writePattern(t, devPath(vg, v1), 0, 0xa1, mib)
	writePattern(t, devPath(vg, v1), 1023*mib, 0xa2, mib)
	if _, err := d.CreateSnapshot(ctx, s1, v1); err != nil {
		t.Fatal(err)
	}
	writePattern(t, devPath(vg, v1), 0, 0xb1, mib)

	var reports atomic.Int32
	pctx := storage.WithProgress(ctx, func(done, total int64) {
		if done > total || total != 2*storage.GiB {
			t.Errorf("progress %d/%d", done, total)
		}
		reports.Add(1)
	})
	if _, err := d.CreateVolumeFromSnapshot(pctx, v2, s1, 2); err != nil {
		t.Fatal(err)
	}
	if reports.Load() == 0 {
		t.Fatal("no progress reported for a thick copy")
	}
	checkPattern(t, "thick volume from snapshot", devPath(vg, v2), 0, 0xa1, mib)
	checkPattern(t, "thick volume from snapshot", devPath(vg, v2), 1023*mib, 0xa2, mib)
	checkPattern(t, "thick volume from snapshot, grown part", devPath(vg, v2), 1500*mib, 0, mib)

	if _, err := d.CloneVolume(ctx, v3, v1, 1); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "thick clone", devPath(vg, v3), 0, 0xb1, mib)
	checkPattern(t, "thick clone", devPath(vg, v3), 1023*mib, 0xa2, mib)
	out := vg.LVM(t, "lvs", "--noheadings", "-o", "lv_name", vg.Name)
	if bytes.Contains([]byte(out), []byte("_clone-")) {
		t.Fatalf("the temporary clone snapshot is left:\n%s", out)
	}

	// Merge (same size): the data comes back and the snapshot still exists.
	if err := d.RevertToSnapshot(ctx, v1, s1); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "merged", devPath(vg, v1), 0, 0xa1, mib)
	snaps, err := d.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].ID != s1 || snaps[0].VolumeID != v1 {
		t.Fatalf("snapshots after a merge = %+v, %v; want s1 taken again", snaps, err)
	}
	// Copy (after an extend).
	writePattern(t, devPath(vg, v1), 0, 0xd1, mib)
	if err := d.ExtendVolume(ctx, v1, 2); err != nil {
		t.Fatal(err)
	}
	writePattern(t, devPath(vg, v1), 1500*mib, 0xd2, mib)
	if err := d.RevertToSnapshot(ctx, v1, s1); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "reverted by copy", devPath(vg, v1), 0, 0xa1, mib)
	checkPattern(t, "reverted by copy, grown part", devPath(vg, v1), 1500*mib, 0, mib)
	for _, err := range []error{d.DeleteVolume(ctx, v1), d.DeleteVolume(ctx, v2), d.DeleteVolume(ctx, v3)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st, err := d.Stats(ctx); err != nil || st.ProvisionedGB != 0 {
		t.Fatalf("stats after deleting everything = %+v, %v (the origin's delete removes its snapshot)", st, err)
	}
}

func TestDMVolumeClearZeroesBeforeRemoval(t *testing.T) {
	lvmtest.RequireDeviceMapper(t)
	ctx := context.Background()
	d, vg := newDriver(t, 1100, func(c *lvm.Config) { c.VolumeClear = lvm.ClearZero; c.VolumeClearSizeMiB = 16 })
	if _, err := d.CreateVolume(ctx, volID(1), 1); err != nil {
		t.Fatal(err)
	}
	writePattern(t, devPath(vg, volID(1)), 1*mib, 0xee, 8*mib)
	if err := d.DeleteVolume(ctx, volID(1)); err != nil {
		t.Fatal(err)
	}
	// The VG has room for exactly one 1 GiB LV: the next one gets the
	// same extents, and must not see the old data.
	if _, err := d.CreateVolume(ctx, volID(2), 1); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, "new volume on cleared extents", devPath(vg, volID(2)), 1*mib, 0, 8*mib)
}

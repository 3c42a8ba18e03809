package rbd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/internal/cephtest"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testcluster"
	"github.com/kilnstore/kiln/rbd"
)

const gib = storage.GiB

func volID(n int) string {
	return strings.Replace("00000000-abcd-4ef0-8abc-000000000000", "00000000", hex8(n), 1)
}

func hex8(n int) string {
	const digits = "0123456789abcdef"
	b := []byte("00000000")
	for i := 7; i >= 0 && n > 0; i-- {
		b[i] = digits[n%16]
		n /= 16
	}
	return string(b)
}

// TestAgainstCeph runs the driver against one real single-node cluster
// (scripts/ceph.sh: mon, mgr, memstore OSD, cephx, loopback), shared by the
// subtests because a cluster takes seconds to start.
func TestAgainstCeph(t *testing.T) {
	c := cephtest.Start(t, 33310, 36799)
	newDriver := func(t *testing.T, edit func(*rbd.Config)) *rbd.Driver {
		t.Helper()
		cfg := rbd.Config{Name: "ceph", Pool: c.Pool, User: c.User, Conf: c.Conf, Keyring: c.Keyring,
			SecretUUID: "3f2504e0-4f89-41d3-9a0c-0305e82c3301", Timeout: 30 * time.Second}
		if edit != nil {
			edit(&cfg)
		}
		d, err := rbd.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// pattern returns n random bytes, the content a test imports.
	pattern := func(t *testing.T, n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	// importImage makes image volume-<id> of size bytes starting with data.
	importImage := func(t *testing.T, id string, size int64, data []byte) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, size); err != nil {
			t.Fatal(err)
		}
		c.RBD(t, "import", "--no-progress", f, c.Pool+"/volume-"+id)
	}
	// head exports the image and returns its size and first n bytes.
	head := func(t *testing.T, spec string, n int) (int64, []byte) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "export")
		c.RBD(t, "export", "--no-progress", spec, f)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(b)), b[:n]
	}
	const mib = 1 << 20

	t.Run("Lifecycle", func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, nil)
		vol, snap := volID(1), volID(101)
		a := pattern(t, mib)
		importImage(t, vol, gib, a)
		if v, err := d.CreateVolume(ctx, vol, 1); err != nil || v.SizeBytes != gib {
			t.Fatalf("repeated create of an existing 1 GiB image = %+v, %v", v, err)
		}
		if _, err := d.CreateVolume(ctx, vol, 2); !errors.Is(err, storage.ErrExists) {
			t.Fatalf("create with another size = %v", err)
		}
		s, err := d.CreateSnapshot(ctx, snap, vol)
		if err != nil || s.SizeBytes != gib || s.VolumeID != vol {
			t.Fatalf("snapshot = %+v, %v", s, err)
		}
		if again, err := d.CreateSnapshot(ctx, snap, vol); err != nil || again != s {
			t.Fatalf("repeated snapshot = %+v, %v", again, err)
		}
		if !strings.Contains(string(c.RBD(t, "snap", "ls", "--format", "json", c.Pool+"/volume-"+vol)), `"protected":"true"`) {
			t.Error("snapshot not protected")
		}
		// The volume changes after the snapshot.
		c.RBD(t, "bench", "--io-type", "write", "--io-size", "65536", "--io-total", "1M", "--io-pattern", "seq", c.Pool+"/volume-"+vol)
		if _, h := head(t, c.Pool+"/volume-"+vol, mib); bytes.Equal(h, a) {
			t.Fatal("rbd bench did not change the volume")
		}
		from, err := d.CreateVolumeFromSnapshot(ctx, volID(2), snap, 2)
		if err != nil || from.SizeBytes != 2*gib {
			t.Fatalf("from snapshot = %+v, %v", from, err)
		}
		if size, h := head(t, c.Pool+"/volume-"+volID(2), mib); size != 2*gib || !bytes.Equal(h, a) {
			t.Fatalf("volume from snapshot: %d bytes, data matches %v", size, bytes.Equal(h, a))
		}
		clone, err := d.CloneVolume(ctx, volID(3), vol, 1)
		if err != nil {
			t.Fatal(err)
		}
		_, now := head(t, c.Pool+"/volume-"+vol, mib)
		if _, h := head(t, clone.Location, mib); !bytes.Equal(h, now) {
			t.Fatal("clone does not hold the volume's data")
		}
		if info := string(c.RBD(t, "info", "--format", "json", clone.Location)); strings.Contains(info, `"parent"`) {
			t.Fatalf("a clone of a volume still depends on it: %s", info)
		}
		vols, err := d.ListVolumes(ctx)
		if err != nil || len(vols) != 3 {
			t.Fatalf("ListVolumes = %+v, %v", vols, err)
		}
		snaps, err := d.ListSnapshots(ctx)
		if err != nil || len(snaps) != 1 || snaps[0].ID != snap || snaps[0].VolumeID != vol {
			t.Fatalf("ListSnapshots = %+v, %v (the clone's temporary snapshot must be gone)", snaps, err)
		}
		st, err := d.Stats(ctx)
		if err != nil || st.TotalKind != storage.Known || st.FreeGB <= 0 || st.ProvisionedGB != 4 || st.Volumes != 3 {
			t.Fatalf("Stats = %+v, %v", st, err)
		}

		// Extend, shrink refused, revert keeps the size and brings a back.
		if err := d.ExtendVolume(ctx, vol, 3); err != nil {
			t.Fatal(err)
		}
		if err := d.ExtendVolume(ctx, vol, 2); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("shrink = %v", err)
		}
		if err := d.RevertToSnapshot(ctx, vol, snap); err != nil {
			t.Fatal(err)
		}
		if size, h := head(t, c.Pool+"/volume-"+vol, mib); size != 3*gib || !bytes.Equal(h, a) {
			t.Fatalf("after revert: %d bytes, data matches %v", size, bytes.Equal(h, a))
		}
		if err := d.RevertToSnapshot(ctx, volID(2), snap); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("revert to another volume's snapshot = %v", err)
		}

		// Deleting the snapshot flattens the volume cloned from it, which
		// keeps its data.
		if err := d.DeleteSnapshot(ctx, snap); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteSnapshot(ctx, snap); err != nil {
			t.Fatalf("repeated snapshot delete = %v", err)
		}
		if _, h := head(t, c.Pool+"/volume-"+volID(2), mib); !bytes.Equal(h, a) {
			t.Fatal("the volume from the deleted snapshot lost its data")
		}
		for _, id := range []string{vol, volID(2), volID(3), volID(4)} {
			if err := d.DeleteVolume(ctx, id); err != nil {
				t.Fatalf("delete %s: %v", id, err)
			}
		}
		if vols, err := d.ListVolumes(ctx); err != nil || len(vols) != 0 {
			t.Fatalf("after deletes: %+v, %v", vols, err)
		}
	})

	t.Run("DeleteVolumeWithSnapshotsAndClones", func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, nil)
		vol, snap := volID(11), volID(111)
		a := pattern(t, mib)
		importImage(t, vol, gib, a)
		if _, err := d.CreateSnapshot(ctx, snap, vol); err != nil {
			t.Fatal(err)
		}
		if _, err := d.CreateVolumeFromSnapshot(ctx, volID(12), snap, 1); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteVolume(ctx, vol); err != nil {
			t.Fatal(err)
		}
		if _, h := head(t, c.Pool+"/volume-"+volID(12), mib); !bytes.Equal(h, a) {
			t.Fatal("a clone lost its data when its parent volume was deleted")
		}
		if err := d.DeleteVolume(ctx, volID(12)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("CloneDepth", func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, func(c *rbd.Config) { c.MaxCloneDepth = 1 })
		if _, err := d.CreateVolume(ctx, volID(21), 1); err != nil {
			t.Fatal(err)
		}
		if _, err := d.CreateSnapshot(ctx, volID(121), volID(21)); err != nil {
			t.Fatal(err)
		}
		first, err := d.CreateVolumeFromSnapshot(ctx, volID(22), volID(121), 1)
		if err != nil {
			t.Fatal(err)
		}
		if info := string(c.RBD(t, "info", "--format", "json", first.Location)); !strings.Contains(info, `"parent"`) {
			t.Fatalf("a first-level clone was flattened: %s", info)
		}
		if _, err := d.CreateSnapshot(ctx, volID(122), volID(22)); err != nil {
			t.Fatal(err)
		}
		second, err := d.CreateVolumeFromSnapshot(ctx, volID(23), volID(122), 1)
		if err != nil {
			t.Fatal(err)
		}
		if info := string(c.RBD(t, "info", "--format", "json", second.Location)); strings.Contains(info, `"parent"`) {
			t.Fatalf("a clone deeper than rbd_max_clone_depth was not flattened: %s", info)
		}
		for _, id := range []string{volID(23), volID(22), volID(21)} {
			if err := d.DeleteVolume(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("BadInputChangesNothing", func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, nil)
		before := string(c.RBD(t, "ls", "-l", "--format", "json", c.Pool))
		if _, err := d.CreateVolume(ctx, "../x", 1); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("bad ID = %v", err)
		}
		if _, err := d.CreateVolume(ctx, volID(31), 0); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("bad size = %v", err)
		}
		if _, err := d.CreateVolumeFromSnapshot(ctx, volID(31), volID(999), 1); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("from a missing snapshot = %v", err)
		}
		if _, err := d.CloneVolume(ctx, volID(31), volID(998), 1); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("clone of a missing volume = %v", err)
		}
		if err := d.ExtendVolume(ctx, volID(998), 2); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("extend of a missing volume = %v", err)
		}
		if err := d.DeleteVolume(ctx, volID(998)); err != nil {
			t.Errorf("delete of a missing volume = %v", err)
		}
		if after := string(c.RBD(t, "ls", "-l", "--format", "json", c.Pool)); after != before {
			t.Errorf("pool changed: %s -> %s", before, after)
		}
	})

	t.Run("UnreachableClusterIsReportedClearly", func(t *testing.T) {
		ctx := context.Background()
		conf := filepath.Join(t.TempDir(), "ceph.conf")
		// A monitor address nothing listens on.
		if err := os.WriteFile(conf, []byte("[global]\nmon host = [v2:127.0.0.1:33399,v1:127.0.0.1:36899]\nclient mount timeout = 2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d := newDriver(t, func(cfg *rbd.Config) { cfg.Conf, cfg.Timeout = conf, 3*time.Second })
		start := time.Now()
		_, err := d.Stats(ctx)
		if !errors.Is(err, rbd.ErrUnreachable) {
			t.Fatalf("Stats of an unreachable cluster = %v", err)
		}
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("Stats took %s to give up", took)
		}
		if _, err := d.CreateVolume(ctx, volID(41), 1); !errors.Is(err, rbd.ErrUnreachable) {
			t.Fatalf("create on an unreachable cluster = %v", err)
		}
	})

	t.Run("FullPoolFailsInTime", func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, func(cfg *rbd.Config) { cfg.Timeout = 5 * time.Second })
		c.Ceph(t, "osd", "pool", "set-quota", c.Pool, "max_objects", "1")
		t.Cleanup(func() { c.Ceph(t, "osd", "pool", "set-quota", c.Pool, "max_objects", "0") })
		// The monitors mark the pool full when they see the quota.
		poolFull := func(want bool) func() error {
			return func() error {
				if full := strings.Contains(string(c.Ceph(t, "osd", "pool", "ls", "detail")), "full"); full != want {
					return fmt.Errorf("pool full = %v, want %v", full, want)
				}
				return nil
			}
		}
		testcluster.WaitForT(t, 30*time.Second, poolFull(true))
		start := time.Now()
		_, err := d.CreateVolume(ctx, volID(51), 1)
		if !errors.Is(err, rbd.ErrUnreachable) {
			t.Fatalf("create in a full pool = %v", err)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("create in a full pool took %s to fail", took)
		}
		t.Logf("create in a full pool failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
		c.Ceph(t, "osd", "pool", "set-quota", c.Pool, "max_objects", "0")
		testcluster.WaitForT(t, 30*time.Second, poolFull(false))
		if out := string(c.RBD(t, "ls", "--format", "json", c.Pool)); strings.Contains(out, volID(51)) {
			t.Fatalf("a failed create left an image: %s", out)
		}
		if v, err := d.CreateVolume(ctx, volID(51), 1); err != nil || v.SizeBytes != gib {
			t.Fatalf("create after the quota was lifted = %+v, %v", v, err)
		}
		if err := d.DeleteVolume(ctx, volID(51)); err != nil {
			t.Fatal(err)
		}
	})

	// The data paths are checked above; this is the API's view: create ->
	// available -> snapshot -> volume from it -> attach (Cinder's rbd
	// connection info) -> detach -> deletes.
	t.Run("EndToEndThroughTheAPI", func(t *testing.T) {
		ctx := context.Background()
		d := newDriver(t, nil)
		cl := testcluster.Start(t, testcluster.Options{Drivers: func(int) []agent.Driver { return []agent.Driver{d} }})
		client := cl.BlockStorage(0, "rbd")
		wait := func(id, status string) { t.Helper(); testcluster.WaitVolume(t, client, id, status) }
		v, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 1, Name: "rbd-e2e"}, nil).Extract()
		if err != nil {
			t.Fatal(err)
		}
		wait(v.ID, "available")
		s, err := snapshots.Create(ctx, client, snapshots.CreateOpts{VolumeID: v.ID, Name: "s"}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		testcluster.WaitSnapshot(t, client, s.ID, "available")
		from, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 2, SnapshotID: s.ID, Name: "from"}, nil).Extract()
		if err != nil {
			t.Fatal(err)
		}
		wait(from.ID, "available")
		ci, err := volumes.InitializeConnection(ctx, client, from.ID, volumes.InitializeConnectionOpts{Host: "compute-1", IP: "127.0.0.1"}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := ci["data"].(map[string]any)
		hosts, _ := data["hosts"].([]any)
		ports, _ := data["ports"].([]any)
		if ci["driver_volume_type"] != "rbd" || data["name"] != c.Pool+"/volume-"+from.ID || len(hosts) != 1 || hosts[0] != "127.0.0.1" ||
			len(ports) != 1 || ports[0] != "36799" || data["auth_username"] != c.User || data["auth_enabled"] != true ||
			data["secret_uuid"] != "3f2504e0-4f89-41d3-9a0c-0305e82c3301" || data["cluster_name"] != "ceph" || data["access_mode"] != "rw" {
			t.Fatalf("connection info %v", ci)
		}
		if err := volumes.TerminateConnection(ctx, client, from.ID, volumes.TerminateConnectionOpts{Host: "compute-1", IP: "127.0.0.1"}).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		if err := volumes.Delete(ctx, client, from.ID, volumes.DeleteOpts{}).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		if err := snapshots.Delete(ctx, client, s.ID).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		testcluster.WaitForT(t, time.Minute, func() error {
			if _, err := snapshots.Get(ctx, client, s.ID).Extract(); err == nil {
				return errors.New("snapshot not deleted")
			}
			return nil
		})
		if err := volumes.Delete(ctx, client, v.ID, volumes.DeleteOpts{}).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		testcluster.WaitForT(t, time.Minute, func() error {
			if vols, err := d.ListVolumes(ctx); err != nil || len(vols) != 0 {
				return fmt.Errorf("volumes left in the pool after the deletes: %+v, %v", vols, err)
			}
			return nil
		})
	})
}

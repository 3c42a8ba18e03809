package nfs_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/internal/ganesha"
	"github.com/kilnstore/kiln/internal/ganesha/ganeshatest"
	"github.com/kilnstore/kiln/internal/qemuimg/qemuimgtest"
	"github.com/kilnstore/kiln/internal/testcluster"
	"github.com/kilnstore/kiln/nfs"
)

// TestExportThroughGaneshaEndToEnd drives a cluster whose agent exports
// its pool through a real nfs-ganesha (private D-Bus, loopback): create ->
// available -> os-initialize_connection for a host -> Cinder's NFS
// connection info -> the volume's bytes read over NFSv4 with libnfs from
// that host's address -> a second host attaches and the first detaches:
// the first is refused -> the last detach removes the export -> delete.
func TestExportThroughGaneshaEndToEnd(t *testing.T) {
	ctx := context.Background()
	g := startGaneshaPool(t, 32161, nil)
	s, store, poolDir, client := g.server, g.store, g.poolDir, g.client
	v, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 1, Name: "nfs-e2e"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	testcluster.WaitVolume(t, client, v.ID, "available")
	// What a guest wrote, as the agent's host sees it.
	data := []byte("kiln volume over nfs-ganesha\n")
	f, err := os.OpenFile(filepath.Join(poolDir, "volume-"+v.ID), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	conn := volumes.InitializeConnectionOpts{Host: "compute-1", IP: "127.0.0.1"}
	ci, err := volumes.InitializeConnection(ctx, client, v.ID, conn).Extract()
	if err != nil {
		t.Fatal(err)
	}
	ciData, _ := ci["data"].(map[string]any)
	export, _ := ciData["export"].(string)
	if ci["driver_volume_type"] != "nfs" || export != "127.0.0.1:/kiln/"+v.ID || ciData["name"] != "volume-"+v.ID ||
		ciData["format"] != "raw" || ciData["options"] != "-o vers=4,proto=tcp,port="+strconv.Itoa(s.Port) ||
		ci["mount_point_base"] != "/var/lib/kiln/mnt" || ciData["access_mode"] != "rw" {
		t.Fatalf("connection info %v", ci)
	}
	path := "/kiln/" + v.ID + "/volume-" + v.ID
	// The head of the volume over NFS (reading all of a 1 GiB volume is
	// slow under load and proves nothing more).
	got, err := s.Head(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(data)], data) {
		t.Fatalf("read over NFS starting %q, want it to start %q", got[:40], data)
	}
	// A second host attaches, then the first one detaches: the export
	// stays for the second host only, and the first host is refused.
	conn2 := volumes.InitializeConnectionOpts{Host: "compute-2", IP: "127.0.0.9"}
	if _, err := volumes.InitializeConnection(ctx, client, v.ID, conn2).Extract(); err != nil {
		t.Fatal(err)
	}
	if err := volumes.TerminateConnection(ctx, client, v.ID, volumes.TerminateConnectionOpts{Host: "compute-1", IP: "127.0.0.1"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if rec, ok := store.Get(v.ID); !ok || len(rec.Clients) != 1 || rec.Clients[0] != "127.0.0.9" {
		t.Fatalf("export record after one of two hosts detached: %+v, %v", rec, ok)
	}
	if _, err := s.Cat(path); err == nil {
		t.Fatal("a host that detached can still read the volume over NFS")
	}
	if err := volumes.TerminateConnection(ctx, client, v.ID, volumes.TerminateConnectionOpts{Host: "compute-2", IP: "127.0.0.9"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Get(v.ID); ok {
		t.Fatal("export record left after the last host detached")
	}
	if err := volumes.Delete(ctx, client, v.ID, volumes.DeleteOpts{}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
}

// ganeshaPool is a cluster whose one agent exports its pool through a real
// nfs-ganesha on loopback.
type ganeshaPool struct {
	server  *ganeshatest.Server
	store   *ganesha.Store
	poolDir string
	driver  *nfs.Driver
	client  *gophercloud.ServiceClient
}

func startGaneshaPool(t *testing.T, port int, edit func(*nfs.Config)) ganeshaPool {
	t.Helper()
	s := ganeshatest.Start(t, port)
	m, err := ganesha.New(ganesha.Config{
		Bus:       ganesha.BusConfig{Address: s.BusAddress, GaneshaLog: s.LogFile},
		ExportDir: filepath.Join(t.TempDir(), "exports"),
		// The export is restricted to the attaching host, whose root opens
		// the pool's files.
		Squash: "no_root_squash",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	store, err := ganesha.OpenStore(filepath.Join(t.TempDir(), "nfs-exports.json"), ganesha.IDRange{})
	if err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(s.Port))
	poolDir := filepath.Join(t.TempDir(), "pool")
	cfg := nfs.Config{Name: "share", Dir: poolDir,
		Exporter: ganesha.VolumeExporter{Volumes: ganesha.NewVolumes(m, store), Server: server, MountPointBase: "/var/lib/kiln/mnt"}}
	if edit != nil {
		edit(&cfg)
	}
	d, err := nfs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Info().Protocol != "nfs" {
		t.Fatalf("storage_protocol %q, want nfs", d.Info().Protocol)
	}
	c := testcluster.Start(t, testcluster.Options{Drivers: func(int) []agent.Driver { return []agent.Driver{d} }})
	return ganeshaPool{server: s, store: store, poolDir: poolDir, driver: d, client: c.BlockStorage(0, "nfs")}
}

// TestSnapshotsThroughGaneshaEndToEnd: create -> available -> data written
// -> snapshot (a qcow2 overlay becomes the active image) -> more data ->
// volume from the snapshot -> attach both: the connection info names the
// active image and its format, and the new volume's bytes read over NFSv4
// are the snapshot's -> detach -> snapshot deleted (merged) -> the volume
// still reads the newest data -> delete, pool empty. With qcow2 volumes
// too.
func TestSnapshotsThroughGaneshaEndToEnd(t *testing.T) {
	qemuimgtest.Require(t)
	for i, qcow2 := range []bool{false, true} {
		format := map[bool]string{false: "raw", true: "qcow2"}[qcow2]
		t.Run(format, func(t *testing.T) {
			ctx := context.Background()
			g := startGaneshaPool(t, 32162+i, func(c *nfs.Config) { c.QCOW2Volumes = qcow2 })
			client := g.client
			wait := func(id, status string) { t.Helper(); testcluster.WaitVolume(t, client, id, status) }
			v, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 1, Name: "origin"}, nil).Extract()
			if err != nil {
				t.Fatal(err)
			}
			wait(v.ID, "available")
			base := filepath.Join(g.poolDir, "volume-"+v.ID)
			before := qemuimgtest.Region{Off: 0, Len: 1 << 20, Pattern: 0x3c}
			after := qemuimgtest.Region{Off: 0, Len: 64 << 10, Pattern: 0xd7}
			qemuimgtest.Write(t, base, format, before)

			snap, err := snapshots.Create(ctx, client, snapshots.CreateOpts{VolumeID: v.ID, Name: "s1"}).Extract()
			if err != nil {
				t.Fatal(err)
			}
			testcluster.WaitSnapshot(t, client, snap.ID, "available")
			overlay := filepath.Join(g.poolDir, "volume-"+v.ID+"."+snap.ID)
			qemuimgtest.Write(t, overlay, "qcow2", after)

			from, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 2, Name: "from-snap", SnapshotID: snap.ID}, nil).Extract()
			if err != nil {
				t.Fatal(err)
			}
			wait(from.ID, "available")

			conn := volumes.InitializeConnectionOpts{Host: "compute-1", IP: "127.0.0.1"}
			ci, err := volumes.InitializeConnection(ctx, client, v.ID, conn).Extract()
			if err != nil {
				t.Fatal(err)
			}
			data, _ := ci["data"].(map[string]any)
			if ci["driver_volume_type"] != "nfs" || data["name"] != "volume-"+v.ID+"."+snap.ID || data["format"] != "qcow2" {
				t.Fatalf("connection info of a volume with a snapshot: %v", ci)
			}
			// Over NFS the active image is the overlay: a qcow2 file.
			got, err := g.server.Cat("/kiln/" + v.ID + "/volume-" + v.ID + "." + snap.ID)
			if err != nil || !bytes.HasPrefix(got, []byte("QFI\xfb")) {
				t.Fatalf("active image over NFS: %d bytes, %v", len(got), err)
			}
			ci, err = volumes.InitializeConnection(ctx, client, from.ID, conn).Extract()
			if err != nil {
				t.Fatal(err)
			}
			data, _ = ci["data"].(map[string]any)
			if data["name"] != "volume-"+from.ID || data["format"] != format {
				t.Fatalf("connection info of the volume from the snapshot: %v", ci)
			}
			// Check the bytes as the attached host sees them: the head of a
			// raw file, a whole (small) qcow2 file through qemu-io.
			fromPath := "/kiln/" + from.ID + "/volume-" + from.ID
			if qcow2 {
				got, err = g.server.Cat(fromPath)
			} else {
				got, err = g.server.Head(fromPath, 2<<20)
			}
			if err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(t.TempDir(), "from")
			if err := os.WriteFile(img, got, 0o600); err != nil {
				t.Fatal(err)
			}
			qemuimgtest.Expect(t, img, format, before, qemuimgtest.Region{Off: 1 << 20, Len: 1 << 20})
			for _, id := range []string{v.ID, from.ID} {
				if err := volumes.TerminateConnection(ctx, client, id, volumes.TerminateConnectionOpts{Host: "compute-1", IP: "127.0.0.1"}).ExtractErr(); err != nil {
					t.Fatal(err)
				}
			}
			if err := snapshots.Delete(ctx, client, snap.ID).ExtractErr(); err != nil {
				t.Fatal(err)
			}
			testcluster.WaitForT(t, time.Minute, func() error {
				if _, err := os.Stat(overlay); !os.IsNotExist(err) {
					return fmt.Errorf("snapshot overlay still there after the delete (%v)", err)
				}
				return nil
			})
			qemuimgtest.Expect(t, base, format, after, qemuimgtest.Region{Off: 64 << 10, Len: 1<<20 - 64<<10, Pattern: before.Pattern})
			for _, id := range []string{from.ID, v.ID} {
				if err := volumes.Delete(ctx, client, id, volumes.DeleteOpts{}).ExtractErr(); err != nil {
					t.Fatal(err)
				}
			}
			testcluster.WaitForT(t, time.Minute, func() error {
				if ents, _ := os.ReadDir(g.poolDir); len(ents) != 0 {
					return fmt.Errorf("pool not empty after the deletes: %d entries", len(ents))
				}
				return nil
			})
		})
	}
}

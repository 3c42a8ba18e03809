package nfs_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/internal/ganesha"
	"github.com/kilnstore/kiln/internal/ganesha/ganeshatest"
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
	s := ganeshatest.Start(t, 32161)
	ctx := context.Background()
	m, err := ganesha.New(ganesha.Config{
		Bus:       ganesha.BusConfig{Address: s.BusAddress, GaneshaLog: s.LogFile},
		ExportDir: filepath.Join(t.TempDir(), "exports"),
		// The pool's files are root's 0600; the export is restricted to
		// the attaching host, whose root opens them.
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
	d, err := nfs.New(nfs.Config{Name: "share", Dir: poolDir,
		Exporter: ganesha.VolumeExporter{Volumes: ganesha.NewVolumes(m, store), Server: server, MountPointBase: "/var/lib/kiln/mnt"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Info().Protocol != "nfs" {
		t.Fatalf("storage_protocol %q, want nfs", d.Info().Protocol)
	}
	c := testcluster.Start(t, testcluster.Options{Drivers: func(int) []agent.Driver { return []agent.Driver{d} }})
	client := c.BlockStorage(0, "nfs")
	v, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 1, Name: "nfs-e2e"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := volumes.WaitForStatus(wctx, client, v.ID, "available"); err != nil {
		t.Fatal(err)
	}
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
	got, err := s.Cat(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != 1<<30 || !bytes.Equal(got[:len(data)], data) {
		t.Fatalf("read %d bytes over NFS starting %q, want 1 GiB starting %q", len(got), got[:min(len(got), 40)], data)
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

package lvm_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/internal/testcluster"
	"github.com/kilnstore/kiln/internal/tgt"
	"github.com/kilnstore/kiln/internal/tgt/tgttest"
	"github.com/kilnstore/kiln/lvm"
	"github.com/kilnstore/kiln/lvm/lvmtest"
)

// TestEndToEndThroughTheAPI drives a cluster whose agent serves an LVM
// pool through gophercloud: create -> available -> extend -> export for a
// connector -> unexport -> delete, checking the LV after each step. With
// device-mapper (the qemu guest) the pool is thin, the export is a real
// tgtd target, and open-iscsi logs in with the CHAP credentials from the
// connection info and writes data that lands on the LV; a wrong secret is
// refused. Without it (metadata-only LVM: no LV device to export) the pool
// has no target, and the export fails with a clear error instead.
func TestEndToEndThroughTheAPI(t *testing.T) {
	ctx := context.Background()
	vg := lvmtest.NewVG(t, 4096)
	dm := lvmtest.DeviceMapper()
	cfg := lvm.Config{Name: "lvm", VG: vg.Name, ConfigOverride: vg.Config, VolumeClear: lvm.ClearNone, Logger: logger(t)}
	var target *tgttest.Daemon
	if dm {
		cfg.Type = lvm.TypeThin
		target = tgttest.Start(t, "127.0.0.1:3270", 17270)
		m, err := tgt.New(tgt.Config{ControlPort: target.ControlPort, Portals: []string{target.Portal}}, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		store, err := tgt.OpenStore(filepath.Join(t.TempDir(), "exports.json"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Exporter = tgt.NewVolumes(m, store)
	}
	d, err := lvm.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, testcluster.Options{Drivers: func(int) []agent.Driver { return []agent.Driver{d} }})
	client := c.BlockStorage(0, "e2e")
	wait := func(id, status string) { t.Helper(); testcluster.WaitVolume(t, client, id, status) }
	lvSize := func(id string) int64 {
		t.Helper()
		vols, err := d.ListVolumes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vols {
			if v.ID == id {
				return v.SizeBytes
			}
		}
		return 0
	}

	v, err := volumes.Create(ctx, client, volumes.CreateOpts{Size: 1, Name: "e2e"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	wait(v.ID, "available")
	if got := lvSize(v.ID); got != gib {
		t.Fatalf("LV after create: %d bytes, want 1 GiB", got)
	}
	if err := volumes.ExtendSize(ctx, client, v.ID, volumes.ExtendSizeOpts{NewSize: 2}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wait(v.ID, "available")
	if got := lvSize(v.ID); got != 2*gib {
		t.Fatalf("LV after extend: %d bytes, want 2 GiB", got)
	}

	initiator := "iqn.2026-11.io.kiln:e2e-host"
	conn := volumes.InitializeConnectionOpts{Host: "e2e-host", IP: "127.0.0.1", Initiator: initiator}
	ci, err := volumes.InitializeConnection(ctx, client, v.ID, conn).Extract()
	if !dm {
		if err == nil || !strings.Contains(err.Error(), "no iSCSI target configured") {
			t.Fatalf("export from a pool without a target: %v, %v; want a clear error", ci, err)
		}
	} else {
		if err != nil {
			t.Fatal(err)
		}
		checkISCSI(t, ci, v.ID, target, vg)
		if err := volumes.TerminateConnection(ctx, client, v.ID, volumes.TerminateConnectionOpts{Host: "e2e-host", Initiator: initiator}).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		if out, _ := target.Tgtadm("--lld", "iscsi", "--mode", "target", "--op", "show"); strings.Contains(out, v.ID) {
			t.Fatalf("target still there after terminate_connection:\n%s", out)
		}
	}

	if err := volumes.Delete(ctx, client, v.ID, volumes.DeleteOpts{}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for lvSize(v.ID) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("LV still there 30 s after delete")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkISCSI checks Cinder's iSCSI connection info, logs in with
// open-iscsi using it, writes through the session and reads the data back
// from the LV; a wrong CHAP secret is refused.
func checkISCSI(t *testing.T, ci map[string]any, volID string, target *tgttest.Daemon, vg *lvmtest.VG) {
	t.Helper()
	data, _ := ci["data"].(map[string]any)
	iqn, _ := data["target_iqn"].(string)
	user, _ := data["auth_username"].(string)
	secret, _ := data["auth_password"].(string)
	if ci["driver_volume_type"] != "iscsi" || iqn != "iqn.2010-10.org.openstack:volume-"+volID ||
		data["target_portal"] != target.Portal || data["target_lun"] != float64(1) || data["auth_method"] != "CHAP" ||
		len(secret) < 12 || user == "" || data["volume_id"] != volID || data["discard"] != true || data["target_discovered"] != false {
		t.Fatalf("connection info %v", ci)
	}
	if _, err := exec.LookPath("iscsiadm"); err != nil {
		t.Fatalf("iscsiadm missing in a run that has device-mapper: %v", err)
	}
	iscsi := func(args ...string) (string, error) {
		out, err := exec.Command("iscsiadm", args...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := iscsi(args...)
		if err != nil {
			t.Fatalf("iscsiadm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if err := os.WriteFile("/etc/iscsi/initiatorname.iscsi", []byte("InitiatorName=iqn.2026-11.io.kiln:e2e-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("iscsid").CombinedOutput(); err != nil && !strings.Contains(string(out), "already running") {
		t.Fatalf("start iscsid: %v\n%s", err, out)
	}
	node := []string{"-m", "node", "-T", iqn, "-p", target.Portal}
	setAuth := func(pass string) {
		must(append(node, "-o", "new")...)
		for k, v := range map[string]string{"node.session.auth.authmethod": "CHAP", "node.session.auth.username": user, "node.session.auth.password": pass} {
			must(append(node, "-o", "update", "-n", k, "-v", v)...)
		}
	}
	setAuth(secret + "x")
	if out, err := iscsi(append(node, "--login")...); err == nil {
		t.Fatalf("login with a wrong CHAP secret succeeded:\n%s", out)
	}
	setAuth(secret)
	must(append(node, "--login")...)
	t.Cleanup(func() { _, _ = iscsi(append(node, "--logout")...) })
	disk := ""
	for deadline := time.Now().Add(20 * time.Second); disk == ""; {
		out := must("-m", "session", "-P", "3")
		if m := regexp.MustCompile(`Attached scsi disk (sd[a-z]+)`).FindStringSubmatch(out); m != nil {
			disk = "/dev/" + m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no disk attached to the session:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n, err := deviceSizeOf(disk); err != nil || n != 2*gib {
		t.Fatalf("iSCSI disk %s: %d bytes (%v), want 2 GiB", disk, n, err)
	}
	writePattern(t, disk, 5*mib, 0x5c, mib)
	must(append(node, "--logout")...)
	checkPattern(t, "data written over iSCSI, read from the LV", devPath(vg, volID), 5*mib, 0x5c, mib)
}

func deviceSizeOf(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.Seek(0, 2)
	if err != nil {
		return 0, fmt.Errorf("seek %s: %w", path, err)
	}
	return n, nil
}

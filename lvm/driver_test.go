package lvm_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
	"github.com/kilnstore/kiln/lvm"
	"github.com/kilnstore/kiln/lvm/lvmtest"
)

const gib = storage.GiB

func volID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newDriver makes a thick pool on a fresh VG of sizeMiB.
func newDriver(t *testing.T, sizeMiB int64, mod func(*lvm.Config)) (*lvm.Driver, *lvmtest.VG) {
	t.Helper()
	vg := lvmtest.NewVG(t, sizeMiB)
	cfg := lvm.Config{Name: "p1", VG: vg.Name, ConfigOverride: vg.Config, VolumeClear: lvm.ClearNone, Logger: logger(t)}
	if mod != nil {
		mod(&cfg)
	}
	d, err := lvm.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("lvm.New: %v", err)
	}
	return d, vg
}

func TestThickVolumeLifecycleAndCapacity(t *testing.T) {
	ctx := context.Background()
	d, vg := newDriver(t, 4096, nil)

	info := d.Info()
	if info.Driver != "lvm" || info.Protocol != "iSCSI" || info.ThinProvisioning || !info.ThickProvisioning {
		t.Fatalf("Info = %+v, want a thick iSCSI lvm pool", info)
	}
	st0, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A 4 GiB file minus LVM metadata: 3.99 GiB of extents.
	if st0.TotalGB < 3.9 || st0.TotalGB > 4 || st0.FreeGB != st0.TotalGB || st0.ProvisionedGB != 0 || st0.Volumes != 0 {
		t.Fatalf("empty pool stats = %+v", st0)
	}

	v, err := d.CreateVolume(ctx, volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	if v.SizeBytes != gib || v.Location != vg.Name+"/volume-"+volID(1) {
		t.Fatalf("created %+v", v)
	}
	// lvm itself agrees.
	if out := strings.Fields(vg.LVM(t, "lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", vg.Name+"/volume-"+volID(1))); out[len(out)-1] != fmt.Sprint(gib) {
		t.Fatalf("lvs size = %q", out)
	}
	// A retried create is a success; another size under the ID is not.
	if again, err := d.CreateVolume(ctx, volID(1), 1); err != nil || again != v {
		t.Fatalf("retried create = %+v, %v", again, err)
	}
	if _, err := d.CreateVolume(ctx, volID(1), 2); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("create with another size = %v, want ErrExists", err)
	}

	st1, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st1.Volumes != 1 || st1.ProvisionedGB != 1 || st1.FreeGB != st0.FreeGB-1 || st1.TotalGB != st0.TotalGB {
		t.Fatalf("stats after a 1 GiB create = %+v (before %+v)", st1, st0)
	}

	if err := d.ExtendVolume(ctx, volID(1), 2); err != nil {
		t.Fatal(err)
	}
	if err := d.ExtendVolume(ctx, volID(1), 2); err != nil {
		t.Fatalf("extend to the same size = %v, want success", err)
	}
	if err := d.ExtendVolume(ctx, volID(1), 1); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("shrink = %v, want ErrInvalid", err)
	}
	vols, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || vols[0].ID != volID(1) || vols[0].SizeBytes != 2*gib {
		t.Fatalf("ListVolumes = %+v", vols)
	}

	if err := d.DeleteVolume(ctx, volID(1)); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVolume(ctx, volID(1)); err != nil {
		t.Fatalf("delete of a missing volume = %v, want success", err)
	}
	st2, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st2 != st0 {
		t.Fatalf("stats after delete = %+v, want %+v", st2, st0)
	}
}

func TestSizesRoundToExtents(t *testing.T) {
	ctx := context.Background()
	// A VG whose extent size does not divide a GiB: 3 MiB extents.
	vg := lvmtest.NewVG(t, 2048, "-s", "3m")
	d, err := lvm.New(ctx, lvm.Config{Name: "p1", VG: vg.Name, ConfigOverride: vg.Config, VolumeClear: lvm.ClearNone, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	v, err := d.CreateVolume(ctx, volID(2), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := (gib + 3<<20 - 1) / (3 << 20) * (3 << 20)
	vols, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.SizeBytes != want || len(vols) != 1 || vols[0].SizeBytes != want {
		t.Fatalf("1 GiB on 3 MiB extents: create says %d, lvs says %+v, want %d", v.SizeBytes, vols, want)
	}
	if again, err := d.CreateVolume(ctx, volID(2), 1); err != nil || again.SizeBytes != want {
		t.Fatalf("retried create = %+v, %v", again, err)
	}
}

func TestErrorsAreTypedAndChangeNothing(t *testing.T) {
	ctx := context.Background()
	d, vg := newDriver(t, 2048, nil)

	// VG full: nothing is created.
	_, err := d.CreateVolume(ctx, volID(3), 100)
	if !errors.Is(err, storage.ErrNoSpace) || !strings.Contains(err.Error(), "insufficient free space") {
		t.Fatalf("create beyond the VG = %v, want ErrNoSpace with lvm's message", err)
	}
	if vols, _ := d.ListVolumes(ctx); len(vols) != 0 {
		t.Fatalf("a failed create left %+v", vols)
	}
	// LV missing.
	if err := d.ExtendVolume(ctx, volID(4), 2); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("extend of a missing LV = %v, want ErrNotFound", err)
	}
	if _, err := d.CreateSnapshot(ctx, volID(5), volID(4)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("snapshot of a missing LV = %v, want ErrNotFound", err)
	}
	if _, err := d.CreateVolumeFromSnapshot(ctx, volID(6), volID(5), 1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("create from a missing snapshot = %v, want ErrNotFound", err)
	}
	// Bad input never reaches lvm.
	for name, err := range map[string]error{
		"bad id":        func() error { _, err := d.CreateVolume(ctx, "../../etc", 1); return err }(),
		"option id":     func() error { _, err := d.CreateVolume(ctx, "--help", 1); return err }(),
		"zero size":     func() error { _, err := d.CreateVolume(ctx, volID(7), 0); return err }(),
		"bad snapshot":  func() error { _, err := d.CreateSnapshot(ctx, "x y", volID(1)); return err }(),
		"bad extend":    d.ExtendVolume(ctx, "$(reboot)", 2),
		"bad delete id": d.DeleteVolume(ctx, "volume-1"),
	} {
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// The VG disappears under the pool: a clear error, not a zero.
	vg.LVM(t, "vgrename", vg.Name, vg.Name+"x")
	t.Cleanup(func() { vg.LVM(t, "vgrename", vg.Name+"x", vg.Name) })
	if _, err := d.Stats(ctx); !errors.Is(err, lvm.ErrVGNotFound) {
		t.Fatalf("stats of a missing VG = %v, want ErrVGNotFound", err)
	}
	_, err = lvm.New(ctx, lvm.Config{Name: "p2", VG: vg.Name, ConfigOverride: vg.Config})
	if !errors.Is(err, lvm.ErrVGNotFound) || !strings.Contains(err.Error(), "vgcreate") {
		t.Fatalf("New on a missing VG = %v, want ErrVGNotFound that says how to create it", err)
	}
}

func TestConcurrentCreatesNeverOverfillTheVG(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t, 4096, nil) // room for 3 x 1 GiB, not 4
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = d.CreateVolume(ctx, volID(100+i), 1)
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrNoSpace):
			t.Errorf("create %d: %v, want success or ErrNoSpace", i, err)
		}
	}
	vols, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok != 3 || len(vols) != 3 {
		t.Fatalf("%d creates succeeded, %d LVs exist; want 3 and 3", ok, len(vols))
	}
}

func TestListReportsOrphansAndIgnoresForeignLVs(t *testing.T) {
	ctx := context.Background()
	d, vg := newDriver(t, 2048, nil)
	if _, err := d.CreateVolume(ctx, volID(10), 1); err != nil {
		t.Fatal(err)
	}
	// Created behind the driver's back: one looks like a Kiln volume (an
	// orphan the coordinator will report), one is somebody else's LV.
	vg.LVM(t, "lvcreate", "-y", "-L", "8m", "-n", "volume-"+volID(11), vg.Name)
	vg.LVM(t, "lvcreate", "-y", "-L", "8m", "-n", "home", vg.Name)
	vg.LVM(t, "lvcreate", "-y", "-L", "8m", "-n", "volume-not-a-uuid", vg.Name)
	vols, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, v := range vols {
		got[v.ID] = v.SizeBytes
	}
	if len(got) != 2 || got[volID(10)] != gib || got[volID(11)] != 8<<20 {
		t.Fatalf("ListVolumes = %+v, want volume 10 (1 GiB) and 11 (8 MiB) only", vols)
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Volumes != 2 {
		t.Fatalf("stats count %d volumes, want 2", st.Volumes)
	}
}

func TestWithoutDeviceMapperSnapshotsFailClearly(t *testing.T) {
	if lvmtest.DeviceMapper() {
		// Only for kernels without device-mapper; scripts/test-guest.sh
		// does not select it in the guest.
		testenv.SkipOrFail(t, "this kernel has device-mapper: the snapshot tests in dm_test.go cover it")
	}
	ctx := context.Background()
	d, _ := newDriver(t, 2048, nil)
	if _, err := d.CreateVolume(ctx, volID(20), 1); err != nil {
		t.Fatal(err)
	}
	_, err := d.CreateSnapshot(ctx, volID(21), volID(20))
	if !errors.Is(err, lvm.ErrNoDeviceMapper) || !strings.Contains(err.Error(), "device-mapper") {
		t.Fatalf("snapshot without device-mapper = %v, want ErrNoDeviceMapper", err)
	}
	snaps, err := d.ListSnapshots(ctx)
	if err != nil || len(snaps) != 0 {
		t.Fatalf("ListSnapshots = %+v, %v; want none", snaps, err)
	}
	// A thin pool cannot be created either: New says so.
	_, err = lvm.New(ctx, lvm.Config{Name: "thin", VG: "nope", Type: lvm.TypeThin})
	if err == nil {
		t.Fatal("thin pool on a missing VG: no error")
	}
}

func TestLVMConfFileIsUsed(t *testing.T) {
	ctx := context.Background()
	vg := lvmtest.NewVG(t, 2048)
	dir := t.TempDir()
	// The whole lvm configuration comes from this file: the driver must
	// see the VG only through it.
	conf := "config { checks = 1 }\n" + strings.ReplaceAll(vg.Config, "} ", "}\n") + "\n"
	if err := os.WriteFile(dir+"/lvm.conf", []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := lvm.New(ctx, lvm.Config{Name: "p1", VG: vg.Name, ConfFile: dir + "/lvm.conf", VolumeClear: lvm.ClearNone, Logger: logger(t)})
	if err != nil {
		t.Fatalf("New with lvm_conf: %v", err)
	}
	if _, err := d.CreateVolume(ctx, volID(30), 1); err != nil {
		t.Fatal(err)
	}
	// A conf file that hides the loop device hides the VG.
	if err := os.WriteFile(dir+"/lvm.conf", []byte(`devices { filter = [ "r|.*|" ] }`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stats(ctx); !errors.Is(err, lvm.ErrVGNotFound) {
		t.Fatalf("stats with a conf file that filters every device = %v, want ErrVGNotFound", err)
	}
}

func TestCommandTimeout(t *testing.T) {
	vg := lvmtest.NewVG(t, 1024)
	d, err := lvm.New(context.Background(), lvm.Config{Name: "p1", VG: vg.Name, ConfigOverride: vg.Config, VolumeClear: lvm.ClearNone})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if _, err := d.CreateVolume(ctx, volID(40), 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create with an expired context = %v, want DeadlineExceeded", err)
	}
}

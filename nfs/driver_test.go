//go:build linux

package nfs_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

func TestCreateThinIsSparseWithExactSize(t *testing.T) {
	d, dir := newDriver(t, nil)
	id := volID(1)

	vol, err := d.CreateVolume(context.Background(), id, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Volume{ID: id, SizeBytes: 4 * gib, Location: filepath.Join(dir, "volume-"+id)}
	if vol != want {
		t.Fatalf("CreateVolume = %+v, want %+v", vol, want)
	}
	if p, err := d.Path(id); err != nil || p != want.Location {
		t.Fatalf("Path = %q, %v; want %q", p, err, want.Location)
	}
	size, allocated := fileInfo(t, vol.Location)
	if size != 4*gib {
		t.Errorf("apparent size = %d, want %d", size, 4*gib)
	}
	if allocated > 1<<20 {
		t.Errorf("thin volume occupies %d bytes, want a sparse file", allocated)
	}
	fi, err := os.Stat(vol.Location)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != nfs.DefaultFileMode {
		t.Errorf("volume file mode = %v, want %v", perm, nfs.DefaultFileMode)
	}
	if got := names(t, dir); !equalStrings(got, []string{"volume-" + id}) {
		t.Errorf("pool directory holds %q, want only the volume", got)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t, nil)
	id := volID(1)
	first, err := d.CreateVolume(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Data written to the volume must survive the repeated create: the
	// second call returns the existing file rather than recreating it.
	f, err := os.OpenFile(first.Location, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("kiln"), 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()

	second, err := d.CreateVolume(ctx, id, 1)
	if err != nil {
		t.Fatalf("repeated create: %v", err)
	}
	if second != first {
		t.Fatalf("repeated create = %+v, want %+v", second, first)
	}
	buf := make([]byte, 4)
	f, err = os.Open(first.Location)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(buf, 4096); err != nil || string(buf) != "kiln" {
		t.Fatalf("volume data after repeated create = %q, %v; want it kept", buf, err)
	}
}

func TestCreateWithDifferentSizeIsExists(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t, nil)
	id := volID(1)
	vol, err := d.CreateVolume(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.CreateVolume(ctx, id, 2)
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("create with another size: err = %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), vol.Location) {
		t.Errorf("error %q does not name the file", err)
	}
	if size, _ := fileInfo(t, vol.Location); size != gib {
		t.Errorf("size after conflicting create = %d, want %d", size, gib)
	}
}

func TestCreateOverNonRegularFileIsExists(t *testing.T) {
	d, dir := newDriver(t, nil)
	id := volID(1)
	if err := os.Mkdir(filepath.Join(dir, "volume-"+id), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateVolume(context.Background(), id, 1); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("create over a directory: err = %v, want ErrExists", err)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	id, other := volID(1), volID(2)
	vol, err := d.CreateVolume(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Temp files as a crashed create would leave them, for this volume and
	// for another one.
	for _, name := range []string{".volume-" + id + ".tmp-123", ".volume-" + other + ".tmp-456"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	if err := d.DeleteVolume(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vol.Location); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume file after delete: %v", err)
	}
	if got := names(t, dir); !equalStrings(got, []string{".volume-" + other + ".tmp-456"}) {
		t.Errorf("pool directory after delete = %q, want only the other volume's temp file", got)
	}
	if err := d.DeleteVolume(ctx, id); err != nil {
		t.Errorf("second delete: %v, want nil", err)
	}
	if err := d.DeleteVolume(ctx, volID(3)); err != nil {
		t.Errorf("delete of a volume never created: %v, want nil", err)
	}
}

func TestDeleteRefusesNonRegularFile(t *testing.T) {
	d, dir := newDriver(t, nil)
	id := volID(1)
	path := filepath.Join(dir, "volume-"+id)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteVolume(context.Background(), id); err == nil {
		t.Fatal("delete of a directory succeeded")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("directory was removed: %v", err)
	}
}

func TestListVolumesShowsOnlyVolumes(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)

	vols, err := d.ListVolumes(ctx)
	if err != nil || len(vols) != 0 {
		t.Fatalf("empty pool: ListVolumes = %v, %v", vols, err)
	}

	var want []storage.Volume
	for i, size := range []int64{3, 1, 2} {
		v, err := d.CreateVolume(ctx, volID(10-i), size)
		if err != nil {
			t.Fatal(err)
		}
		want = append([]storage.Volume{v}, want...) // IDs descend, List sorts
	}

	junk := []string{
		"README",
		volID(20),                              // no prefix
		"volume-" + strings.ToUpper(volID(21)), // not canonical
		"volume-" + volID(22) + ".bak",         // suffix
		"volume-" + volID(23)[:35],             // truncated
		"volume-",                              // no ID
		".volume-" + volID(24) + ".tmp-999",    // unfinished create
		"xvolume-" + volID(25),                 // prefix inside a name
		"volume-" + strings.ReplaceAll(volID(26), "-", ""),
	}
	for _, name := range junk {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "volume-"+volID(27)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(want[0].Location, filepath.Join(dir, "volume-"+volID(28))); err != nil {
		t.Fatal(err)
	}

	got, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListVolumes = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ListVolumes[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestInvalidIDsTouchNothing(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "pool")
	d, err := nfs.New(nfs.Config{Name: "local", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// "volume-/../../victim" joined under dir is root/victim: a driver that
	// built paths before validating would create or delete it.
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := volID(1)
	bad := []string{
		"",
		"../x",
		"/../../victim",
		"a/b",
		".",
		strings.ToUpper(good),
		good + "\n",
		" " + good,
		good + "/",
		"volume-" + good,
		strings.ReplaceAll(good, "-", ""),
		good[:35],
		good + "0",
		"{" + good + "}",
	}
	for _, id := range bad {
		if _, err := d.CreateVolume(ctx, id, 1); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("CreateVolume(%q): err = %v, want ErrInvalid", id, err)
		}
		if err := d.DeleteVolume(ctx, id); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("DeleteVolume(%q): err = %v, want ErrInvalid", id, err)
		}
		if p, err := d.Path(id); !errors.Is(err, storage.ErrInvalid) || p != "" {
			t.Errorf("Path(%q) = %q, %v; want ErrInvalid", id, p, err)
		}
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("pool directory holds %q after invalid requests", got)
	}
	if got := names(t, root); !equalStrings(got, []string{"pool", "victim"}) {
		t.Errorf("parent directory holds %q, want pool and victim", got)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("victim file = %q, %v", b, err)
	}
}

func TestInvalidSizesTouchNothing(t *testing.T) {
	d, dir := newDriver(t, nil)
	for _, size := range []int64{0, -1, math.MinInt64, storage.MaxVolumeGiB + 1, math.MaxInt64} {
		if _, err := d.CreateVolume(context.Background(), volID(1), size); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("CreateVolume(size %d): err = %v, want ErrInvalid", size, err)
		}
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("pool directory holds %q after invalid sizes", got)
	}
}

func TestCancelledContextTouchesNothing(t *testing.T) {
	d, dir := newDriver(t, nil)
	existing, err := d.CreateVolume(context.Background(), volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	if _, err := d.CreateVolume(ctx, volID(2), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateVolume: err = %v, want context.Canceled", err)
	}
	if err := d.DeleteVolume(ctx, existing.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteVolume: err = %v, want context.Canceled", err)
	}
	if _, err := d.ListVolumes(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ListVolumes: err = %v, want context.Canceled", err)
	}
	if _, err := d.Stats(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stats: err = %v, want context.Canceled", err)
	}
	if _, err := d.Cleanup(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Cleanup: err = %v, want context.Canceled", err)
	}
	if got := names(t, dir); !equalStrings(got, []string{"volume-" + existing.ID}) {
		t.Errorf("pool directory = %q, want only the existing volume", got)
	}
}

func TestCleanupRemovesOnlyTempFiles(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	vol, err := d.CreateVolume(ctx, volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	stale := []string{
		".volume-" + volID(1) + ".tmp-1",
		".volume-" + volID(1) + ".tmp-2",
		".volume-" + volID(2) + ".tmp-3",
	}
	kept := []string{
		".volume-" + strings.ToUpper(volID(3)) + ".tmp-4", // not an ID this driver makes
		".volume-" + volID(4) + ".bak",
		".volume-x.tmp-5",
		"notes.tmp-6",
	}
	for _, name := range append(append([]string{}, stale...), kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := d.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(stale) {
		t.Errorf("Cleanup removed %d files, want %d", n, len(stale))
	}
	want := append([]string{"volume-" + vol.ID}, kept...)
	got := names(t, dir)
	for _, name := range want {
		if !strings.Contains(strings.Join(got, "\n"), name) {
			t.Errorf("Cleanup removed %q", name)
		}
	}
	if len(got) != len(want) {
		t.Errorf("pool directory after Cleanup = %q, want %q", got, want)
	}
	if n, err := d.Cleanup(ctx); n != 0 || err != nil {
		t.Errorf("second Cleanup = %d, %v; want 0, nil", n, err)
	}
}

func TestInfo(t *testing.T) {
	caps := map[string]string{"multiattach": "True", "kiln:tier": "dev"}
	d, _ := newDriver(t, func(c *nfs.Config) {
		c.Name = "fast"
		c.Provisioning = "thick"
		c.ReservedPercentage = 5
		c.MaxOverSubscriptionRatio = "auto"
		c.Capabilities = caps
	})
	want := storage.PoolInfo{
		Name:                     "fast",
		Backend:                  "local",
		Driver:                   "nfs",
		DriverVersion:            "1.1.0",
		Protocol:                 "local",
		ThinProvisioning:         false,
		ThickProvisioning:        true,
		ReservedPercentage:       5,
		MaxOverSubscriptionRatio: "auto",
	}
	got := d.Info()
	// The configured capabilities, plus the one the driver reports itself.
	want.Capabilities = map[string]string{"multiattach": "True", "kiln:tier": "dev", "online_extend_support": "True"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Info = %+v, want %+v", got, want)
	}
	gotCaps := got.Capabilities
	// Neither the caller's map nor the returned one is shared with the driver.
	caps["multiattach"] = "False"
	gotCaps["kiln:tier"] = "prod"
	if c := d.Info().Capabilities; c["multiattach"] != "True" || c["kiln:tier"] != "dev" {
		t.Errorf("Info capabilities changed through a shared map: %v", c)
	}

	thin, _ := newDriver(t, nil)
	info := thin.Info()
	if !info.ThinProvisioning || info.ThickProvisioning || info.MaxOverSubscriptionRatio != "20.0" || info.Backend != "local" ||
		!reflect.DeepEqual(info.Capabilities, map[string]string{agentrpc.CapabilityOnlineExtend: "True"}) {
		t.Errorf("default Info = %+v, want thin, ratio 20.0, backend local", info)
	}
}

func TestNewCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "pool")
	if _, err := nfs.New(nfs.Config{Name: "local", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("pool directory not created: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("pool directory mode = %v, want at most 0750", perm)
	}
	// An existing directory is reused, not an error; an unclean path is
	// cleaned.
	d, err := nfs.New(nfs.Config{Name: "local", Dir: dir + "/./"})
	if err != nil {
		t.Fatalf("New on an existing directory: %v", err)
	}
	if p, _ := d.Path(volID(1)); p != filepath.Join(dir, "volume-"+volID(1)) {
		t.Errorf("Path = %q, want it under %q", p, dir)
	}
}

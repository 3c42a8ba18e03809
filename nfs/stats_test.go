//go:build linux

package nfs_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

func TestStatsFromStatfs(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	for i, size := range []int64{1, 3} {
		if _, err := d.CreateVolume(ctx, volID(i), size); err != nil {
			t.Fatal(err)
		}
	}

	total, availBefore := statfs(t, dir)
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, availAfter := statfs(t, dir)

	if st.TotalKind != storage.Known || st.FreeKind != storage.Known {
		t.Errorf("kinds = %v/%v, want known", st.TotalKind, st.FreeKind)
	}
	if want := float64(total) / float64(gib); st.TotalGB != want {
		t.Errorf("TotalGB = %v, want %v from statfs", st.TotalGB, want)
	}
	// Other processes share the file system: free is only pinned between
	// the readings taken around Stats.
	const slack = 64 << 20
	lo := float64(min(availBefore, availAfter)-slack) / float64(gib)
	hi := float64(max(availBefore, availAfter)+slack) / float64(gib)
	if st.FreeGB < lo || st.FreeGB > hi {
		t.Errorf("FreeGB = %v, want statfs available within [%v, %v]", st.FreeGB, lo, hi)
	}
	if st.ProvisionedGB != 4 || st.Volumes != 2 {
		t.Errorf("provisioned %v GiB in %d volumes, want 4 GiB in 2", st.ProvisionedGB, st.Volumes)
	}
}

func TestStatsCapacityCapOnThinPool(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t, func(c *nfs.Config) { c.CapacityGB = 0.5 })
	requireAvail(t, t.TempDir(), gib)
	vol, err := d.CreateVolume(ctx, volID(1), 2) // thin: larger than the cap
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalGB != 0.5 || st.FreeGB != 0.5 || st.ProvisionedGB != 2 || st.Volumes != 1 {
		t.Errorf("Stats = %+v, want total 0.5, free 0.5 (sparse volume), provisioned 2, 1 volume", st)
	}

	// Blocks really written count against the cap.
	f, err := os.OpenFile(vol.Location, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 64<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, allocated := fileInfo(t, vol.Location)
	st, err = d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := 0.5 - float64(allocated)/float64(gib); st.FreeGB != want || allocated < 64<<20 {
		t.Errorf("FreeGB after writing 64 MiB = %v, want %v (0.5 GiB minus %d allocated bytes)", st.FreeGB, want, allocated)
	}
}

func TestStatsArithmetic(t *testing.T) {
	const fsTotal, fsAvail = 100 * gib, 40 * gib
	tests := []struct {
		name         string
		provisioning string
		capGB        float64
		avail        int64
		wantTotal    float64
		wantFree     float64
	}{
		{"thin, no cap", "thin", 0, fsAvail, 100, 40},
		{"thin, cap below fs", "thin", 10, fsAvail, 10, 10},
		{"thin, cap above fs", "thin", 1000, fsAvail, 100, 40},
		{"thin, fs fuller than cap", "thin", 10, 4 * gib, 10, 4},
		{"thin, fractional cap", "thin", 2.5, fsAvail, 2.5, 2.5},
		{"thick, no cap", "thick", 0, fsAvail, 100, 40},
		{"thick, cap", "thick", 10, fsAvail, 10, 5},
		{"thick, fs fuller than cap", "thick", 10, 2 * gib, 10, 2},
		{"thick, over-provisioned", "thick", 4, fsAvail, 4, 0},
		{"thick, fs full", "thick", 0, 0, 100, 0},
	}

	// Sparse volumes totalling 5 GiB, made once by a thin driver; each case
	// opens its own driver on the same directory and only measures.
	ctx := context.Background()
	maker, dir := newDriver(t, nil)
	for i, size := range []int64{2, 3} {
		if _, err := maker.CreateVolume(ctx, volID(i), size); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := nfs.New(nfs.Config{Name: "p", Dir: dir, Provisioning: tc.provisioning, CapacityGB: tc.capGB})
			if err != nil {
				t.Fatal(err)
			}
			nfs.SetStatfs(d, func(got string) (int64, int64, error) {
				if got != dir {
					t.Errorf("statfs(%q), want %q", got, dir)
				}
				return fsTotal, tc.avail, nil
			})
			st, err := d.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := storage.PoolStats{TotalGB: tc.wantTotal, FreeGB: tc.wantFree, ProvisionedGB: 5, Volumes: 2}
			if st != want {
				t.Errorf("Stats = %+v, want %+v", st, want)
			}
		})
	}
}

func TestStatsReportsStatfsFailure(t *testing.T) {
	ctx := context.Background()
	broken := errors.New("stale file handle")
	for _, prov := range []string{"thin", "thick"} {
		d, dir := newDriver(t, func(c *nfs.Config) { c.Provisioning = prov })
		nfs.SetStatfs(d, func(string) (int64, int64, error) { return 0, 0, broken })
		if _, err := d.Stats(ctx); !errors.Is(err, broken) {
			t.Errorf("%s: Stats err = %v, want the statfs error", prov, err)
		}
		_, err := d.CreateVolume(ctx, volID(1), 1)
		if prov == "thick" {
			// Thick cannot account without measuring: fail, leave nothing.
			if !errors.Is(err, broken) || errors.Is(err, storage.ErrNoSpace) {
				t.Errorf("thick create err = %v, want the statfs error", err)
			}
			if got := names(t, dir); len(got) != 0 {
				t.Errorf("thick create left %q", got)
			}
		} else if err != nil {
			t.Errorf("thin create needs no statfs, got %v", err)
		}
	}
}

func TestThickCreateBeyondCapacityIsNoSpace(t *testing.T) {
	ctx := context.Background()
	requireAvail(t, t.TempDir(), 6*gib)
	preallocates := fallocateWorks(t, t.TempDir())
	d, dir := newDriver(t, func(c *nfs.Config) { c.Provisioning = "thick"; c.CapacityGB = 2 })

	for i := range 2 {
		vol, err := d.CreateVolume(ctx, volID(i), 1)
		if err != nil {
			t.Fatal(err)
		}
		size, allocated := fileInfo(t, vol.Location)
		if size != gib {
			t.Errorf("size = %d, want %d", size, gib)
		}
		if preallocates && allocated < gib {
			t.Errorf("thick volume has %d bytes allocated, want all %d reserved", allocated, gib)
		}
	}

	_, err := d.CreateVolume(ctx, volID(2), 1)
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("create past capacity: err = %v, want ErrNoSpace", err)
	}
	for _, s := range []string{"1 GiB", "0.00 GiB free", "total 2.00 GiB", "provisioned 2.00 GiB"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if got := names(t, dir); !equalStrings(got, []string{"volume-" + volID(0), "volume-" + volID(1)}) {
		t.Errorf("pool directory after refused create = %q", got)
	}

	// Repeating a create that already happened needs no space.
	if _, err := d.CreateVolume(ctx, volID(0), 1); err != nil {
		t.Errorf("idempotent create in a full pool: %v", err)
	}
	// A bigger-than-capacity request is refused outright.
	if _, err := d.CreateVolume(ctx, volID(3), 3); !errors.Is(err, storage.ErrNoSpace) {
		t.Errorf("3 GiB in a 2 GiB pool: err = %v, want ErrNoSpace", err)
	}
	// Deleting makes room again.
	if err := d.DeleteVolume(ctx, volID(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateVolume(ctx, volID(2), 1); err != nil {
		t.Errorf("create after delete freed space: %v", err)
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalGB != 2 || st.FreeGB != 0 || st.ProvisionedGB != 2 || st.Volumes != 2 {
		t.Errorf("Stats = %+v, want a full 2 GiB pool with 2 volumes", st)
	}
}

func TestThickCreateBoundedByFilesystemFree(t *testing.T) {
	ctx := context.Background()
	requireAvail(t, t.TempDir(), 4*gib)
	d, dir := newDriver(t, func(c *nfs.Config) { c.Provisioning = "thick" })
	// No cap: the file system is the limit, and it has 1.5 GiB left.
	nfs.SetStatfs(d, func(string) (int64, int64, error) { return 100 * gib, 3 * gib / 2, nil })

	if _, err := d.CreateVolume(ctx, volID(1), 2); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("2 GiB with 1.5 GiB free: err = %v, want ErrNoSpace", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("refused create left %q", got)
	}
	if _, err := d.CreateVolume(ctx, volID(1), 1); err != nil {
		t.Errorf("1 GiB with 1.5 GiB free: %v", err)
	}
}

func TestThinCreateDoesNotCheckSpace(t *testing.T) {
	d, _ := newDriver(t, func(c *nfs.Config) { c.CapacityGB = 1 })
	nfs.SetStatfs(d, func(string) (int64, int64, error) { return gib, 0, nil })
	// Over-subscription is placement's decision; a thin file costs nothing.
	vol, err := d.CreateVolume(context.Background(), volID(1), 10)
	if err != nil {
		t.Fatal(err)
	}
	if size, _ := fileInfo(t, vol.Location); size != 10*gib {
		t.Errorf("size = %d, want %d", size, 10*gib)
	}
}

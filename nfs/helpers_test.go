//go:build linux

package nfs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
	"github.com/kilnstore/kiln/nfs"
)

const gib = storage.GiB

// volID returns a distinct canonical lowercase UUID for n.
func volID(n int) string {
	return fmt.Sprintf("%08x-abcd-4ef0-8abc-%012x", n, n)
}

// newDriver returns a driver on a fresh pool directory; edit adjusts the
// config first.
func newDriver(t *testing.T, edit func(*nfs.Config)) (*nfs.Driver, string) {
	t.Helper()
	cfg := nfs.Config{Name: "local", Dir: filepath.Join(t.TempDir(), "pool")}
	if edit != nil {
		edit(&cfg)
	}
	d, err := nfs.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return d, cfg.Dir
}

// names lists a directory, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// tempFiles lists leftover temp files of creates in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range names(t, dir) {
		if strings.HasPrefix(n, ".volume-") {
			out = append(out, n)
		}
	}
	return out
}

// fileInfo returns the apparent size and allocated bytes of path.
func fileInfo(t *testing.T, path string) (size, allocated int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Size(), st.Blocks * 512
}

// statfs reports the real total and available bytes of dir's file system.
func statfs(t *testing.T, dir string) (total, avail int64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Frsize, int64(st.Bavail) * st.Frsize
}

// requireAvail skips tests that really allocate blocks on small disks.
func requireAvail(t *testing.T, dir string, bytes int64) {
	t.Helper()
	if _, avail := statfs(t, dir); avail < bytes {
		testenv.SkipOrFail(t, "needs %d GiB available under %s, have %.1f GiB", bytes/gib, dir, float64(avail)/float64(gib))
	}
}

// fallocateWorks reports whether dir's file system supports fallocate(2).
func fallocateWorks(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	err = unix.Fallocate(int(f.Fd()), 0, 0, 4096)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func volumeIDs(vols []storage.Volume) []string {
	var ids []string
	for _, v := range vols {
		ids = append(ids, v.ID)
	}
	return ids
}

func equalStrings(a, b []string) bool { return slices.Equal(a, b) }

//go:build linux

package nfs_test

// Tests that mount a real remote NFS share with the kernel's NFS client.
// This kernel has none: make test runs them in the qemu guest
// (scripts/test-guest.sh), against an nfs-ganesha on the host's loopback
// reached through a qemu guestfwd, and leaves TestGuest* out of the host
// run (-skip '^(TestDM|TestGuest)').

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnstore/kiln/internal/qemuimg/qemuimgtest"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
	"github.com/kilnstore/kiln/nfs"
)

// guestShare is the share scripts/test-guest.sh serves to the guest, from
// the environment it sets.
type guestShare struct {
	share   string // KILN_TEST_NFS_SHARE, e.g. 10.0.2.100:/kiln-guest-share
	options string // KILN_TEST_NFS_OPTIONS, e.g. vers=4.1,proto=tcp,port=2049
	// readFile (KILN_TEST_NFS_READ_FILE) is a file the host put in the
	// share, readSHA256 (KILN_TEST_NFS_READ_SHA256) its digest.
	readFile, readSHA256 string
	// writeFile (KILN_TEST_NFS_WRITE_FILE) is the file the guest creates in
	// the share with the bytes of writeSource (KILN_TEST_NFS_WRITE_SOURCE,
	// a file among the test binaries); the host compares them afterwards.
	writeFile, writeSource string
}

func requireGuestShare(t *testing.T) guestShare {
	t.Helper()
	if os.Getenv("KILN_GUEST") != "1" {
		testenv.SkipOrFail(t, "mounts NFS with the kernel's client, which this kernel lacks; make test runs it in the qemu guest (scripts/test-guest.sh) and leaves it out of the host run (-skip '^(TestDM|TestGuest)')")
	}
	testenv.RequireRoot(t, "to mount NFS")
	if m := testenv.MissingCommands("mount", "mount.nfs", "umount"); len(m) > 0 {
		testenv.SkipOrFail(t, "missing %v: install nfs-common (scripts/guest/packages.txt has it)", m)
	}
	g := guestShare{
		share:       os.Getenv("KILN_TEST_NFS_SHARE"),
		options:     os.Getenv("KILN_TEST_NFS_OPTIONS"),
		readFile:    os.Getenv("KILN_TEST_NFS_READ_FILE"),
		readSHA256:  os.Getenv("KILN_TEST_NFS_READ_SHA256"),
		writeFile:   os.Getenv("KILN_TEST_NFS_WRITE_FILE"),
		writeSource: os.Getenv("KILN_TEST_NFS_WRITE_SOURCE"),
	}
	if g.share == "" || g.readFile == "" || g.readSHA256 == "" || g.writeFile == "" || g.writeSource == "" {
		testenv.SkipOrFail(t, "no NFS share to mount: scripts/test-guest.sh serves one and sets KILN_TEST_NFS_SHARE, _OPTIONS, _READ_FILE, _READ_SHA256, _WRITE_FILE and _WRITE_SOURCE")
	}
	return g
}

// kernelMount is one line of /proc/self/mounts.
type kernelMount struct{ source, dir, fsType string }

// mountsAt returns what /proc/self/mounts (read here rather than through
// the package's mountinfo parser) shows mounted on dir, bottom first. dir
// must need no escaping.
func mountsAt(t *testing.T, dir string) []kernelMount {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var out []kernelMount
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == dir {
			out = append(out, kernelMount{f[0], f[1], f[2]})
		}
	}
	return out
}

// unmountAtEnd unmounts dir when t ends, before the temporary directory
// holding it is removed (cleanups run last first).
func unmountAtEnd(t *testing.T, dir string) {
	t.Cleanup(func() {
		for len(mountsAt(t, dir)) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, "umount", dir).CombinedOutput()
			cancel()
			if err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
				_ = exec.Command("umount", "-l", dir).Run()
				return
			}
		}
	})
}

func newGuestMounter(t *testing.T, cfg nfs.ShareConfig) (*nfs.Mounter, *testenv.SyncBuffer) {
	t.Helper()
	var logs testenv.SyncBuffer
	m, err := nfs.NewMounter(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	unmountAtEnd(t, m.Dir())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mounter log:\n%s", logs.String())
		}
	})
	return m, &logs
}

func TestGuestMountShare(t *testing.T) {
	g := requireGuestShare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := nfs.ShareConfig{Share: g.share, MountOptions: g.options, MountPointBase: t.TempDir(), Timeout: 2 * time.Minute}
	m, logs := newGuestMounter(t, cfg)

	start := time.Now()
	if err := m.Ensure(ctx); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	t.Logf("mounted %s (-o %s) on %s in %v", g.share, g.options, m.Dir(), time.Since(start).Round(time.Millisecond))
	got := mountsAt(t, m.Dir())
	if len(got) != 1 || got[0].source != g.share || (got[0].fsType != "nfs4" && got[0].fsType != "nfs") {
		t.Fatalf("/proc/self/mounts at %s: %+v, want %s over NFS once", m.Dir(), got, g.share)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(m.Dir(), &st); err != nil || st.Type != unix.NFS_SUPER_MAGIC {
		t.Fatalf("statfs %s: type %#x, %v; want NFS (%#x)", m.Dir(), st.Type, err, unix.NFS_SUPER_MAGIC)
	}
	if !strings.Contains(logs.String(), "component=nfs-mount") || !strings.Contains(logs.String(), `msg="mounted NFS share"`) {
		t.Errorf("log:\n%s", logs.String())
	}

	// Mounted: Ensure again is a no-op, here and for a new Mounter (an agent
	// restart) whose mount program would fail if it ran.
	start = time.Now()
	if err := m.Ensure(ctx); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	t.Logf("second Ensure took %v", time.Since(start).Round(time.Microsecond))
	again := cfg
	again.MountBinary = "/bin/false"
	m2, err := nfs.NewMounter(again, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Dir() != m.Dir() {
		t.Fatalf("same share, other mount point: %s, %s", m2.Dir(), m.Dir())
	}
	if err := m2.Ensure(ctx); err != nil {
		t.Fatalf("Ensure of a mounted share ran mount: %v", err)
	}
	if got := mountsAt(t, m.Dir()); len(got) != 1 {
		t.Fatalf("after three Ensure calls %s has %d mounts: %+v", m.Dir(), len(got), got)
	}

	// The host's file reads back intact.
	start = time.Now()
	data, err := os.ReadFile(filepath.Join(m.Dir(), g.readFile))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != g.readSHA256 {
		t.Fatalf("%s: %d bytes with sha256 %x, want %s", g.readFile, len(data), sum, g.readSHA256)
	}
	t.Logf("read %d bytes written by the host in %v, sha256 matches", len(data), time.Since(start).Round(time.Millisecond))

	// A new file reaches the server: written, fsynced, then read back past
	// the client's page cache (O_DIRECT). The host compares it after the
	// guest exits.
	want, err := os.ReadFile(g.writeSource)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.Dir(), g.writeFile)
	start = time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote and fsynced %d bytes in %v", len(want), time.Since(start).Round(time.Millisecond))
	f, err = os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatalf("O_DIRECT read of %s: %v", path, err)
	}
	if !bytes.Equal(back, want) {
		t.Fatalf("%s reads back %d bytes differing from the %d written", path, len(back), len(want))
	}
}

func TestGuestMountMissingExport(t *testing.T) {
	g := requireGuestShare(t)
	host := g.share[:strings.LastIndex(g.share, ":/")]
	bad := host + ":/kiln-no-such-export"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, _ := newGuestMounter(t, nfs.ShareConfig{Share: bad, MountOptions: g.options, MountPointBase: t.TempDir(), Timeout: 2 * time.Minute})

	start := time.Now()
	err := m.Ensure(ctx)
	t.Logf("Ensure of %s failed after %v: %v", bad, time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, nfs.ErrMountFailed) {
		t.Fatalf("Ensure of a missing export = %v, want ErrMountFailed", err)
	}
	var me *nfs.MountError
	if !errors.As(err, &me) {
		t.Fatalf("Ensure = %T, want a *nfs.MountError", err)
	}
	if me.ExitCode != 32 || !strings.Contains(me.Output, "No such file or directory") ||
		!strings.Contains(me.Hint, "export path does not exist") {
		t.Errorf("MountError = %+v, want mount's exit 32 (mount failure), the server's reason and a hint", me)
	}
	for _, want := range []string{bad, m.Dir(), "exited 32", "hint:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if got := mountsAt(t, m.Dir()); len(got) != 0 {
		t.Errorf("a failed Ensure left %+v mounted", got)
	}
}

func TestGuestMountPointInUse(t *testing.T) {
	g := requireGuestShare(t)
	base := t.TempDir()
	m, _ := newGuestMounter(t, nfs.ShareConfig{Share: g.share, MountOptions: g.options, MountPointBase: base, Timeout: 2 * time.Minute})
	if err := os.MkdirAll(m.Dir(), 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "kiln-scratch", m.Dir()).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	err := m.Ensure(context.Background())
	if !errors.Is(err, nfs.ErrMountPointInUse) || !errors.Is(err, nfs.ErrMountFailed) ||
		!strings.Contains(err.Error(), "kiln-scratch (type tmpfs)") {
		t.Fatalf("Ensure over a tmpfs = %v, want ErrMountPointInUse naming it", err)
	}
	if got := mountsAt(t, m.Dir()); len(got) != 1 || got[0].fsType != "tmpfs" {
		t.Fatalf("after a refused Ensure %s has %+v, want the tmpfs alone", m.Dir(), got)
	}
}

// TestGuestDriverOnShare runs the driver on the remote share it mounts
// itself: a pool configured with the share (no local directory), volumes
// and a qcow2 snapshot chain built, merged and copied over NFS, with the
// data checked at each step through qemu-io, capacity from statfs of the
// share.
func TestGuestDriverOnShare(t *testing.T) {
	g := requireGuestShare(t)
	qemuimgtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	base := t.TempDir()
	// The driver never unmounts; the test does, before its directory goes.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", nfs.MountPoint(base, g.share)).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	share := nfs.ShareConfig{Share: g.share, MountOptions: g.options, MountPointBase: base, Timeout: 2 * time.Minute}
	d, err := nfs.New(nfs.Config{Name: "share", Share: &share, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if info := d.Info(); info.Protocol != "nfs" {
		t.Fatalf("storage_protocol %q", info.Protocol)
	}
	st, err := d.Stats(ctx) // mounts the share
	if err != nil || st.TotalKind != storage.Known || st.TotalGB <= 0 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	dir := nfs.MountPoint(base, g.share)
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil || fs.Type != unix.NFS_SUPER_MAGIC {
		t.Fatalf("pool directory %s is not the NFS mount: type %#x, %v", dir, fs.Type, err)
	}
	// A prefix of its own keeps this test's files apart in the shared
	// export; they are removed at the end.
	vol, snap := "6a000001-abcd-4ef0-8abc-000000000001", "6a000101-abcd-4ef0-8abc-000000000101"
	from := "6a000002-abcd-4ef0-8abc-000000000002"
	v, err := d.CreateVolume(ctx, vol, 1)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(v.Location) != dir {
		t.Fatalf("volume at %s, not on the share %s", v.Location, dir)
	}
	a := qemuimgtest.Region{Off: 0, Len: 1 << 20, Pattern: 0x4e}
	b := qemuimgtest.Region{Off: 2 << 20, Len: 1 << 20, Pattern: 0xf5}
	qemuimgtest.Write(t, v.Location, "raw", a)
	if _, err := d.CreateSnapshot(ctx, snap, vol); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "volume-"+vol+"."+snap)
	qemuimgtest.Write(t, overlay, "qcow2", b)
	ci, err := d.ExportVolume(ctx, vol, storage.Connector{Host: "compute-1", IP: "10.0.2.15"}, storage.Credentials{})
	if err != nil || ci.DriverVolumeType != "nfs" || ci.Data["export"] != g.share || ci.Data["name"] != "volume-"+vol+"."+snap || ci.Data["format"] != "qcow2" {
		t.Fatalf("connection info %+v, %v", ci, err)
	}
	fv, err := d.CreateVolumeFromSnapshot(ctx, from, snap, 1)
	if err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, fv.Location, "raw", a, qemuimgtest.Region{Off: 2 << 20, Len: 1 << 20})
	if err := d.DeleteSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, v.Location, "raw", a, b)
	for _, id := range []string{vol, from} {
		if err := d.DeleteVolume(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if vols, err := d.ListVolumes(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, v := range vols {
			if v.ID == vol || v.ID == from {
				t.Fatalf("volume %s left on the share", v.ID)
			}
		}
	}
}

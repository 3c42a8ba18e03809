// Package lvmtest gives tests a real LVM volume group on a loop device
// backed by a sparse file, and removes it (VG, PV, loop device, file)
// when the test ends. It needs root and lvm2; a test without them skips
// with the reason, except under CI=true, where it fails.
//
// Without device-mapper (this project's CI host kernel) the VG is used in
// metadata-only mode: Config carries activation=0, and only LV metadata
// operations work. DeviceMapper reports whether the full mode is there
// (the qemu guest that scripts/guest boots).
package lvmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/testenv"
)

// VG is a volume group made for one test.
type VG struct {
	Name string
	// Loop is the loop device holding the PV.
	Loop string
	// Config is the --config override that confines lvm to Loop (and, in
	// metadata-only mode, disables activation).
	Config string
}

// Require skips (or, under CI=true, fails) a test that cannot run here.
func Require(t testing.TB) {
	t.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case len(testenv.MissingCommands("lvm")) > 0:
		missing = "lvm2 (apt-get install lvm2)"
	case len(testenv.MissingCommands("losetup")) > 0:
		missing = "losetup (util-linux)"
	}
	if missing != "" {
		testenv.SkipOrFail(t, "LVM tests need %s (scripts/deps.sh installs the packages)", missing)
	}
}

// DeviceMapper reports whether the kernel has device-mapper, so LVs can be
// activated, snapshotted and thin-provisioned.
func DeviceMapper() bool {
	_, err := os.Stat("/dev/mapper/control")
	return err == nil
}

// RequireDeviceMapper skips (under CI=true: fails) a test that needs
// device-mapper when the kernel lacks it. Such tests are named TestDM*:
// make test leaves them out of the host run and runs them in the qemu
// guest (scripts/test-guest.sh), where KILN_GUEST=1 is set.
func RequireDeviceMapper(t testing.TB) {
	t.Helper()
	if DeviceMapper() {
		return
	}
	if os.Getenv("KILN_GUEST") == "1" {
		t.Fatal("device-mapper is missing inside the test guest")
	}
	testenv.SkipOrFail(t, "needs device-mapper, which this kernel lacks; make test runs it in the qemu guest (scripts/test-guest.sh) and leaves it out of the host run (-skip '^(TestDM|TestGuest)')")
}

var seq atomic.Int64

// NewVG creates a VG of sizeMiB on a fresh loop device; vgcreateArgs are
// extra vgcreate options (e.g. "-s", "3m" for 3 MiB extents).
func NewVG(t testing.TB, sizeMiB int64, vgcreateArgs ...string) *VG {
	t.Helper()
	Require(t)
	if dev := os.Getenv("KILN_TEST_PV"); dev != "" {
		return newVGOnDevice(t, dev, sizeMiB, vgcreateArgs)
	}
	img := filepath.Join(t.TempDir(), "pv.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	loop := strings.TrimSpace(mustRun(t, "", "losetup", "-f", "--show", img))
	t.Cleanup(func() { _, _ = run("", "losetup", "-d", loop) })

	vg := &VG{Name: fmt.Sprintf("kilntest%d_%d", os.Getpid(), seq.Add(1)), Loop: loop}
	cfg := fmt.Sprintf(`devices{filter=["a|^%s$|","r|.*|"] obtain_device_list_from_udev=0 scan_lvs=0} activation{udev_sync=0 udev_rules=0 monitoring=0}`, loop)
	if !DeviceMapper() {
		cfg += ` global{activation=0}`
	}
	vg.Config = cfg
	mustRun(t, cfg, "pvcreate", "-y", loop)
	mustRun(t, cfg, "vgcreate", append(append([]string{"-y"}, vgcreateArgs...), vg.Name, loop)...)
	t.Cleanup(func() {
		_, _ = run(cfg, "vgremove", "-f", "-y", vg.Name)
		_, _ = run(cfg, "pvremove", "-f", "-y", loop)
	})
	return vg
}

// newVGOnDevice makes the VG on a whole block device that is given to the
// tests (KILN_TEST_PV: the qemu guest's data disk), one VG at a time; the
// device is wiped before and after. Going without a loop device and the
// file system under it halves the I/O of the data-copy tests under TCG.
func newVGOnDevice(t testing.TB, dev string, sizeMiB int64, vgcreateArgs []string) *VG {
	t.Helper()
	vg := &VG{Name: fmt.Sprintf("kilntest%d_%d", os.Getpid(), seq.Add(1)), Loop: dev}
	vg.Config = fmt.Sprintf(`devices{filter=["a|^%s$|","r|.*|"] obtain_device_list_from_udev=0 scan_lvs=0} activation{udev_sync=0 udev_rules=0 monitoring=0}`, dev)
	if !DeviceMapper() {
		vg.Config += ` global{activation=0}`
	}
	// The PV is cut to sizeMiB, so tests see the VG size they asked for.
	mustRun(t, vg.Config, "pvcreate", "-ff", "-y", "--setphysicalvolumesize", fmt.Sprintf("%dm", sizeMiB), dev)
	mustRun(t, vg.Config, "vgcreate", append(append([]string{"-y"}, vgcreateArgs...), vg.Name, dev)...)
	t.Cleanup(func() {
		_, _ = run(vg.Config, "vgremove", "-f", "-y", vg.Name)
		_, _ = run(vg.Config, "pvremove", "-ff", "-y", dev)
	})
	return vg
}

// LVM runs an lvm subcommand against the VG's config, as a test's hand
// behind the driver's back, and returns its output (stderr included).
func (vg *VG) LVM(t testing.TB, sub string, args ...string) string {
	t.Helper()
	return mustRun(t, vg.Config, sub, args...)
}

func mustRun(t testing.TB, cfg, name string, args ...string) string {
	t.Helper()
	out, err := run(cfg, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// run executes losetup directly, and anything else as an lvm subcommand
// with --config cfg.
func run(cfg, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if name == "losetup" {
		cmd = exec.CommandContext(ctx, name, args...)
	} else {
		cmd = exec.CommandContext(ctx, "lvm", append([]string{name, "--config", cfg}, args...)...)
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

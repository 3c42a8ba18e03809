// Package qemuimgtest helps tests that run the real qemu-img: Require
// makes sure qemu-img and qemu-io are there, and Write and Expect put and
// check byte patterns through an image's backing chain with qemu-io.
//
// Tests that cannot run here are skipped loudly, or fail under CI=true,
// where a skip would hide a gap. As root, missing tools are installed with
// apt-get (qemu-utils) first.
package qemuimgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/testenv"
)

var (
	installOnce sync.Once
	installErr  error
)

// Require skips (or, under CI=true, fails) t unless qemu-img and qemu-io
// can run.
func Require(t testing.TB) {
	t.Helper()
	if missing() == nil {
		return
	}
	if os.Geteuid() == 0 {
		installOnce.Do(func() { installErr = install() })
	}
	if m := missing(); m != nil {
		msg := fmt.Sprintf("needs %s (apt-get install qemu-utils)", strings.Join(m, " and "))
		if installErr != nil {
			msg += fmt.Sprintf("; installing failed: %v", installErr)
		} else if os.Geteuid() != 0 {
			msg += "; not root, so not installed here"
		}
		testenv.SkipOrFail(t, "%s", msg)
	}
}

func missing() []string { return testenv.MissingCommands("qemu-img", "qemu-io") }

// install runs apt-get install qemu-utils, refreshing the package lists
// once if the first attempt fails.
func install() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	apt := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	get := []string{"install", "-y", "--no-install-recommends", "qemu-utils"}
	if apt(get...) == nil {
		return nil
	}
	if err := apt("update"); err != nil {
		return err
	}
	return apt(get...)
}

// Region is a run of Len bytes of Pattern at offset Off of a disk.
type Region struct {
	Off, Len int64
	Pattern  byte
}

// Write writes regions, in order, to the disk the image at path presents
// (that is, into its top image), with one qemu-io run.
func Write(t testing.TB, path, format string, regions ...Region) {
	t.Helper()
	qemuIO(t, path, format, false, "write", regions)
}

// Expect fails t unless the disk the image at path presents, read through
// its backing chain, holds regions.
func Expect(t testing.TB, path, format string, regions ...Region) {
	t.Helper()
	qemuIO(t, path, format, true, "read", regions)
}

func qemuIO(t testing.TB, path, format string, readOnly bool, op string, regions []Region) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"-f", format}
	if readOnly {
		args = append(args, "-r")
	}
	for _, r := range regions {
		args = append(args, "-c", fmt.Sprintf("%s -P 0x%02x %d %d", op, r.Pattern, r.Off, r.Len))
	}
	args = append(args, path)
	cmd := exec.CommandContext(ctx, "qemu-io", args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	// qemu-io 7.2 exits non-zero when a command fails; older ones did not,
	// so the messages are checked too.
	if err != nil || strings.Contains(string(out), "Pattern verification failed") ||
		strings.Contains(string(out), "failed:") {
		t.Fatalf("qemu-io %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

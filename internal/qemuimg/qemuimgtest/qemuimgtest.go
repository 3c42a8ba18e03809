// Package qemuimgtest helps tests that run the real qemu-img: Require
// makes sure qemu-img and qemu-io are there, and Write and Expect put and
// check byte patterns through an image's backing chain with qemu-io.
//
// Tests that cannot run here are skipped loudly, or fail under CI=true,
// where a skip would hide a gap. As root, missing tools are installed with
// apt-get (qemu-utils) first.
package qemuimgtest

import (
	"bufio"
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

// Hold keeps the image at path open read-write in qemu-io, which takes
// qemu's image lock as a running VM does, until the test ends. It returns
// once qemu-io has answered an "info" command, when the image is open and
// locked (polling with qemu-img while qemu-io opens the image would race it
// for the lock and make it exit).
func Hold(t testing.TB, path, format string) {
	t.Helper()
	cmd := exec.Command("qemu-io", "-f", format, path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// stdout and stderr share one pipe so a failure shows what qemu-io said.
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	opened := make(chan string, 1)
	go func() {
		defer out.Close()
		sc := bufio.NewScanner(out)
		var said strings.Builder
		for sc.Scan() {
			said.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "format name:") {
				opened <- ""
				for sc.Scan() {
				}
				return
			}
		}
		opened <- said.String()
	}()
	t.Cleanup(func() {
		// qemu-io only holds the image; how it exits is not what tests check.
		_, _ = stdin.Write([]byte("quit\n"))
		stdin.Close()
		_ = cmd.Wait()
	})
	if _, err := stdin.Write([]byte("info\n")); err != nil {
		t.Fatalf("qemu-io: %v", err)
	}
	select {
	case said := <-opened:
		if said != "" {
			t.Fatalf("qemu-io did not open %s: %s", path, said)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("qemu-io did not answer for %s", path)
	}
}

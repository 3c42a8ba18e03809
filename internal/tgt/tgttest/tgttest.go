// Package tgttest starts real tgtd daemons for tests: each on a loopback
// portal and a control socket of its own, checked for the portal trap
// (a tgtd that cannot bind its portal keeps running on 0.0.0.0:3260), and
// stopped by PID when the test ends.
//
// Tests that cannot run here (not root, tgt not installed and not
// installable) are skipped, or fail when CI=true, where a skip would hide a
// gap. As root, a missing tgt is installed with scripts/tgtd.sh deps when
// the source tree is at hand.
package tgttest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/testenv"
)

// SkipOrFailInCI skips a test that cannot run here, and fails it under CI
// (CI=true): testenv.SkipOrFail.
func SkipOrFailInCI(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.SkipOrFail(t, format, args...)
}

// deps runs scripts/tgtd.sh deps, once.
var deps = testenv.DepsOnce(Script)

// Require skips (or, under CI, fails) t unless it runs as root and every
// tool is installed; tgtd and tgtadm are always required. As root it first
// tries scripts/tgtd.sh deps, which installs tgt, libiscsi-bin (iscsi-ls,
// iscsi-readcapacity16, ...) and qemu-io with its iscsi driver.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	testenv.RequireRoot(t, "to run tgtd")
	tools = append([]string{"tgtd", "tgtadm"}, tools...)
	testenv.RequireInstalled(t, "scripts/tgtd.sh deps", deps, func() []string { return testenv.MissingCommands(tools...) })
}

// Script returns the path of scripts/tgtd.sh in the source tree containing
// the working directory.
func Script() (string, error) {
	p, err := testenv.Script("tgtd.sh")
	if err != nil {
		return "", fmt.Errorf("tgttest: %w", err)
	}
	return p, nil
}

// Daemon is a tgtd started by Start.
type Daemon struct {
	// Portal is the "ip:port" tgtd listens on.
	Portal string
	// ControlPort is tgtd's control socket number (tgtadm -C).
	ControlPort int
	// Dir holds tgtd.log.
	Dir string

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
}

// Start starts `tgtd -f --iscsi portal=PORTAL -C CONTROLPORT -t 2` and
// stops it when t ends. The portal must be in 127.0.0.0/8 and the control
// port must not be 0 (the system's default socket).
func Start(t testing.TB, portal string, controlPort int) *Daemon {
	t.Helper()
	Require(t)
	ap, err := netip.ParseAddrPort(portal)
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() || controlPort <= 0 || controlPort > 32767 {
		t.Fatalf("tgttest: portal %q must be 127.x.y.z:port and the control port (%d) 1..32767", portal, controlPort)
	}
	d := &Daemon{Portal: portal, ControlPort: controlPort, Dir: t.TempDir(), t: t}
	d.Restart()
	t.Cleanup(d.Stop)
	return d
}

// Restart starts tgtd again after Kill or Stop; it comes back empty.
func (d *Daemon) Restart() {
	d.t.Helper()
	if d.running() {
		d.t.Fatalf("tgttest: tgtd (pid %d) is still running", d.PID())
	}
	if d.answers() {
		d.t.Fatalf("tgttest: control socket %d is served by another tgtd", d.ControlPort)
	}
	logf, err := os.OpenFile(filepath.Join(d.Dir, "tgtd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("tgtd", "-f", "--iscsi", "portal="+d.Portal, "-C", strconv.Itoa(d.ControlPort), "-t", "2")
	cmd.Stdout, cmd.Stderr = logf, logf
	// A test binary that dies (timeout, panic) takes its tgtd with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("tgttest: start tgtd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	d.cmd, d.done = cmd, done
	for deadline := time.Now().Add(10 * time.Second); !d.answers(); time.Sleep(20 * time.Millisecond) {
		if !d.running() || time.Now().After(deadline) {
			d.Stop()
			d.t.Fatalf("tgttest: tgtd did not come up on control socket %d\n%s", d.ControlPort, d.Log())
		}
	}
	out, err := d.Tgtadm("--lld", "iscsi", "--mode", "portal", "--op", "show")
	if want := "Portal: " + d.Portal + ",1\n"; err != nil || out != want {
		d.Stop()
		d.t.Fatalf("tgttest: tgtd listens on %q, want %q: it could not bind its portal and fell back (%v)\n%s",
			out, want, err, d.Log())
	}
}

// Tgtadm runs tgtadm -C ControlPort with args, returning its combined
// output.
func (d *Daemon) Tgtadm(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tgtadm", append([]string{"-C", strconv.Itoa(d.ControlPort)}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// PID returns tgtd's process ID (0 if never started).
func (d *Daemon) PID() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Log returns tgtd's log so far.
func (d *Daemon) Log() string {
	data, _ := os.ReadFile(filepath.Join(d.Dir, "tgtd.log"))
	return string(data)
}

// Kill SIGKILLs tgtd, as a crash would, and waits until it is gone. Its
// control socket file stays behind, as after a real crash.
func (d *Daemon) Kill() {
	d.t.Helper()
	if !d.running() {
		return
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.t.Fatalf("tgttest: tgtd (pid %d) survives SIGKILL", d.PID())
	}
}

// Stop stops tgtd: tgtd ignores SIGTERM and refuses to exit while it has
// targets, so Stop deletes them (dropping sessions), asks it to exit, and
// SIGKILLs it if it has not within 3 s. Stopping a stopped daemon does
// nothing.
func (d *Daemon) Stop() {
	if d.running() {
		out, _ := d.Tgtadm("--lld", "iscsi", "--mode", "target", "--op", "show")
		for _, line := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(line, "Target "); ok {
				if tid, _, ok := strings.Cut(rest, ":"); ok {
					_, _ = d.Tgtadm("--lld", "iscsi", "--mode", "target", "--op", "delete", "--force", "--tid", tid)
				}
			}
		}
		_, _ = d.Tgtadm("--op", "delete", "--mode", "system")
		select {
		case <-d.done:
		case <-time.After(3 * time.Second):
			d.Kill()
		}
	}
	sock := fmt.Sprintf("/run/tgtd/socket.%d", d.ControlPort)
	_ = os.Remove(sock)
	_ = os.Remove(sock + ".lock")
}

func (d *Daemon) running() bool {
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *Daemon) answers() bool {
	out, err := d.Tgtadm("--op", "show", "--mode", "system")
	return err == nil && bytes.Contains([]byte(out), []byte("State: ready"))
}

// Package ganeshatest starts real nfs-ganesha servers for tests, each with
// a private D-Bus system bus of its own: a dbus-daemon on a socket in the
// test's directory with a policy that lets root own org.ganesha.nfsd and
// call it, and a ganesha.nfsd serving NFSv4 only (no rpcbind needed) on
// 127.0.0.1:<port>, checked for binding nothing wider, stopped by PID when
// the test ends.
//
// Tests that cannot run here (not root, packages missing and not
// installable) are skipped, or fail when CI=true, where a skip would hide
// a gap. As root, missing packages are installed with scripts/ganesha.sh
// deps when the source tree is at hand.
package ganeshatest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/kilnstore/kiln/internal/testenv"
)

// SkipOrFailInCI skips a test that cannot run here, and fails it under CI
// (CI=true): testenv.SkipOrFail.
func SkipOrFailInCI(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.SkipOrFail(t, format, args...)
}

// deps runs scripts/ganesha.sh deps, once.
var deps = testenv.DepsOnce(Script)

// Tools are the programs Start and the tests' client checks need.
var Tools = []string{"ganesha.nfsd", "dbus-daemon", "ss", "nfs-cat", "nfs-ls", "nfs-cp"}

// Require skips (or, under CI, fails) t unless it runs as root and ganesha
// with its VFS FSAL, dbus-daemon, ss, the libnfs utilities and tools are
// installed. As root it first tries scripts/ganesha.sh deps, which
// installs nfs-ganesha, nfs-ganesha-vfs, dbus-daemon, libnfs-utils and
// iproute2.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	testenv.RequireRoot(t, "to run nfs-ganesha (it must own org.ganesha.nfsd and serve files as any user)")
	tools = append(append([]string{}, Tools...), tools...)
	testenv.RequireInstalled(t, "scripts/ganesha.sh deps", deps, func() []string {
		out := testenv.MissingCommands(tools...)
		if vfsFSAL() == "" {
			out = append(out, "libfsalvfs.so (nfs-ganesha-vfs)")
		}
		return out
	})
}

// vfsFSAL returns the path of ganesha's VFS FSAL library, "" if missing.
func vfsFSAL() string {
	for _, pattern := range []string{"/usr/lib/*/ganesha/libfsalvfs.so*", "/usr/lib64/ganesha/libfsalvfs.so*", "/usr/lib/ganesha/libfsalvfs.so*"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	return ""
}

// Script returns the path of scripts/ganesha.sh in the source tree
// containing the working directory.
func Script() (string, error) {
	p, err := testenv.Script("ganesha.sh")
	if err != nil {
		return "", fmt.Errorf("ganeshatest: %w", err)
	}
	return p, nil
}

// Addr is the address every test server binds.
const Addr = "127.0.0.1"

// Server is a ganesha (and its private bus) started by Start.
type Server struct {
	// Dir holds the bus socket, bus.conf, ganesha.conf, ganesha.log,
	// ganesha.pid and the NFSv4 recovery directory.
	Dir string
	// BusAddress is the private system bus, for BusConfig.Address (or
	// DBUS_SYSTEM_BUS_ADDRESS).
	BusAddress string
	// Port is the NFS port on Addr.
	Port int
	// LogFile is ganesha's log (-L).
	LogFile string
	// StartDuration is how long the last (re)start took, from exec until
	// ganesha owned its bus name and listened.
	StartDuration time.Duration

	t       testing.TB
	bus     *proc
	ganesha *proc
}

// proc is a child process and a channel closed once it has been reaped.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) kill(t testing.TB, what string) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("ganeshatest: %s (pid %d) survives SIGKILL", what, p.cmd.Process.Pid)
	}
}

func start(cmd *exec.Cmd) (*proc, error) {
	// A test binary that dies (timeout, panic) takes its daemons with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Start starts a private bus and a ganesha serving NFSv4 on 127.0.0.1:port
// and stops both when t ends. Use a port of your own per test (e.g.
// 32049+N): tests may run in parallel with other packages'.
func Start(t testing.TB, port int) *Server {
	t.Helper()
	Require(t)
	if port < 1024 || port > 65535 || port == 2049 {
		t.Fatalf("ganeshatest: port %d must be an unprivileged port other than 2049", port)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{Dir: dir, BusAddress: "unix:path=" + filepath.Join(dir, "bus"), Port: port,
		LogFile: filepath.Join(dir, "ganesha.log"), t: t}
	t.Cleanup(s.cleanup)
	s.startBus()
	s.Restart()
	return s
}

// busConf is the private bus's configuration: the parts of Debian's
// system.conf a ganesha needs (method returns and errors are allowed only
// as requested replies, as on a real system bus), plus
// /etc/dbus-1/system.d/nfs-ganesha-dbus.conf's policy for root.
const busConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
  </policy>
  <policy user="root">
    <allow own="org.ganesha.nfsd"/>
    <allow send_destination="org.ganesha.nfsd"/>
  </policy>
</busconfig>
`

// ganeshaConf serves NFSv4 over TCP only, on 127.0.0.1 only: without
// Bind_addr ganesha listens on *:port, and NFSv3, NLM, RQUOTA and UDP
// would need rpcbind (or bind more ports). Graceless skips the 90 s grace
// period after every start. Active_krb5 = false spares a Kerberos lookup.
const ganeshaConf = `NFS_CORE_PARAM {
	Protocols = 4;
	Enable_UDP = false;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	NFS_Port = %d;
	Bind_addr = %s;
}
NFSv4 {
	Graceless = true;
	RecoveryRoot = "%s";
}
NFS_KRB5 {
	Active_krb5 = false;
}
`

func (s *Server) startBus() {
	t := s.t
	t.Helper()
	sock := filepath.Join(s.Dir, "bus")
	conf := filepath.Join(s.Dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConf, sock), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(s.Dir, "dbus-daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	if s.bus, err = start(cmd); err != nil {
		t.Fatalf("ganeshatest: start dbus-daemon: %v", err)
	}
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if !strings.HasPrefix(a, "unix:path="+sock) {
			t.Fatalf("ganeshatest: dbus-daemon printed address %q, want unix:path=%s", a, sock)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ganeshatest: dbus-daemon did not print its address within 10s")
	}
}

// Restart starts ganesha again after Kill or Stop (or for the first
// time); it comes back without the exports added over D-Bus.
func (s *Server) Restart() {
	t := s.t
	t.Helper()
	if s.ganesha.running() {
		t.Fatalf("ganeshatest: ganesha (pid %d) is still running", s.PID())
	}
	conf := filepath.Join(s.Dir, "ganesha.conf")
	recovery := filepath.Join(s.Dir, "recovery")
	if err := os.MkdirAll(recovery, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, fmt.Appendf(nil, ganeshaConf, s.Port, Addr, recovery), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(filepath.Join(s.Dir, "ganesha.out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("ganesha.nfsd", "-F", "-L", s.LogFile, "-f", conf, "-p", filepath.Join(s.Dir, "ganesha.pid"))
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+s.BusAddress)
	cmd.Stdout, cmd.Stderr = out, out
	begin := time.Now()
	if s.ganesha, err = start(cmd); err != nil {
		t.Fatalf("ganeshatest: start ganesha.nfsd: %v", err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if !s.ganesha.running() {
			t.Fatalf("ganeshatest: ganesha.nfsd exited during start\n%s", s.Log())
		}
		if s.ownsName() && len(s.listeners(t, "-t")) > 0 {
			break
		}
		if time.Now().After(deadline) {
			s.Kill()
			t.Fatalf("ganeshatest: ganesha did not take org.ganesha.nfsd on %s and listen within 15s "+
				"(a ganesha that cannot reach the bus runs on without D-Bus)\n%s", s.BusAddress, s.Log())
		}
	}
	s.StartDuration = time.Since(begin)
	if err := s.CheckListeners(); err != nil {
		s.Kill()
		t.Fatalf("ganeshatest: %v\n%s", err, s.Log())
	}
}

// CheckListeners verifies that ganesha listens on exactly TCP Addr:Port
// (also shown as [::ffff:127.0.0.1]:port: ganesha binds an IPv6 socket to
// the v4-mapped address) and has no UDP socket: a ganesha that ignored
// Bind_addr would serve on every address (*:port).
func (s *Server) CheckListeners() error {
	want := netip.AddrPortFrom(netip.MustParseAddr(Addr), uint16(s.Port))
	tcp := s.listeners(s.t, "-t")
	if len(tcp) == 0 {
		return fmt.Errorf("ganesha (pid %d) listens on no TCP port", s.PID())
	}
	for _, l := range tcp {
		ap, err := netip.ParseAddrPort(l)
		if err != nil || netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) != want {
			return fmt.Errorf("ganesha (pid %d) listens on %v, want only %s: Bind_addr was not applied", s.PID(), tcp, want)
		}
	}
	if udp := s.listeners(s.t, "-u"); len(udp) > 0 {
		return fmt.Errorf("ganesha (pid %d) has UDP sockets %v despite Enable_UDP = false", s.PID(), udp)
	}
	return nil
}

// listeners returns the local addresses of ganesha's listening sockets of
// one kind (ss -t or -u), as ss prints them ("*:2049" for a wildcard).
func (s *Server) listeners(t testing.TB, kind string) []string {
	pid := s.PID()
	out, err := exec.Command("ss", "-Hlnp", kind).Output()
	if err != nil {
		t.Fatalf("ganeshatest: ss -Hlnp %s: %v", kind, err)
	}
	var addrs []string
	needle := "pid=" + strconv.Itoa(pid) + ","
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.Contains(line, needle) {
			addrs = append(addrs, f[3])
		}
	}
	return addrs
}

// ownsName reports whether someone owns org.ganesha.nfsd on the private
// bus.
func (s *Server) ownsName() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := dbus.Connect(s.BusAddress, dbus.WithContext(ctx))
	if err != nil {
		return false
	}
	defer conn.Close()
	var has bool
	err = conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, "org.ganesha.nfsd").Store(&has)
	return err == nil && has
}

// PID returns ganesha's process ID (0 if never started).
func (s *Server) PID() int {
	if s.ganesha == nil {
		return 0
	}
	return s.ganesha.cmd.Process.Pid
}

// Running reports whether ganesha runs.
func (s *Server) Running() bool { return s.ganesha.running() }

// Log returns ganesha's log so far.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.LogFile)
	out, _ := os.ReadFile(filepath.Join(s.Dir, "ganesha.out"))
	return string(data) + string(out)
}

// Kill SIGKILLs ganesha, as a crash would, and waits until it is gone. Its
// bus name is released by the bus.
func (s *Server) Kill() {
	s.t.Helper()
	s.ganesha.kill(s.t, "ganesha.nfsd")
}

// Stop stops ganesha with SIGTERM (it then takes 1-2 s to exit) and
// SIGKILLs it if it has not exited within 5 s.
func (s *Server) Stop() {
	if !s.ganesha.running() {
		return
	}
	_ = s.ganesha.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.ganesha.done:
	case <-time.After(5 * time.Second):
		s.Kill()
	}
}

func (s *Server) cleanup() {
	s.ganesha.kill(s.t, "ganesha.nfsd")
	s.bus.kill(s.t, "dbus-daemon")
	if s.t.Failed() {
		s.t.Logf("ganesha log (%s):\n%s", s.LogFile, s.Log())
	}
}

// URL returns the libnfs URL of path (absolute, in the NFSv4 pseudo file
// system) on this server; query parameters in extra are appended, e.g.
// "uid=1000".
func (s *Server) URL(path string, extra ...string) string {
	q := append([]string{"version=4", "nfsport=" + strconv.Itoa(s.Port)}, extra...)
	return "nfs://" + Addr + path + "?" + strings.Join(q, "&")
}

// Cat reads path over NFSv4 with libnfs's nfs-cat (as uid 0 unless extra
// sets uid=/gid=) and returns its content; the error carries nfs-cat's
// message ("... failed with NFS4ERR_NOENT(-2)" for an export the client
// may not see).
func (s *Server) Cat(path string, extra ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nfs-cat", s.URL(path, extra...))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("nfs-cat %s: %v: %s", s.URL(path, extra...), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Head reads the first n bytes of path over NFSv4 with nfs-cat and stops
// it there: volumes are large, and reading all of one is not the point.
func (s *Server) Head(path string, n int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nfs-cat", s.URL(path))
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	got, rerr := io.ReadFull(out, buf)
	_ = cmd.Process.Kill()
	werr := cmd.Wait()
	if rerr != nil {
		return buf[:got], fmt.Errorf("nfs-cat %s: read %d of %d bytes: %v (%v): %s", s.URL(path), got, n, rerr, werr, strings.TrimSpace(stderr.String()))
	}
	return buf, nil
}

// Put writes data to path over NFSv4 with nfs-cp. libnfs 4.0.0 fails
// writes over ~3.5 KB over NFSv4 (a client bug): keep data small.
func (s *Server) Put(path string, data []byte, extra ...string) error {
	src := filepath.Join(s.t.TempDir(), "put")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nfs-cp", src, s.URL(path, extra...)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nfs-cp to %s: %v: %s", s.URL(path, extra...), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Package cephtest starts real single-node Ceph clusters (Debian's ceph
// 16.2 pacific) for tests, with scripts/ceph.sh: one mon (mon.a), one mgr
// (mgr.x) and one OSD (osd.0) on 127.0.0.1, cephx on, every file in one
// directory, an rbd pool, and a restricted user client.kiln with the caps
// Cinder's RBD user has (mon 'profile rbd', osd and mgr 'profile rbd
// pool=POOL'). The driver under test logs in as client.kiln; Ceph runs
// admin commands.
//
// A cluster takes 3-5 s to start here and some 250 MB of memory (mgr
// ~160 MB, mon ~40 MB, OSD ~45 MB plus what it stores): share one per test
// binary with Shared (stopped in TestMain), and start a cluster of your own
// (Start, StartWith) only for tests that break it (Kill, Stop).
//
// Every cluster of a test binary, and every test binary running at the
// same time (go test runs packages in parallel), needs its own pair of mon
// ports: pick ports of your own per package, e.g. 333NN and 367NN. Ports
// 3300 and 6789 (a real cluster's) and 6800..7300 (where mgrs and OSDs
// bind theirs) are refused.
//
// Tests that cannot run here (not root, packages missing and not
// installable) are skipped, or fail when CI=true, where a skip would hide
// a gap. As root, missing packages are installed with scripts/ceph.sh deps.
package cephtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/testenv"
)

// Object stores for the OSD (Options.ObjectStore).
const (
	// Memstore keeps objects in the OSD's memory and writes them to disk
	// only when the OSD stops cleanly. A SIGKILLed memstore OSD comes back
	// with what it had at its last clean stop, and after none with no PGs
	// at all: the pool's I/O then hangs for good.
	Memstore = "memstore"
	// Bluestore keeps objects in a sparse 2 GiB file in the cluster's
	// directory. It starts as fast as memstore and survives SIGKILL: use
	// it for tests that Kill the OSD.
	Bluestore = "bluestore"
)

// Daemon names, as Kill and PID take them.
const (
	Mon = "mon.a"
	Mgr = "mgr.x"
	OSD = "osd.0"
)

// Daemons lists every daemon of a cluster, the mon first.
var Daemons = []string{Mon, Mgr, OSD}

// commandTimeout bounds one rbd or ceph command run by RBD or Ceph.
const commandTimeout = 60 * time.Second

// scriptTimeout bounds one scripts/ceph.sh start or stop.
const scriptTimeout = 3 * time.Minute

// Tools are the programs scripts/ceph.sh and the helpers need.
var Tools = []string{"ceph-mon", "ceph-mgr", "ceph-osd", "ceph", "rbd", "ceph-authtool", "monmaptool", "ss", "uuidgen"}

// deps runs scripts/ceph.sh deps, once per test binary.
var deps = testenv.DepsOnce(Script)

// Script returns the path of scripts/ceph.sh in the source tree
// containing the working directory.
func Script() (string, error) {
	p, err := testenv.Script("ceph.sh")
	if err != nil {
		return "", fmt.Errorf("cephtest: %w", err)
	}
	return p, nil
}

// Require skips (or, under CI, fails) t unless it runs as root and the
// Ceph daemons and tools are installed. As root it first tries
// scripts/ceph.sh deps, which installs ceph-mon, ceph-mgr, ceph-osd,
// ceph-common, iproute2 and uuid-runtime.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "to run Ceph daemons and install their packages")
	testenv.RequireInstalled(t, "scripts/ceph.sh deps", deps, func() []string {
		return testenv.MissingCommands(Tools...)
	})
}

// Options shape a cluster.
type Options struct {
	// MonPortV2 and MonPortV1 are the mon's msgr2 and legacy ports on
	// 127.0.0.1 (required).
	MonPortV2, MonPortV1 int
	// Pool is the rbd pool's name (default "kiln").
	Pool string
	// ObjectStore is Memstore (default) or Bluestore.
	ObjectStore string
	// Dir holds the cluster; it must be missing or empty, and at most 80
	// bytes long (the admin sockets go in Dir/run). Default: a new
	// directory under os.TempDir(), removed when the cluster is stopped
	// by the helper that made it.
	Dir string
}

// Cluster is a running cluster made by scripts/ceph.sh.
type Cluster struct {
	// Dir holds everything: ceph.conf, the keyrings, mon/, mgr/, osd/
	// (the daemons' data), run/ (PID files, admin sockets), log/.
	Dir string
	// Conf is Dir/ceph.conf, for --conf (and a driver's rbd_ceph_conf).
	// Its [client] section names Dir/ceph.$name.keyring as the keyring.
	Conf string
	// FSID is the cluster's fsid.
	FSID string
	// MonHost is the conf's mon host, [v2:127.0.0.1:P2,v1:127.0.0.1:P1].
	MonHost string
	// Pool is the rbd pool (application rbd, rbd pool init done).
	Pool string
	// User is the cephx ID of the restricted user (client.kiln), for --id.
	User string
	// Keyring is client.kiln's keyring, Dir/ceph.client.kiln.keyring.
	Keyring string
	// AdminKeyring is client.admin's, Dir/ceph.client.admin.keyring.
	AdminKeyring string
	// ObjectStore is the OSD's store, Memstore or Bluestore.
	ObjectStore string
	// MonPortV2 and MonPortV1 are the mon's ports on 127.0.0.1.
	MonPortV2, MonPortV1 int
	// StartDuration is how long the last start or Restart took, until
	// client.kiln could create an image and ceph df reported capacity.
	StartDuration time.Duration

	script  string
	ownsDir bool
	mu      sync.Mutex
	guard   *exec.Cmd
}

// Start starts a cluster (memstore OSD, pool "kiln") on the given mon
// ports in a new directory, and stops it when t ends, logging the tail of
// the daemons' logs if t failed. It takes 3-5 s: prefer a Shared cluster.
func Start(t testing.TB, monPortV2, monPortV1 int) *Cluster {
	t.Helper()
	return StartWith(t, Options{MonPortV2: monPortV2, MonPortV1: monPortV1})
}

// StartWith is Start with options, e.g. a Bluestore OSD for a test that
// kills it.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	c, err := Launch(ctx, o)
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("cephtest: cluster in %s, daemons' logs (tail):\n%s", c.Dir, c.Logs(30))
			}
			if err := c.Stop(); err != nil {
				t.Errorf("cephtest: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("cephtest: %v", err)
	}
	return c
}

// Launch starts a cluster without a testing.TB, for TestMain and Shared;
// the caller must Stop it. It does not install packages: call Require (or
// run scripts/ceph.sh deps) first. On error the cluster is stopped; the
// returned Cluster, if not nil, names the directory with the logs.
func Launch(ctx context.Context, o Options) (*Cluster, error) {
	script, err := Script()
	if err != nil {
		return nil, err
	}
	if o.Pool == "" {
		o.Pool = "kiln"
	}
	if o.ObjectStore == "" {
		o.ObjectStore = Memstore
	}
	if o.ObjectStore != Memstore && o.ObjectStore != Bluestore {
		return nil, fmt.Errorf("cephtest: object store %q: want %q or %q", o.ObjectStore, Memstore, Bluestore)
	}
	c := &Cluster{Dir: o.Dir, Pool: o.Pool, ObjectStore: o.ObjectStore, MonPortV2: o.MonPortV2,
		MonPortV1: o.MonPortV1, script: script}
	if c.Dir == "" {
		// Short: admin socket paths must fit in 107 bytes.
		if c.Dir, err = os.MkdirTemp("", "ceph"); err != nil {
			return nil, fmt.Errorf("cephtest: %w", err)
		}
		c.ownsDir = true
	}
	c.startGuard()
	if err := c.start(ctx); err != nil {
		c.stopGuard()
		return c, err
	}
	return c, nil
}

// start runs scripts/ceph.sh start and fills c from what it prints.
func (c *Cluster) start(ctx context.Context) error {
	begin := time.Now()
	out, err := c.runScript(ctx, "start", c.Dir, strconv.Itoa(c.MonPortV2), strconv.Itoa(c.MonPortV1), c.Pool)
	if err != nil {
		return err
	}
	c.StartDuration = time.Since(begin)
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			kv[k] = v
		}
	}
	for _, k := range []string{"conf", "fsid", "mon_host", "pool", "user", "keyring", "admin_keyring", "objectstore"} {
		if kv[k] == "" {
			return fmt.Errorf("cephtest: %s start printed no %s= line:\n%s", c.script, k, out)
		}
	}
	c.Conf, c.FSID, c.MonHost, c.Pool = kv["conf"], kv["fsid"], kv["mon_host"], kv["pool"]
	c.User, c.Keyring, c.AdminKeyring, c.ObjectStore = kv["user"], kv["keyring"], kv["admin_keyring"], kv["objectstore"]
	c.Dir = filepath.Dir(c.Conf)
	return nil
}

func (c *Cluster) runScript(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{c.script}, args...)...)
	cmd.Env = append(cephEnv(), "KILN_CEPH_OBJECTSTORE="+c.ObjectStore)
	// A test binary that dies mid-start takes the script with it; the
	// guard then stops what the script had launched.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("cephtest: %s %s: %w\n%s", c.script, strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// cephEnv is the environment for ceph commands: without CEPH_ARGS,
// CEPH_CONF and CEPH_KEYRING, which would override the cluster's files,
// and with LC_ALL=C.
func cephEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CEPH_ARGS", "CEPH_CONF", "CEPH_KEYRING", "LC_ALL", "KILN_CEPH_OBJECTSTORE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// startGuard starts (unless it runs) a process that stops the cluster if
// this test binary dies without doing so (a test timeout, a panic,
// SIGKILL), within a second: the daemons run in sessions of their own and
// would outlive it, holding their ports.
func (c *Cluster) startGuard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.guard != nil {
		return
	}
	// Field 4 of /proc/$$/stat is the parent's PID; it changes when the
	// test binary is gone and the guard is reparented.
	cmd := exec.Command("bash", "-c", `trap '' INT TERM HUP
parent=$PPID
while [ "$(cut -d' ' -f4 /proc/$$/stat)" = "$parent" ]; do sleep 1; done
exec bash "$0" stop "$1"`, c.script, c.Dir)
	cmd.Env = cephEnv()
	// Its own process group: a ^C to go test must not take it down first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return // best effort: Stop still stops the cluster
	}
	c.guard = cmd
	go func() { _ = cmd.Wait() }()
}

func (c *Cluster) stopGuard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.guard != nil {
		_ = c.guard.Process.Kill()
		c.guard = nil
	}
}

// Stop stops the daemons cleanly (SIGTERM, SIGKILL after 5 s, the OSD's
// after 15 s), keeping their data, and removes Dir if Launch made it.
// Stopping a stopped cluster is a no-op.
func (c *Cluster) Stop() error {
	c.stopGuard()
	if _, err := c.runScript(context.Background(), "stop", c.Dir); err != nil {
		return err
	}
	if c.ownsDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			return fmt.Errorf("cephtest: %w", err)
		}
	}
	return nil
}

// StopDaemons stops the daemons cleanly and keeps Dir, so that Restart
// brings the cluster back with its data (memstore too).
func (c *Cluster) StopDaemons(t testing.TB) {
	t.Helper()
	if _, err := c.runScript(context.Background(), "stop", c.Dir); err != nil {
		t.Fatal(err)
	}
}

// Restart starts the daemons that are not running (after Kill or
// StopDaemons), the mon first, on the data they left, and waits as the
// first start did: until osd.0 is active, mgr.x is the active mgr,
// client.kiln can create and remove an image, and ceph df reports
// capacity. On a running cluster it is a no-op. It takes 2-5 s here.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.startGuard()
	if err := c.start(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, c.Logs(20))
	}
}

// Kill SIGKILLs the named daemons (Mon, Mgr, OSD; all of them if none is
// named), as a crash would, and waits until they have exited (a zombie
// counts as exited). Their PID files stay; Restart starts them again.
//
// What a client sees meanwhile: with the mon down, new clients cannot
// connect (rbd and ceph block in "hunting" until their own timeout; give
// them one) while connected ones keep doing I/O; with the OSD down, I/O
// and every image operation block; with the mgr down, ceph df reports the
// last figures and mgr commands (rbd task add, trash purge schedule,
// perf) block.
//
// Killing the OSD of a Memstore cluster fails t: its PGs would be lost and
// the pool's I/O would hang for good. Use Options{ObjectStore: Bluestore}.
func (c *Cluster) Kill(t testing.TB, daemons ...string) {
	t.Helper()
	if len(daemons) == 0 {
		daemons = Daemons
	}
	for _, d := range daemons {
		if d == OSD && c.ObjectStore == Memstore {
			t.Fatalf("cephtest: Kill(%s) on a memstore OSD would lose every PG and hang the pool for good; "+
				"start the cluster with Options{ObjectStore: cephtest.Bluestore}", OSD)
		}
	}
	pids := map[string]int{}
	for _, d := range daemons {
		pid := c.PID(d)
		if pid == 0 {
			t.Fatalf("cephtest: Kill: %q is not a running daemon of this cluster (have %v)", d, Daemons)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("cephtest: kill -9 %s (pid %d): %v", d, pid, err)
		}
		pids[d] = pid
	}
	for d, pid := range pids {
		deadline := time.Now().Add(10 * time.Second)
		for running(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("cephtest: %s (pid %d) survives SIGKILL for 10s", d, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// PID returns the PID of a running daemon (Mon, Mgr or OSD) from its PID
// file, 0 if it does not run.
func (c *Cluster) PID(daemon string) int {
	data, err := os.ReadFile(filepath.Join(c.Dir, "run", daemon+".pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !running(pid) {
		return 0
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if filepath.Base(exe) != "ceph-"+strings.SplitN(daemon, ".", 2)[0] {
		return 0
	}
	return pid
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	state := data[i+2]
	return state != 'Z' && state != 'X'
}

// RBDArgs returns the arguments that make rbd log in as client.kiln:
// --conf, --id, --keyring.
func (c *Cluster) RBDArgs() []string {
	return []string{"--conf", c.Conf, "--id", c.User, "--keyring", c.Keyring}
}

// RBD runs `rbd --conf Conf --id kiln --keyring Keyring args...` with a
// 60 s timeout and returns its standard output; it fails t on an error.
func (c *Cluster) RBD(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := c.RunRBD(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Ceph runs `ceph --conf Conf --name client.admin --keyring AdminKeyring
// args...` with a 60 s timeout and returns its standard output; it fails
// t on an error.
func (c *Cluster) Ceph(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := c.RunCeph(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunRBD is RBD for tests of failures: it returns the error, an
// *ExitError carrying rbd's exit code and standard error.
func (c *Cluster) RunRBD(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "rbd", append(c.RBDArgs(), args...))
}

// RunCeph is Ceph for tests of failures: it returns the error, an
// *ExitError carrying ceph's exit code and standard error.
func (c *Cluster) RunCeph(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "ceph", append([]string{"--conf", c.Conf, "--name", "client.admin", "--keyring", c.AdminKeyring}, args...))
}

// ExitError is a failed rbd or ceph command.
type ExitError struct {
	Args []string
	// Code is the exit code; -1 if the command was killed (the timeout).
	Code   int
	Stderr string
	Err    error
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("cephtest: %s: exit %d (%v): %s", strings.Join(e.Args, " "), e.Code, e.Err, e.Stderr)
}

func (e *ExitError) Unwrap() error { return e.Err }

func run(ctx context.Context, name string, args []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cephEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	return stdout.Bytes(), &ExitError{Args: append([]string{name}, args...), Code: code,
		Stderr: strings.TrimSpace(stderr.String()), Err: err}
}

// Logs returns the last n lines of each daemon's log and of the cluster
// log.
func (c *Cluster) Logs(n int) string {
	var b strings.Builder
	for _, name := range []string{"ceph-" + Mon, "ceph-" + Mgr, "ceph-" + OSD, "ceph.cluster"} {
		p := filepath.Join(c.Dir, "log", name+".log")
		data, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(&b, "--- %s: %v\n", p, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", p, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Shared is one cluster for every test of a test binary, started by the
// first test that asks for it and stopped by TestMain:
//
//	var ceph = cephtest.NewShared(cephtest.Options{MonPortV2: 33340, MonPortV1: 36829})
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		ceph.Close()
//		os.Exit(code)
//	}
//
//	func TestCreate(t *testing.T) {
//		c := ceph.Get(t)
//		...
//	}
//
// Tests sharing it must not Kill or stop it, and should use image names of
// their own.
type Shared struct {
	opts    Options
	once    sync.Once
	cluster *Cluster
	err     error
}

// NewShared returns a Shared cluster with options o, not started yet.
func NewShared(o Options) *Shared { return &Shared{opts: o} }

// Get returns the shared cluster, starting it on the first call; it skips
// (or, under CI, fails) t as Start does, and fails t if the cluster could
// not start. If t fails, the tail of the daemons' logs is logged.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
		defer cancel()
		s.cluster, s.err = Launch(ctx, s.opts)
	})
	if s.err != nil {
		t.Fatalf("cephtest: shared cluster: %v", s.err)
	}
	c := s.cluster
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cephtest: shared cluster in %s, daemons' logs (tail):\n%s", c.Dir, c.Logs(20))
		}
	})
	return c
}

// Close stops the shared cluster if it was started and removes its
// directory; errors go to standard error (TestMain has no t).
func (s *Shared) Close() {
	if s.cluster == nil {
		return
	}
	if err := s.cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

//go:build linux

package tgt_test

// Tests against a real tgtd, started with scripts/tgtd.sh on a loopback
// portal and a control socket of their own, and reached with userspace
// initiators (qemu-io's iscsi driver, libiscsi's iscsi-readcapacity16): the
// test machines have no kernel initiator.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
	"github.com/kilnstore/kiln/internal/tgt"
	"github.com/kilnstore/kiln/internal/tgt/tgttest"
)

// Initiator names used by the tests.
const (
	initA = "iqn.2024-01.org.kiln.test:host-a"
	initB = "iqn.2024-01.org.kiln.test:host-b"
	initX = "iqn.2024-01.org.kiln.test:intruder"
)

// requireTools skips (or fails under CI) unless tgtd and the userspace
// initiators can run here.
func requireTools(t *testing.T) {
	t.Helper()
	tgttest.Require(t, "qemu-io", "iscsi-readcapacity16", "unshare", "ip", "bash")
}

// startTgtd starts a tgtd for the test (stopped by PID at cleanup).
func startTgtd(t *testing.T, portal string, ctl int) *tgttest.Daemon {
	t.Helper()
	requireTools(t)
	return tgttest.Start(t, portal, ctl)
}

// script returns scripts/tgtd.sh.
func script(t *testing.T) string {
	t.Helper()
	p, err := tgttest.Script()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newManager returns a Manager for the tgtd at (portal, ctl) whose debug
// log goes to the returned buffer (and to the test log on failure).
func newManager(t *testing.T, portal string, ctl int) (*tgt.Manager, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	m, err := tgt.New(tgt.Config{ControlPort: ctl, Portals: []string{portal}},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	return m, logs
}

func volID(n int) string { return fmt.Sprintf("%08x-7467-4000-8000-%012x", n, n) }

// sparseFile creates a sparse backing file, the way the NFS driver's volumes
// are and the way the LVM driver's LV device stands in here.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "volume.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// qemuCmd returns a qemu-io that logs in to iqn's LUN 1 as initiator (with
// CHAP if user is set) and runs cmds. The secret reaches qemu through a
// file, not its argv.
func qemuCmd(t *testing.T, ctx context.Context, portal, iqn, initiator, user, secret string, cmds ...string) *exec.Cmd {
	t.Helper()
	opts := fmt.Sprintf("driver=iscsi,transport=tcp,portal=%s,target=%s,lun=1,initiator-name=%s", portal, iqn, initiator)
	var args []string
	if user != "" {
		f := filepath.Join(t.TempDir(), "chap-secret")
		if err := os.WriteFile(f, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--object", "secret,id=chap,file="+f)
		opts += ",user=" + user + ",password-secret=chap"
	}
	args = append(args, "--image-opts", opts)
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return exec.CommandContext(ctx, "qemu-io", args...)
}

// qemuIO runs qemu-io commands against iqn's LUN 1 (see qemuCmd).
func qemuIO(t *testing.T, portal, iqn, initiator, user, secret string, cmds ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := qemuCmd(t, ctx, portal, iqn, initiator, user, secret, cmds...).CombinedOutput()
	if err == nil && strings.Contains(string(out), "Pattern verification failed") {
		err = errors.New("pattern verification failed")
	}
	return string(out), err
}

// mustAccess checks that the initiator can read (and verify) the pattern.
func mustAccess(t *testing.T, portal, iqn, initiator, user, secret string, cmds ...string) {
	t.Helper()
	if out, err := qemuIO(t, portal, iqn, initiator, user, secret, cmds...); err != nil {
		t.Fatalf("qemu-io as %s (user %q): %v\n%s", initiator, user, err, out)
	}
}

// mustBeRefused checks that login fails with tgtd's status wantStatus, e.g.
// "Target not found(515)" or "Authentication failure(513)".
func mustBeRefused(t *testing.T, portal, iqn, initiator, user, secret, wantStatus string) {
	t.Helper()
	out, err := qemuIO(t, portal, iqn, initiator, user, secret, "read 0 4k")
	if err == nil || !strings.Contains(out, wantStatus) {
		t.Fatalf("qemu-io as %s (user %q) = %v, want refusal %q\n%s", initiator, user, err, wantStatus, out)
	}
}

func tgtadm(t *testing.T, d *tgttest.Daemon, args ...string) string {
	t.Helper()
	out, err := d.Tgtadm(append([]string{"--lld", "iscsi"}, args...)...)
	if err != nil {
		t.Fatalf("tgtadm %v: %v\n%s", args, err, out)
	}
	return out
}

func findTarget(t *testing.T, m *tgt.Manager, iqn string) (tgt.Target, bool) {
	t.Helper()
	targets, err := m.Targets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Name == iqn {
			return tg, true
		}
	}
	return tgt.Target{}, false
}

// checkExact checks that tgtd exports e exactly as Ensure promises.
func checkExact(t *testing.T, m *tgt.Manager, e tgt.Export) tgt.Target {
	t.Helper()
	iqn, _ := m.TargetName(e.VolumeID)
	tg, ok := findTarget(t, m, iqn)
	if !ok {
		t.Fatalf("target %s missing", iqn)
	}
	var luns []string
	for _, l := range tg.LUNs {
		luns = append(luns, fmt.Sprintf("%d:%s:%s", l.Number, l.BackingStoreType, l.BackingStorePath))
	}
	wantLUNs := []string{"0:null:None", "1:rdwr:" + e.BackingStore}
	wantACL := slices.Sorted(slices.Values(e.Initiators))
	var wantAccounts []string
	if e.CHAPUser != "" {
		wantAccounts = []string{e.CHAPUser}
	}
	if !slices.Equal(luns, wantLUNs) || !slices.Equal(slices.Sorted(slices.Values(tg.ACL)), wantACL) ||
		!slices.Equal(tg.Accounts, wantAccounts) || tg.OutgoingAccount != "" {
		t.Fatalf("target %s = LUNs %v ACL %v accounts %v outgoing %q; want LUNs %v ACL %v accounts %v",
			iqn, luns, tg.ACL, tg.Accounts, tg.OutgoingAccount, wantLUNs, wantACL, wantAccounts)
	}
	return tg
}

func TestExportServesDataOnlyToAllowedInitiatorWithCHAP(t *testing.T) {
	d := startTgtd(t, "127.0.0.1:3261", 32610)
	m, logs := newManager(t, d.Portal, d.ControlPort)
	ctx := context.Background()
	if err := m.CheckPortals(ctx); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	backing := sparseFile(t, size)
	user, secret := tgt.GenerateCHAP()
	e := tgt.Export{VolumeID: volID(1), BackingStore: backing, Initiators: []string{initA}, CHAPUser: user, CHAPSecret: secret}

	info, err := m.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	wantIQN := "iqn.2010-10.org.openstack:volume-" + volID(1)
	if info.IQN != wantIQN || info.LUN != 1 || info.TID < 1 || !slices.Equal(info.Portals, []string{d.Portal}) {
		t.Fatalf("Ensure = %+v", info)
	}
	checkExact(t, m, e)

	// Idempotent: the same export again changes nothing.
	changes := strings.Count(logs.String(), "iSCSI export changed")
	again, err := m.Ensure(ctx, e)
	if err != nil || again.TID != info.TID || again.IQN != info.IQN {
		t.Fatalf("second Ensure = %+v, %v; first %+v", again, err, info)
	}
	if n := strings.Count(logs.String(), "iSCSI export changed"); n != changes {
		t.Errorf("second Ensure changed something:\n%s", logs.String())
	}

	// The allowed initiator with the secret writes and reads back...
	mustAccess(t, d.Portal, info.IQN, initA, user, secret,
		"write -P 0xab 0 1M", "write -P 0xcd 32M 64k", "read -P 0xab 0 1M", "read -P 0xcd 32M 64k")
	// ...and the bytes are in the backing file, which stays sparse.
	data, err := os.ReadFile(backing)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != size || !bytes.Equal(data[:1<<20], bytes.Repeat([]byte{0xab}, 1<<20)) ||
		!bytes.Equal(data[32<<20:32<<20+64<<10], bytes.Repeat([]byte{0xcd}, 64<<10)) ||
		!bytes.Equal(data[1<<20:2<<20], make([]byte, 1<<20)) {
		t.Fatal("backing file does not hold what was written over iSCSI")
	}
	out, err := exec.Command("iscsi-readcapacity16", "-i", initA,
		fmt.Sprintf("iscsi://%s%%%s@%s/%s/1", user, secret, d.Portal, info.IQN)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Total size:67108864") {
		t.Errorf("iscsi-readcapacity16: %v\n%s", err, out)
	}

	mustBeRefused(t, d.Portal, info.IQN, initX, user, secret, "Target not found(515)")
	mustBeRefused(t, d.Portal, info.IQN, initA, user, "WrongSecret12345", "Authentication failure(513)")
	mustBeRefused(t, d.Portal, info.IQN, initA, "", "", "Authentication failure(513)")

	if strings.Contains(logs.String(), secret) {
		t.Fatal("the CHAP secret is in the manager's debug log")
	}
	if !strings.Contains(logs.String(), "--password "+"<redacted>") {
		t.Errorf("debug log lacks the redacted account command:\n%s", logs.String())
	}
}

func TestEnsureRepairsTamperedExport(t *testing.T) {
	d := startTgtd(t, "127.0.0.1:3262", 32620)
	m, logs := newManager(t, d.Portal, d.ControlPort)
	ctx := context.Background()
	backing := sparseFile(t, 16<<20)
	other := sparseFile(t, 16<<20)
	user, secret := tgt.GenerateCHAP()
	e := tgt.Export{VolumeID: volID(2), BackingStore: backing, Initiators: []string{initA}, CHAPUser: user, CHAPSecret: secret}
	info, err := m.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	mustAccess(t, d.Portal, info.IQN, initA, user, secret, "write -P 0x5a 0 64k")

	// Everything an operator (or tgt-admin --dump/restore) could do wrong:
	// allow everyone, allow an extra initiator, delete the bound CHAP account
	// (tgtd allows it silently, leaving the target without CHAP), and swap
	// the LUN's backing store.
	tid := strconv.Itoa(info.TID)
	tgtadm(t, d, "--mode", "target", "--op", "bind", "--tid", tid, "--initiator-address", "ALL")
	tgtadm(t, d, "--mode", "target", "--op", "bind", "--tid", tid, "--initiator-name", initX)
	tgtadm(t, d, "--mode", "account", "--op", "delete", "--user", user)
	tgtadm(t, d, "--mode", "logicalunit", "--op", "delete", "--tid", tid, "--lun", "1")
	tgtadm(t, d, "--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", "1", "--backing-store", other)
	tgtadm(t, d, "--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", "2", "--backing-store", other)
	// Now anyone gets in without CHAP, to the wrong data.
	mustAccess(t, d.Portal, info.IQN, initX, "", "", "read -P 0 0 64k")
	// Two foreign accounts bound: tgtd crashes if the first is unbound
	// before the second (see unbindAccounts), so Ensure must go last-first.
	for _, u := range []string{"tamper1", "tamper2"} {
		tgtadm(t, d, "--mode", "account", "--op", "new", "--user", u, "--password", "TamperTamper12")
		tgtadm(t, d, "--mode", "account", "--op", "bind", "--tid", tid, "--user", u)
	}

	repaired, err := m.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if repaired.TID != info.TID {
		t.Errorf("repair moved the target from tid %d to %d", info.TID, repaired.TID)
	}
	checkExact(t, m, e)
	if !strings.Contains(logs.String(), "unbound CHAP user tamper2 unbound CHAP user tamper1") {
		t.Errorf("foreign accounts not unbound last-first:\n%s", logs.String())
	}
	mustAccess(t, d.Portal, info.IQN, initA, user, secret, "read -P 0x5a 0 64k")
	mustBeRefused(t, d.Portal, info.IQN, initX, user, secret, "Target not found(515)")
	mustBeRefused(t, d.Portal, info.IQN, initA, "", "", "Authentication failure(513)")

	// An agent restart: a fresh Manager cannot know the secret behind the
	// existing account, so it re-creates it (with the same secret) once.
	m2, logs2 := newManager(t, d.Portal, d.ControlPort)
	if _, err := m2.Ensure(ctx, e); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs2.String(), "secret not set by this agent") {
		t.Errorf("fresh manager did not reset the CHAP account:\n%s", logs2.String())
	}
	checkExact(t, m2, e)
	mustAccess(t, d.Portal, info.IQN, initA, user, secret, "read -P 0x5a 0 64k")

	// A changed export: another initiator, a rotated secret.
	user2, secret2 := tgt.GenerateCHAP()
	e2 := e
	e2.Initiators, e2.CHAPUser, e2.CHAPSecret = []string{initB}, user2, secret2
	if _, err := m2.Ensure(ctx, e2); err != nil {
		t.Fatal(err)
	}
	checkExact(t, m2, e2)
	mustAccess(t, d.Portal, info.IQN, initB, user2, secret2, "read -P 0x5a 0 64k")
	mustBeRefused(t, d.Portal, info.IQN, initA, user2, secret2, "Target not found(515)")
	mustBeRefused(t, d.Portal, info.IQN, initB, user, secret, "Authentication failure(513)")
	if accounts := tgtadm(t, d, "--mode", "account", "--op", "show"); strings.Contains(accounts, user+"\n") {
		t.Errorf("the replaced CHAP account %s is still in tgtd:\n%s", user, accounts)
	}
	for _, s := range []string{secret, secret2} {
		if strings.Contains(logs.String()+logs2.String(), s) {
			t.Fatal("a CHAP secret is in the log")
		}
	}
}

func TestRemoveDropsSessionsAndAccount(t *testing.T) {
	d := startTgtd(t, "127.0.0.1:3263", 32630)
	m, _ := newManager(t, d.Portal, d.ControlPort)
	ctx := context.Background()
	user, secret := tgt.GenerateCHAP()
	e := tgt.Export{VolumeID: volID(3), BackingStore: sparseFile(t, 8<<20), Initiators: []string{initA}, CHAPUser: user, CHAPSecret: secret}
	keep := tgt.Export{VolumeID: volID(4), BackingStore: sparseFile(t, 8<<20), Initiators: []string{initA}}
	info, err := m.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ensure(ctx, keep); err != nil {
		t.Fatal(err)
	}

	// A logged-in session does not stop Remove (it is forced).
	session := qemuCmd(t, ctx, d.Portal, info.IQN, initA, user, secret, "sleep 20000")
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { session.Process.Kill(); session.Wait() })
	waitFor(t, 10*time.Second, "the session to log in", func() bool {
		tg, ok := findTarget(t, m, info.IQN)
		return ok && len(tg.Sessions) == 1 && tg.Sessions[0].Initiator == initA
	})

	if err := m.Remove(ctx, e.VolumeID); err != nil {
		t.Fatal(err)
	}
	if _, ok := findTarget(t, m, info.IQN); ok {
		t.Fatal("target still there after Remove")
	}
	if accounts := tgtadm(t, d, "--mode", "account", "--op", "show"); strings.Contains(accounts, user) {
		t.Errorf("CHAP account %s still in tgtd after Remove:\n%s", user, accounts)
	}
	mustBeRefused(t, d.Portal, info.IQN, initA, user, secret, "Target not found(515)")
	if err := m.Remove(ctx, e.VolumeID); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
	checkExact(t, m, keep)
}

func TestEnsureErrors(t *testing.T) {
	d := startTgtd(t, "127.0.0.1:3264", 32640)
	m, _ := newManager(t, d.Portal, d.ControlPort)
	ctx := context.Background()

	missing := tgt.Export{VolumeID: volID(5), BackingStore: filepath.Join(t.TempDir(), "nope"), Initiators: []string{initA}}
	if _, err := m.Ensure(ctx, missing); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Ensure(missing backing store) = %v, want ErrNotFound naming it", err)
	}
	if iqn, _ := m.TargetName(missing.VolumeID); func() bool { _, ok := findTarget(t, m, iqn); return ok }() {
		t.Error("a target was created for a missing backing store")
	}

	user, secret := tgt.GenerateCHAP()
	a := tgt.Export{VolumeID: volID(6), BackingStore: sparseFile(t, 8<<20), Initiators: []string{initA}, CHAPUser: user, CHAPSecret: secret}
	if _, err := m.Ensure(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := a
	b.VolumeID = volID(7)
	_, err := m.Ensure(ctx, b)
	if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), user) || strings.Contains(err.Error(), secret) {
		t.Errorf("Ensure with a CHAP user bound elsewhere = %v, want ErrExists naming the user, not the secret", err)
	}

	// tgtadm's own refusals come back typed, with its message.
	bad, err := tgt.New(tgt.Config{ControlPort: d.ControlPort, Portals: []string{d.Portal}, BackingStoreType: "aio"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dir := tgt.Export{VolumeID: volID(8), BackingStore: t.TempDir(), Initiators: []string{initA}}
	_, err = bad.Ensure(ctx, dir)
	var ce *tgt.CommandError
	if !errors.As(err, &ce) || !errors.Is(err, storage.ErrInvalid) || ce.ExitCode != 22 || !strings.Contains(err.Error(), "add LUN 1") {
		t.Errorf("Ensure(directory as backing store) = %v, want tgtadm's invalid request", err)
	}
}

func TestTgtdNotRunning(t *testing.T) {
	if _, err := exec.LookPath("tgtadm"); err != nil {
		tgttest.SkipOrFailInCI(t, "tgtadm not installed (scripts/tgtd.sh deps)")
	}
	m, err := tgt.New(tgt.Config{ControlPort: 32699, Portals: []string{"127.0.0.1:3269"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := tgt.Export{VolumeID: volID(9), BackingStore: "/dev/null", Initiators: []string{initA}}
	_, ensureErr := m.Ensure(ctx, e)
	_, targetsErr := m.Targets(ctx)
	_, reconcileErr := m.Reconcile(ctx, []tgt.Export{e})
	for name, err := range map[string]error{
		"CheckPortals": m.CheckPortals(ctx),
		"Ensure":       ensureErr,
		"Targets":      targetsErr,
		"Remove":       m.Remove(ctx, e.VolumeID),
		"Reconcile":    reconcileErr,
	} {
		if !errors.Is(err, tgt.ErrTargetUnavailable) || !strings.Contains(err.Error(), "tgt daemon") {
			t.Errorf("%s without tgtd = %v, want ErrTargetUnavailable with tgtadm's message", name, err)
		}
	}
}

func TestKeeperRecreatesExportsAfterTgtdRestart(t *testing.T) {
	d := startTgtd(t, "127.0.0.1:3265", 32650)
	ctx := context.Background()
	storePath := filepath.Join(t.TempDir(), "exports.json")
	store, err := tgt.OpenStore(storePath)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newManager(t, d.Portal, d.ControlPort)
	user, secret := tgt.GenerateCHAP()
	exports := []tgt.Export{
		{VolumeID: volID(10), BackingStore: sparseFile(t, 16<<20), Initiators: []string{initA}, CHAPUser: user, CHAPSecret: secret},
		{VolumeID: volID(11), BackingStore: sparseFile(t, 16<<20), Initiators: []string{initA, initB}},
	}
	for i, e := range exports {
		if err := store.Put(e); err != nil {
			t.Fatal(err)
		}
		info, err := m.Ensure(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		mustAccess(t, d.Portal, info.IQN, initA, e.CHAPUser, e.CHAPSecret, fmt.Sprintf("write -P 0x%02x 0 256k", 0x10+i))
	}

	// tgtd crashes and comes back empty; the agent restarts too and reads its
	// records back.
	d.Kill()
	if _, err := m.Targets(ctx); !errors.Is(err, tgt.ErrTargetUnavailable) {
		t.Errorf("Targets with tgtd dead = %v, want ErrTargetUnavailable", err)
	}
	d.Restart()
	if targets, err := m.Targets(ctx); err != nil || len(targets) != 0 {
		t.Fatalf("restarted tgtd has targets %+v, %v", targets, err)
	}
	store, err = tgt.OpenStore(storePath)
	if err != nil {
		t.Fatal(err)
	}
	m2, logs := newManager(t, d.Portal, d.ControlPort)
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tgt.NewKeeper(m2, store.List, 100*time.Millisecond).Run(kctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	waitFor(t, 10*time.Second, "the keeper to re-create both exports", func() bool {
		targets, err := m2.Targets(ctx)
		return err == nil && len(targets) == 2
	})
	for i, e := range exports {
		tg := checkExact(t, m2, e)
		mustAccess(t, d.Portal, tg.Name, initA, e.CHAPUser, e.CHAPSecret, fmt.Sprintf("read -P 0x%02x 0 256k", 0x10+i))
	}
	iqn, _ := m2.TargetName(exports[0].VolumeID)
	mustBeRefused(t, d.Portal, iqn, initA, "", "", "Authentication failure(513)")
	mustBeRefused(t, d.Portal, iqn, initB, user, secret, "Target not found(515)")
	waitFor(t, 5*time.Second, "the keeper to log the repair", func() bool {
		return strings.Contains(logs.String(), "repaired=2")
	})

	// tgtd dies again while the keeper runs: it logs, keeps trying, and
	// refills tgtd when it is back.
	d.Kill()
	waitFor(t, 5*time.Second, "the keeper to notice", func() bool {
		return strings.Contains(logs.String(), "cannot keep iSCSI exports")
	})
	d.Restart()
	waitFor(t, 10*time.Second, "the keeper to re-create both exports again", func() bool {
		targets, err := m2.Targets(ctx)
		return err == nil && len(targets) == 2
	})
	waitFor(t, 5*time.Second, "the keeper to log recovery", func() bool {
		return strings.Contains(logs.String(), "iSCSI exports in place again")
	})
	mustAccess(t, d.Portal, iqn, initA, user, secret, "read -P 0x10 0 256k")
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the CHAP secret is in the log")
	}
}

func TestConcurrentEnsure(t *testing.T) {
	d := startTgtd(t, "127.0.0.1:3266", 32660)
	m, _ := newManager(t, d.Portal, d.ControlPort)
	// A second writer on the same tgtd (another Manager) creating other
	// exports races m for tids.
	other, _ := newManager(t, d.Portal, d.ControlPort)
	ctx := context.Background()
	const volumes = 8
	exports := make([]tgt.Export, volumes)
	for i := range exports {
		user, secret := tgt.GenerateCHAP()
		exports[i] = tgt.Export{VolumeID: volID(20 + i), BackingStore: sparseFile(t, 4<<20),
			Initiators: []string{initA}, CHAPUser: user, CHAPSecret: secret}
	}
	// m ensures each of the first half three times at once; other ensures
	// the second half.
	var wg sync.WaitGroup
	tids := make([][]int, volumes)
	var mu sync.Mutex
	for i, e := range exports {
		mgr, times := m, 3
		if i >= volumes/2 {
			mgr, times = other, 1
		}
		for range times {
			wg.Go(func() {
				info, err := mgr.Ensure(ctx, e)
				if err != nil {
					t.Errorf("Ensure(%s): %v", e.VolumeID, err)
				}
				mu.Lock()
				tids[i] = append(tids[i], info.TID)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	targets, err := m.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != volumes {
		t.Fatalf("%d targets for %d volumes", len(targets), volumes)
	}
	seen := map[int]bool{}
	for i, e := range exports {
		tg := checkExact(t, m, e)
		for _, tid := range tids[i] {
			if tid != tg.TID {
				t.Errorf("volume %d: Ensure returned tids %v, target has tid %d", i, tids[i], tg.TID)
			}
		}
		if seen[tg.TID] {
			t.Errorf("tid %d used twice", tg.TID)
		}
		seen[tg.TID] = true
	}
	iqn, _ := m.TargetName(exports[volumes-1].VolumeID)
	mustAccess(t, d.Portal, iqn, initA, exports[volumes-1].CHAPUser, exports[volumes-1].CHAPSecret, "read 0 4k")
}

// The portal trap: a tgtd whose portal is taken does not fail, it listens
// on 0.0.0.0:3260 and [::]:3260 instead. Both tgtds run in a private network
// namespace so that the fallback never listens on the host's addresses.
func TestPortalTrap(t *testing.T) {
	requireTools(t)
	script := script(t)
	const portal = "127.0.0.1:3267"
	first, second := 32670, 32671

	t.Run("CheckPortals", func(t *testing.T) {
		firstDir, secondDir := t.TempDir(), t.TempDir()
		// unshare execs bash, which execs the second tgtd: cmd is that tgtd.
		cmd := exec.Command("unshare", "--net", "bash", "-c",
			`ip link set lo up && bash "$0" start "$1" "$2" "$3" >/dev/null && exec tgtd -f --iscsi portal="$2" -C "$4" -t 2 </dev/null >"$5/tgtd.log" 2>&1`,
			script, firstDir, portal, strconv.Itoa(first), strconv.Itoa(second), secondDir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			exec.Command("tgtadm", "-C", strconv.Itoa(second), "--op", "delete", "--mode", "system").Run()
			cmd.Process.Kill()
			cmd.Wait()
			os.Remove(fmt.Sprintf("/run/tgtd/socket.%d", second))
			os.Remove(fmt.Sprintf("/run/tgtd/socket.%d.lock", second))
			if out, err := exec.Command("bash", script, "stop", firstDir, strconv.Itoa(first)).CombinedOutput(); err != nil {
				t.Errorf("stop first tgtd: %v\n%s", err, out)
			}
		})
		waitFor(t, 10*time.Second, "the second tgtd to answer", func() bool {
			return exec.Command("tgtadm", "-C", strconv.Itoa(second), "--op", "show", "--mode", "system").Run() == nil
		})

		good, _ := newManager(t, portal, first)
		if err := good.CheckPortals(context.Background()); err != nil {
			t.Fatalf("first tgtd: %v", err)
		}
		trapped, _ := newManager(t, portal, second)
		err := trapped.CheckPortals(context.Background())
		if !errors.Is(err, tgt.ErrPortalMismatch) || !strings.Contains(err.Error(), "0.0.0.0:3260") {
			t.Fatalf("CheckPortals on the fallen-back tgtd = %v, want ErrPortalMismatch naming 0.0.0.0:3260", err)
		}
		t.Logf("CheckPortals: %v", err)
		e := tgt.Export{VolumeID: volID(30), BackingStore: sparseFile(t, 1<<20), Initiators: []string{initA}}
		if _, err := trapped.Ensure(context.Background(), e); !errors.Is(err, tgt.ErrPortalMismatch) {
			t.Errorf("Ensure through the fallen-back tgtd = %v, want ErrPortalMismatch", err)
		}
		if _, err := trapped.Reconcile(context.Background(), []tgt.Export{e}); !errors.Is(err, tgt.ErrPortalMismatch) {
			t.Errorf("Reconcile through the fallen-back tgtd = %v, want ErrPortalMismatch", err)
		}
		if targets, err := trapped.Targets(context.Background()); err != nil || len(targets) != 0 {
			t.Errorf("fallen-back tgtd has targets %+v, %v", targets, err)
		}
	})

	t.Run("script", func(t *testing.T) {
		firstDir, secondDir := t.TempDir(), t.TempDir()
		out, err := exec.Command("unshare", "--net", "bash", "-c",
			`ip link set lo up && bash "$0" start "$1" "$2" "$3" >/dev/null || exit 99
			bash "$0" start "$4" "$2" "$5"; rc=$?
			bash "$0" stop "$1" "$3"; exit $rc`,
			script, firstDir, portal, strconv.Itoa(first), secondDir, strconv.Itoa(second)).CombinedOutput()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 || !strings.Contains(string(out), "could not bind portal "+portal) ||
			!strings.Contains(string(out), "0.0.0.0:3260") {
			t.Fatalf("tgtd.sh start on a taken portal: %v, want exit 1 naming the fallback\n%s", err, out)
		}
		if pidData, err := os.ReadFile(filepath.Join(secondDir, "tgtd.pid")); err == nil {
			t.Errorf("pid file left behind: %s", pidData)
		}
		if exec.Command("tgtadm", "-C", strconv.Itoa(second), "--op", "show", "--mode", "system").Run() == nil {
			t.Error("the fallen-back tgtd still answers")
		}
	})
}

// scripts/tgtd.sh itself: start, idempotent start, restart after a crash
// (stale control socket), stop by PID, and refusal of non-loopback portals
// and of the system's default control socket.
func TestScriptStartStop(t *testing.T) {
	requireTools(t)
	script := script(t)
	const portal, ctl = "127.0.0.1:3268", "32680"
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		out, err := exec.Command("bash", append([]string{script}, args...)...).CombinedOutput()
		return string(out), err
	}
	readPID := func() int {
		data, err := os.ReadFile(filepath.Join(dir, "tgtd.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	alive := func(pid int) bool {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		// Zombies count as gone: the script's tgtd is reaped by init.
		i := bytes.LastIndexByte(data, ')')
		return i > 0 && i+2 < len(data) && data[i+2] != 'Z' && data[i+2] != 'X'
	}
	answers := func() bool {
		return exec.Command("tgtadm", "-C", ctl, "--op", "show", "--mode", "system").Run() == nil
	}
	t.Cleanup(func() {
		if out, err := run("stop", dir, ctl); err != nil {
			t.Errorf("cleanup stop: %v\n%s", err, out)
		}
	})

	if out, err := run("start", dir, portal, ctl); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	pid := readPID()
	if !alive(pid) || !answers() {
		t.Fatalf("tgtd pid %d not running or not answering", pid)
	}
	if out, err := run("start", dir, portal, ctl); err != nil || strings.TrimSpace(out) != strconv.Itoa(pid) {
		t.Fatalf("second start = %q, %v; want the running pid %d", out, err, pid)
	}
	// A crash leaves the control socket file behind; start copes.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "tgtd to die", func() bool { return !alive(pid) })
	if out, err := run("start", dir, portal, ctl); err != nil {
		t.Fatalf("start after SIGKILL: %v\n%s", err, out)
	}
	pid = readPID()
	// tgtd refuses to exit while it has targets: stop handles that.
	m, _ := newManager(t, portal, 32680)
	e := tgt.Export{VolumeID: volID(40), BackingStore: sparseFile(t, 1<<20), Initiators: []string{initA}}
	if _, err := m.Ensure(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if out, err := run("stop", dir, ctl); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	if alive(pid) || answers() {
		t.Fatalf("tgtd pid %d still running after stop", pid)
	}
	for _, f := range []string{filepath.Join(dir, "tgtd.pid"), "/run/tgtd/socket." + ctl} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind after stop", f)
		}
	}
	if out, err := run("stop", dir, ctl); err != nil {
		t.Errorf("second stop: %v\n%s", err, out)
	}

	for _, args := range [][]string{
		{"start", dir, "0.0.0.0:3268", ctl},
		{"start", dir, "10.1.2.3:3268", ctl},
		{"start", dir, "127.0.0.1", ctl},
		{"start", dir, portal, "0"},
		{"start", dir, portal, "32768"}, // tgtd's limit
		{"stop", dir, "0"},
		{"start", dir, portal},
		{"bogus"},
	} {
		if out, err := run(args...); err == nil {
			t.Errorf("tgtd.sh %v succeeded:\n%s", args, out)
		}
	}
	if answers() {
		t.Error("a refused start left a tgtd running")
	}
}

// Volumes (the drivers' exporter) over a real tgtd: one ACL entry per
// connector, the coordinator's CHAP credentials, Cinder's connection_info,
// records kept in step with tgtd.
func TestVolumesExportUnexport(t *testing.T) {
	d := startTgtd(t, "127.0.0.1:3269", 32690)
	m, _ := newManager(t, d.Portal, d.ControlPort)
	ctx := context.Background()
	store, err := tgt.OpenStore(filepath.Join(t.TempDir(), "exports.json"))
	if err != nil {
		t.Fatal(err)
	}
	v := tgt.NewVolumes(m, store)
	id, dev := volID(50), sparseFile(t, 8<<20)
	user, secret := tgt.GenerateCHAP()
	auth := storage.Credentials{Method: "CHAP", Username: user, Secret: secret}

	ci, err := v.ExportVolume(ctx, id, dev, storage.Connector{Initiator: initA}, auth)
	if err != nil {
		t.Fatal(err)
	}
	iqn, _ := m.TargetName(id)
	data := ci.Data
	if ci.DriverVolumeType != "iscsi" || data["target_iqn"] != iqn || data["target_portal"] != d.Portal ||
		data["target_lun"] != 1 || data["auth_method"] != "CHAP" || data["auth_username"] != user ||
		data["auth_password"] != secret || data["volume_id"] != id || data["target_discovered"] != false {
		t.Fatalf("connection info %+v", ci)
	}
	if _, err := v.ExportVolume(ctx, id, dev, storage.Connector{Initiator: initB}, auth); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExportVolume(ctx, id, dev, storage.Connector{Initiator: initB}, auth); err != nil {
		t.Fatalf("repeated export: %v", err)
	}
	rec, ok := store.Get(id)
	if !ok || !slices.Equal(rec.Initiators, []string{initA, initB}) || rec.CHAPSecret != secret {
		t.Fatalf("record %v, %v", rec, ok)
	}
	checkExact(t, m, rec)
	mustAccess(t, d.Portal, iqn, initA, user, secret, "write -P 0x77 0 64k")
	mustAccess(t, d.Portal, iqn, initB, user, secret, "read -P 0x77 0 64k")

	if _, err := v.ExportVolume(ctx, id, dev, storage.Connector{}, auth); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("export without an initiator = %v, want ErrInvalid", err)
	}

	if err := v.UnexportVolume(ctx, id, storage.Connector{Initiator: initA}); err != nil {
		t.Fatal(err)
	}
	mustBeRefused(t, d.Portal, iqn, initA, user, secret, "Target not found(515)")
	mustAccess(t, d.Portal, iqn, initB, user, secret, "read -P 0x77 0 64k")
	if err := v.UnexportVolume(ctx, id, storage.Connector{Initiator: initB}); err != nil {
		t.Fatal(err)
	}
	if _, ok := findTarget(t, m, iqn); ok {
		t.Error("target still there after its last connector left")
	}
	if _, ok := store.Get(id); ok {
		t.Error("record still there after its last connector left")
	}
	if err := v.UnexportVolume(ctx, id, storage.Connector{}); err != nil {
		t.Errorf("unexport of an unexported volume = %v", err)
	}
}

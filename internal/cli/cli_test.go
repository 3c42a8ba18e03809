package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/testcluster"
	"github.com/kilnstore/kiln/internal/testenv"
)

var errNotYet = errors.New("not yet")

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpAndVersion(t *testing.T) {
	for _, cmd := range []string{"coordinator", "agent", "dev"} {
		code, out, _ := run(cmd, "--help")
		if code != 0 || !strings.Contains(out, "Usage: kiln "+cmd) || !strings.Contains(out, "-config") {
			t.Errorf("%s --help: code %d, output %q", cmd, code, out)
		}
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "kiln ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errOut := run("frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, _, _ := run(); code != 2 {
		t.Errorf("no command: %d", code)
	}
	if code, _, errOut := run("dev", "--no-such-flag"); code != 2 || !strings.Contains(errOut, "no-such-flag") {
		t.Errorf("bad flag: %d %q", code, errOut)
	}
}

func TestConfigErrorsAreClear(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[agent]\nname = \"a\"\npools = [{name = \"p\", driver = \"lvm\", volume_group = \"no such vg\"}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run("agent", "--config", bad, "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, `volume_group "no such vg" must be`) {
		t.Fatalf("lvm pool with a bad volume group: %d %q", code, errOut)
	}
	rbd := filepath.Join(dir, "rbd.toml")
	_ = os.WriteFile(rbd, []byte("[agent]\nname = \"a\"\npools = [{name = \"p\", driver = \"rbd\", rbd_pool = \"a/b\", rbd_user = \"client.x\"}]\n"), 0o600)
	code, _, errOut = run("agent", "--config", rbd, "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, `rbd_pool "a/b"`) || !strings.Contains(errOut, `rbd_user "client.x"`) {
		t.Fatalf("rbd pool with a bad pool and user: %d %q", code, errOut)
	}
	for body, want := range map[string]string{
		`pools = [{name = "p", driver = "nfs", dir = "/tmp/kiln-x", file_mode = "rw"}]`:                                 `file_mode "rw" must be an octal permission`,
		`pools = [{name = "p", driver = "nfs", dir = "/tmp/kiln-x", nfs_snapshots = "overlay"}]`:                        `snapshots "overlay" must be`,
		`pools = [{name = "p", driver = "nfs", nfs_share = "10.0.0.1:/a b"}]`:                                           `share`,
		`pools = [{name = "p", driver = "nfs", dir = "/tmp/kiln-x", nfs_share = "10.0.0.1:/a"}]`:                        `dir and a share are exclusive`,
		`pools = [{name = "p", driver = "nfs", dir = "/tmp/kiln-x", nfs_mount_options = "vers=4"}]`:                     `need nfs_share`,
		`pools = [{name = "p", driver = "nfs", nfs_share = "10.0.0.1:/a", nfs_mount_options = "vers=4;reboot"}]`:        `option`,
		`pools = [{name = "p", driver = "nfs", dir = "/tmp/kiln-x", nfs_export = true}]`:                                `nfs_export = true needs an [agent.nfs_export] section`,
		`pools = [{name = "p", driver = "nfs", dir = "/tmp/kiln-x", nfs_qcow2_volumes = true, nfs_snapshots = "copy"}]`: `qcow2 volumes need qcow2 snapshots`,
	} {
		f := filepath.Join(dir, "nfs.toml")
		_ = os.WriteFile(f, []byte("[agent]\nname = \"a\"\n"+body+"\n"), 0o600)
		code, _, errOut = run("agent", "--config", f, "--data-dir", dir)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("%s: %d %q, want %q", body, code, errOut, want)
		}
	}
	typo := filepath.Join(dir, "typo.toml")
	_ = os.WriteFile(typo, []byte("[coordinator]\nbootstrap_expct = 3\n"), 0o600)
	code, _, errOut = run("coordinator", "--config", typo)
	if code != 1 || !strings.Contains(errOut, "coordinator.bootstrap_expct") {
		t.Fatalf("typo: %d %q", code, errOut)
	}
	code, _, errOut = run("coordinator", "--data-dir", dir, "--raft-addr", "localhost:x")
	if code != 1 || !strings.Contains(errOut, "raft address") {
		t.Fatalf("bad raft addr: %d %q", code, errOut)
	}
	code, _, errOut = run("agent", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "no pools configured") {
		t.Fatalf("agent without pools: %d %q", code, errOut)
	}
}

// startDev runs kiln dev on its own loopback address so it never collides
// with a developer's running instance.
func startDev(t *testing.T, host string) *Dev {
	t.Helper()
	d, err := StartDev(DevConfig{DataDir: t.TempDir(), APIAddr: host + ":8776", Logger: testcluster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	if err := d.WaitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCinderCLIAgainstDev drives kiln dev with the real python-cinderclient
// (Debian's python3-cinderclient, installed by scripts/deps.sh).
func TestCinderCLIAgainstDev(t *testing.T) {
	cinder, err := exec.LookPath("cinder")
	if err != nil {
		testenv.SkipOrFail(t, "cinder CLI not installed (scripts/deps.sh installs python3-cinderclient)")
	}
	d := startDev(t, "127.0.0.61")
	endpoint := "http://" + d.Coordinator.APIAddr() + "/v3/demo"
	cli := func(args ...string) string {
		t.Helper()
		base := []string{"--os-auth-type", "noauth", "--os-user-id", "demo", "--os-project-id", "demo", "--os-endpoint", endpoint}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, cinder, append(base, args...)...)
		cmd.Env = append(os.Environ(), "OS_VOLUME_API_VERSION=3.60")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cinder %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := cli("create", "--name", "first", "1")
	// cinder create prints the volume as it reads it back after the 202:
	// creating, or already available on the local pool.
	if !strings.Contains(out, "first") || !(strings.Contains(out, "creating") || strings.Contains(out, "available")) {
		t.Fatalf("create output:\n%s", out)
	}
	var id string
	testcluster.WaitForT(t, 10*time.Second, func() error {
		vols := d.Coordinator.State().Volumes(state.VolumeFilter{ProjectID: "demo"})
		if len(vols) != 1 || vols[0].Status != state.StatusAvailable {
			return errNotYet
		}
		id = vols[0].ID
		return nil
	})
	if out := cli("list"); !strings.Contains(out, id) || !strings.Contains(out, "available") {
		t.Fatalf("list output:\n%s", out)
	}
	if out := cli("show", "first"); !strings.Contains(out, "available") {
		t.Fatalf("show by name:\n%s", out)
	}
	cli("type-create", "gold")
	if out := cli("type-list"); !strings.Contains(out, "gold") || !strings.Contains(out, "__DEFAULT__") {
		t.Fatalf("type-list:\n%s", out)
	}
	if out := cli("quota-show", "demo"); !strings.Contains(out, "gigabytes") {
		t.Fatalf("quota-show:\n%s", out)
	}
	cli("quota-update", "--volumes", "20", "demo")
	if out := cli("quota-usage", "demo"); !strings.Contains(out, "volumes") {
		t.Fatalf("quota-usage:\n%s", out)
	}
	if out := cli("get-pools", "--detail"); !strings.Contains(out, "dev-agent@local#local") {
		t.Fatalf("get-pools:\n%s", out)
	}
	if out := cli("service-list"); !strings.Contains(out, "cinder-volume") || !strings.Contains(out, "up") {
		t.Fatalf("service-list:\n%s", out)
	}
	cli("delete", id)
	testcluster.WaitForT(t, 10*time.Second, func() error {
		if len(d.Coordinator.State().Volumes(state.VolumeFilter{ProjectID: "demo"})) != 0 {
			return errNotYet
		}
		return nil
	})
	if files, _ := filepath.Glob(filepath.Join(d.poolDir, "volume-*")); len(files) != 0 {
		t.Fatalf("volume files left: %v", files)
	}
}

func TestDevRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	host := "127.0.0.62"
	d, err := StartDev(DevConfig{DataDir: dir, APIAddr: host + ":8776", Logger: testcluster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	cmd := state.CreateType{Type: state.VolumeType{ID: "44444444-4444-4444-8444-444444444444", Name: "kept", IsPublic: true, CreatedAt: time.Now().UTC()}}
	if err := d.Coordinator.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	d2, err := StartDev(DevConfig{DataDir: dir, APIAddr: host + ":8776", Logger: testcluster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Stop()
	if err := d2.WaitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if d2.Coordinator.State().TypeByName("kept") == nil {
		t.Fatal("state lost across a dev restart")
	}
	b, _ := json.Marshal(d2.Coordinator.State().Pools())
	if !strings.Contains(string(b), "dev-agent@local#local") {
		t.Fatalf("pool not registered after restart: %s", b)
	}
}

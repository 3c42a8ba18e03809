package cephtest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/testenv"
)

// Ports of this package's clusters (33370/36859, 33375/36865); other
// packages pick their own (rbd: 33310/36799, coordinator: 33320/36809).
var shared = NewShared(Options{MonPortV2: 33370, MonPortV1: 36859})

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

func TestRBDAsKiln(t *testing.T) {
	c := shared.Get(t)
	t.Logf("cluster started in %v (%s)", c.StartDuration, c.ObjectStore)
	var names []string
	if err := json.Unmarshal(c.RBD(t, "ls", "--pool", c.Pool, "--format", "json"), &names); err != nil {
		t.Fatal(err)
	}
	c.RBD(t, "create", "--size", "64M", c.Pool+"/cephtest-a")
	var info struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	}
	if err := json.Unmarshal(c.RBD(t, "info", "--format", "json", c.Pool+"/cephtest-a"), &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "cephtest-a" || info.Size != 64<<20 {
		t.Errorf("rbd info = %+v", info)
	}
	if err := json.Unmarshal(c.RBD(t, "ls", "--pool", c.Pool, "--format", "json"), &names); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "cephtest-a") {
		t.Errorf("rbd ls = %v, want cephtest-a in it", names)
	}
	c.RBD(t, "rm", "--no-progress", c.Pool+"/cephtest-a")

	var df struct {
		Stats struct {
			TotalBytes int64 `json:"total_bytes"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(c.Ceph(t, "df", "--format", "json"), &df); err != nil {
		t.Fatal(err)
	}
	if df.Stats.TotalBytes <= 0 {
		t.Errorf("ceph df total_bytes = %d", df.Stats.TotalBytes)
	}
}

// client.kiln is not an admin, and rbd's errors come back as exit codes.
func TestErrors(t *testing.T) {
	c := shared.Get(t)
	ctx := context.Background()
	_, err := run(ctx, "ceph", []string{"--conf", c.Conf, "--id", c.User, "--keyring", c.Keyring,
		"osd", "pool", "create", "cephtest-evil", "8"})
	wantCode(t, "client.kiln creating a pool", err, 13) // EACCES
	_, err = c.RunRBD(ctx, "info", "--format", "json", c.Pool+"/cephtest-none")
	wantCode(t, "info of a missing image", err, 2) // ENOENT
	_, err = c.RunRBD(ctx, "ls", "--format", "json", "--pool", "cephtest-nopool")
	wantCode(t, "ls of a missing pool", err, 2)

	img := c.Pool + "/cephtest-e"
	c.RBD(t, "create", "--size", "16M", img)
	_, err = c.RunRBD(ctx, "create", "--size", "16M", img)
	wantCode(t, "create of an existing image", err, 17) // EEXIST
	c.RBD(t, "snap", "create", "--no-progress", img+"@s")
	c.RBD(t, "snap", "protect", img+"@s")
	_, err = c.RunRBD(ctx, "snap", "rm", "--no-progress", img+"@s")
	wantCode(t, "rm of a protected snapshot", err, 16) // EBUSY
	_, err = c.RunRBD(ctx, "rm", "--no-progress", img)
	wantCode(t, "rm of an image with snapshots", err, 39) // ENOTEMPTY
	c.RBD(t, "snap", "unprotect", img+"@s")
	c.RBD(t, "snap", "rm", "--no-progress", img+"@s")
	c.RBD(t, "rm", "--no-progress", img)
}

func wantCode(t *testing.T, what string, err error, code int) {
	t.Helper()
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Errorf("%s: err = %v, want exit code %d", what, err, code)
		return
	}
	if ee.Code != code {
		t.Errorf("%s: exit code %d, want %d (%s)", what, ee.Code, code, ee.Stderr)
	}
}

func TestRestartOfARunningClusterIsANoop(t *testing.T) {
	c := shared.Get(t)
	fsid, pid := c.FSID, c.PID(Mon)
	c.Restart(t)
	if c.FSID != fsid || c.PID(Mon) != pid {
		t.Errorf("Restart of a running cluster changed it: fsid %s -> %s, mon pid %d -> %d", fsid, c.FSID, pid, c.PID(Mon))
	}
	if c.StartDuration > 5*time.Second {
		t.Logf("no-op start took %v", c.StartDuration)
	}
}

// A bluestore cluster whose daemons are all SIGKILLed comes back with its
// images; while it is down, rbd fails (here by its timeout).
func TestKillRestart(t *testing.T) {
	if testing.Short() {
		testenv.SkipOrFail(t, "-short: starts a cluster of its own (~5 s) and kills it")
	}
	c := StartWith(t, Options{MonPortV2: 33375, MonPortV1: 36865, ObjectStore: Bluestore})
	c.RBD(t, "create", "--size", "16M", c.Pool+"/cephtest-k")
	c.RBD(t, "bench", "--io-type", "write", "--io-size", "64K", "--io-total", "1M", c.Pool+"/cephtest-k")
	c.Kill(t)
	for _, d := range Daemons {
		if pid := c.PID(d); pid != 0 {
			t.Errorf("%s still runs (pid %d) after Kill", d, pid)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.RunRBD(ctx, "ls", "--pool", c.Pool); err == nil {
		t.Error("rbd ls succeeded with every daemon killed")
	}
	begin := time.Now()
	c.Restart(t)
	t.Logf("restart after kill -9 of every daemon: %v", time.Since(begin))
	var names []string
	if err := json.Unmarshal(c.RBD(t, "ls", "--pool", c.Pool, "--format", "json"), &names); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"cephtest-k"}) {
		t.Errorf("after restart rbd ls = %v, want [cephtest-k]", names)
	}

	// The OSD alone.
	c.Kill(t, OSD)
	c.Restart(t)
	c.RBD(t, "info", c.Pool+"/cephtest-k")
}

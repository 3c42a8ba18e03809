package coordinator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/testcluster"
	"github.com/kilnstore/kiln/nfs"
)

// restartAgent stops agent i abruptly and starts it again over the same
// pool directory, as a crashed and restarted storage host would. With
// samePorts it comes back at once on its old addresses (a quick restart that
// Serf may never see as a failure); otherwise on new ports once the leader
// has seen it fail (Serf refuses a live name claimed from a new address).
func restartAgent(t *testing.T, c *testcluster.Cluster, i int, samePorts bool) {
	t.Helper()
	name := fmt.Sprintf("agent%d", i)
	rpcAddr, serfAddr := "127.0.0.1:0", "127.0.0.1:0"
	if samePorts {
		rpcAddr, serfAddr = c.Agents[i].RPCAddr(), c.Agents[i].SerfAddr()
	}
	c.Agents[i].Shutdown()
	if !samePorts {
		c.WaitFor(30*time.Second, func() error {
			if svc := c.Leader().State().Service(state.BinaryVolume, name); svc == nil || svc.Up {
				return fmt.Errorf("%s not seen failed yet", name)
			}
			return nil
		})
	}
	d, err := nfs.New(nfs.Config{Name: "local", Dir: c.PoolDir(i)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.Start(agent.Config{
		Name: name, Zone: "nova", RPCAddr: rpcAddr, SerfAddr: serfAddr,
		Join: []string{c.Coordinators[0].SerfAddr()}, Timing: "local", StatsInterval: time.Second,
		Drivers: []agent.Driver{d}, Logger: c.Log.With("t", "agent-restarted"),
	})
	if err != nil {
		t.Fatalf("restart agent %d: %v", i, err)
	}
	c.Agents[i] = a // stopped with the cluster
}

// poolCaps returns the get_pools detail capabilities of pool name.
func poolCaps(t *testing.T, c *testcluster.Cluster, name string) map[string]any {
	t.Helper()
	code, body := call(t, http.MethodGet, c.URL(0)+"/v3/p/scheduler-stats/get_pools?detail=true", "p", nil)
	if code != http.StatusOK {
		t.Fatalf("get_pools: %d %v", code, body)
	}
	for _, p := range body["pools"].([]any) {
		if p := p.(map[string]any); p["name"] == name {
			return p["capabilities"].(map[string]any)
		}
	}
	t.Fatalf("pool %s not in get_pools", name)
	return nil
}

// TestAgentRestartReconcilesInventory deletes a volume's file and a
// snapshot's file behind Kiln's back, drops unknown volume-<uuid> and
// snapshot-<uuid> files into the pool, and restarts the agent: the missing
// objects go to error with the reason, the others stay available, and the
// unknown files show as orphans in get_pools and are left in place. Once
// the operator removes them, the next inventory clears them.
func TestAgentRestartReconcilesInventory(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 1})
	a := api{t: t, c: c, project: "p"}
	const pool = "agent0@local#local"
	var vols []string
	for range 3 {
		vols = append(vols, id(a.do(http.MethodPost, "/volumes", map[string]any{"volume": map[string]any{"size": 1}}, http.StatusAccepted), "volume"))
	}
	for _, v := range vols {
		a.waitVolume(v, "available")
	}
	keep, lost, snapped := vols[0], vols[1], vols[2]
	keptSnap := id(a.do(http.MethodPost, "/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": snapped}}, http.StatusAccepted), "snapshot")
	lostSnap := id(a.do(http.MethodPost, "/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": snapped}}, http.StatusAccepted), "snapshot")
	a.waitSnapshot(keptSnap, "available")
	a.waitSnapshot(lostSnap, "available")
	if caps := poolCaps(t, c, pool); caps["kiln:orphan_volumes"] != 0.0 {
		t.Fatalf("orphans before anything was dropped: %v", caps)
	}

	dir := c.PoolDir(0)
	for _, name := range []string{"volume-" + lost, "snapshot-" + lostSnap, "snapshot-" + lostSnap + ".meta"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	orphanVol, orphanSnap := "0e000000-0000-4000-8000-0000000000aa", "0e000000-0000-4000-8000-0000000000bb"
	for _, name := range []string{"volume-" + orphanVol, "snapshot-" + orphanSnap} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not Kiln's"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	restartAgent(t, c, 0, false)

	v := a.waitVolume(lost, "error")
	want := "volume-" + lost + " is missing on pool " + pool + ": the agent reported it absent at "
	if msg, _ := v["kiln:error"].(string); !strings.HasPrefix(msg, want) {
		t.Fatalf("kiln:error %q, want it to start with %q", msg, want)
	}
	a.waitSnapshot(lostSnap, "error")
	c.WaitFor(30*time.Second, func() error {
		caps := poolCaps(t, c, pool)
		if caps["kiln:orphan_volumes"] != 1.0 || caps["kiln:orphan_snapshots"] != 1.0 {
			b, _ := json.Marshal(caps)
			return fmt.Errorf("capabilities %s", b)
		}
		return nil
	})
	caps := poolCaps(t, c, pool)
	for key, want := range map[string]string{"kiln:orphan_volume_ids": orphanVol, "kiln:orphan_snapshot_ids": orphanSnap} {
		if got, _ := caps[key].([]any); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %v, want [%s]", key, caps[key], want)
		}
	}
	for _, id := range []string{keep, snapped} {
		if st := a.waitVolume(id, "available"); st["kiln:error"] != nil {
			t.Errorf("volume %s: %v", id, st["kiln:error"])
		}
	}
	a.waitSnapshot(keptSnap, "available")
	for _, name := range []string{"volume-" + orphanVol, "snapshot-" + orphanSnap} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("orphan %s: %v", name, err)
		}
	}
	// The missing volume can still be deleted: the agent's not-found is a
	// success, and quota is released.
	a.do(http.MethodDelete, "/volumes/"+lost, nil, http.StatusAccepted)
	a.waitGone("/volumes/" + lost)
	if u := c.Leader().State().QuotaUsage("p")[state.QuotaVolumes]; u.InUse != 2 || u.Reserved != 0 {
		t.Fatalf("volumes quota usage after deleting the missing volume: %+v", u)
	}

	// The operator deals with the orphans; the next inventory (here on a
	// quick restart on the same ports) clears them.
	for _, name := range []string{"volume-" + orphanVol, "snapshot-" + orphanSnap} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	restartAgent(t, c, 0, true)
	c.WaitFor(30*time.Second, func() error {
		caps := poolCaps(t, c, pool)
		if caps["kiln:orphan_volumes"] != 0.0 || caps["kiln:orphan_snapshots"] != 0.0 ||
			!slices.Equal(caps["kiln:orphan_volume_ids"].([]any), []any{}) {
			return fmt.Errorf("orphans not cleared: %v", caps)
		}
		return nil
	})
	a.waitVolume(keep, "available")
}

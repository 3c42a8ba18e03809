package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/testcluster"
	"github.com/kilnstore/kiln/internal/testenv"
)

// TestProcessesFormClusterAndSurviveLeaderKill runs the real kiln binary as
// separate processes — three coordinators with bootstrap_expect = 3 and one
// agent, each on its own loopback address with its own config file — then
// SIGKILLs the leader process.
func TestProcessesFormClusterAndSurviveLeaderKill(t *testing.T) {
	if testing.Short() {
		testenv.SkipOrFail(t, "with -short: builds the binary and runs processes (do not pass -short in CI)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	hosts := []string{"127.0.0.81", "127.0.0.82", "127.0.0.83"}
	var joins []string
	for _, h := range hosts {
		joins = append(joins, fmt.Sprintf("%q", h+":8779"))
	}
	procs := map[string]*exec.Cmd{}
	start := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(bin, args...)
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[name] = cmd
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("--- %s log (tail) ---\n%s", name, tail(string(b), 6000))
			}
		})
		return cmd
	}
	// The agent starts first: it must keep retrying its join until the
	// coordinators are up.
	agentCfg := filepath.Join(dir, "agent.toml")
	_ = os.WriteFile(agentCfg, []byte(fmt.Sprintf(`[agent]
name = "stor1"
data_dir = %q
rpc_addr = "127.0.0.84:8780"
serf_addr = "127.0.0.84:8781"
join = [%s]
timing = "local"
[[agent.pools]]
name = "local"
driver = "nfs"
dir = %q
`, filepath.Join(dir, "agent"), strings.Join(joins, ", "), filepath.Join(dir, "pool"))), 0o600)
	start("agent", "agent", "--config", agentCfg)
	for i, h := range hosts {
		cfg := filepath.Join(dir, fmt.Sprintf("c%d.toml", i))
		text := fmt.Sprintf(`log_level = "info"
[coordinator]
name = "c%d"
data_dir = %q
raft_addr = "%s:8778"
serf_addr = "%s:8779"
api_addr = "%s:8776"
join = [%s]
bootstrap_expect = 3
timing = "local"
reconcile_interval = "1s"
`, i, filepath.Join(dir, fmt.Sprintf("c%d", i)), h, h, h, strings.Join(joins, ", "))
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		start(fmt.Sprintf("c%d", i), "coordinator", "--config", cfg)
	}

	leader := func() (int, error) {
		for i, h := range hosts {
			if procs[fmt.Sprintf("c%d", i)].ProcessState != nil {
				continue
			}
			var st struct {
				IsLeader bool     `json:"is_leader"`
				Voters   []string `json:"voters"`
			}
			if err := getJSON("http://"+h+":8776/internal/v1/status", &st); err != nil {
				continue
			}
			if st.IsLeader && len(st.Voters) == 3 {
				return i, nil
			}
		}
		return -1, fmt.Errorf("no leader with 3 voters")
	}
	var li int
	testcluster.WaitForT(t, 30*time.Second, func() (err error) { li, err = leader(); return err })
	// The agent's pool is registered once the leader has seen it in Serf.
	testcluster.WaitForT(t, 30*time.Second, func() error {
		var pools struct {
			Pools []struct{ Name string } `json:"pools"`
		}
		if err := getJSONAs("http://"+hosts[li]+":8776/v3/e2e/scheduler-stats/get_pools", "u:e2e", &pools); err != nil {
			return err
		}
		if len(pools.Pools) != 1 || pools.Pools[0].Name != "stor1@local#local" {
			return fmt.Errorf("pools %+v", pools.Pools)
		}
		return nil
	})
	create := func(host string) (string, int) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+":8776/v3/e2e/volumes", strings.NewReader(`{"volume":{"size":1}}`))
		req.Header.Set("X-Auth-Token", "u:e2e")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", 0
		}
		defer resp.Body.Close()
		var body struct {
			Volume struct{ ID string } `json:"volume"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return body.Volume.ID, resp.StatusCode
	}
	status := func(host, id string) string {
		var body struct {
			Volume struct {
				Status string
				Error  string `json:"kiln:error"`
			} `json:"volume"`
		}
		if err := getJSONAs("http://"+host+":8776/v3/e2e/volumes/"+id, "u:e2e", &body); err != nil {
			return err.Error()
		}
		if body.Volume.Error != "" {
			return body.Volume.Status + " (" + body.Volume.Error + ")"
		}
		return body.Volume.Status
	}
	var acked []string
	testcluster.WaitForT(t, 30*time.Second, func() error {
		id, code := create(hosts[(li+1)%3])
		if code != http.StatusAccepted {
			return fmt.Errorf("create answered %d", code)
		}
		acked = append(acked, id)
		return nil
	})
	if err := procs[fmt.Sprintf("c%d", li)].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs[fmt.Sprintf("c%d", li)].Wait()
	survivor := hosts[(li+1)%3]
	testcluster.WaitForT(t, 30*time.Second, func() error {
		id, code := create(survivor)
		if code != http.StatusAccepted {
			return fmt.Errorf("create after leader kill answered %d", code)
		}
		acked = append(acked, id)
		return nil
	})
	testcluster.WaitForT(t, 30*time.Second, func() error {
		for _, id := range acked {
			if s := status(survivor, id); s != "available" {
				return fmt.Errorf("volume %s is %s", id, s)
			}
		}
		return nil
	})
	files, _ := filepath.Glob(filepath.Join(dir, "pool", "volume-*"))
	if len(files) != len(acked) {
		t.Fatalf("%d volume files for %d acknowledged volumes", len(files), len(acked))
	}
	// SIGTERM stops the others cleanly (exit 0).
	for name, cmd := range procs {
		if cmd.ProcessState != nil {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not exit within 20 s of SIGTERM", name)
		}
	}
}

func getJSON(url string, out any) error { return getJSONAs(url, "", out) }

func getJSONAs(url, token string, out any) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

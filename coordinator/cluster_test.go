package coordinator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/testcluster"
)

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call sends a Cinder API request as project and decodes the JSON answer.
func call(t testing.TB, method, url, project string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", "user:"+project)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Errorf("%s %s: non-JSON answer %d: %s", method, url, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, out
}

func createVolume(t testing.TB, base, project string, size int) (int, string) {
	t.Helper()
	code, body := call(t, http.MethodPost, base+"/v3/"+project+"/volumes", project,
		map[string]any{"volume": map[string]any{"size": size, "name": "v"}})
	if code != http.StatusAccepted {
		if code != http.StatusRequestEntityTooLarge {
			t.Logf("create volume: %d %v", code, body)
		}
		return code, ""
	}
	return code, body["volume"].(map[string]any)["id"].(string)
}

// statuses counts the project's volumes by status in a coordinator's state.
func statuses(st *state.State, project string) map[string]int {
	out := map[string]int{}
	for _, v := range st.Volumes(state.VolumeFilter{ProjectID: project}) {
		out[v.Status]++
	}
	return out
}

// checkUsage asserts quota usage equals the sum of the live volumes.
func checkUsage(t testing.TB, st *state.State, project string) {
	t.Helper()
	var vols, gb int64
	for _, v := range st.Volumes(state.VolumeFilter{ProjectID: project}) {
		if v.ConsumesQuota {
			vols++
			gb += v.SizeGB
		}
	}
	u := st.QuotaUsage(project)
	if got := u[state.QuotaVolumes].InUse + u[state.QuotaVolumes].Reserved; got != vols {
		t.Fatalf("volumes usage %d != live volumes %d", got, vols)
	}
	if got := u[state.QuotaGigabytes].InUse + u[state.QuotaGigabytes].Reserved; got != gb {
		t.Fatalf("gigabytes usage %d != live gigabytes %d", got, gb)
	}
}

func volumeFiles(t testing.TB, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "volume-*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestClusterConcurrentCreatesAndDeletes(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 3, Agents: 2})
	leader := c.WaitLeader(10 * time.Second)
	const project, n = "p1", 100
	if code, _ := call(t, http.MethodPut, c.URL(0)+"/v3/"+project+"/os-quota-sets/"+project, project,
		map[string]any{"quota_set": map[string]any{"volumes": 200, "gigabytes": 2000}}); code != http.StatusOK {
		t.Fatalf("quota update: %d", code)
	}
	var wg sync.WaitGroup
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread over all coordinators: followers forward to the leader.
			code, id := createVolume(t, c.URL(i%3), project, 1)
			if code != http.StatusAccepted {
				t.Errorf("create %d: status %d", i, code)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	c.WaitFor(60*time.Second, func() error {
		if s := statuses(leader.State(), project); s[state.StatusAvailable] != n {
			return fmt.Errorf("statuses %v", s)
		}
		return nil
	})
	if got := volumeFiles(t, c.PoolDir(0)) + volumeFiles(t, c.PoolDir(1)); got != n {
		t.Fatalf("%d volume files on the pools, want %d", got, n)
	}
	if volumeFiles(t, c.PoolDir(0)) == 0 || volumeFiles(t, c.PoolDir(1)) == 0 {
		t.Errorf("capacity weigher should spread volumes over both pools: %d / %d", volumeFiles(t, c.PoolDir(0)), volumeFiles(t, c.PoolDir(1)))
	}
	checkUsage(t, leader.State(), project)
	// Every coordinator serves the same volume (reads are local).
	for i := range c.Coordinators {
		code, body := call(t, http.MethodGet, c.URL(i)+"/v3/"+project+"/volumes/"+ids[0], project, nil)
		if code != http.StatusOK || body["volume"].(map[string]any)["status"] == nil {
			t.Fatalf("show on coordinator %d: %d %v", i, code, body)
		}
	}
	for i, id := range ids {
		if code, _ := call(t, http.MethodDelete, c.URL(i%3)+"/v3/"+project+"/volumes/"+id, project, nil); code != http.StatusAccepted {
			t.Fatalf("delete %s: %d", id, code)
		}
	}
	c.WaitFor(60*time.Second, func() error {
		if left := len(leader.State().Volumes(state.VolumeFilter{ProjectID: project})); left != 0 {
			return fmt.Errorf("%d volumes left", left)
		}
		return nil
	})
	u := leader.State().QuotaUsage(project)
	if u[state.QuotaVolumes] != (state.Use{}) || u[state.QuotaGigabytes] != (state.Use{}) {
		t.Fatalf("usage after deleting everything: %+v", u)
	}
	if got := volumeFiles(t, c.PoolDir(0)) + volumeFiles(t, c.PoolDir(1)); got != 0 {
		t.Fatalf("%d volume files left on the pools", got)
	}
}

func TestClusterQuotaUnderConcurrency(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 3, Agents: 1})
	const project = "quota"
	if code, _ := call(t, http.MethodPut, c.URL(1)+"/v3/"+project+"/os-quota-sets/"+project, project,
		map[string]any{"quota_set": map[string]any{"volumes": 10, "gigabytes": 25}}); code != http.StatusOK {
		t.Fatalf("quota update: %d", code)
	}
	var ok, over atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch code, _ := createVolume(t, c.URL(i%3), project, 1+i%3); code {
			case http.StatusAccepted:
				ok.Add(1)
			case http.StatusRequestEntityTooLarge:
				over.Add(1)
			default:
				t.Errorf("create: unexpected status %d", code)
			}
		}()
	}
	wg.Wait()
	leader := c.WaitLeader(10 * time.Second)
	vols := leader.State().Volumes(state.VolumeFilter{ProjectID: project})
	var gb int64
	for _, v := range vols {
		gb += v.SizeGB
	}
	if int(ok.Load()) != len(vols) || ok.Load()+over.Load() != 40 {
		t.Fatalf("accepted %d, refused %d, live %d", ok.Load(), over.Load(), len(vols))
	}
	if len(vols) > 10 || gb > 25 {
		t.Fatalf("quota exceeded: %d volumes, %d GB", len(vols), gb)
	}
	checkUsage(t, leader.State(), project)
	// One more is refused with Cinder's 413 body and Retry-After.
	req, _ := http.NewRequest(http.MethodPost, c.URL(0)+"/v3/"+project+"/volumes", strings.NewReader(`{"volume":{"size":30}}`))
	req.Header.Set("X-Auth-Token", "u:"+project)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var fault map[string]map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&fault)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Retry-After") == "" || fault["overLimit"]["code"] != float64(413) {
		t.Fatalf("over-quota answer: %d %v %v", resp.StatusCode, resp.Header, fault)
	}
}

func TestClusterNearlyFullPoolNeverOverProvisioned(t *testing.T) {
	const capGB = 20
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 1, PoolCapacityGB: capGB, Provisioning: "thick"})
	leader := c.WaitLeader(10 * time.Second)
	const project = "full"
	call(t, http.MethodPut, c.URL(0)+"/v3/"+project+"/os-quota-sets/"+project, project,
		map[string]any{"quota_set": map[string]any{"volumes": 100, "gigabytes": 1000}})
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _ := createVolume(t, c.URL(0), project, 1); code != http.StatusAccepted {
				t.Errorf("create: %d", code)
			}
		}()
	}
	wg.Wait()
	c.WaitFor(60*time.Second, func() error {
		s := statuses(leader.State(), project)
		if s[state.StatusCreating] > 0 {
			return fmt.Errorf("still creating: %v", s)
		}
		return nil
	})
	s := statuses(leader.State(), project)
	if s[state.StatusAvailable] != capGB || s[state.StatusError] != 64-capGB {
		reasons := map[string]int{}
		for _, v := range leader.State().Volumes(state.VolumeFilter{ProjectID: project, Status: state.StatusError}) {
			reasons[v.ErrorMessage]++
		}
		t.Fatalf("statuses %v, want %d available and %d error; reasons %v", s, capGB, 64-capGB, reasons)
	}
	pool := leader.State().Pools()[0].Name
	if pu := leader.State().PoolUsage(pool); pu.AllocatedGB > capGB {
		t.Fatalf("pool allocated %d GB > capacity %d", pu.AllocatedGB, capGB)
	}
	if n := volumeFiles(t, c.PoolDir(0)); n != capGB {
		t.Fatalf("%d files on the pool, want %d", n, capGB)
	}
	for _, v := range leader.State().Volumes(state.VolumeFilter{ProjectID: project, Status: state.StatusError}) {
		if !strings.Contains(v.ErrorMessage, "capacity") || v.ConsumesQuota {
			t.Fatalf("error volume %s: message %q consumes_quota %v", v.ID, v.ErrorMessage, v.ConsumesQuota)
		}
	}
	checkUsage(t, leader.State(), project)
}

func TestClusterLeaderKillLosesNoAcknowledgedVolume(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 3, Agents: 1})
	const project = "failover"
	call(t, http.MethodPut, c.URL(0)+"/v3/"+project+"/os-quota-sets/"+project, project,
		map[string]any{"quota_set": map[string]any{"volumes": 1000000, "gigabytes": 10000000}})
	leader := c.WaitLeader(10 * time.Second)
	leaderIdx := -1
	for i, s := range c.Coordinators {
		if s == leader {
			leaderIdx = i
		}
	}
	var mu sync.Mutex
	var acked []string
	// A 5xx answer during the failover is "outcome unknown": the create may
	// have committed. Count them; they may add volumes, never remove any.
	var ambiguous atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Clients talk to the survivors, as a load balancer would
				// after the leader dies.
				i := rand.IntN(3)
				if i == leaderIdx {
					i = (i + 1) % 3
				}
				switch code, id := createVolume(t, c.URL(i), project, 1); {
				case code == http.StatusAccepted:
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				case code == 0 || code >= 500:
					ambiguous.Add(1)
				default:
					t.Errorf("create during failover answered %d", code)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	killedAt := time.Now()
	c.Kill(leaderIdx)
	newLeader := c.WaitLeader(15 * time.Second)
	// Writes resume: wait for acknowledgements after the kill.
	c.WaitFor(15*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < before+20 {
			return fmt.Errorf("only %d creates acknowledged after the kill", len(acked)-before)
		}
		return nil
	})
	t.Logf("writes resumed within %s of killing the leader", time.Since(killedAt).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	for _, id := range acked {
		if newLeader.State().Volume(id) == nil {
			t.Fatalf("acknowledged volume %s lost after failover", id)
		}
	}
	var live int
	c.WaitFor(60*time.Second, func() error {
		s := statuses(newLeader.State(), project)
		live = len(newLeader.State().Volumes(state.VolumeFilter{ProjectID: project}))
		if s[state.StatusAvailable] != live {
			return fmt.Errorf("statuses %v, want all %d available", s, live)
		}
		return nil
	})
	if live < len(acked) || live > len(acked)+int(ambiguous.Load()) {
		t.Fatalf("%d live volumes for %d acknowledged and %d ambiguous creates", live, len(acked), ambiguous.Load())
	}
	if n := volumeFiles(t, c.PoolDir(0)); n != live {
		t.Fatalf("%d files, %d volumes", n, live)
	}
	checkUsage(t, newLeader.State(), project)
	t.Logf("%d acknowledged volumes (+%d ambiguous answers), all available after failover", len(acked), ambiguous.Load())
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

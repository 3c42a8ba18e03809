package coordinator_test

// Cluster benchmarks for targets 2-5 of performance.md (docs/performance.md
// has the measured figures). Every benchmark runs real in-process clusters
// (internal/testcluster: Raft over TCP loopback, real Serf, local-directory
// pools) and prints its figure next to the anchor it stands for. None of
// them asserts a time: this machine is a shared VM and only ratios measured
// in one run are meaningful. Run them with `make bench` (scripts/bench.sh).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/cephtest"
	"github.com/kilnstore/kiln/internal/qemuimg/qemuimgtest"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testcluster"
	"github.com/kilnstore/kiln/lvm"
	"github.com/kilnstore/kiln/lvm/lvmtest"
	"github.com/kilnstore/kiln/nfs"
	"github.com/kilnstore/kiln/rbd"
)

// Anchors (performance.md, "Published anchors" and "Targets").
const (
	// cinderCreatesPerSec is what one Cinder scheduler accepts (Cinder
	// scheduler study, 2023).
	cinderCreatesPerSec = 15.7
	// cinderStatsInterval is how often Cinder's scheduler receives backend
	// capacity (report_driver_status / scheduler_driver_init_wait_time
	// defaults): a change can take this long to reach placement.
	cinderStatsInterval = 60 * time.Second
	// failoverTarget is target 5: writes accepted again after a leader kill.
	failoverTarget = 3 * time.Second
	// acceptClients is target 2's concurrency.
	acceptClients = 64
	benchProject  = "bench"
)

// benchHTTPClient is shared by all workers of a benchmark: keep-alive
// connections to every coordinator, enough of them for 64 clients.
func benchHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        4 * acceptClients * 3,
			MaxIdleConnsPerHost: 2 * acceptClients,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// quietTB hands a benchmark to testcluster with the cluster's log lines
// (warnings about elections and shutdowns) held back: Go keeps only the
// first 10 lines of a benchmark's output, and those should be the figures.
// The held lines are printed if the benchmark fails.
type quietTB struct {
	testing.TB
	mu    sync.Mutex
	lines []string
}

func quiet(b *testing.B) *quietTB {
	q := &quietTB{TB: b}
	b.Cleanup(func() {
		if b.Failed() {
			q.mu.Lock()
			defer q.mu.Unlock()
			for _, l := range q.lines {
				b.Log(l)
			}
		}
	})
	return q
}

func (q *quietTB) Log(args ...any) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.lines) < 10000 {
		q.lines = append(q.lines, fmt.Sprint(args...))
	}
}

// startCluster starts a test cluster whose log is held back (quietTB).
func startCluster(b *testing.B, opts testcluster.Options) *testcluster.Cluster {
	b.Helper()
	return testcluster.Start(quiet(b), opts)
}

// unlimitedQuota lifts project's volume and gigabyte limits so quota never
// refuses a benchmark create.
func unlimitedQuota(b *testing.B, base, project string) {
	b.Helper()
	code, body := call(b, http.MethodPut, base+"/v3/"+project+"/os-quota-sets/"+project, project,
		map[string]any{"quota_set": map[string]any{"volumes": -1, "gigabytes": -1, "per_volume_gigabytes": -1}})
	if code != http.StatusOK {
		b.Fatalf("quota update: %d %v", code, body)
	}
}

var createBody = []byte(`{"volume":{"size":1,"name":"bench"}}`)

// postCreate sends one create (size 1) and returns the status; the body is
// drained so the connection is reused. 0 means a transport error.
func postCreate(client *http.Client, base, project string) int {
	req, err := http.NewRequest(http.MethodPost, base+"/v3/"+project+"/volumes", bytes.NewReader(createBody))
	if err != nil {
		return 0
	}
	req.Header.Set("X-Auth-Token", "user:"+project)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// quantile returns the q-quantile (0..1, nearest rank) of laps; it sorts laps.
func quantile(laps []time.Duration, q float64) time.Duration {
	if len(laps) == 0 {
		return 0
	}
	slices.Sort(laps)
	i := int(q * float64(len(laps)))
	if i >= len(laps) {
		i = len(laps) - 1
	}
	return laps[i]
}

// benchID returns a random canonical lowercase UUID (v4).
func benchID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// leaderIndex returns the index of the current leader in c.Coordinators.
func leaderIndex(b *testing.B, c *testcluster.Cluster) int {
	b.Helper()
	l := c.WaitLeader(15 * time.Second)
	for i, s := range c.Coordinators {
		if s == l {
			return i
		}
	}
	b.Fatal("leader is not one of the cluster's coordinators")
	return -1
}

// drain waits (untimed) until no volume of project is still creating, so
// the cluster is stopped quietly rather than in the middle of dispatch.
func drain(b *testing.B, c *testcluster.Cluster, project string, timeout time.Duration) {
	b.Helper()
	err := testcluster.WaitFor(context.Background(), timeout, func() error {
		l := c.Leader()
		if l == nil {
			return fmt.Errorf("no leader")
		}
		if s := statuses(l.State(), project); s[state.StatusCreating] > 0 {
			return fmt.Errorf("still creating: %v", s)
		}
		return nil
	})
	if err != nil {
		b.Logf("volumes not all created before stopping the cluster: %v", err)
	}
}

// BenchmarkCreateAccept measures target 2: volume creates accepted (202) by
// a 3-coordinator cluster with 2 agents, from 64 concurrent clients spread
// over the 3 coordinators (followers forward to the leader), b.N creates in
// all. Accepting a create means validating it, one Raft apply (quota check,
// reservation and insert) and, on a follower, waiting for the local replica
// to apply it. Placement and the agent work run in the background on the
// leader while the clients keep sending, as they would in production; their
// completion is not part of the figure. It reports:
//
//	creates/s          accepted creates per second of wall time
//	x_cinder_15.7/s    that divided by one Cinder scheduler's 15.7 creates/s
//	                   (target >= 60)
//	p50_ms, p99_ms     accept latency of single requests (target p99 <= 50)
//	failed             requests not answered 202 (expected 0)
func BenchmarkCreateAccept(b *testing.B) {
	benchmarkCreateAccept(b, testcluster.Options{Coordinators: 3, Agents: 2})
}

// BenchmarkCreateAcceptStubAgents is BenchmarkCreateAccept with the
// coordinators' agent client answering creates at once without touching the
// agents. Placement and the two Raft applies per volume that follow the
// accept (schedule, created) still run; the agents' file creates, fsyncs and
// pool rescans do not. On this 2-vCPU machine the agents share the CPUs and
// the disk with the three coordinators; in production they run on the
// storage hosts. The difference between the two benchmarks is the cost of
// that co-location.
func BenchmarkCreateAcceptStubAgents(b *testing.B) {
	benchmarkCreateAccept(b, testcluster.Options{Coordinators: 3, Agents: 2, AgentClient: stubAgents{agentrpc.NewClient(time.Minute)}})
}

// stubAgents reports through the real agents but creates and deletes
// nothing.
type stubAgents struct{ *agentrpc.Client }

func (stubAgents) CreateVolume(_ context.Context, _, _, id string, sizeGB int64) (storage.Volume, error) {
	return storage.Volume{ID: id, SizeBytes: sizeGB * storage.GiB, Location: "/stub/volume-" + id}, nil
}

func (stubAgents) DeleteVolume(context.Context, string, string, string) error { return nil }

func benchmarkCreateAccept(b *testing.B, opts testcluster.Options) {
	c := startCluster(b, opts)
	c.WaitLeader(15 * time.Second)
	unlimitedQuota(b, c.URL(0), benchProject)
	urls := make([]string, len(c.Coordinators))
	for i := range urls {
		urls[i] = c.URL(i)
	}
	client := benchHTTPClient()
	// Warm up: open connections from every client to every coordinator.
	var wg sync.WaitGroup
	for w := 0; w < acceptClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, u := range urls {
				postCreate(client, u, benchProject)
			}
		}()
	}
	wg.Wait()

	laps := make([]time.Duration, b.N)
	var next, failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < acceptClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				code := postCreate(client, urls[i%int64(len(urls))], benchProject)
				laps[i] = time.Since(t0)
				if code != http.StatusAccepted {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	accepted := float64(int64(b.N) - failed.Load())
	rate := accepted / elapsed.Seconds()
	p50, p99 := ms(quantile(laps, 0.50)), ms(quantile(laps, 0.99))
	b.ReportMetric(rate, "creates/s")
	b.ReportMetric(rate/cinderCreatesPerSec, "x_cinder_15.7/s")
	b.ReportMetric(p50, "p50_ms")
	b.ReportMetric(p99, "p99_ms")
	b.ReportMetric(float64(failed.Load()), "failed")
	b.Logf("%d creates from %d clients over 3 coordinators: %.0f accepted/s = %.0fx Cinder's %.1f/s (target >= 1,000/s, 60x); "+
		"accept p50 %.1f ms, p99 %.1f ms (target p99 <= 50 ms); %d not accepted",
		b.N, acceptClients, rate, rate/cinderCreatesPerSec, cinderCreatesPerSec, p50, p99, failed.Load())
	drain(b, c, benchProject, time.Minute+time.Duration(b.N)*20*time.Millisecond)
}

// BenchmarkCreateToAvailable measures target 3: one client, one
// coordinator, one agent; each iteration creates a 1 GiB volume over the
// API and polls the leader's state every 200 µs until it is available. In
// the same iteration it times the raw driver operation the agent performs
// (nfs.Driver.CreateVolume of 1 GiB on a local-directory pool of the same
// file system), so both see the same machine load. It reports:
//
//	e2e_ms         median create -> available over the API
//	accept_ms      median time to the 202 (part of e2e_ms)
//	raw_ms         median raw driver create
//	overhead_ms    e2e_ms - raw_ms: what the control plane adds
//	x_raw_driver   e2e_ms / raw_ms (target <= 1.25)
//
// The local-directory driver creates a sparse file (temp file, truncate,
// fsync, rename, directory fsync), a fraction of a millisecond, while the
// control plane pays HTTP, three Raft applies (create, schedule, created)
// and an agent RPC; see docs/performance.md for what that means.
func BenchmarkCreateToAvailable(b *testing.B) {
	raw, err := nfs.New(nfs.Config{Name: "raw", Dir: filepath.Join(b.TempDir(), "raw")})
	if err != nil {
		b.Fatal(err)
	}
	benchCreateToAvailable(b, testcluster.Options{Coordinators: 1, Agents: 1}, "raw driver create (sparse file)",
		func() error { _, err := raw.CreateVolume(context.Background(), benchID(), 1); return err })
}

// BenchmarkCreateToAvailableLVM is target 3 on LVM: the agent serves a
// thick LVM pool on a loop-device VG (metadata-only where the kernel has
// no device-mapper), and the raw operation is the lvcreate the driver
// runs, executed directly with the same lvm configuration.
func BenchmarkCreateToAvailableLVM(b *testing.B) {
	// A large sparse PV: LVs are metadata only, nothing is written.
	vg := lvmtest.NewVG(b, 4<<20)
	d, err := lvm.New(context.Background(), lvm.Config{Name: "lvm", VG: vg.Name, ConfigOverride: vg.Config, VolumeClear: lvm.ClearNone})
	if err != nil {
		b.Fatal(err)
	}
	benchCreateToAvailable(b, testcluster.Options{Coordinators: 1, Agents: 1, Drivers: func(int) []agent.Driver { return []agent.Driver{d} }},
		"raw lvcreate", func() error {
			cmd := exec.Command("lvm", "lvcreate", "--config", vg.Config, "--yes", "-n", "volume-"+benchID(), "-L", "1073741824b", vg.Name)
			cmd.Env = append(os.Environ(), "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
}

// BenchmarkCreateToAvailableNFS is target 3 on the NFS driver's qcow2 mode
// (what an exported share runs): each volume is made by qemu-img with a
// chain record next to it, and the raw operation is `qemu-img create` of
// the same format and size, executed directly in the same directory.
func BenchmarkCreateToAvailableNFS(b *testing.B) {
	for _, format := range []string{"raw", "qcow2"} {
		b.Run(format, func(b *testing.B) {
			qemuimgtest.Require(b)
			dir := filepath.Join(b.TempDir(), "pool")
			d, err := nfs.New(nfs.Config{Name: "nfs", Dir: dir, Snapshots: nfs.SnapshotsQCOW2, QCOW2Volumes: format == "qcow2"})
			if err != nil {
				b.Fatal(err)
			}
			rawDir := b.TempDir()
			benchCreateToAvailable(b, testcluster.Options{Coordinators: 1, Agents: 1, Drivers: func(int) []agent.Driver { return []agent.Driver{d} }},
				"raw qemu-img create -f "+format, func() error {
					out, err := exec.Command("qemu-img", "create", "-q", "-f", format, filepath.Join(rawDir, "volume-"+benchID()), "1073741824").CombinedOutput()
					if err != nil {
						return fmt.Errorf("%v: %s", err, out)
					}
					return nil
				})
		})
	}
}

// BenchmarkCreateToAvailableRBD is target 3 on Ceph RBD: the agent serves
// a pool of a real single-node cluster (scripts/ceph.sh) through the rbd
// driver, and the raw operation is the `rbd create` the driver runs,
// executed directly as the same cephx user.
func BenchmarkCreateToAvailableRBD(b *testing.B) {
	c := cephtest.Start(b, 33320, 36809)
	// The test cluster has 2 GiB; thin images of 1 GiB each would pass
	// Cinder's default over-subscription (20x) within 40 iterations.
	d, err := rbd.New(rbd.Config{Name: "ceph", Pool: c.Pool, User: c.User, Conf: c.Conf, Keyring: c.Keyring, MaxOverSubscriptionRatio: "100000"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchCreateToAvailable(b, testcluster.Options{Coordinators: 1, Agents: 1, Drivers: func(int) []agent.Driver { return []agent.Driver{d} }},
		"raw rbd create", func() error {
			_, err := c.RunRBD(context.Background(), "create", "--size", "1024M", c.Pool+"/raw-"+benchID())
			return err
		})
}

// benchCreateToAvailable runs target 3 against a cluster started with
// opts, timing rawCreate (the driver's own operation) in every iteration.
func benchCreateToAvailable(b *testing.B, opts testcluster.Options, rawName string, rawCreate func() error) {
	c := startCluster(b, opts)
	leader := c.WaitLeader(15 * time.Second)
	base := c.URL(0)
	unlimitedQuota(b, base, benchProject)

	endToEnd := func() (accept, total time.Duration) {
		t0 := time.Now()
		code, id := createVolume(b, base, benchProject, 1)
		if code != http.StatusAccepted {
			b.Fatalf("create: %d", code)
		}
		accept = time.Since(t0)
		deadline := t0.Add(30 * time.Second)
		for {
			if v := leader.State().Volume(id); v != nil {
				switch v.Status {
				case state.StatusAvailable:
					return accept, time.Since(t0)
				case state.StatusError:
					b.Fatalf("volume %s: error: %s", id, v.ErrorMessage)
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("volume %s not available after 30 s", id)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	raw := func() time.Duration {
		t0 := time.Now()
		if err := rawCreate(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	// Warm up both paths (connections, first Raft batches, page cache).
	for range 3 {
		endToEnd()
		raw()
	}

	var e2e, accepts, raws []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, t := endToEnd()
		accepts = append(accepts, a)
		e2e = append(e2e, t)
		raws = append(raws, raw())
	}
	b.StopTimer()

	e2eMs, acceptMs, rawMs := ms(quantile(e2e, 0.5)), ms(quantile(accepts, 0.5)), ms(quantile(raws, 0.5))
	b.ReportMetric(e2eMs, "e2e_ms")
	b.ReportMetric(acceptMs, "accept_ms")
	b.ReportMetric(rawMs, "raw_ms")
	b.ReportMetric(e2eMs-rawMs, "overhead_ms")
	b.ReportMetric(e2eMs/rawMs, "x_raw_driver")
	b.Logf("create -> available: median %.2f ms end to end (%.2f ms of it to the 202), %s %.3f ms: "+
		"%.2fx the raw driver (target <= 1.25x); Rally/Cinder on Ceph: median 2,560 ms", e2eMs, acceptMs, rawName, rawMs, e2eMs/rawMs)
}

// poolFree reads free_capacity_gb of pool from get_pools?detail=true.
func poolFree(client *http.Client, base, pool string) (float64, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/v3/"+benchProject+"/scheduler-stats/get_pools?detail=true", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Auth-Token", "user:"+benchProject)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Pools []struct {
			Name         string         `json:"name"`
			Capabilities map[string]any `json:"capabilities"`
		} `json:"pools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("get_pools: %d: %w", resp.StatusCode, err)
	}
	for _, p := range out.Pools {
		if p.Name == pool {
			if f, ok := p.Capabilities["free_capacity_gb"].(float64); ok {
				return f, nil
			}
			return 0, fmt.Errorf("pool %s: free_capacity_gb %v", pool, p.Capabilities["free_capacity_gb"])
		}
	}
	return 0, fmt.Errorf("pool %s not listed", pool)
}

// waitFree polls the pool's free capacity every millisecond until cond
// holds and returns when it first did.
func waitFree(b *testing.B, client *http.Client, base, pool string, cond func(float64) bool) time.Time {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last float64
	for {
		f, err := poolFree(client, base, pool)
		if err == nil && cond(f) {
			return time.Now()
		}
		if err == nil {
			last = f
		}
		if time.Now().After(deadline) {
			b.Fatalf("pool %s: free capacity still %v after 30 s (err %v)", pool, last, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkCapacityFreshness measures target 4: the time from a change on an
// agent until the leader's API shows it. Each iteration creates a 1 GiB
// volume directly on the agent (agent RPC, as the leader's dispatcher would,
// but unknown to Raft, so only gossip can carry the change) in a 20 GiB
// thick pool (smaller than the file system's free space, so free capacity
// is total minus provisioned), then polls get_pools?detail=true on the leader every
// millisecond until free_capacity_gb (the gossiped figure placement uses)
// drops by 1. The agent re-measures and re-publishes its Serf tags right
// after every change; its 1 s StatsInterval timer is only the fallback. The
// volume is deleted afterwards and the view allowed to recover (timed
// separately). It reports:
//
//	fresh_ms      median from the start of the create RPC to the leader
//	              showing the new free capacity (includes the create itself)
//	rpc_ms        median of the create RPC alone (fallocate + fsyncs)
//	max_ms        worst iteration
//	del_ms        median from the delete RPC to the capacity coming back
//	x_cinder_60s  fresh_ms / Cinder's 60 s stats interval (target: <= 1 s,
//	              i.e. <= 0.0167)
func BenchmarkCapacityFreshness(b *testing.B) {
	const freshPoolGB = 20
	c := startCluster(b, testcluster.Options{Coordinators: 3, Agents: 1, PoolCapacityGB: freshPoolGB, Provisioning: "thick"})
	li := leaderIndex(b, c)
	base := c.URL(li)
	pools := c.Coordinators[li].State().Pools()
	if len(pools) != 1 {
		b.Fatalf("%d pools registered, want 1", len(pools))
	}
	pool := pools[0].Name
	agentAddr := c.Agents[0].RPCAddr()
	rpc := agentrpc.NewClient(30 * time.Second)
	client := benchHTTPClient()
	ctx := context.Background()
	// The view must have settled on the empty pool first.
	waitFree(b, client, base, pool, func(f float64) bool { return f > freshPoolGB-0.5 })
	before, err := poolFree(client, base, pool)
	if err != nil {
		b.Fatal(err)
	}

	var fresh, rpcs, dels []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := benchID()
		t0 := time.Now()
		if _, err := rpc.CreateVolume(ctx, agentAddr, "local", id, 1); err != nil {
			b.Fatal(err)
		}
		rpcs = append(rpcs, time.Since(t0))
		seen := waitFree(b, client, base, pool, func(f float64) bool { return f <= before-0.5 })
		fresh = append(fresh, seen.Sub(t0))

		t1 := time.Now()
		if err := rpc.DeleteVolume(ctx, agentAddr, "local", id); err != nil {
			b.Fatal(err)
		}
		back := waitFree(b, client, base, pool, func(f float64) bool { return f >= before-0.5 })
		dels = append(dels, back.Sub(t1))
	}
	b.StopTimer()

	worst := ms(slices.Max(fresh))
	freshMs, rpcMs, delMs := ms(quantile(fresh, 0.5)), ms(quantile(rpcs, 0.5)), ms(quantile(dels, 0.5))
	b.ReportMetric(freshMs, "fresh_ms")
	b.ReportMetric(rpcMs, "rpc_ms")
	b.ReportMetric(worst, "max_ms")
	b.ReportMetric(delMs, "del_ms")
	b.ReportMetric(freshMs/ms(cinderStatsInterval), "x_cinder_60s")
	b.Logf("agent change visible on the leader: median %.0f ms, max %.0f ms (create RPC %.1f ms of it; delete %.0f ms) "+
		"- target <= 1,000 ms; Cinder polls backend stats every 60 s (%.4fx)", freshMs, worst, rpcMs, delMs, freshMs/ms(cinderStatsInterval))
}

// BenchmarkFailover measures target 5 (leader part): each iteration starts
// a 3-coordinator cluster with one agent, kills the leader abruptly (no
// Serf leave, no leadership transfer) and times, from the moment the kill
// starts, until a create is accepted (202) again by a surviving
// coordinator. One client per survivor keeps sending creates, as clients
// behind a load balancer would; a request may wait inside the API (bounded
// leader wait) while no leader is known. Cluster start-up is not timed. The
// cluster uses the "local" timing profile (coordinator/node.go raftConfig,
// gossip localTiming); docs/performance.md has its numbers and what "lan"
// would give. It reports:
//
//	failover_ms   median from the kill to the first 202
//	max_ms        worst iteration
//	x_target_3s   failover_ms / 3,000 ms (target <= 1)
//
// Each iteration costs a cluster start: run with -benchtime 3x or so.
func BenchmarkFailover(b *testing.B) {
	var laps []time.Duration
	client := benchHTTPClient()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		c := startCluster(b, testcluster.Options{Coordinators: 3, Agents: 1})
		li := leaderIndex(b, c)
		unlimitedQuota(b, c.URL(li), benchProject)
		// Writes work through every coordinator before the kill.
		for j := range c.Coordinators {
			if code := postCreate(client, c.URL(j), benchProject); code != http.StatusAccepted {
				b.Fatalf("create on coordinator %d before the kill: %d", j, code)
			}
		}
		var survivors []string
		for j := range c.Coordinators {
			if j != li {
				survivors = append(survivors, c.URL(j))
			}
		}

		b.StartTimer()
		t0 := time.Now()
		c.Kill(li)
		killed := time.Since(t0)
		var (
			once  sync.Once
			first time.Duration
			done  = make(chan struct{})
			wg    sync.WaitGroup
		)
		for _, u := range survivors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					if postCreate(client, u, benchProject) == http.StatusAccepted {
						once.Do(func() { first = time.Since(t0); close(done) })
						return
					}
					if time.Since(t0) > 60*time.Second {
						once.Do(func() { first = -1; close(done) })
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
		<-done
		b.StopTimer()
		wg.Wait()
		if first < 0 {
			b.Fatalf("no create accepted within 60 s of killing the leader")
		}
		laps = append(laps, first)
		b.Logf("iteration %d: leader coord%d killed (Shutdown took %.0f ms); writes accepted again after %.0f ms",
			i, li, ms(killed), ms(first))
		drain(b, c, benchProject, 30*time.Second)
		c.Stop() // also registered with b.Cleanup; Stop is idempotent
	}

	worst := ms(slices.Max(laps))
	med := ms(quantile(laps, 0.5))
	b.ReportMetric(med, "failover_ms")
	b.ReportMetric(worst, "max_ms")
	b.ReportMetric(med/ms(failoverTarget), "x_target_3s")
	b.Logf("leader kill -> writes accepted again: median %.0f ms, max %.0f ms over %d kills (target <= 3,000 ms; "+
		"\"local\" timing profile)", med, worst, len(laps))
}

package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator"
	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testcluster"
)

// faultyClient wraps the real agent client and injects failures for
// chosen agent addresses.
type faultyClient struct {
	*agentrpc.Client // calls not overridden below pass through
	inner            *agentrpc.Client
	mu               sync.Mutex
	// createErr returns the error to inject for a create on addr (nil = pass through).
	createErr func(addr string) error
	deleteErr func(addr string) error
	creates   map[string]int // by addr
}

func newFaulty() *faultyClient {
	c := agentrpc.NewClient(10 * time.Second)
	return &faultyClient{Client: c, inner: c, creates: map[string]int{}}
}

func (f *faultyClient) Report(ctx context.Context, addr string) (agentrpc.Report, error) {
	return f.inner.Report(ctx, addr)
}

func (f *faultyClient) CreateVolume(ctx context.Context, addr, pool, id string, size int64) (storage.Volume, error) {
	f.mu.Lock()
	f.creates[addr]++
	inject := f.createErr
	f.mu.Unlock()
	if inject != nil {
		if err := inject(addr); err != nil {
			return storage.Volume{}, err
		}
	}
	return f.inner.CreateVolume(ctx, addr, pool, id, size)
}

func (f *faultyClient) DeleteVolume(ctx context.Context, addr, pool, id string) error {
	f.mu.Lock()
	inject := f.deleteErr
	f.mu.Unlock()
	if inject != nil {
		if err := inject(addr); err != nil {
			return err
		}
	}
	return f.inner.DeleteVolume(ctx, addr, pool, id)
}

func (f *faultyClient) set(create, del func(addr string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.createErr, f.deleteErr = create, del
}

var _ coordinator.AgentClient = (*faultyClient)(nil)

func waitStatus(t *testing.T, c *testcluster.Cluster, id string, want string) *state.Volume {
	t.Helper()
	var v *state.Volume
	c.WaitFor(30*time.Second, func() error {
		l := c.Leader()
		if l == nil {
			return errors.New("no leader")
		}
		v = l.State().Volume(id)
		if v == nil || v.Status != want {
			return fmt.Errorf("volume %s: %+v", id, v)
		}
		return nil
	})
	return v
}

func TestDefiniteAgentFailureReschedulesToAnotherPool(t *testing.T) {
	fc := newFaulty()
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 2, AgentClient: fc})
	bad := c.Agents[0].RPCAddr()
	fc.set(func(addr string) error {
		if addr == bad {
			return &agentrpc.Error{Status: 500, Code: agentrpc.CodeInternal, Message: "disk on fire"}
		}
		return nil
	}, nil)
	for i := 0; i < 4; i++ {
		_, id := createVolume(t, c.URL(0), "p", 1)
		v := waitStatus(t, c, id, state.StatusAvailable)
		if !strings.HasPrefix(v.Pool, "agent1@") {
			t.Fatalf("volume landed on %s", v.Pool)
		}
	}
	if n := volumeFiles(t, c.PoolDir(0)); n != 0 {
		t.Fatalf("failing agent holds %d files", n)
	}
}

func TestAllAttemptsFailGivesErrorWithReasonAndReleasesQuota(t *testing.T) {
	fc := newFaulty()
	fc.set(func(string) error {
		return &agentrpc.Error{Status: 507, Code: agentrpc.CodeNoSpace, Message: "pool full"}
	}, nil)
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 2, AgentClient: fc})
	_, id := createVolume(t, c.URL(0), "p", 2)
	v := waitStatus(t, c, id, state.StatusError)
	if v.ConsumesQuota || len(v.Tried) != 2 || !strings.Contains(v.ErrorMessage, "pool full") || !strings.Contains(v.ErrorMessage, "already tried") {
		t.Fatalf("error volume: %+v", v)
	}
	checkUsage(t, c.Leader().State(), "p")
	code, body := call(t, http.MethodGet, c.URL(0)+"/v3/p/volumes/"+id, "p", nil)
	if code != http.StatusOK || !strings.Contains(fmt.Sprint(body["volume"].(map[string]any)["kiln:error"]), "pool full") {
		t.Fatalf("show of error volume: %d %v", code, body)
	}
	// Deleting it removes it at once: nothing exists on a backend.
	if code, _ := call(t, http.MethodDelete, c.URL(0)+"/v3/p/volumes/"+id, "p", nil); code != http.StatusAccepted {
		t.Fatalf("delete: %d", code)
	}
	c.WaitFor(10*time.Second, func() error {
		if c.Leader().State().Volume(id) != nil {
			return errors.New("still there")
		}
		return nil
	})
}

func TestNoValidPoolExplainsEveryPool(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 2, PoolCapacityGB: 5, Provisioning: "thick"})
	code, body := call(t, http.MethodPost, c.URL(0)+"/v3/p/volumes", "p", map[string]any{"volume": map[string]any{"size": 8}})
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %v", code, body)
	}
	id := body["volume"].(map[string]any)["id"].(string)
	v := waitStatus(t, c, id, state.StatusError)
	for _, want := range []string{"agent0@local#local: capacity", "agent1@local#local: capacity", "< 8 GiB requested"} {
		if !strings.Contains(v.ErrorMessage, want) {
			t.Fatalf("reason %q lacks %q", v.ErrorMessage, want)
		}
	}
	// A type that names a backend no pool has.
	call(t, http.MethodPost, c.URL(0)+"/v3/p/types", "p", map[string]any{"volume_type": map[string]any{
		"name": "ssd", "extra_specs": map[string]string{"volume_backend_name": "ssd"}}})
	_, body = call(t, http.MethodPost, c.URL(0)+"/v3/p/volumes", "p", map[string]any{"volume": map[string]any{"size": 1, "volume_type": "ssd"}})
	v = waitStatus(t, c, body["volume"].(map[string]any)["id"].(string), state.StatusError)
	if !strings.Contains(v.ErrorMessage, "volume_backend_name") {
		t.Fatalf("reason %q does not name the backend mismatch", v.ErrorMessage)
	}
}

func TestAgentFailureTakesItsPoolsOutOfPlacement(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 2})
	c.Agents[1].Shutdown() // abrupt: no Serf leave
	c.WaitFor(15*time.Second, func() error {
		_, body := call(t, http.MethodGet, c.URL(0)+"/v3/p/os-services?binary=cinder-volume", "p", nil)
		b, _ := json.Marshal(body)
		if !strings.Contains(string(b), `"host":"agent1"`) || !strings.Contains(string(b), `"state":"down"`) {
			return fmt.Errorf("services: %s", b)
		}
		return nil
	})
	for i := 0; i < 5; i++ {
		_, id := createVolume(t, c.URL(0), "p", 1)
		if v := waitStatus(t, c, id, state.StatusAvailable); !strings.HasPrefix(v.Pool, "agent0@") {
			t.Fatalf("volume placed on the dead agent's pool %s", v.Pool)
		}
	}
}

func TestUnreachableAgentNeverDoubleCreatesAndTimesOut(t *testing.T) {
	fc := newFaulty()
	c := testcluster.Start(t, testcluster.Options{Coordinators: 1, Agents: 2, AgentClient: fc, TaskTimeout: 3 * time.Second})
	// Every call to either agent fails ambiguously (as a timeout would).
	ambiguous := func(string) error { return errors.New("connection reset by peer") }
	fc.set(ambiguous, ambiguous)
	_, id := createVolume(t, c.URL(0), "p", 1)
	v := waitStatus(t, c, id, state.StatusError)
	if len(v.Tried) != 1 {
		t.Fatalf("an ambiguous failure moved the volume to another pool: tried %v", v.Tried)
	}
	if !strings.Contains(v.ErrorMessage, "did not complete within") || v.ConsumesQuota {
		t.Fatalf("timed-out volume: %+v", v)
	}
	checkUsage(t, c.Leader().State(), "p")
}

func TestPeersJSONRecovery(t *testing.T) {
	dir := t.TempDir()
	start := func() *coordinator.Server {
		s, err := coordinator.Start(coordinator.Config{NodeName: "solo", DataDir: dir, RaftAddr: "127.0.0.71:8778",
			SerfAddr: "127.0.0.71:0", APIAddr: "127.0.0.71:0", Timing: "local", Logger: testcluster.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := testcluster.WaitFor(context.Background(), 15*time.Second, func() error {
			if !s.IsLeader() {
				return errors.New("not leader")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	if err := s.Apply(context.Background(), state.CreateType{Type: state.VolumeType{ID: "55555555-5555-4555-8555-555555555555", Name: "saved", CreatedAt: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	peers := filepath.Join(dir, "raft", "peers.json")
	if err := os.WriteFile(peers, []byte(`[{"id":"solo","address":"127.0.0.71:8778"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	s = start()
	defer s.Shutdown()
	if s.State().TypeByName("saved") == nil {
		t.Fatal("state lost in recovery")
	}
	if _, err := os.Stat(peers); !os.IsNotExist(err) {
		t.Fatal("peers.json not removed after recovery")
	}
	// A malformed peers.json stops the start with a clear error.
	s.Shutdown()
	_ = os.WriteFile(peers, []byte(`[{"id":""}]`), 0o600)
	_, err := coordinator.Start(coordinator.Config{NodeName: "solo", DataDir: dir, RaftAddr: "127.0.0.71:8778",
		SerfAddr: "127.0.0.71:0", APIAddr: "127.0.0.71:0", Timing: "local", Logger: testcluster.Logger(t)})
	if err == nil || !strings.Contains(err.Error(), "peers.json") {
		t.Fatalf("malformed peers.json: %v", err)
	}
}

package agent_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

const id1 = "0a1b2c3d-0000-4000-8000-000000000001"

func startAgent(t *testing.T, pools ...string) (*agent.Agent, string) {
	t.Helper()
	dir := t.TempDir()
	var ds []agent.Driver
	for _, p := range pools {
		d, err := nfs.New(nfs.Config{Name: p, Dir: filepath.Join(dir, p), CapacityGB: 10, Provisioning: "thick"})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	a, err := agent.Start(agent.Config{Name: "a1", RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0",
		Timing: "local", Drivers: ds, Logger: testLogger(t, nil), StatsInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	return a, dir
}

func TestAgentRPCCreateDeleteIdempotent(t *testing.T) {
	a, dir := startAgent(t, "p1")
	c := agentrpc.NewClient(5 * time.Second)
	ctx := agentrpc.WithRequestID(context.Background(), "req-test")
	rep, err := c.Report(ctx, a.RPCAddr())
	if err != nil || rep.Agent != "a1" || len(rep.Pools) != 1 || rep.Pools[0].Info.Name != "p1" || rep.Pools[0].Stats.TotalGB != 10 {
		t.Fatalf("report = %+v, %v", rep, err)
	}
	v, err := c.CreateVolume(ctx, a.RPCAddr(), "p1", id1, 2)
	if err != nil || v.ID != id1 || v.SizeBytes != 2*storage.GiB {
		t.Fatalf("create = %+v, %v", v, err)
	}
	if _, err := c.CreateVolume(ctx, a.RPCAddr(), "p1", id1, 2); err != nil {
		t.Fatalf("repeated create: %v", err)
	}
	if _, err := c.CreateVolume(ctx, a.RPCAddr(), "p1", id1, 3); !errors.Is(err, storage.ErrExists) || !agentrpc.IsDefinite(err) {
		t.Fatalf("create with another size: %v", err)
	}
	vols, err := c.ListVolumes(ctx, a.RPCAddr(), "p1")
	if err != nil || len(vols) != 1 {
		t.Fatalf("list = %v, %v", vols, err)
	}
	if err := c.DeleteVolume(ctx, a.RPCAddr(), "p1", id1); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, a.RPCAddr(), "p1", id1); err != nil {
		t.Fatalf("delete of a missing volume must succeed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "p1", "volume-"+id1)); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
}

func TestAgentRPCRejectsBadInput(t *testing.T) {
	a, dir := startAgent(t, "p1")
	c := agentrpc.NewClient(5 * time.Second)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		pool, id string
		size     int64
		want     error
	}{
		"unknown pool":  {"nope", id1, 1, storage.ErrNotFound},
		"uppercase id":  {"p1", strings.ToUpper(id1), 1, storage.ErrInvalid},
		"traversal id":  {"p1", "..%2F..%2Fetc", 1, storage.ErrInvalid},
		"zero size":     {"p1", id1, 0, storage.ErrInvalid},
		"negative size": {"p1", id1, -1, storage.ErrInvalid},
		"too big":       {"p1", id1, storage.MaxVolumeGiB + 1, storage.ErrInvalid},
		"no space":      {"p1", id1, 11, storage.ErrNoSpace},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.CreateVolume(ctx, a.RPCAddr(), tc.pool, tc.id, tc.size)
			if !errors.Is(err, tc.want) || !agentrpc.IsDefinite(err) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Malformed and unknown-field bodies.
	for _, body := range []string{`{`, `{"size_gb":"2"}`, `{"size_gb":1,"extra":true}`} {
		req, _ := http.NewRequest(http.MethodPut, "http://"+a.RPCAddr()+"/v1/pools/p1/volumes/"+id1, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("body %s: status %d", body, resp.StatusCode)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "p1", "*")); len(files) != 0 {
		t.Fatalf("bad requests left files: %v", files)
	}
}

func TestAgentSerializesPerVolumeAndPublishesCapacity(t *testing.T) {
	a, _ := startAgent(t, "p1", "p2")
	c := agentrpc.NewClient(5 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := c.CreateVolume(context.Background(), a.RPCAddr(), "p1", id1, 1); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if err := c.DeleteVolume(context.Background(), a.RPCAddr(), "p1", id1); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent create/delete of one ID: %v", err)
	}
	// A member watching the agent sees capacity change after a create.
	if _, err := c.CreateVolume(context.Background(), a.RPCAddr(), "p2", id1, 4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		rep, err := c.Report(context.Background(), a.RPCAddr())
		if err != nil {
			return err
		}
		for _, p := range rep.Pools {
			if p.Info.Name == "p2" && p.Stats.FreeGB == 6 && p.Stats.Volumes == 1 {
				return nil
			}
		}
		return errors.New("capacity not updated")
	})
}

func TestAgentConfigValidation(t *testing.T) {
	d, err := nfs.New(nfs.Config{Name: "p1", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]agent.Config{
		"bad name":  {Name: "bad name", RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0", Drivers: []agent.Driver{d}},
		"no pools":  {Name: "a", RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0"},
		"dup pools": {Name: "a", RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0", Drivers: []agent.Driver{d, d}},
		"bad zone":  {Name: "a", Zone: "z/1", RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0", Drivers: []agent.Driver{d}},
		"bad serf":  {Name: "a", RPCAddr: "127.0.0.1:0", SerfAddr: "nowhere", Drivers: []agent.Driver{d}},
		"bad rpc":   {Name: "a", RPCAddr: "127.0.0.1:99999", SerfAddr: "127.0.0.1:0", Drivers: []agent.Driver{d}},
	} {
		t.Run(name, func(t *testing.T) {
			if a, err := agent.Start(cfg); err == nil {
				a.Shutdown()
				t.Fatal("started with an invalid config")
			}
		})
	}
}

package agent_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

// slowCopy is a real nfs pool whose CloneVolume reports progress half-way
// and then waits, so the test can watch a copy in flight.
type slowCopy struct {
	*nfs.Driver
	halfway chan struct{}
	release chan struct{}
}

func (s *slowCopy) CloneVolume(ctx context.Context, id, sourceID string, sizeGiB int64) (storage.Volume, error) {
	storage.Progress(ctx)(512<<20, 1<<30)
	close(s.halfway)
	<-s.release
	return s.Driver.CloneVolume(ctx, id, sourceID, sizeGiB)
}

func TestAgentReportsCopyProgress(t *testing.T) {
	d, err := nfs.New(nfs.Config{Name: "p1", Dir: filepath.Join(t.TempDir(), "p1")})
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowCopy{Driver: d, halfway: make(chan struct{}), release: make(chan struct{})}
	a, err := agent.Start(agent.Config{Name: "a1", RPCAddr: "127.0.0.1:0", SerfAddr: "127.0.0.1:0",
		Timing: "local", Drivers: []agent.Driver{slow}, Logger: testLogger(t, nil), StatsInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	ctx := context.Background()
	c := agentrpc.NewClient(5 * time.Second)
	addr := a.RPCAddr()
	const src, dst = "0a1b2c3d-0000-4000-8000-0000000000a1", "0a1b2c3d-0000-4000-8000-0000000000a2"
	if _, err := c.CreateVolume(ctx, addr, "p1", src, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Progress(ctx, addr, "p1", dst); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("progress before any copy = %v, want not found", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateVolumeFrom(ctx, addr, "p1", dst, 1, "", src)
		done <- err
	}()
	<-slow.halfway
	p, err := c.Progress(ctx, addr, "p1", dst)
	if err != nil || p.DoneBytes != 512<<20 || p.TotalBytes != 1<<30 || p.Percent() != 50 {
		t.Fatalf("progress half-way = %+v, %v; want 50%%", p, err)
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Progress(ctx, addr, "p1", dst); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("progress after the copy = %v, want not found", err)
	}
	if _, err := c.Progress(ctx, addr, "p1", "../x"); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("progress of a bad ID = %v, want invalid", err)
	}
}

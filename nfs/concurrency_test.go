//go:build linux

package nfs_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

// TestConcurrentCreateDeleteOverlappingIDs runs 50 goroutines creating and
// deleting a handful of shared IDs while others list, measure and clean up.
// Each ID always gets the same size, so every create and delete must
// succeed; a reader must never see a partial or foreign volume; and the end
// state must agree between the driver, the directory and a final
// create/delete round.
func TestConcurrentCreateDeleteOverlappingIDs(t *testing.T) {
	const (
		workers = 50
		ids     = 6
		rounds  = 12
	)
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	sizeOf := func(i int) int64 { return int64(i%3 + 1) }
	known := map[string]int64{}
	for i := range ids {
		known[volID(i)] = sizeOf(i) * gib
	}
	// A volume the workers conflict with: always ErrExists, never touched.
	conflict := volID(ids)
	if _, err := d.CreateVolume(ctx, conflict, 1); err != nil {
		t.Fatal(err)
	}
	known[conflict] = gib

	var wg sync.WaitGroup
	var creates, deletes, conflicts atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				i := rng.IntN(ids)
				id := volID(i)
				switch op := rng.IntN(10); {
				case op < 4:
					vol, err := d.CreateVolume(ctx, id, sizeOf(i))
					if err != nil {
						t.Errorf("CreateVolume(%s): %v", id, err)
						return
					}
					if vol.SizeBytes != sizeOf(i)*gib {
						t.Errorf("CreateVolume(%s) = %+v", id, vol)
					}
					creates.Add(1)
				case op < 8:
					if err := d.DeleteVolume(ctx, id); err != nil {
						t.Errorf("DeleteVolume(%s): %v", id, err)
						return
					}
					deletes.Add(1)
				case op < 9:
					if _, err := d.CreateVolume(ctx, conflict, 2); !errors.Is(err, storage.ErrExists) {
						t.Errorf("conflicting create: err = %v, want ErrExists", err)
						return
					}
					conflicts.Add(1)
				default:
					if _, err := d.Cleanup(ctx); err != nil {
						t.Errorf("Cleanup: %v", err)
						return
					}
				}
			}
		}()
	}

	// Readers run until the workers are done.
	done := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			vols, err := d.ListVolumes(ctx)
			if err != nil {
				t.Errorf("ListVolumes: %v", err)
				return
			}
			for _, v := range vols {
				if want, ok := known[v.ID]; !ok || v.SizeBytes != want {
					t.Errorf("ListVolumes saw %+v, want one of the known volumes at full size", v)
					return
				}
			}
			st, err := d.Stats(ctx)
			if err != nil {
				t.Errorf("Stats: %v", err)
				return
			}
			if st.Volumes < 1 || st.Volumes > ids+1 {
				t.Errorf("Stats counted %d volumes, want 1..%d", st.Volumes, ids+1)
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	readers.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d creates, %d deletes, %d conflicting creates", creates.Load(), deletes.Load(), conflicts.Load())

	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left after the storm: %q", tmp)
	}
	if n := nfs.HeldIDs(d); n != 0 {
		t.Errorf("%d volume locks still held or awaited", n)
	}

	// The driver's view, the directory and the stats agree.
	vols, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fromDir []string
	for _, name := range names(t, dir) {
		fromDir = append(fromDir, name[len("volume-"):])
	}
	if !equalStrings(volumeIDs(vols), fromDir) {
		t.Errorf("ListVolumes = %q, directory holds %q", volumeIDs(vols), fromDir)
	}
	var provisioned int64
	for _, v := range vols {
		provisioned += v.SizeBytes
		if size, _ := fileInfo(t, v.Location); size != known[v.ID] {
			t.Errorf("%s has %d bytes, want %d", v.ID, size, known[v.ID])
		}
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Volumes != len(vols) || st.ProvisionedGB != float64(provisioned)/float64(gib) {
		t.Errorf("Stats = %+v, want %d volumes, %d bytes provisioned", st, len(vols), provisioned)
	}

	// Every ID still behaves: create is idempotent, delete empties the pool.
	for i := range ids {
		if _, err := d.CreateVolume(ctx, volID(i), sizeOf(i)); err != nil {
			t.Errorf("final create of %s: %v", volID(i), err)
		}
	}
	for id := range known {
		if err := d.DeleteVolume(ctx, id); err != nil {
			t.Errorf("final delete of %s: %v", id, err)
		}
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("pool directory after final deletes = %q", got)
	}
}

// TestThickConcurrentCreatesNeverExceedCapacity races creates of distinct
// volumes of mixed sizes, and deletes of half of those that fit, against a
// 5 GiB thick pool. A watcher checks the capacity rule throughout.
func TestThickConcurrentCreatesNeverExceedCapacity(t *testing.T) {
	const (
		capGiB  = 5
		workers = 40
		rounds  = 3
	)
	ctx := context.Background()
	requireAvail(t, t.TempDir(), (capGiB+4)*gib)
	d, dir := newDriver(t, func(c *nfs.Config) { c.Provisioning = "thick"; c.CapacityGB = capGiB })

	sizeOf := func(w int) int64 { return int64(w%3 + 1) }
	var wg sync.WaitGroup
	var created, refused atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				n := w*rounds + r
				id := volID(n)
				_, err := d.CreateVolume(ctx, id, sizeOf(n))
				switch {
				case errors.Is(err, storage.ErrNoSpace):
					refused.Add(1)
					continue
				case err != nil:
					t.Errorf("CreateVolume(%s): %v", id, err)
					return
				}
				created.Add(1)
				// Half of the winners give their space back at once.
				if n%2 == 0 {
					if err := d.DeleteVolume(ctx, id); err != nil {
						t.Errorf("DeleteVolume(%s): %v", id, err)
						return
					}
				}
			}
		}()
	}

	done := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		for {
			vols, err := d.ListVolumes(ctx)
			if err != nil {
				t.Errorf("ListVolumes: %v", err)
				return
			}
			var sum int64
			for _, v := range vols {
				sum += v.SizeBytes
			}
			if sum > capGiB*gib {
				t.Errorf("pool holds %d GiB, capacity is %d GiB", sum/gib, capGiB)
				return
			}
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	wg.Wait()
	close(done)
	watcher.Wait()

	if created.Load()+refused.Load() != workers*rounds {
		t.Fatalf("%d created + %d refused != %d attempts", created.Load(), refused.Load(), workers*rounds)
	}
	if created.Load() == 0 || refused.Load() == 0 {
		t.Errorf("%d created, %d refused: the race did not exercise the limit", created.Load(), refused.Load())
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ProvisionedGB > capGiB || st.FreeGB != capGiB-st.ProvisionedGB {
		t.Errorf("Stats = %+v, want provisioned <= %d and free = cap - provisioned", st, capGiB)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
	t.Logf("%d created, %d refused, %.0f GiB provisioned", created.Load(), refused.Load(), st.ProvisionedGB)
}

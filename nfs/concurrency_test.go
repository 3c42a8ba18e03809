//go:build linux

package nfs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// TestConcurrentLifecycleOverlappingIDs races snapshots, clones, creates
// from snapshots, extends, reverts and deletes over a few shared IDs. Every
// snapshot k and clone k derive from base volume k%3, and base volumes only
// ever hold their own marks, so whatever the interleaving every file must
// carry its base's data; and every operation must either succeed or fail
// with the one error its race allows.
func TestConcurrentLifecycleOverlappingIDs(t *testing.T) {
	const (
		workers  = 40
		rounds   = 15
		bases    = 3
		derived  = 6
		cloneGiB = 8
	)
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	base := func(b int) string { return volID(100 + b) }
	snap := func(k int) string { return snapID(k) }
	clone := func(k int) string { return volID(200 + k) }
	marks := func(b int) []mark { return marksFor(byte(10*b+1), gib) }
	for b := range bases {
		v, err := d.CreateVolume(ctx, base(b), 1)
		if err != nil {
			t.Fatal(err)
		}
		writeMarks(t, v.Location, marks(b))
	}

	var wg sync.WaitGroup
	var ops [9]atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range rounds {
				k := rng.IntN(derived)
				b := k % bases
				op := rng.IntN(len(ops))
				var err error
				allowed := func(error) bool { return false }
				switch op {
				case 0:
					var s storage.Snapshot
					s, err = d.CreateSnapshot(ctx, snap(k), base(b))
					if err == nil && (s.VolumeID != base(b) || s.SizeBytes < gib) {
						t.Errorf("CreateSnapshot = %+v", s)
					}
				case 1:
					err = d.DeleteSnapshot(ctx, snap(k))
				case 2:
					_, err = d.CloneVolume(ctx, clone(k), base(b), cloneGiB)
				case 3:
					_, err = d.CreateVolumeFromSnapshot(ctx, clone(k), snap(k), cloneGiB)
					allowed = func(err error) bool { return errors.Is(err, storage.ErrNotFound) }
				case 4:
					err = d.DeleteVolume(ctx, clone(k))
				case 5:
					err = d.ExtendVolume(ctx, base(b), 1+rng.Int64N(6))
					allowed = func(err error) bool { return errors.Is(err, storage.ErrInvalid) }
				case 6:
					err = d.RevertToSnapshot(ctx, base(b), snap(k))
					allowed = func(err error) bool { return errors.Is(err, storage.ErrNotFound) }
				case 7:
					var snaps []storage.Snapshot
					snaps, err = d.ListSnapshots(ctx)
					for _, s := range snaps {
						var n int
						if _, serr := fmt.Sscanf(s.ID[:8], "%08x", &n); serr != nil || s.VolumeID != base((n-1000)%bases) {
							t.Errorf("ListSnapshots saw %+v", s)
						}
					}
				case 8:
					_, err = d.Cleanup(ctx)
				}
				if err != nil && !allowed(err) {
					t.Errorf("op %d on %d: %v", op, k, err)
					return
				}
				ops[op].Add(1)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var counts []int64
	for i := range ops {
		counts = append(counts, ops[i].Load())
	}
	t.Logf("operations by kind (snapshot, delete snapshot, clone, from snapshot, delete clone, extend, revert, list, cleanup): %v", counts)

	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
	if n := nfs.HeldIDs(d); n != 0 {
		t.Errorf("%d locks still held or awaited", n)
	}
	// Every file carries its base's data; every snapshot has its sidecar and
	// every sidecar its snapshot.
	files := map[string]bool{}
	for _, n := range names(t, dir) {
		files[n] = true
	}
	for n := range files {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(n, "snapshot-"), ".meta"); ok && !files["snapshot-"+id] {
			t.Errorf("sidecar %s without its snapshot", n)
		}
	}
	for b := range bases {
		checkMarks(t, "base volume", filepath.Join(dir, "volume-"+base(b)), marks(b))
	}
	for k := range derived {
		if files["snapshot-"+snap(k)] {
			if !files["snapshot-"+snap(k)+".meta"] {
				t.Errorf("snapshot %s without its sidecar", snap(k))
			}
			checkMarks(t, "snapshot", filepath.Join(dir, "snapshot-"+snap(k)), marks(k%bases))
		}
		if files["volume-"+clone(k)] {
			p := filepath.Join(dir, "volume-"+clone(k))
			checkMarks(t, "clone", p, marks(k%bases))
			if size, _ := fileInfo(t, p); size != cloneGiB*gib {
				t.Errorf("clone %s has %d bytes", clone(k), size)
			}
		}
	}
	vols, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := d.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols)+2*len(snaps) != len(files) {
		t.Errorf("%d volumes and %d snapshots listed, directory holds %q", len(vols), len(snaps), names(t, dir))
	}
	for _, s := range snaps {
		if _, err := d.CreateSnapshot(ctx, s.ID, s.VolumeID); err != nil {
			t.Errorf("repeating the create of surviving snapshot %s: %v", s.ID, err)
		}
	}
}

// TestThickConcurrentLifecycleNeverExceedsCapacity races snapshots, clones
// and extends against a 6 GiB thick pool: at no time may the volumes and
// snapshots together exceed it, and each operation either succeeds or is
// refused with ErrNoSpace.
func TestThickConcurrentLifecycleNeverExceedsCapacity(t *testing.T) {
	const (
		capGiB  = 6
		workers = 30
		rounds  = 4
	)
	ctx := context.Background()
	requireAvail(t, t.TempDir(), (capGiB+6)*gib)
	d, dir := newDriver(t, func(c *nfs.Config) { c.Provisioning = "thick"; c.CapacityGB = capGiB })
	src, err := d.CreateVolume(ctx, volID(0), 1)
	if err != nil {
		t.Fatal(err)
	}
	writeMarks(t, src.Location, marksFor(5, gib))

	var wg sync.WaitGroup
	var done, refused atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				n := w*rounds + r + 1
				count := func(err error) bool {
					switch {
					case errors.Is(err, storage.ErrNoSpace):
						refused.Add(1)
					case err != nil:
						t.Errorf("operation %d: %v", n, err)
						return false
					default:
						done.Add(1)
					}
					return err == nil
				}
				var err error
				switch n % 3 {
				case 0:
					_, err = d.CreateSnapshot(ctx, snapID(n), src.ID)
				case 1:
					_, err = d.CloneVolume(ctx, volID(n), src.ID, 1)
				default:
					// A create that fits is followed by an extend that may not.
					_, err = d.CreateVolume(ctx, volID(n), 1)
					if err == nil {
						done.Add(1)
						err = d.ExtendVolume(ctx, volID(n), 2)
					}
				}
				if !count(err) && t.Failed() {
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		for {
			var sum int64
			for _, n := range names(t, dir) {
				if strings.HasPrefix(n, "volume-") || (strings.HasPrefix(n, "snapshot-") && !strings.HasSuffix(n, ".meta")) {
					if fi, err := os.Stat(filepath.Join(dir, n)); err == nil {
						sum += fi.Size()
					}
				}
			}
			if sum > capGiB*gib {
				t.Errorf("pool holds %.2f GiB of volumes and snapshots, capacity is %d GiB", float64(sum)/float64(gib), capGiB)
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	wg.Wait()
	close(stop)
	watcher.Wait()
	if done.Load() == 0 || refused.Load() == 0 {
		t.Errorf("%d done, %d refused: the race did not exercise the limit", done.Load(), refused.Load())
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.FreeGB < 0 || st.FreeGB > 1 {
		t.Errorf("Stats after the race = %+v, want less than 1 GiB free", st)
	}
	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
	t.Logf("%d done, %d refused", done.Load(), refused.Load())
}

// TestThickConcurrentCopiesFillPoolExactly runs exactly as many creates,
// clones and snapshots of 1 GiB as a thick pool has room for, from several
// workers, so that operations keep arriving while others finish: every one
// must succeed, and the pool is then full. Each file lingers a moment
// between appearing and giving its claim back; a free-space check that saw
// it then would count it twice and refuse an operation that fits.
func TestThickConcurrentCopiesFillPoolExactly(t *testing.T) {
	const (
		capGiB  = 16
		sources = 4
		ops     = capGiB - sources
		workers = 6
	)
	ctx := context.Background()
	requireAvail(t, t.TempDir(), (capGiB+4)*gib)
	d, dir := newDriver(t, func(c *nfs.Config) { c.Provisioning = "thick"; c.CapacityGB = capGiB })
	nfs.SetPublished(d, func() { time.Sleep(5 * time.Millisecond) })
	for i := range sources {
		src, err := d.CreateVolume(ctx, volID(i), 1)
		if err != nil {
			t.Fatal(err)
		}
		writeMarks(t, src.Location, marksFor(byte(9+i), gib))
	}

	queue := make(chan int, ops)
	for n := 1; n <= ops; n++ {
		queue <- n
	}
	close(queue)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range queue {
				// Copies of one source serialize on its lock; spread them.
				src := volID(n % sources)
				var err error
				switch n % 3 {
				case 0:
					_, err = d.CreateSnapshot(ctx, snapID(n), src)
				case 1:
					_, err = d.CloneVolume(ctx, volID(100+n), src, 1)
				default:
					_, err = d.CreateVolume(ctx, volID(100+n), 1)
				}
				if err != nil {
					t.Errorf("operation %d of %d, which fits: %v", n, ops, err)
				}
			}
		}()
	}
	wg.Wait()
	if st, err := d.Stats(ctx); err != nil || st.FreeGB != 0 {
		t.Errorf("Stats = %+v, %v; want a full pool", st, err)
	}
	if _, err := d.CloneVolume(ctx, volID(200), volID(0), 1); !errors.Is(err, storage.ErrNoSpace) {
		t.Errorf("clone into the full pool: err = %v, want ErrNoSpace", err)
	}
	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
}

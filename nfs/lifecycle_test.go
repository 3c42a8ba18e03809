//go:build linux

package nfs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
	"github.com/kilnstore/kiln/nfs"
)

const mib = int64(1) << 20

// mark is data written at an offset of a volume file.
type mark struct {
	off  int64
	data []byte
}

// pattern returns n bytes that no other seed produces and none of which is
// zero, so a copy that drops or shifts a block is caught.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(int(seed)*7+i*13)%251 + 1
	}
	return b
}

// marksFor writes distinct patterns into a volume of size bytes: at the
// start, unaligned across a block boundary, in the middle, in the last
// block and in the very last bytes.
func marksFor(seed byte, size int64) []mark {
	return []mark{
		{0, pattern(seed, 4096)},
		{mib + 123, pattern(seed+1, 10_000)},
		{size / 2, pattern(seed+2, 64<<10)},
		{size - 3*4096, pattern(seed+3, 4096)},
		{size - 7, pattern(seed+4, 7)},
	}
}

func writeMarks(t *testing.T, path string, marks []mark) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, m := range marks {
		if _, err := f.WriteAt(m.data, m.off); err != nil {
			t.Fatal(err)
		}
	}
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %d bytes of %s at %d: %v", n, path, off, err)
	}
	return b
}

// checkMarks fails unless path holds every mark.
func checkMarks(t *testing.T, what, path string, marks []mark) {
	t.Helper()
	for _, m := range marks {
		if got := readAt(t, path, m.off, len(m.data)); !bytes.Equal(got, m.data) {
			t.Errorf("%s: %d bytes at offset %d differ from what was written (first bytes %v, want %v)",
				what, len(m.data), m.off, got[:min(8, len(got))], m.data[:min(8, len(m.data))])
		}
	}
}

// checkZero fails unless path reads as zeros over [off, off+n).
func checkZero(t *testing.T, what, path string, off int64, n int) {
	t.Helper()
	if got := readAt(t, path, off, n); !bytes.Equal(got, make([]byte, n)) {
		t.Errorf("%s: %d bytes at offset %d are not zeros", what, n, off)
	}
}

// checkSparse fails unless path has apparent size size and occupies at
// most limit bytes.
func checkSparse(t *testing.T, what, path string, size, limit int64) {
	t.Helper()
	gotSize, allocated := fileInfo(t, path)
	if gotSize != size {
		t.Errorf("%s: apparent size %d, want %d", what, gotSize, size)
	}
	if allocated > limit {
		t.Errorf("%s: occupies %d bytes, want a sparse file of at most %d", what, allocated, limit)
	}
}

func snapID(n int) string { return volID(1000 + n) }

func TestSnapshotCloneAndCreateFromSnapshotCarryData(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	src, err := d.CreateVolume(ctx, volID(1), 4)
	if err != nil {
		t.Fatal(err)
	}
	before := marksFor(10, 4*gib)
	writeMarks(t, src.Location, before)

	snap, err := d.CreateSnapshot(ctx, snapID(1), src.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Snapshot{ID: snapID(1), VolumeID: src.ID, SizeBytes: 4 * gib, Location: filepath.Join(dir, "snapshot-"+snapID(1))}
	if snap != want {
		t.Fatalf("CreateSnapshot = %+v, want %+v", snap, want)
	}
	checkMarks(t, "snapshot", snap.Location, before)
	checkZero(t, "snapshot", snap.Location, 3*gib, 1<<16)
	checkSparse(t, "snapshot", snap.Location, 4*gib, 4*mib)

	// The volume changes after the snapshot; the snapshot does not.
	after := []mark{{0, pattern(50, 4096)}, {3 * gib, pattern(51, 8192)}, {4*gib - 7, pattern(52, 7)}}
	writeMarks(t, src.Location, after)
	checkMarks(t, "snapshot after writes to its volume", snap.Location, before)
	checkZero(t, "snapshot after writes to its volume", snap.Location, 3*gib, 8192)

	// A larger volume from the snapshot: the snapshot's data, zeros after.
	fromSnap, err := d.CreateVolumeFromSnapshot(ctx, volID(2), snap.ID, 6)
	if err != nil {
		t.Fatal(err)
	}
	if want := (storage.Volume{ID: volID(2), SizeBytes: 6 * gib, Location: filepath.Join(dir, "volume-"+volID(2))}); fromSnap != want {
		t.Fatalf("CreateVolumeFromSnapshot = %+v, want %+v", fromSnap, want)
	}
	checkMarks(t, "volume from snapshot", fromSnap.Location, before)
	checkZero(t, "volume from snapshot", fromSnap.Location, 3*gib, 8192)
	checkZero(t, "volume from snapshot, grown part", fromSnap.Location, 4*gib, 1<<16)
	checkZero(t, "volume from snapshot, last bytes", fromSnap.Location, 6*gib-4096, 4096)
	checkSparse(t, "volume from snapshot", fromSnap.Location, 6*gib, 4*mib)

	// Clones of the volume: its current data, same size or larger.
	current := append(append([]mark{}, before[1:4]...), after...)
	for i, size := range []int64{4, 5} {
		clone, err := d.CloneVolume(ctx, volID(3+i), src.ID, size)
		if err != nil {
			t.Fatal(err)
		}
		if clone.SizeBytes != size*gib || clone.ID != volID(3+i) {
			t.Fatalf("CloneVolume = %+v, want %d GiB", clone, size)
		}
		checkMarks(t, "clone", clone.Location, current)
		checkZero(t, "clone", clone.Location, 2*gib-4096, 4096)
		checkSparse(t, "clone", clone.Location, size*gib, 4*mib)
		if size > 4 {
			checkZero(t, "clone, grown part", clone.Location, 4*gib, 1<<16)
		}
	}

	// Copies are independent of each other and of their sources.
	writeMarks(t, fromSnap.Location, []mark{{mib + 123, pattern(60, 100)}})
	writeMarks(t, filepath.Join(dir, "volume-"+volID(3)), []mark{{3 * gib, pattern(61, 8192)}})
	checkMarks(t, "snapshot after writes to a volume made from it", snap.Location, before)
	checkMarks(t, "volume after writes to its clone", src.Location, after)

	vols, err := d.ListVolumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := volumeIDs(vols); !equalStrings(got, []string{volID(1), volID(2), volID(3), volID(4)}) {
		t.Errorf("ListVolumes = %q, want the four volumes and no snapshot", got)
	}
	snaps, err := d.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0] != want {
		t.Errorf("ListSnapshots = %+v, want [%+v]", snaps, want)
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Volumes != 4 || st.ProvisionedGB != 4+6+4+5 {
		t.Errorf("Stats = %+v, want 4 volumes, 19 GiB provisioned (snapshots are not volumes)", st)
	}
	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
}

// leftovers lists temp files of any kind in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range names(t, dir) {
		if strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out
}

func TestHugeSparseVolumeCopiesOnlyItsData(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	const tib = 1024 // GiB
	vol, err := d.CreateVolume(ctx, volID(1), tib)
	if errors.Is(err, storage.ErrNoSpace) {
		testenv.SkipOrFail(t, "the file system cannot hold a 1 TiB sparse file: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	marks := marksFor(20, tib*gib)
	writeMarks(t, vol.Location, marks)

	// Reading 1 TiB would take minutes; seeking over holes takes no time.
	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	clone, err := d.CloneVolume(ctx, volID(2), vol.ID, tib+1)
	if err != nil {
		t.Fatal(err)
	}
	from, err := d.CreateVolumeFromSnapshot(ctx, volID(3), snap.ID, tib)
	if err != nil {
		t.Fatal(err)
	}
	_, srcAllocated := fileInfo(t, vol.Location)
	for _, c := range []struct {
		what, path string
		size       int64
	}{{"snapshot", snap.Location, tib * gib}, {"clone", clone.Location, (tib + 1) * gib}, {"volume from snapshot", from.Location, tib * gib}} {
		checkMarks(t, c.what, c.path, marks)
		checkSparse(t, c.what, c.path, c.size, srcAllocated+1*mib)
	}
	if err := d.RevertToSnapshot(ctx, vol.ID, snap.ID); err != nil {
		t.Fatal(err)
	}
	checkMarks(t, "reverted volume", vol.Location, marks)
	checkSparse(t, "reverted volume", vol.Location, tib*gib, srcAllocated+1*mib)
	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
}

func TestRevertRestoresSnapshotData(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	vol, err := d.CreateVolume(ctx, volID(1), 2)
	if err != nil {
		t.Fatal(err)
	}
	marks := marksFor(30, 2*gib)
	writeMarks(t, vol.Location, marks)
	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}

	// Overwrite every mark, fill a hole, then grow the volume and write past
	// the snapshot's end.
	var scribble []mark
	for i, m := range marks {
		scribble = append(scribble, mark{m.off, pattern(byte(90+i), len(m.data))})
	}
	scribble = append(scribble, mark{gib + gib/2, pattern(99, 8192)})
	writeMarks(t, vol.Location, scribble)
	if err := d.ExtendVolume(ctx, vol.ID, 3); err != nil {
		t.Fatal(err)
	}
	writeMarks(t, vol.Location, []mark{{2*gib + 4096, pattern(98, 4096)}, {3*gib - 4096, pattern(97, 4096)}})

	for round := range 2 { // a repeated revert is harmless
		if err := d.RevertToSnapshot(ctx, vol.ID, snap.ID); err != nil {
			t.Fatalf("revert %d: %v", round, err)
		}
		checkMarks(t, "reverted volume", vol.Location, marks)
		checkZero(t, "reverted volume, hole written after the snapshot", vol.Location, gib+gib/2, 8192)
		// Cinder's generic revert keeps the volume's current size; the part
		// the snapshot does not cover reads as zeros.
		checkZero(t, "reverted volume, beyond the snapshot", vol.Location, 2*gib+4096, 4096)
		checkZero(t, "reverted volume, last block", vol.Location, 3*gib-4096, 4096)
		checkSparse(t, "reverted volume", vol.Location, 3*gib, 4*mib)
	}
	checkMarks(t, "snapshot after revert", snap.Location, marks)

	// Refusals leave the volume as it is.
	other, err := d.CreateVolume(ctx, volID(2), 2)
	if err != nil {
		t.Fatal(err)
	}
	writeMarks(t, other.Location, marksFor(40, 2*gib))
	if err := d.RevertToSnapshot(ctx, other.ID, snap.ID); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("revert to another volume's snapshot: err = %v, want ErrInvalid", err)
	}
	checkMarks(t, "volume after a refused revert", other.Location, marksFor(40, 2*gib))
	if err := d.RevertToSnapshot(ctx, vol.ID, snapID(9)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revert to a missing snapshot: err = %v, want ErrNotFound", err)
	}
	if err := d.RevertToSnapshot(ctx, volID(9), snap.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revert of a missing volume: err = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "volume-"+volID(9))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("revert of a missing volume created it: %v", err)
	}
	if tmp := leftovers(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
}

func TestExtendKeepsDataAndGrows(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	vol, err := d.CreateVolume(ctx, volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	marks := marksFor(70, gib)
	writeMarks(t, vol.Location, marks)

	if err := d.ExtendVolume(ctx, vol.ID, 5); err != nil {
		t.Fatal(err)
	}
	checkMarks(t, "extended volume", vol.Location, marks)
	checkZero(t, "extended volume, new part", vol.Location, gib, 1<<16)
	checkZero(t, "extended volume, last block", vol.Location, 5*gib-4096, 4096)
	checkSparse(t, "extended volume", vol.Location, 5*gib, 4*mib)

	if err := d.ExtendVolume(ctx, vol.ID, 5); err != nil {
		t.Errorf("repeated extend: %v, want success", err)
	}
	if err := d.ExtendVolume(ctx, vol.ID, 2); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("shrink: err = %v, want ErrInvalid", err)
	}
	if size, _ := fileInfo(t, vol.Location); size != 5*gib {
		t.Errorf("size after refused shrink = %d, want %d", size, 5*gib)
	}
	if err := d.ExtendVolume(ctx, volID(2), 2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("extend of a missing volume: err = %v, want ErrNotFound", err)
	}
	for _, size := range []int64{0, -1, storage.MaxVolumeGiB + 1} {
		if err := d.ExtendVolume(ctx, vol.ID, size); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("extend to %d GiB: err = %v, want ErrInvalid", size, err)
		}
	}
	if got := names(t, dir); !equalStrings(got, []string{"volume-" + vol.ID}) {
		t.Errorf("pool directory = %q, want only the volume", got)
	}
	checkMarks(t, "volume after refused extends", vol.Location, marks)
}

func TestLifecycleIsIdempotent(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	vol, err := d.CreateVolume(ctx, volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := d.CreateVolume(ctx, volID(2), 1)
	if err != nil {
		t.Fatal(err)
	}
	marks := marksFor(80, gib)
	writeMarks(t, vol.Location, marks)

	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.Stat(snap.Location)
	if err != nil {
		t.Fatal(err)
	}
	// The volume changes; repeating the create returns the snapshot that
	// exists rather than taking a new one.
	writeMarks(t, vol.Location, []mark{{0, pattern(81, 4096)}})
	again, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil || again != snap {
		t.Fatalf("repeated CreateSnapshot = %+v, %v; want %+v", again, err, snap)
	}
	if fi, err := os.Stat(snap.Location); err != nil || !os.SameFile(first, fi) {
		t.Errorf("repeated CreateSnapshot replaced the snapshot file (%v)", err)
	}
	checkMarks(t, "snapshot after a repeated create", snap.Location, marks)
	// The same snapshot ID for another volume is a conflict, not a success.
	if _, err := d.CreateSnapshot(ctx, snapID(1), other.ID); !errors.Is(err, storage.ErrExists) {
		t.Errorf("snapshot ID reused for another volume: err = %v, want ErrExists", err)
	}
	checkMarks(t, "snapshot after a conflicting create", snap.Location, marks)

	for _, tc := range []struct {
		name string
		make func() (storage.Volume, error)
	}{
		{"from snapshot", func() (storage.Volume, error) { return d.CreateVolumeFromSnapshot(ctx, volID(3), snap.ID, 2) }},
		{"clone", func() (storage.Volume, error) { return d.CloneVolume(ctx, volID(4), vol.ID, 1) }},
	} {
		v1, err := tc.make()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fi1, _ := os.Stat(v1.Location)
		v2, err := tc.make()
		if err != nil || v2 != v1 {
			t.Errorf("%s repeated = %+v, %v; want %+v", tc.name, v2, err, v1)
		}
		if fi2, _ := os.Stat(v1.Location); !os.SameFile(fi1, fi2) {
			t.Errorf("%s repeated rebuilt the volume", tc.name)
		}
	}
	if _, err := d.CreateVolumeFromSnapshot(ctx, volID(3), snap.ID, 3); !errors.Is(err, storage.ErrExists) {
		t.Errorf("from snapshot again with another size: err = %v, want ErrExists", err)
	}
	if _, err := d.CloneVolume(ctx, volID(4), vol.ID, 2); !errors.Is(err, storage.ErrExists) {
		t.Errorf("clone again with another size: err = %v, want ErrExists", err)
	}

	// Deletes: of the snapshot (twice), of a snapshot never made, and of a
	// volume that has snapshots (allowed at the driver; copies stay).
	snap2, err := d.CreateSnapshot(ctx, snapID(2), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := d.DeleteSnapshot(ctx, snap.ID); err != nil {
			t.Fatalf("DeleteSnapshot: %v", err)
		}
	}
	if err := d.DeleteSnapshot(ctx, snapID(9)); err != nil {
		t.Errorf("delete of a snapshot never made: %v", err)
	}
	// A retried create of a volume made from the now deleted snapshot still
	// succeeds: the volume exists.
	if _, err := d.CreateVolumeFromSnapshot(ctx, volID(3), snap.ID, 2); err != nil {
		t.Errorf("retried create from a deleted snapshot: %v", err)
	}
	if err := d.DeleteVolume(ctx, vol.ID); err != nil {
		t.Fatalf("delete of a volume with a snapshot: %v", err)
	}
	checkMarks(t, "snapshot of a deleted volume", snap2.Location, append([]mark{{0, pattern(81, 4096)}}, marks[1:]...))
	want := []string{"snapshot-" + snap2.ID, "snapshot-" + snap2.ID + ".meta", "volume-" + other.ID, "volume-" + volID(3), "volume-" + volID(4)}
	if got := names(t, dir); !equalStrings(got, want) {
		t.Errorf("pool directory = %q, want %q", got, want)
	}

	// Export is idempotent; unexport always succeeds.
	for range 2 {
		ci, err := d.ExportVolume(ctx, other.ID, storage.Connector{Host: "compute-1"}, storage.Credentials{})
		if err != nil {
			t.Fatal(err)
		}
		if ci.DriverVolumeType != "local" || len(ci.Data) != 1 || ci.Data["device_path"] != other.Location {
			t.Errorf("ExportVolume = %+v, want local with device_path %s", ci, other.Location)
		}
		if !filepath.IsAbs(ci.Data["device_path"].(string)) {
			t.Errorf("device_path %v is not absolute", ci.Data["device_path"])
		}
		if err := d.UnexportVolume(ctx, other.ID, storage.Connector{Host: "compute-1"}); err != nil {
			t.Errorf("UnexportVolume: %v", err)
		}
	}
	if err := d.UnexportVolume(ctx, volID(9), storage.Connector{}); err != nil {
		t.Errorf("unexport of a missing volume: %v, want success", err)
	}
}

func TestMissingSourcesCreateNothing(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	vol, err := d.CreateVolume(ctx, volID(1), 2)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	before := names(t, dir)

	notFound := map[string]error{}
	_, notFound["from missing snapshot"] = d.CreateVolumeFromSnapshot(ctx, volID(2), snapID(2), 2)
	_, notFound["clone of missing volume"] = d.CloneVolume(ctx, volID(2), volID(3), 2)
	_, notFound["snapshot of missing volume"] = d.CreateSnapshot(ctx, snapID(2), volID(3))
	notFound["extend of missing volume"] = d.ExtendVolume(ctx, volID(3), 2)
	_, notFound["export of missing volume"] = d.ExportVolume(ctx, volID(3), storage.Connector{}, storage.Credentials{})
	for name, err := range notFound {
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
	// A snapshot ID is not a volume ID: the source kinds do not mix.
	if _, err := d.CloneVolume(ctx, volID(2), snap.ID, 2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("clone from a snapshot's ID: err = %v, want ErrNotFound", err)
	}
	if _, err := d.CreateVolumeFromSnapshot(ctx, volID(2), vol.ID, 2); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("from snapshot with a volume's ID: err = %v, want ErrNotFound", err)
	}

	invalid := map[string]error{}
	_, invalid["from snapshot, smaller"] = d.CreateVolumeFromSnapshot(ctx, volID(2), snap.ID, 1)
	_, invalid["clone, smaller"] = d.CloneVolume(ctx, volID(2), vol.ID, 1)
	_, invalid["clone onto itself"] = d.CloneVolume(ctx, vol.ID, vol.ID, 2)
	for name, err := range invalid {
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if got := names(t, dir); !equalStrings(got, before) {
		t.Errorf("pool directory = %q after refused requests, want %q", got, before)
	}
}

func TestLifecycleInvalidIDsTouchNothing(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "pool")
	d, err := nfs.New(nfs.Config{Name: "local", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	good := volID(1)
	if _, err := d.CreateVolume(ctx, good, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateSnapshot(ctx, snapID(1), good); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := names(t, dir)
	bad := []string{"", "../victim", "/../../victim", "a/b", ".", strings.ToUpper(good), good + "\n", good + "/", "snapshot-" + snapID(1), good[:35]}
	conn := storage.Connector{Host: "h"}
	for _, id := range bad {
		ops := map[string]error{}
		_, ops["CreateVolumeFromSnapshot(id)"] = d.CreateVolumeFromSnapshot(ctx, id, snapID(1), 2)
		_, ops["CreateVolumeFromSnapshot(snapshot)"] = d.CreateVolumeFromSnapshot(ctx, volID(2), id, 2)
		_, ops["CloneVolume(id)"] = d.CloneVolume(ctx, id, good, 2)
		_, ops["CloneVolume(source)"] = d.CloneVolume(ctx, volID(2), id, 2)
		ops["ExtendVolume"] = d.ExtendVolume(ctx, id, 2)
		_, ops["CreateSnapshot(snapshot)"] = d.CreateSnapshot(ctx, id, good)
		_, ops["CreateSnapshot(volume)"] = d.CreateSnapshot(ctx, snapID(2), id)
		ops["DeleteSnapshot"] = d.DeleteSnapshot(ctx, id)
		ops["RevertToSnapshot(volume)"] = d.RevertToSnapshot(ctx, id, snapID(1))
		ops["RevertToSnapshot(snapshot)"] = d.RevertToSnapshot(ctx, good, id)
		_, ops["ExportVolume"] = d.ExportVolume(ctx, id, conn, storage.Credentials{})
		ops["UnexportVolume"] = d.UnexportVolume(ctx, id, conn)
		for op, err := range ops {
			if !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("%s with ID %q: err = %v, want ErrInvalid", op, id, err)
			}
		}
	}
	for _, size := range []int64{0, -1, storage.MaxVolumeGiB + 1} {
		if _, err := d.CreateVolumeFromSnapshot(ctx, volID(2), snapID(1), size); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("CreateVolumeFromSnapshot(size %d): err = %v, want ErrInvalid", size, err)
		}
		if _, err := d.CloneVolume(ctx, volID(2), good, size); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("CloneVolume(size %d): err = %v, want ErrInvalid", size, err)
		}
	}
	if got := names(t, dir); !equalStrings(got, before) {
		t.Errorf("pool directory = %q after invalid requests, want %q", got, before)
	}
	if got := names(t, root); !equalStrings(got, []string{"pool", "victim"}) {
		t.Errorf("parent directory holds %q", got)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("victim file = %q, %v", b, err)
	}
}

func TestLifecycleCancelledContextTouchesNothing(t *testing.T) {
	d, dir := newDriver(t, nil)
	bg := context.Background()
	vol, err := d.CreateVolume(bg, volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(bg, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	before := names(t, dir)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	ops := map[string]error{}
	_, ops["CreateVolumeFromSnapshot"] = d.CreateVolumeFromSnapshot(ctx, volID(2), snap.ID, 1)
	_, ops["CloneVolume"] = d.CloneVolume(ctx, volID(2), vol.ID, 1)
	ops["ExtendVolume"] = d.ExtendVolume(ctx, vol.ID, 2)
	_, ops["CreateSnapshot"] = d.CreateSnapshot(ctx, snapID(2), vol.ID)
	ops["DeleteSnapshot"] = d.DeleteSnapshot(ctx, snap.ID)
	ops["RevertToSnapshot"] = d.RevertToSnapshot(ctx, vol.ID, snap.ID)
	_, ops["ListSnapshots"] = d.ListSnapshots(ctx)
	_, ops["ExportVolume"] = d.ExportVolume(ctx, vol.ID, storage.Connector{}, storage.Credentials{})
	ops["UnexportVolume"] = d.UnexportVolume(ctx, vol.ID, storage.Connector{})
	for op, err := range ops {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", op, err)
		}
	}
	if got := names(t, dir); !equalStrings(got, before) {
		t.Errorf("pool directory = %q, want %q", got, before)
	}
	if size, _ := fileInfo(t, vol.Location); size != gib {
		t.Errorf("volume size = %d after a cancelled extend", size)
	}
}

func TestSnapshotSidecar(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	vol, err := d.CreateVolume(ctx, volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(dir, "snapshot-"+snap.ID+".meta")
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":1,"snapshot_id":"` + snap.ID + `","volume_id":"` + vol.ID + `"}` + "\n"; string(b) != want {
		t.Errorf("sidecar = %q, want %q", b, want)
	}

	// A damaged sidecar: the snapshot cannot be confirmed, so it is neither
	// reused nor reverted to, but it is still listed and can be deleted.
	if err := os.WriteFile(meta, []byte(`{"version":1,"snapshot_id":"x"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateSnapshot(ctx, snap.ID, vol.ID); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateSnapshot over a damaged sidecar: err = %v, want ErrExists", err)
	}
	if err := d.RevertToSnapshot(ctx, vol.ID, snap.ID); err == nil {
		t.Error("revert to a snapshot with a damaged sidecar succeeded")
	}
	snaps, err := d.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].ID != snap.ID || snaps[0].VolumeID != "" {
		t.Errorf("ListSnapshots = %+v, %v; want the snapshot with an empty volume ID", snaps, err)
	}
	if err := d.DeleteSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !equalStrings(got, []string{"volume-" + vol.ID}) {
		t.Errorf("pool directory after delete = %q", got)
	}
}

func TestCleanupRemovesSnapshotLeftovers(t *testing.T) {
	ctx := context.Background()
	d, dir := newDriver(t, nil)
	vol, err := d.CreateVolume(ctx, volID(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	// What crashes leave: temp files of a snapshot and of a clone, and the
	// sidecar of a snapshot whose data file never appeared.
	stale := []string{
		".snapshot-" + snapID(2) + ".tmp-1",
		".snapshot-" + snapID(2) + ".tmp-2",
		".volume-" + volID(2) + ".tmp-3",
		"snapshot-" + snapID(3) + ".meta",
	}
	for _, name := range stale {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := d.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(stale) {
		t.Errorf("Cleanup removed %d files, want %d", n, len(stale))
	}
	want := []string{"snapshot-" + snap.ID, "snapshot-" + snap.ID + ".meta", "volume-" + vol.ID}
	if got := names(t, dir); !equalStrings(got, want) {
		t.Errorf("pool directory after Cleanup = %q, want %q", got, want)
	}
	snaps, err := d.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].VolumeID != vol.ID {
		t.Errorf("ListSnapshots after Cleanup = %+v, %v", snaps, err)
	}
}

func TestThickPoolAccountsSnapshots(t *testing.T) {
	ctx := context.Background()
	requireAvail(t, t.TempDir(), 12*gib)
	preallocates := fallocateWorks(t, t.TempDir())
	d, dir := newDriver(t, func(c *nfs.Config) { c.Provisioning = "thick"; c.CapacityGB = 4 })

	vol, err := d.CreateVolume(ctx, volID(1), 2)
	if err != nil {
		t.Fatal(err)
	}
	marks := marksFor(110, 2*gib)
	writeMarks(t, vol.Location, marks)
	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkMarks(t, "thick snapshot", snap.Location, marks)
	if _, allocated := fileInfo(t, snap.Location); preallocates && allocated < 2*gib {
		t.Errorf("thick snapshot has %d bytes allocated, want all %d reserved", allocated, 2*gib)
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.FreeGB != 0 || st.ProvisionedGB != 2 || st.Volumes != 1 {
		t.Errorf("Stats = %+v, want free 0 (2 GiB volume + 2 GiB snapshot of 4), provisioned 2, 1 volume", st)
	}

	before := names(t, dir)
	full := map[string]error{}
	_, full["create"] = d.CreateVolume(ctx, volID(2), 1)
	_, full["snapshot"] = d.CreateSnapshot(ctx, snapID(2), vol.ID)
	_, full["clone"] = d.CloneVolume(ctx, volID(2), vol.ID, 2)
	_, full["from snapshot"] = d.CreateVolumeFromSnapshot(ctx, volID(2), snap.ID, 2)
	full["extend"] = d.ExtendVolume(ctx, vol.ID, 3)
	for op, err := range full {
		if !errors.Is(err, storage.ErrNoSpace) {
			t.Errorf("%s in a full thick pool: err = %v, want ErrNoSpace", op, err)
		} else if !strings.Contains(err.Error(), "snapshots 2.00 GiB") {
			t.Errorf("%s: error %q does not account the snapshot", op, err)
		}
	}
	if got := names(t, dir); !equalStrings(got, before) {
		t.Errorf("pool directory = %q after refused requests, want %q", got, before)
	}
	if size, _ := fileInfo(t, vol.Location); size != 2*gib {
		t.Errorf("volume size after a refused extend = %d", size)
	}
	// Idempotent repeats need no space.
	if _, err := d.CreateSnapshot(ctx, snap.ID, vol.ID); err != nil {
		t.Errorf("repeated snapshot in a full pool: %v", err)
	}
	if err := d.ExtendVolume(ctx, vol.ID, 2); err != nil {
		t.Errorf("extend to the current size in a full pool: %v", err)
	}
	// A revert changes nothing in the accounting.
	if err := d.RevertToSnapshot(ctx, vol.ID, snap.ID); err != nil {
		t.Errorf("revert in a full pool: %v", err)
	}

	// Deleting the snapshot gives its space back.
	if err := d.DeleteSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	clone, err := d.CloneVolume(ctx, volID(2), vol.ID, 2)
	if err != nil {
		t.Fatalf("clone after the snapshot was deleted: %v", err)
	}
	checkMarks(t, "thick clone", clone.Location, marks)
	if _, allocated := fileInfo(t, clone.Location); preallocates && allocated < 2*gib {
		t.Errorf("thick clone has %d bytes allocated, want all %d reserved", allocated, 2*gib)
	}
	if st, err := d.Stats(ctx); err != nil || st.FreeGB != 0 || st.ProvisionedGB != 4 {
		t.Errorf("Stats = %+v, %v; want free 0, provisioned 4", st, err)
	}
	if err := d.DeleteVolume(ctx, clone.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.ExtendVolume(ctx, vol.ID, 3); err != nil {
		t.Fatalf("extend within capacity: %v", err)
	}
	if _, allocated := fileInfo(t, vol.Location); preallocates && allocated < 3*gib {
		t.Errorf("thick extended volume has %d bytes allocated, want all %d reserved", allocated, 3*gib)
	}
	checkMarks(t, "thick extended volume", vol.Location, marks)
	if st, err := d.Stats(ctx); err != nil || st.FreeGB != 1 || st.ProvisionedGB != 3 {
		t.Errorf("Stats = %+v, %v; want free 1, provisioned 3", st, err)
	}
}

func TestCappedThinPoolCountsSnapshotBlocks(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t, func(c *nfs.Config) { c.CapacityGB = 1 })
	vol, err := d.CreateVolume(ctx, volID(1), 4)
	if err != nil {
		t.Fatal(err)
	}
	writeMarks(t, vol.Location, []mark{{0, pattern(1, 8<<20)}})
	st0, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(ctx, snapID(1), vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, snapAllocated := fileInfo(t, snap.Location)
	if snapAllocated < 8<<20 {
		t.Fatalf("snapshot occupies %d bytes, want the 8 MiB of data", snapAllocated)
	}
	st1, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st0.FreeGB-st1.FreeGB, float64(snapAllocated)/float64(gib); got != want {
		t.Errorf("free went down by %v GiB, want the snapshot's %v GiB of blocks", got, want)
	}
	if st1.ProvisionedGB != 4 || st1.Volumes != 1 {
		t.Errorf("Stats = %+v, want 4 GiB provisioned in 1 volume", st1)
	}
}

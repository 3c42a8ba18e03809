//go:build linux

package nfs_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/qemuimg/qemuimgtest"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
	"github.com/kilnstore/kiln/nfs"
)

type region = qemuimgtest.Region

// chainPool is a qcow2-mode pool: raw or qcow2 base files.
func chainPool(t *testing.T, qcow2 bool, edit func(*nfs.Config)) (*nfs.Driver, string) {
	t.Helper()
	qemuimgtest.Require(t)
	return newDriver(t, func(c *nfs.Config) {
		c.Snapshots, c.QCOW2Volumes = nfs.SnapshotsQCOW2, qcow2
		if edit != nil {
			edit(c)
		}
	})
}

// active returns the path and format of volume id's active image.
func active(t *testing.T, d *nfs.Driver, id string, qcow2Base bool) (string, string) {
	t.Helper()
	vols, err := d.ListVolumes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if v.ID != id {
			continue
		}
		if filepath.Base(v.Location) == "volume-"+id && !qcow2Base {
			return v.Location, "raw"
		}
		return v.Location, "qcow2"
	}
	t.Fatalf("volume %s not listed in %+v", id, vols)
	return "", ""
}

// chainRecord reads volume id's record.
func chainRecord(t *testing.T, dir, id string) (rec struct {
	Active    string            `json:"active"`
	Format    string            `json:"format"`
	Snapshots map[string]string `json:"snapshots"`
}) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "volume-"+id+".info"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestChainSnapshotsKeepDataAtEveryStep writes a distinct pattern before
// and after each snapshot and checks the volume, the snapshots (through
// volumes created from them) and a clone after every create, delete and
// merge, for raw and qcow2 base files.
func TestChainSnapshotsKeepDataAtEveryStep(t *testing.T) {
	for _, qcow2 := range []bool{false, true} {
		name := map[bool]string{false: "raw", true: "qcow2"}[qcow2]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d, dir := chainPool(t, qcow2, nil)
			vol, s1, s2, s3 := volID(1), volID(101), volID(102), volID(103)
			if _, err := d.CreateVolume(ctx, vol, 1); err != nil {
				t.Fatal(err)
			}
			a := region{Off: 0, Len: mib, Pattern: 0xa1}
			b := region{Off: 4 * mib, Len: mib, Pattern: 0xb2}
			c := region{Off: 0, Len: 64 << 10, Pattern: 0xc3} // overwrites part of a
			e := region{Off: 8 * mib, Len: mib, Pattern: 0xe5}
			zero := func(r region) region { r.Pattern = 0; return r }

			p, f := active(t, d, vol, qcow2)
			qemuimgtest.Write(t, p, f, a)
			snap, err := d.CreateSnapshot(ctx, s1, vol)
			if err != nil {
				t.Fatal(err)
			}
			if snap.SizeBytes != gib || snap.VolumeID != vol {
				t.Fatalf("snapshot = %+v", snap)
			}
			p, f = active(t, d, vol, qcow2)
			if f != "qcow2" || filepath.Base(p) != "volume-"+vol+"."+s1 {
				t.Fatalf("active after snapshot = %s (%s)", p, f)
			}
			qemuimgtest.Write(t, p, f, b)
			if _, err := d.CreateSnapshot(ctx, s2, vol); err != nil {
				t.Fatal(err)
			}
			p, f = active(t, d, vol, qcow2)
			qemuimgtest.Write(t, p, f, c)
			if _, err := d.CreateSnapshot(ctx, s3, vol); err != nil {
				t.Fatal(err)
			}
			p, f = active(t, d, vol, qcow2)
			qemuimgtest.Write(t, p, f, e)

			// Repeating a snapshot returns it and changes nothing.
			if again, err := d.CreateSnapshot(ctx, s2, vol); err != nil || again.ID != s2 || again.SizeBytes != gib {
				t.Fatalf("repeated snapshot = %+v, %v", again, err)
			}
			if rec := chainRecord(t, dir, vol); rec.Active != "volume-"+vol+"."+s3 || len(rec.Snapshots) != 3 {
				t.Fatalf("record = %+v", rec)
			}
			snaps, err := d.ListSnapshots(ctx)
			if err != nil || len(snaps) != 3 {
				t.Fatalf("ListSnapshots = %+v, %v", snaps, err)
			}
			for _, s := range snaps {
				if s.VolumeID != vol || s.SizeBytes != gib {
					t.Errorf("listed snapshot %+v", s)
				}
			}

			// expectFrom checks the data of snapshot s through a new volume.
			n := 10
			expectFrom := func(s string, regions ...region) {
				t.Helper()
				n++
				id := volID(n)
				v, err := d.CreateVolumeFromSnapshot(ctx, id, s, 2)
				if err != nil {
					t.Fatalf("from snapshot %s: %v", s, err)
				}
				if v.SizeBytes != 2*gib {
					t.Fatalf("from snapshot: %+v", v)
				}
				qemuimgtest.Expect(t, v.Location, map[bool]string{false: "raw", true: "qcow2"}[qcow2], regions...)
				if err := d.DeleteVolume(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			head := func(r region) region { r.Off, r.Len = c.Len, a.Len-c.Len; return r }
			expectFrom(s1, a, zero(b), zero(e))
			expectFrom(s2, a, b, zero(e))
			expectFrom(s3, c, head(a), b, zero(e))
			p, f = active(t, d, vol, qcow2)
			qemuimgtest.Expect(t, p, f, c, head(a), b, e)

			// A clone is the volume now.
			clone, err := d.CloneVolume(ctx, volID(50), vol, 1)
			if err != nil {
				t.Fatal(err)
			}
			qemuimgtest.Expect(t, clone.Location, map[bool]string{false: "raw", true: "qcow2"}[qcow2], c, head(a), b, e)

			// Delete the middle snapshot: s2's overlay is committed into
			// its backing file (s1's overlay, which holds s2's data) and
			// s3's overlay is rebased onto that file.
			if err := d.DeleteSnapshot(ctx, s2); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "volume-"+vol+"."+s2)); !os.IsNotExist(err) {
				t.Fatalf("overlay of the deleted snapshot: %v", err)
			}
			p, f = active(t, d, vol, qcow2)
			qemuimgtest.Expect(t, p, f, c, head(a), b, e)
			expectFrom(s1, a, zero(b), zero(e))
			expectFrom(s3, c, head(a), b, zero(e))

			// Delete the latest snapshot: its overlay is the active image.
			if err := d.DeleteSnapshot(ctx, s3); err != nil {
				t.Fatal(err)
			}
			p, f = active(t, d, vol, qcow2)
			if filepath.Base(p) != "volume-"+vol+"."+s1 {
				t.Fatalf("active after deleting the latest snapshot: %s", p)
			}
			qemuimgtest.Expect(t, p, f, c, head(a), b, e)
			expectFrom(s1, a, zero(b), zero(e))

			// The first one: back to the base file alone.
			if err := d.DeleteSnapshot(ctx, s1); err != nil {
				t.Fatal(err)
			}
			p, f = active(t, d, vol, qcow2)
			if filepath.Base(p) != "volume-"+vol {
				t.Fatalf("active after deleting every snapshot: %s", p)
			}
			qemuimgtest.Expect(t, p, f, c, head(a), b, e)
			// Deleting again is a success.
			if err := d.DeleteSnapshot(ctx, s1); err != nil {
				t.Fatal(err)
			}
			if snaps, err := d.ListSnapshots(ctx); err != nil || len(snaps) != 0 {
				t.Fatalf("ListSnapshots = %+v, %v", snaps, err)
			}
			// The clone never depended on the chain.
			qemuimgtest.Expect(t, clone.Location, map[bool]string{false: "raw", true: "qcow2"}[qcow2], c, head(a), b, e)
			if err := d.DeleteVolume(ctx, vol); err != nil {
				t.Fatal(err)
			}
			if err := d.DeleteVolume(ctx, clone.ID); err != nil {
				t.Fatal(err)
			}
			if got := names(t, dir); len(got) != 0 {
				t.Fatalf("pool left %q", got)
			}
		})
	}
}

// TestChainDeleteSnapshotResumesAfterACrash runs the steps of a delete by
// hand (commit done, rebase done, record not yet written), as an agent that
// died in between leaves them, and checks that the delete completes and the
// data is right.
func TestChainDeleteSnapshotResumesAfterACrash(t *testing.T) {
	ctx := context.Background()
	d, dir := chainPool(t, false, nil)
	vol, s1, s2 := volID(1), volID(101), volID(102)
	if _, err := d.CreateVolume(ctx, vol, 1); err != nil {
		t.Fatal(err)
	}
	a := region{Off: 0, Len: mib, Pattern: 0x11}
	b := region{Off: mib, Len: mib, Pattern: 0x22}
	cc := region{Off: 2 * mib, Len: mib, Pattern: 0x33}
	p, f := active(t, d, vol, false)
	qemuimgtest.Write(t, p, f, a)
	if _, err := d.CreateSnapshot(ctx, s1, vol); err != nil {
		t.Fatal(err)
	}
	p, f = active(t, d, vol, false)
	qemuimgtest.Write(t, p, f, b)
	if _, err := d.CreateSnapshot(ctx, s2, vol); err != nil {
		t.Fatal(err)
	}
	p, f = active(t, d, vol, false)
	qemuimgtest.Write(t, p, f, cc)

	o1, o2 := "volume-"+vol+"."+s1, "volume-"+vol+"."+s2
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("qemu-img", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	run("commit", "-q", "-d", "-f", "qcow2", filepath.Join(dir, o1))
	run("rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", "volume-"+vol, filepath.Join(dir, o2))
	if rec := chainRecord(t, dir, vol); len(rec.Snapshots) != 2 {
		t.Fatalf("record changed by hand steps: %+v", rec)
	}
	if err := d.DeleteSnapshot(ctx, s1); err != nil {
		t.Fatal(err)
	}
	p, f = active(t, d, vol, false)
	qemuimgtest.Expect(t, p, f, a, b, cc)
	v, err := d.CreateVolumeFromSnapshot(ctx, volID(2), s2, 1)
	if err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, v.Location, "raw", a, b, region{Off: 2 * mib, Len: mib})
	if _, err := os.Stat(filepath.Join(dir, o1)); !os.IsNotExist(err) {
		t.Fatalf("overlay of the deleted snapshot: %v", err)
	}
}

func TestChainRevertExtendAndCleanup(t *testing.T) {
	ctx := context.Background()
	d, dir := chainPool(t, true, nil)
	vol, s1, s2 := volID(1), volID(101), volID(102)
	if _, err := d.CreateVolume(ctx, vol, 1); err != nil {
		t.Fatal(err)
	}
	a := region{Off: 0, Len: mib, Pattern: 0x5a}
	b := region{Off: 0, Len: mib, Pattern: 0x6b}
	p, f := active(t, d, vol, true)
	qemuimgtest.Write(t, p, f, a)
	if _, err := d.CreateSnapshot(ctx, s1, vol); err != nil {
		t.Fatal(err)
	}
	p, f = active(t, d, vol, true)
	qemuimgtest.Write(t, p, f, b)

	// Extend with a snapshot: the active overlay grows, the snapshot not.
	if err := d.ExtendVolume(ctx, vol, 3); err != nil {
		t.Fatal(err)
	}
	vols, err := d.ListVolumes(ctx)
	if err != nil || len(vols) != 1 || vols[0].SizeBytes != 3*gib {
		t.Fatalf("ListVolumes after extend = %+v, %v", vols, err)
	}
	if snaps, err := d.ListSnapshots(ctx); err != nil || len(snaps) != 1 || snaps[0].SizeBytes != gib {
		t.Fatalf("ListSnapshots after extend = %+v, %v", snaps, err)
	}
	if err := d.ExtendVolume(ctx, vol, 2); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("shrink = %v", err)
	}

	// Revert to the latest snapshot: b is gone, the size stays.
	if err := d.RevertToSnapshot(ctx, vol, s1); err != nil {
		t.Fatal(err)
	}
	p, f = active(t, d, vol, true)
	qemuimgtest.Expect(t, p, f, a)
	if vols, _ := d.ListVolumes(ctx); vols[0].SizeBytes != 3*gib {
		t.Fatalf("size after revert = %d", vols[0].SizeBytes)
	}
	// Only the latest snapshot can be reverted to.
	if _, err := d.CreateSnapshot(ctx, s2, vol); err != nil {
		t.Fatal(err)
	}
	if err := d.RevertToSnapshot(ctx, vol, s1); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "latest") {
		t.Fatalf("revert to an older snapshot = %v", err)
	}
	if err := d.RevertToSnapshot(ctx, vol, volID(999)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("revert to a missing snapshot = %v", err)
	}

	// Leftovers: an overlay the record does not list, the record and an
	// overlay of a volume whose base is gone. Cleanup removes exactly them.
	stray := filepath.Join(dir, "volume-"+vol+"."+volID(500))
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	gone := volID(7)
	for _, name := range []string{"volume-" + gone + ".info", "volume-" + gone + "." + volID(501)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := names(t, dir)
	n, err := d.Cleanup(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Cleanup = %d, %v (before: %q, after: %q)", n, err, before, names(t, dir))
	}
	want := []string{"volume-" + vol, "volume-" + vol + "." + s1, "volume-" + vol + "." + s2, "volume-" + vol + ".info"}
	if got := names(t, dir); !equalStrings(got, want) {
		t.Fatalf("after Cleanup: %q, want %q", got, want)
	}
	p, f = active(t, d, vol, true)
	qemuimgtest.Expect(t, p, f, a)
}

// TestChainRefusesChangesToAnAttachedVolume: a running VM (qemu-io here)
// holds the active image; snapshot, snapshot delete, revert and a qcow2
// extend are refused clearly and change nothing.
func TestChainRefusesChangesToAnAttachedVolume(t *testing.T) {
	ctx := context.Background()
	d, dir := chainPool(t, true, nil)
	vol, s1 := volID(1), volID(101)
	if _, err := d.CreateVolume(ctx, vol, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateSnapshot(ctx, s1, vol); err != nil {
		t.Fatal(err)
	}
	p, f := active(t, d, vol, true)
	qemuimgtest.Hold(t, p, f)
	before := names(t, dir)
	rec := chainRecord(t, dir, vol)
	checks := map[string]error{}
	_, checks["snapshot"] = d.CreateSnapshot(ctx, volID(102), vol)
	checks["delete snapshot"] = d.DeleteSnapshot(ctx, s1)
	checks["revert"] = d.RevertToSnapshot(ctx, vol, s1)
	checks["extend"] = d.ExtendVolume(ctx, vol, 2)
	_, checks["clone"] = d.CloneVolume(ctx, volID(2), vol, 1)
	for what, err := range checks {
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("%s of an attached volume = %v, want a clear in-use refusal", what, err)
		}
	}
	if got := names(t, dir); !equalStrings(got, before) {
		t.Errorf("refused operations changed the pool: %q, was %q", got, before)
	}
	if after := chainRecord(t, dir, vol); after.Active != rec.Active || len(after.Snapshots) != 1 {
		t.Errorf("record changed: %+v", after)
	}
	// A volume from the snapshot reads frozen data, which the VM does not
	// write: allowed.
	if _, err := d.CreateVolumeFromSnapshot(ctx, volID(3), s1, 1); err != nil {
		t.Errorf("volume from a snapshot of an attached volume: %v", err)
	}
}

func TestChainModeCannotChangeUnderSnapshots(t *testing.T) {
	qemuimgtest.Require(t)
	ctx := context.Background()
	d, dir := newDriver(t, nil) // copy mode
	if _, err := d.CreateVolume(ctx, volID(1), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateSnapshot(ctx, volID(101), volID(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := nfs.New(nfs.Config{Name: "local", Dir: dir, Snapshots: nfs.SnapshotsQCOW2}); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "copy-mode snapshots") {
		t.Fatalf("qcow2 mode over copy snapshots = %v", err)
	}
	c, cdir := chainPool(t, false, nil)
	if _, err := c.CreateVolume(ctx, volID(1), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := nfs.New(nfs.Config{Name: "local", Dir: cdir, Snapshots: nfs.SnapshotsCopy}); !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "qcow2 chains") {
		t.Fatalf("copy mode over chains = %v", err)
	}
}

// TestChainRejectsABadRecord: a record that names files outside the chain
// or is not JSON stops operations of a (restarted) driver with a clear
// error and changes nothing.
func TestChainRejectsABadRecord(t *testing.T) {
	ctx := context.Background()
	d, dir := chainPool(t, false, nil)
	vol := volID(1)
	if _, err := d.CreateVolume(ctx, vol, 1); err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(dir, "volume-"+vol+".info")
	for name, body := range map[string]string{
		"not json":       "{",
		"foreign active": `{"version":1,"volume_id":"` + vol + `","format":"raw","active":"../etc/passwd","snapshots":{}}`,
		"foreign overlay": `{"version":1,"volume_id":"` + vol + `","format":"raw","active":"volume-` + vol + `",` +
			`"snapshots":{"` + volID(2) + `":"volume-` + volID(3) + `.x"}}`,
		"unknown field": `{"version":1,"volume_id":"` + vol + `","format":"raw","active":"volume-` + vol + `","snapshots":{},"x":1}`,
		"other format":  `{"version":1,"volume_id":"` + vol + `","format":"vmdk","active":"volume-` + vol + `","snapshots":{}}`,
	} {
		if err := os.WriteFile(info, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		before := names(t, dir)
		// The driver keeps the records it wrote; a restarted agent reads
		// them from the directory.
		restarted, err := nfs.New(nfs.Config{Name: "local", Dir: dir, Snapshots: nfs.SnapshotsQCOW2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := restarted.CreateSnapshot(ctx, volID(101), vol); err == nil || !strings.Contains(err.Error(), ".info") {
			t.Errorf("%s: snapshot = %v, want an error naming the record", name, err)
		}
		if got := names(t, dir); !equalStrings(got, before) {
			t.Errorf("%s: pool changed to %q", name, got)
		}
	}
}

func TestChainThickAccountsOverlays(t *testing.T) {
	ctx := context.Background()
	d, dir := chainPool(t, false, func(c *nfs.Config) { c.Provisioning = nfs.ProvisioningThick; c.CapacityGB = 3 })
	if !fallocateWorks(t, dir) {
		testenv.SkipOrFail(t, "the file system holding the test directory does not support fallocate")
	}
	if _, err := d.CreateVolume(ctx, volID(1), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateVolume(ctx, volID(2), 2); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("second 2 GiB volume in a 3 GiB thick pool = %v", err)
	}
	if _, err := d.CreateSnapshot(ctx, volID(101), volID(1)); err != nil {
		t.Fatal(err)
	}
	p, f := active(t, d, volID(1), false)
	qemuimgtest.Write(t, p, f, region{Off: 0, Len: 8 * mib, Pattern: 0x77})
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, alloc := fileInfo(t, p)
	wantFree := 1.0 - float64(alloc)/float64(gib)
	if st.ProvisionedGB != 2 || st.FreeGB > wantFree+1e-9 || st.FreeGB < wantFree-0.01 {
		t.Fatalf("stats = %+v, want provisioned 2 and free about %.4f (overlay %d bytes)", st, wantFree, alloc)
	}
}

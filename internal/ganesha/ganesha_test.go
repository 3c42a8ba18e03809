//go:build linux

package ganesha_test

// Tests against a real nfs-ganesha 4.3 on a private D-Bus system bus
// (ganeshatest), reached with libnfs's userspace client (nfs-cat, nfs-cp):
// the test machines cannot mount NFS in the kernel. Each test starts its
// own ganesha on its own port.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/ganesha"
	"github.com/kilnstore/kiln/internal/ganesha/ganeshatest"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
)

func volID(n int) string { return fmt.Sprintf("%08x-6e66-4000-8000-%012x", n, n) }

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// newManager returns a Manager for s with an export directory of its own;
// its debug log goes to the returned buffer (and to the test log on
// failure).
func newManager(t *testing.T, s *ganeshatest.Server, squash string) (*ganesha.Manager, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	m, err := ganesha.New(ganesha.Config{
		Bus:       ganesha.BusConfig{Address: s.BusAddress, GaneshaLog: s.LogFile, CallTimeout: 5 * time.Second},
		ExportDir: filepath.Join(t.TempDir(), "exports"),
		Squash:    squash,
	}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	return m, logs
}

// volumeDir returns a directory (0755, so that root squashed to nobody can
// enter it) holding the file "volume" (0644) with data.
func volumeDir(t *testing.T, data []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vol")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "volume"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// mustRead checks that path reads back as want over NFSv4.
func mustRead(t *testing.T, s *ganeshatest.Server, path string, want []byte) {
	t.Helper()
	got, err := s.Cat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes from %s, want the %d bytes written", len(got), path, len(want))
	}
}

// mustBeRefused checks that reading path fails with an NFS error containing
// wantStatus (ganesha hides an export from clients it does not admit:
// NFS4ERR_NOENT).
func mustBeRefused(t *testing.T, s *ganeshatest.Server, path, wantStatus string, extra ...string) {
	t.Helper()
	got, err := s.Cat(path, extra...)
	if err == nil || !strings.Contains(err.Error(), wantStatus) {
		t.Fatalf("reading %s = %d bytes, %v; want refusal %s", path, len(got), err, wantStatus)
	}
}

func shownIDs(t *testing.T, m *ganesha.Manager) []uint16 {
	t.Helper()
	shown, err := m.ExportMgr().ShowExports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint16
	for _, s := range shown {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestExportServesFileOnlyToItsClients(t *testing.T) {
	s := ganeshatest.Start(t, 32151)
	t.Logf("ganesha took its bus name and listened %s after exec", s.StartDuration)
	m, logs := newManager(t, s, "")
	ctx := context.Background()
	data := randomBytes(200<<10, 1)
	e := ganesha.Export{VolumeID: volID(1), ExportID: 1001, Path: volumeDir(t, data), Clients: []string{"127.0.0.1"}}

	info, err := m.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pseudo != "/kiln/"+e.VolumeID || info.ExportID != 1001 || info.Path != e.Path ||
		!slices.Equal(info.Clients, []string{"127.0.0.1"}) || info.ConfigFile != m.ConfigFile(1001) {
		t.Fatalf("Ensure = %+v", info)
	}
	fi, err := os.Stat(info.ConfigFile)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("export file %s: %v, %v; want mode 0640", info.ConfigFile, fi, err)
	}
	conf, _ := os.ReadFile(info.ConfigFile)
	for _, want := range []string{"Export_Id = 1001;", `Path = "` + e.Path + `";`, `Pseudo = "/kiln/` + e.VolumeID + `";`,
		"Access_Type = None;", "Squash = root_squash;", "Anonymous_uid = 65534;", "Attr_Expiration_Time = 0;", "Protocols = 4;", "Transports = TCP;", "SecType = sys;",
		"Name = VFS;", "Clients = 127.0.0.1;", "Access_Type = RW;"} {
		if !bytes.Contains(conf, []byte(want)) {
			t.Errorf("export file lacks %q:\n%s", want, conf)
		}
	}
	mustRead(t, s, info.Pseudo+"/volume", data)

	// Idempotent: the same export again changes nothing.
	changes := strings.Count(logs.String(), "NFS export changed")
	if again, err := m.Ensure(ctx, e); err != nil || again.ExportID != info.ExportID {
		t.Fatalf("second Ensure = %+v, %v", again, err)
	}
	if n := strings.Count(logs.String(), "NFS export changed"); n != changes {
		t.Errorf("second Ensure changed something:\n%s", logs.String())
	}

	// An export for another host: libnfs connects from 127.0.0.1 (ganesha
	// listens there only), so it must not even see it.
	other := []byte("other volume\n")
	e2 := ganesha.Export{VolumeID: volID(2), ExportID: 1002, Path: volumeDir(t, other), Clients: []string{"127.0.0.9"}}
	info2, err := m.Ensure(ctx, e2)
	if err != nil {
		t.Fatal(err)
	}
	mustBeRefused(t, s, info2.Pseudo+"/volume", "NFS4ERR_NOENT")
	mustRead(t, s, info.Pseudo+"/volume", data)

	// Widening to a prefix that holds 127.0.0.1 admits it (UpdateExport,
	// live); narrowing again shuts it out.
	e2.Clients = []string{"127.0.0.9", "127.0.0.0/29"}
	if _, err := m.Ensure(ctx, e2); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, info2.Pseudo+"/volume", other)
	e2.Clients = []string{"127.0.0.9"}
	if _, err := m.Ensure(ctx, e2); err != nil {
		t.Fatal(err)
	}
	mustBeRefused(t, s, info2.Pseudo+"/volume", "NFS4ERR_NOENT")
	d, err := m.ExportMgr().DisplayExport(ctx, 1002)
	if err != nil || d.FullPath != e2.Path || !slices.Equal(d.Clients, []string{"127.0.0.9/32"}) {
		t.Errorf("DisplayExport(1002) = %+v, %v", d, err)
	}

	// Read-write: a small write (libnfs 4.0.0 cannot write more than ~3.5
	// KB over NFSv4) lands in the exported directory, as nobody: root is
	// squashed, so the directory must be writable by others.
	if err := os.Chmod(e.Path, 0o777); err != nil {
		t.Fatal(err)
	}
	payload := randomBytes(2048, 2)
	if err := s.Put(info.Pseudo+"/small", payload); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(e.Path, "small")
	if got, _ := os.ReadFile(small); !bytes.Equal(got, payload) {
		t.Errorf("the file holds %d bytes after an NFS write of %d", len(got), len(payload))
	}
	if fi, err := os.Stat(small); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("file written by the client's root: %v, %v; want it owned by nobody (65534, root_squash)", fi, err)
	}
	if ids := shownIDs(t, m); !slices.Contains(ids, 1001) || !slices.Contains(ids, 1002) {
		t.Errorf("ShowExports IDs %v lack 1001 or 1002", ids)
	}
}

func TestSquash(t *testing.T) {
	s := ganeshatest.Start(t, 32152)
	ctx := context.Background()
	secret := []byte("root only\n")
	dir := volumeDir(t, secret)
	if err := os.Chmod(filepath.Join(dir, "volume"), 0o600); err != nil {
		t.Fatal(err)
	}
	owned := filepath.Join(dir, "owned")
	if err := os.WriteFile(owned, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 4242, 4242); err != nil {
		t.Fatal(err)
	}

	squashed, _ := newManager(t, s, "root_squash")
	e := ganesha.Export{VolumeID: volID(3), ExportID: 1003, Path: dir, Clients: []string{"127.0.0.1"}}
	info, err := squashed.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	mustBeRefused(t, s, info.Pseudo+"/volume", "NFS4ERR_ACCESS")
	mustBeRefused(t, s, info.Pseudo+"/owned", "NFS4ERR_ACCESS")
	// Other users are not squashed.
	if got, err := s.Cat(info.Pseudo+"/owned", "uid=4242", "gid=4242"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("read as uid 4242 = %q, %v", got, err)
	}

	trusting, _ := newManager(t, s, "no_root_squash")
	e2 := ganesha.Export{VolumeID: volID(4), ExportID: 1004, Path: dir, Clients: []string{"127.0.0.1"}}
	info2, err := trusting.Ensure(ctx, e2)
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, info2.Pseudo+"/volume", secret)
	mustRead(t, s, info2.Pseudo+"/owned", secret)

	// Changes the agent makes on the server (a resize, a chmod) reach
	// clients at once: exports have Attr_Expiration_Time = 0 (with
	// ganesha's default of 60 s clients would read the old size).
	grown := append(bytes.Clone(secret), make([]byte, 4096)...)
	if err := os.WriteFile(filepath.Join(dir, "volume"), grown, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, info2.Pseudo+"/volume", grown)
	if err := os.Chmod(owned, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, info.Pseudo+"/owned", secret)
}

func TestRemoveEndsAccess(t *testing.T) {
	s := ganeshatest.Start(t, 32153)
	m, _ := newManager(t, s, "")
	ctx := context.Background()
	data := []byte("removed soon\n")
	e := ganesha.Export{VolumeID: volID(5), ExportID: 1005, Path: volumeDir(t, data), Clients: []string{"127.0.0.1"}}
	keep := ganesha.Export{VolumeID: volID(6), ExportID: 1006, Path: volumeDir(t, data), Clients: []string{"127.0.0.1"}}
	info, err := m.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	keepInfo, err := m.Ensure(ctx, keep)
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, info.Pseudo+"/volume", data)

	if err := m.Remove(ctx, e); err != nil {
		t.Fatal(err)
	}
	mustBeRefused(t, s, info.Pseudo+"/volume", "NFS4ERR_NOENT")
	if _, err := os.Stat(info.ConfigFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export file after Remove: %v", err)
	}
	if ids := shownIDs(t, m); slices.Contains(ids, 1005) {
		t.Errorf("ganesha still has export 1005: %v", ids)
	}
	if err := m.Remove(ctx, e); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
	mustRead(t, s, keepInfo.Pseudo+"/volume", data)
}

// startKeeper runs a Keeper until the test ends.
func startKeeper(t *testing.T, m *ganesha.Manager, want func() []ganesha.Export, interval time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ganesha.NewKeeper(m, want, interval).Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestKeeperReaddsExportsWhenGaneshaRestarts(t *testing.T) {
	s := ganeshatest.Start(t, 32154)
	ctx := context.Background()
	storePath := filepath.Join(t.TempDir(), "nfs-exports.json")
	store, err := ganesha.OpenStore(storePath, ganesha.IDRange{})
	if err != nil {
		t.Fatal(err)
	}
	m, logs := newManager(t, s, "")
	v := ganesha.NewVolumes(m, store)
	var infos []ganesha.ExportInfo
	var contents [][]byte
	for i := range 2 {
		data := randomBytes(64<<10, uint64(10+i))
		info, err := v.ExportVolume(ctx, volID(10+i), volumeDir(t, data), storage.Connector{IP: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		mustRead(t, s, info.Pseudo+"/volume", data)
		infos, contents = append(infos, info), append(contents, data)
	}
	if infos[0].ExportID != ganesha.DefaultFirstExportID || infos[1].ExportID != ganesha.DefaultFirstExportID+1 {
		t.Errorf("allocated export IDs %d, %d", infos[0].ExportID, infos[1].ExportID)
	}

	// An interval far beyond the test: only NameOwnerChanged can trigger
	// the re-add.
	startKeeper(t, m, store.List, time.Hour)
	waitFor(t, 5*time.Second, "the keeper to watch the bus", func() bool {
		return strings.Contains(logs.String(), "watching ganesha on the bus")
	})

	s.Kill()
	waitFor(t, 5*time.Second, "the keeper to see ganesha leave the bus", func() bool {
		return strings.Contains(logs.String(), "ganesha left the bus")
	})
	s.Restart()
	restarted := time.Now()
	waitFor(t, 10*time.Second, "the exports to come back", func() bool {
		ids := shownIDs(t, m)
		return slices.Contains(ids, infos[0].ExportID) && slices.Contains(ids, infos[1].ExportID)
	})
	t.Logf("ganesha restarted in %s; both exports were back %s after Restart returned", s.StartDuration, time.Since(restarted))
	for i, info := range infos {
		mustRead(t, s, info.Pseudo+"/volume", contents[i])
	}
	if !strings.Contains(logs.String(), "ganesha appeared on the bus") || !strings.Contains(logs.String(), "repaired=2") {
		t.Errorf("the keeper did not log the restart and the repair:\n%s", logs.String())
	}

	// The agent restarts too: a fresh Manager and Store find the same
	// records, export IDs and files.
	store2, err := ganesha.OpenStore(storePath, ganesha.IDRange{})
	if err != nil {
		t.Fatal(err)
	}
	if got := store2.List(); len(got) != 2 || got[0].ExportID != infos[0].ExportID {
		t.Fatalf("reopened records %+v", got)
	}
}

func TestKeeperRepairsTamperingAndRemovesOrphans(t *testing.T) {
	s := ganeshatest.Start(t, 32155)
	ctx := context.Background()
	store, err := ganesha.OpenStore(filepath.Join(t.TempDir(), "nfs-exports.json"), ganesha.IDRange{First: 2000, Last: 2010})
	if err != nil {
		t.Fatal(err)
	}
	m, logs := newManager(t, s, "")
	v := ganesha.NewVolumes(m, store)
	data := []byte("kept\n")
	info, err := v.ExportVolume(ctx, volID(20), volumeDir(t, data), storage.Connector{IP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := v.ExportVolume(ctx, volID(21), volumeDir(t, data), storage.Connector{IP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if info.ExportID != 2000 || orphan.ExportID != 2001 {
		t.Fatalf("export IDs %d, %d; want 2000, 2001 from the store's range", info.ExportID, orphan.ExportID)
	}
	// The agent died between forgetting an export and removing it.
	if err := store.Delete(volID(21)); err != nil {
		t.Fatal(err)
	}
	// Someone removes one export behind the agent's back...
	x := m.ExportMgr()
	if err := x.RemoveExport(ctx, info.ExportID); err != nil {
		t.Fatal(err)
	}
	mustBeRefused(t, s, info.Pseudo+"/volume", "NFS4ERR_NOENT")

	startKeeper(t, m, store.List, 100*time.Millisecond)
	waitFor(t, 5*time.Second, "the keeper to re-add the removed export", func() bool {
		_, err := s.Cat(info.Pseudo + "/volume")
		return err == nil
	})
	waitFor(t, 5*time.Second, "the keeper to remove the orphan", func() bool {
		return !slices.Contains(shownIDs(t, m), orphan.ExportID)
	})
	mustBeRefused(t, s, orphan.Pseudo+"/volume", "NFS4ERR_NOENT")
	if _, err := os.Stat(orphan.ConfigFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphaned export file still there: %v", err)
	}

	// ...and then opens it to everyone with a file of their own.
	tampered := filepath.Join(t.TempDir(), "tampered.conf")
	conf, _ := os.ReadFile(info.ConfigFile)
	conf = bytes.ReplaceAll(conf, []byte("Clients = 127.0.0.1;"), []byte("Clients = 127.0.0.1, 10.0.0.0/8;"))
	if err := os.WriteFile(tampered, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := x.UpdateExport(ctx, tampered, info.ExportID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the keeper to restore the client list", func() bool {
		d, err := x.DisplayExport(ctx, info.ExportID)
		return err == nil && slices.Equal(d.Clients, []string{"127.0.0.1/32"})
	})
	mustRead(t, s, info.Pseudo+"/volume", data)
	for _, want := range []string{"added to ganesha", "removed orphaned NFS export", "ganesha had clients [127.0.0.1/32 10.0.0.0/8]"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("keeper log lacks %q", want)
		}
	}
}

func TestVolumesExportUnexport(t *testing.T) {
	s := ganeshatest.Start(t, 32156)
	ctx := context.Background()
	store, err := ganesha.OpenStore(filepath.Join(t.TempDir(), "nfs-exports.json"), ganesha.IDRange{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newManager(t, s, "")
	v := ganesha.NewVolumes(m, store)
	id, data := volID(30), []byte("attached twice\n")
	dir := volumeDir(t, data)
	hostA, hostB := storage.Connector{IP: "127.0.0.1"}, storage.Connector{IP: "::ffff:127.0.0.2"}

	info, err := v.ExportVolume(ctx, id, dir, hostA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExportVolume(ctx, id, dir, hostB); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExportVolume(ctx, id, dir, hostB); err != nil {
		t.Fatalf("repeated export: %v", err)
	}
	rec, ok := store.Get(id)
	if !ok || !slices.Equal(rec.Clients, []string{"127.0.0.1", "127.0.0.2"}) || rec.ExportID != info.ExportID {
		t.Fatalf("record %+v, %v", rec, ok)
	}
	mustRead(t, s, info.Pseudo+"/volume", data)

	ci := ganesha.ConnectionInfo(netip.MustParseAddrPort("127.0.0.1:32156"), info, "volume", "raw")
	if ci.DriverVolumeType != "nfs" || ci.Data["export"] != "127.0.0.1:/kiln/"+id || ci.Data["name"] != "volume" ||
		ci.Data["options"] != "-o vers=4,proto=tcp,port=32156" || ci.Data["format"] != "raw" {
		t.Errorf("connection info %+v", ci)
	}

	if _, err := v.ExportVolume(ctx, id, volumeDir(t, data), hostA); !errors.Is(err, storage.ErrExists) {
		t.Errorf("export from another directory = %v, want ErrExists", err)
	}
	if _, err := v.ExportVolume(ctx, volID(31), filepath.Join(dir, "missing"), hostA); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("export of a missing directory = %v, want ErrNotFound", err)
	}
	if _, ok := store.Get(volID(31)); ok {
		t.Error("a refused export left a record")
	}

	if err := v.UnexportVolume(ctx, id, hostA); err != nil {
		t.Fatal(err)
	}
	mustBeRefused(t, s, info.Pseudo+"/volume", "NFS4ERR_NOENT")
	if rec, _ := store.Get(id); !slices.Equal(rec.Clients, []string{"127.0.0.2"}) {
		t.Errorf("record after the first detach: %+v", rec)
	}
	if err := v.UnexportVolume(ctx, id, hostB); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Get(id); ok {
		t.Error("record still there after the last client left")
	}
	if slices.Contains(shownIDs(t, m), info.ExportID) {
		t.Error("export still in ganesha after the last client left")
	}
	if _, err := os.Stat(info.ConfigFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export file after the last client left: %v", err)
	}
	if err := v.UnexportVolume(ctx, id, storage.Connector{}); err != nil {
		t.Errorf("unexport of an unexported volume = %v", err)
	}
}

// Errors from a real ganesha 4.3, mapped.
func TestGaneshaErrors(t *testing.T) {
	s := ganeshatest.Start(t, 32157)
	m, _ := newManager(t, s, "")
	x := m.ExportMgr()
	ctx := context.Background()
	var ce *ganesha.CallError

	err := x.RemoveExport(ctx, 4242)
	if !errors.Is(err, storage.ErrNotFound) || !errors.As(err, &ce) || ce.Name != "org.freedesktop.DBus.Error.InvalidArgs" ||
		!strings.Contains(ce.Message, "Export id not found") {
		t.Errorf("RemoveExport(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := x.DisplayExport(ctx, 4242); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DisplayExport(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := x.AddExport(ctx, filepath.Join(t.TempDir(), "missing.conf"), 1500); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("AddExport(missing file) = %v, want ErrNotFound", err)
	}

	// A good export file, then the ways ganesha refuses one.
	data := []byte("x\n")
	e := ganesha.Export{VolumeID: volID(40), ExportID: 1500, Path: volumeDir(t, data), Clients: []string{"127.0.0.1"}}
	info, err := m.Ensure(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(info.ConfigFile)
	if _, err := x.AddExport(ctx, info.ConfigFile, 1500); !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "already active") {
		t.Errorf("AddExport twice = %v, want ErrExists", err)
	}
	writeConf := func(name string, content []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, content, 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The trap: an ID the file does not hold, an unclosed brace and an
	// empty file all come back as "No such file or directory".
	for name, content := range map[string][]byte{
		"other-id.conf": bytes.Replace(good, []byte("Export_Id = 1500;"), []byte("Export_Id = 1501;"), 1),
		"unclosed-brace.conf": bytes.Replace(bytes.Replace(good, []byte("Export_Id = 1500;"), []byte("Export_Id = 1502;"), 1),
			[]byte("}\n}\n"), []byte("}\n"), 1),
		"empty.conf": nil,
	} {
		_, err := x.AddExport(ctx, writeConf(name, content), 1502)
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "No such file or directory") ||
			!strings.Contains(err.Error(), "syntax error") {
			t.Errorf("AddExport(%s) = %v, want ErrInvalid explaining the ENOENT", name, err)
		}
	}
	// A syntax error ganesha reports as one, with the line in its log.
	bad := writeConf("bad-statement.conf", bytes.Replace(bytes.Replace(bytes.Replace(good,
		[]byte("Export_Id = 1500;"), []byte("Export_Id = 1503;"), 1),
		[]byte("/kiln/"), []byte("/other/"), 1),
		[]byte("Attr_Expiration_Time = 0;"), []byte("Attr_Expiration_Time = 0"), 1))
	_, err = x.AddExport(ctx, bad, 1503)
	if !errors.Is(err, storage.ErrInvalid) || !errors.As(err, &ce) || ce.Name != "org.freedesktop.DBus.Error.InvalidFileContent" ||
		!strings.Contains(ce.Message, "Syntax error") || !strings.Contains(ce.Log, "bad-statement.conf") {
		t.Errorf("AddExport(syntax error) = %v, want ErrInvalid with ganesha's log lines", err)
	}

	// Another export at the volume's pseudo path (ganesha's reply only
	// says "invalid param value"; its log says which).
	dup := writeConf("dup.conf", bytes.Replace(good, []byte("Export_Id = 1500;"), []byte("Export_Id = 1504;"), 1))
	_, err = x.AddExport(ctx, dup, 1504)
	if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "is a duplicate") {
		t.Errorf("AddExport(duplicate pseudo path) = %v, want ErrExists naming the duplicate", err)
	}

	// An export ID ganesha uses for another path is not touched.
	foreignDir := volumeDir(t, data)
	foreign := writeConf("foreign.conf", []byte(fmt.Sprintf("EXPORT {\n\tExport_Id = 1600;\n\tPath = \"%s\";\n\tPseudo = \"/foreign\";\n"+
		"\tAccess_Type = RO;\n\tProtocols = 4;\n\tFSAL {\n\t\tName = VFS;\n\t}\n}\n", foreignDir)))
	if _, err := x.AddExport(ctx, foreign, 1600); err != nil {
		t.Fatal(err)
	}
	clash := ganesha.Export{VolumeID: volID(41), ExportID: 1600, Path: volumeDir(t, data), Clients: []string{"127.0.0.1"}}
	if _, err := m.Ensure(ctx, clash); !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), foreignDir) {
		t.Errorf("Ensure over a foreign export ID = %v, want ErrExists naming its path", err)
	}
	if err := m.Remove(ctx, clash); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, "/foreign/volume", data)

	// Directories: missing, or a file.
	missing := ganesha.Export{VolumeID: volID(42), ExportID: 1601, Path: filepath.Join(foreignDir, "nope"), Clients: []string{"127.0.0.1"}}
	if _, err := m.Ensure(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Ensure(missing directory) = %v, want ErrNotFound", err)
	}
	missing.Path = filepath.Join(foreignDir, "volume")
	if _, err := m.Ensure(ctx, missing); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Ensure(file as directory) = %v, want ErrInvalid", err)
	}

	// The worst trap last: a missing ';' after a quoted string crashes
	// ganesha 4.3's config parser. The call then fails with NoReply.
	crash := writeConf("crash.conf", []byte("EXPORT {\n\tExport_Id = 1700;\n\tPath = \""+foreignDir+"\"\n\tPseudo = \"/crash\";\n\tFSAL {\n\t\tName = VFS;\n\t}\n}\n"))
	_, err = x.AddExport(ctx, crash, 1700)
	switch {
	case errors.Is(err, ganesha.ErrUnavailable):
		if !strings.Contains(err.Error(), "malformed export files") || !strings.Contains(err.Error(), "crash.conf:4) error: syntax error") {
			t.Errorf("AddExport(crashing file) = %v, want the crash explained", err)
		}
		waitFor(t, 5*time.Second, "ganesha to be gone", func() bool { return !s.Running() })
		t.Logf("ganesha crashed on the malformed file, as 4.3 does: %v", err)
		if _, err := x.ShowExports(ctx); !errors.Is(err, ganesha.ErrUnavailable) || !strings.Contains(err.Error(), "ServiceUnknown") {
			t.Errorf("ShowExports with ganesha gone = %v, want ErrUnavailable (ServiceUnknown)", err)
		}
		if owner, err := x.Owner(ctx); err != nil || owner != "" {
			t.Errorf("Owner with ganesha gone = %q, %v", owner, err)
		}
	case errors.Is(err, storage.ErrInvalid):
		t.Logf("this ganesha survives the malformed file: %v", err)
	default:
		t.Errorf("AddExport(crashing file) = %v, want ErrUnavailable (crash) or ErrInvalid", err)
	}
}

func TestNoBus(t *testing.T) {
	m, err := ganesha.New(ganesha.Config{
		Bus:       ganesha.BusConfig{Address: "unix:path=" + filepath.Join(t.TempDir(), "no-bus"), CallTimeout: time.Second},
		ExportDir: filepath.Join(t.TempDir(), "exports"),
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := ganesha.Export{VolumeID: volID(50), ExportID: 1050, Path: t.TempDir(), Clients: []string{"127.0.0.1"}}
	_, ensureErr := m.Ensure(ctx, e)
	_, showErr := m.ExportMgr().ShowExports(ctx)
	_, ownerErr := m.ExportMgr().Owner(ctx)
	_, reconcileErr := m.Reconcile(ctx, func() []ganesha.Export { return []ganesha.Export{e} })
	_, watchErr := m.ExportMgr().WatchOwner(ctx)
	for name, err := range map[string]error{
		"Ensure": ensureErr, "ShowExports": showErr, "Owner": ownerErr, "Reconcile": reconcileErr, "WatchOwner": watchErr,
		"Remove": m.Remove(ctx, e),
	} {
		if !errors.Is(err, ganesha.ErrUnavailable) || !strings.Contains(err.Error(), "no-bus") {
			t.Errorf("%s without a bus = %v, want ErrUnavailable naming the bus", name, err)
		}
	}
	if _, err := os.Stat(m.ConfigFile(1050)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Ensure wrote an export file without reaching ganesha: %v", err)
	}
}

// Every input that reaches an export file or a D-Bus call is checked
// first: these fail with ErrInvalid and never reach the bus (which does
// not exist here, so a call would fail with ErrUnavailable).
func TestBadInputsRejectedBeforeGanesha(t *testing.T) {
	exportDir := filepath.Join(t.TempDir(), "exports")
	m, err := ganesha.New(ganesha.Config{
		Bus:       ganesha.BusConfig{Address: "unix:path=" + filepath.Join(t.TempDir(), "no-bus"), CallTimeout: time.Second},
		ExportDir: exportDir,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := ganesha.Export{VolumeID: volID(60), ExportID: 1060, Path: t.TempDir(), Clients: []string{"127.0.0.1"}}
	var bad []ganesha.Export
	for _, c := range []string{
		"127.0.0.1; Access_Type = RW", "127.0.0.1 }", "} CLIENT { Clients = *", "*", "@netgroup", "host.example.com",
		"host name", "10.0.0.*", "0.0.0.0/0", "0.0.0.0", "::", "::/0", "fe80::1%eth0", "127.0.0.1/33", "127.0.0.1,10.0.0.1",
		"", " 127.0.0.1", "127.0.0.1\n", "\"127.0.0.1\"", "127.0.0.1#", "a{b}",
	} {
		e := good
		e.Clients = []string{"127.0.0.2", c}
		bad = append(bad, e)
	}
	for _, p := range []string{
		`/tmp/a"b`, "/tmp/a b", "/tmp/a;b", "/tmp/a{b}", "/tmp/a#b", "/tmp/$HOME", "/tmp/a\nb", "relative/dir", "/",
		"/tmp/../etc", "/tmp/x/", "", "/tmp/a\\b", "/tmp/é",
	} {
		e := good
		e.Path = p
		bad = append(bad, e)
	}
	for _, id := range []uint16{0, 65535} {
		e := good
		e.ExportID = id
		bad = append(bad, e)
	}
	for _, v := range []string{"", "../etc", "VOL", volID(60) + "\n"} {
		e := good
		e.VolumeID = v
		bad = append(bad, e)
	}
	for _, e := range bad {
		_, err := m.Ensure(ctx, e)
		if !errors.Is(err, storage.ErrInvalid) || errors.Is(err, ganesha.ErrUnavailable) {
			t.Errorf("Ensure(%+v) = %v, want ErrInvalid without a D-Bus call", e, err)
		}
	}
	if entries, _ := os.ReadDir(exportDir); len(entries) != 0 {
		t.Errorf("rejected exports left files: %v", entries)
	}

	x := m.ExportMgr()
	for _, file := range []string{"relative.conf", `/tmp/x".conf`, "/tmp/x y.conf", "/"} {
		if _, err := x.AddExport(ctx, file, 1060); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("AddExport(%q) = %v, want ErrInvalid", file, err)
		}
		if _, err := x.UpdateExport(ctx, file, 1060); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("UpdateExport(%q) = %v, want ErrInvalid", file, err)
		}
	}
	if _, err := x.AddExport(ctx, "/tmp/x.conf", 0); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("AddExport(id 0) = %v, want ErrInvalid", err)
	}

	store, err := ganesha.OpenStore(filepath.Join(t.TempDir(), "nfs-exports.json"), ganesha.IDRange{})
	if err != nil {
		t.Fatal(err)
	}
	v := ganesha.NewVolumes(m, store)
	for _, ip := range []string{"", "127.0.0.1; Access_Type = RW", "*", "0.0.0.0/0", "host"} {
		if _, err := v.ExportVolume(ctx, volID(61), good.Path, storage.Connector{IP: ip}); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ExportVolume(ip %q) = %v, want ErrInvalid", ip, err)
		}
	}
	if _, err := v.ExportVolume(ctx, volID(61), `/tmp/a"b`, storage.Connector{IP: "127.0.0.1"}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("ExportVolume(bad path) = %v, want ErrInvalid", err)
	}
	if got := store.List(); len(got) != 0 {
		t.Errorf("rejected exports were recorded: %+v", got)
	}

	for name, cfg := range map[string]ganesha.Config{
		"relative export dir": {ExportDir: "exports"},
		"no export dir":       {},
		"quoted export dir":   {ExportDir: `/tmp/a"b`},
		"bad squash":          {ExportDir: exportDir, Squash: "squishy"},
		"bad pseudo root":     {ExportDir: exportDir, PseudoRoot: "/a b"},
		"root pseudo root":    {ExportDir: exportDir, PseudoRoot: "/"},
		"negative timeout":    {ExportDir: exportDir, Bus: ganesha.BusConfig{CallTimeout: -time.Second}},
		"relative log":        {ExportDir: exportDir, Bus: ganesha.BusConfig{GaneshaLog: "ganesha.log"}},
	} {
		if _, err := ganesha.New(cfg, nil); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("New(%s) = %v, want ErrInvalid", name, err)
		}
	}
}

// BenchmarkAddRemoveExport measures ganesha's AddExport and RemoveExport
// over D-Bus (dbus: the raw calls, one export file) and the Manager's
// Ensure and Remove of a new export (manager: ShowExports, writing the
// file, AddExport; ShowExports, RemoveExport, deleting the file).
func BenchmarkAddRemoveExport(b *testing.B) {
	s := ganeshatest.Start(b, 32158)
	b.Logf("ganesha start: %s", s.StartDuration)
	m, err := ganesha.New(ganesha.Config{
		Bus:       ganesha.BusConfig{Address: s.BusAddress},
		ExportDir: filepath.Join(b.TempDir(), "exports"),
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "vol")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	e := ganesha.Export{VolumeID: volID(70), ExportID: 1070, Path: dir, Clients: []string{"127.0.0.1"}}

	report := func(b *testing.B, add, remove time.Duration) {
		b.ReportMetric(float64(add.Microseconds())/float64(b.N), "add-µs/op")
		b.ReportMetric(float64(remove.Microseconds())/float64(b.N), "remove-µs/op")
	}
	b.Run("dbus", func(b *testing.B) {
		info, err := m.Ensure(ctx, e)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.ExportMgr().RemoveExport(ctx, e.ExportID); err != nil {
			b.Fatal(err)
		}
		x := m.ExportMgr()
		var add, remove time.Duration
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			if _, err := x.AddExport(ctx, info.ConfigFile, e.ExportID); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := x.RemoveExport(ctx, e.ExportID); err != nil {
				b.Fatal(err)
			}
			add, remove = add+t1.Sub(t0), remove+time.Since(t1)
		}
		report(b, add, remove)
	})
	b.Run("manager", func(b *testing.B) {
		var add, remove time.Duration
		for range b.N {
			t0 := time.Now()
			if _, err := m.Ensure(ctx, e); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := m.Remove(ctx, e); err != nil {
				b.Fatal(err)
			}
			add, remove = add+t1.Sub(t0), remove+time.Since(t1)
		}
		report(b, add, remove)
	})
}

package ganesha

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

func vol(n int) string { return fmt.Sprintf("%08x-6e66-4000-8000-%012x", n, n) }

func openStore(t *testing.T, path string, ids IDRange) *Store {
	t.Helper()
	s, err := OpenStore(path, ids)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreAllocatesStableIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nfs-exports.json")
	s := openStore(t, path, IDRange{First: 10, Last: 12})
	put := func(n int, clients ...string) Export {
		t.Helper()
		e, err := s.Put(Export{VolumeID: vol(n), Path: "/srv/v" + fmt.Sprint(n), Clients: clients})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, b := put(1, "127.0.0.1"), put(2, "10.0.0.5/32", "10.0.0.5", "::ffff:127.0.0.1")
	if a.ExportID != 10 || b.ExportID != 11 {
		t.Fatalf("allocated %d, %d; want 10, 11", a.ExportID, b.ExportID)
	}
	if !slices.Equal(b.Clients, []string{"10.0.0.5", "127.0.0.1"}) {
		t.Errorf("clients stored as %v, want canonical, sorted, unique", b.Clients)
	}
	// A volume keeps its ID; a freed ID is not reused before the range wraps.
	if again := put(1, "127.0.0.1", "127.0.0.2"); again.ExportID != 10 {
		t.Errorf("re-put moved volume 1 to ID %d", again.ExportID)
	}
	if err := s.Delete(vol(1)); err != nil {
		t.Fatal(err)
	}
	if c := put(3); c.ExportID != 12 {
		t.Errorf("next allocation %d, want 12 (not the freed 10)", c.ExportID)
	}
	if d := put(4); d.ExportID != 10 {
		t.Errorf("allocation after wrapping %d, want 10", d.ExportID)
	}
	if _, err := s.Put(Export{VolumeID: vol(5), Path: "/srv/v5"}); !errors.Is(err, storage.ErrNoSpace) {
		t.Errorf("Put with the range used up = %v, want ErrNoSpace", err)
	}
	if _, err := s.Put(Export{VolumeID: vol(6), ExportID: 11, Path: "/srv/v6"}); !errors.Is(err, storage.ErrExists) {
		t.Errorf("Put with another volume's ID = %v, want ErrExists", err)
	}
	if _, err := s.Put(Export{VolumeID: vol(7), Path: "/srv/v7", Clients: []string{"*"}}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Put of an invalid export = %v, want ErrInvalid", err)
	}

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file %v, %v; want mode 0600", fi, err)
	}
	// Reopened, the records, IDs and the allocation point are the same.
	s2 := openStore(t, path, IDRange{First: 10, Last: 12})
	if !slices.EqualFunc(s2.List(), s.List(), func(x, y Export) bool {
		return x.VolumeID == y.VolumeID && x.ExportID == y.ExportID && slices.Equal(x.Clients, y.Clients)
	}) {
		t.Errorf("reopened %+v, want %+v", s2.List(), s.List())
	}
	if err := s2.Delete(vol(3)); err != nil {
		t.Fatal(err)
	}
	if e, err := s2.Put(Export{VolumeID: vol(8), Path: "/srv/v8"}); err != nil || e.ExportID != 12 {
		t.Errorf("allocation after reopening = %+v, %v; want ID 12", e, err)
	}
	if got, ok := s2.Get(vol(2)); !ok || got.ExportID != 11 {
		t.Errorf("Get = %+v, %v", got, ok)
	}
	if err := s2.Delete(vol(99)); err != nil {
		t.Errorf("Delete(unknown) = %v", err)
	}
}

func TestOpenStoreRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	e := `{"volume_id": "%s", "export_id": %d, "path": "%s"}`
	for name, content := range map[string]string{
		"garbage":       "{",
		"version":       `{"version": 2, "exports": []}`,
		"unknown field": `{"version": 1, "exports": [], "extra": 1}`,
		"bad path":      `{"version": 1, "exports": [` + fmt.Sprintf(e, vol(1), 10, `/a\"b`) + `]}`,
		"id 0":          `{"version": 1, "exports": [` + fmt.Sprintf(e, vol(1), 0, "/a") + `]}`,
		"dup volume":    `{"version": 1, "exports": [` + fmt.Sprintf(e, vol(1), 10, "/a") + "," + fmt.Sprintf(e, vol(1), 11, "/b") + `]}`,
		"dup id":        `{"version": 1, "exports": [` + fmt.Sprintf(e, vol(1), 10, "/a") + "," + fmt.Sprintf(e, vol(2), 10, "/b") + `]}`,
		"bad client":    `{"version": 1, "exports": [{"volume_id": "` + vol(1) + `", "export_id": 10, "path": "/a", "clients": ["*"]}]}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(p, IDRange{}); err == nil {
			t.Errorf("OpenStore(%s) succeeded", name)
		}
	}
	// A widened mode is taken back.
	p := filepath.Join(dir, "wide.json")
	if err := os.WriteFile(p, []byte(`{"version": 1, "next_export_id": 7, "exports": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, p, IDRange{})
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after open, want 0600", fi.Mode().Perm())
	}
	// next_export_id outside the range is ignored.
	if e, err := s.Put(Export{VolumeID: vol(1), Path: "/a"}); err != nil || e.ExportID != DefaultFirstExportID {
		t.Errorf("first allocation = %+v, %v", e, err)
	}
	for _, r := range []IDRange{{First: 0, Last: 5}, {First: 5, Last: 4}, {First: 1, Last: 65535}} {
		if _, err := OpenStore(filepath.Join(dir, "x.json"), r); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("OpenStore with range %+v = %v, want ErrInvalid", r, err)
		}
	}
}

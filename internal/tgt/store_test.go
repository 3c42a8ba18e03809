package tgt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

func storeExport(n int) Export {
	id := fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n)
	return Export{VolumeID: id, BackingStore: "/dev/kiln/volume-" + id,
		Initiators: []string{"iqn.2024-01.com.example:b", "iqn.2024-01.com.example:a", "iqn.2024-01.com.example:a"},
		CHAPUser:   fmt.Sprintf("user%d", n), CHAPSecret: fmt.Sprintf("secret%010d", n)}
}

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "exports.json")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.List(); len(got) != 0 {
		t.Fatalf("new store lists %v", got)
	}
	for _, n := range []int{3, 1, 2} {
		if err := s.Put(storeExport(n)); err != nil {
			t.Fatal(err)
		}
	}
	replaced := storeExport(2)
	replaced.Initiators = nil
	replaced.CHAPUser, replaced.CHAPSecret = "", ""
	if err := s.Put(replaced); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(storeExport(3).VolumeID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(storeExport(9).VolumeID); err != nil {
		t.Errorf("Delete(missing) = %v", err)
	}
	want := []Export{storeExport(1).normalized(), replaced.normalized()}
	if got := s.List(); !reflect.DeepEqual(got, want) {
		t.Errorf("List() = %v, want %v", got, want)
	}
	if got := want[0].Initiators; !reflect.DeepEqual(got, []string{"iqn.2024-01.com.example:a", "iqn.2024-01.com.example:b"}) {
		t.Errorf("initiators not normalised: %v", got)
	}
	// Callers cannot change the store through returned slices.
	s.List()[0].Initiators[0] = "changed"
	if e, ok := s.Get(want[0].VolumeID); !ok || !reflect.DeepEqual(e, want[0]) {
		t.Errorf("Get() = %v, %v", e, ok)
	}

	reopened, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := reopened.List(); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen List() = %v, want %v", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
}

func TestStoreTightensModeAndRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "exports.json")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(storeExport(1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after open, want 0600", fi.Mode().Perm())
	}
	good, _ := os.ReadFile(path)
	for name, content := range map[string]string{
		"not json":      "{",
		"version":       `{"version":2,"exports":[]}`,
		"unknown field": `{"version":1,"exports":[],"extra":1}`,
		"invalid":       `{"version":1,"exports":[{"volume_id":"x","backing_store":"/x"}]}`,
		"duplicate":     strings.Replace(string(good), `"exports": [`, `"exports": [`+exportJSON(t, storeExport(1))+",", 1),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(path); err == nil {
			t.Errorf("%s: OpenStore accepted %s", name, content)
		}
	}
	// Put validates.
	bad := storeExport(2)
	bad.CHAPSecret = "short"
	if err := s.Put(bad); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Put(invalid) = %v", err)
	}
}

func exportJSON(t *testing.T, e Export) string {
	t.Helper()
	return fmt.Sprintf(`{"volume_id":%q,"backing_store":%q}`, e.VolumeID, e.BackingStore)
}

func TestStoreFailedWriteKeepsState(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root writes to read-only directories; use a missing one instead.
		s, err := OpenStore(filepath.Join(t.TempDir(), "missing", "exports.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(storeExport(1)); err == nil {
			t.Fatal("Put into a missing directory succeeded")
		}
		if got := s.List(); len(got) != 0 {
			t.Errorf("failed Put changed the store: %v", got)
		}
		return
	}
	dir := t.TempDir()
	s, err := OpenStore(filepath.Join(dir, "exports.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if err := s.Put(storeExport(1)); err == nil {
		t.Fatal("Put into a read-only directory succeeded")
	}
	if got := s.List(); len(got) != 0 {
		t.Errorf("failed Put changed the store: %v", got)
	}
}

func TestStoreConcurrentPuts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exports.json")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for n := range 16 {
		wg.Go(func() {
			if err := s.Put(storeExport(n)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	reopened, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(reopened.List()); got != 16 {
		t.Errorf("%d records after 16 concurrent puts", got)
	}
}

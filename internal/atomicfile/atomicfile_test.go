package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "records.json")
	for _, data := range []string{"first\n", "second, longer\n"} {
		renamed, err := WriteFile(path, []byte(data), 0o640)
		if err != nil || !renamed {
			t.Fatalf("WriteFile = %v, %v; want true, nil", renamed, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("file holds %q (%v), want %q", got, err, data)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v (%v), want 0640", fi.Mode().Perm(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temporary files)", len(entries))
	}
}

func TestWriteFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "records.json")
	if renamed, err := WriteFile(path, []byte("x"), 0o600); err == nil || renamed {
		t.Errorf("WriteFile into a missing directory = %v, %v; want false and an error", renamed, err)
	}
}

func TestRestrict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ mode, found, after os.FileMode }{
		{0o600, 0, 0o600},
		{0o700, 0, 0o700}, // only group and other bits count
		{0o644, 0o644, 0o600},
		{0o602, 0o602, 0o600},
	} {
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		found, err := Restrict(path, 0o600)
		fi, _ := os.Stat(path)
		if err != nil || found != tt.found || fi.Mode().Perm() != tt.after {
			t.Errorf("Restrict of a %v file = %v, %v, leaving %v; want %v, nil, leaving %v",
				tt.mode, found, err, fi.Mode().Perm(), tt.found, tt.after)
		}
	}
	if found, err := Restrict(filepath.Join(t.TempDir(), "missing"), 0o600); found != 0 || err != nil {
		t.Errorf("Restrict of a missing file = %v, %v; want 0, nil", found, err)
	}
}

// Package atomicfile replaces files so that a crash leaves either the old
// or the new content, never a mix.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data (mode perm): a temporary file in the
// same directory, fsync, rename, fsync of the directory. renamed reports
// whether path holds data, also when making that durable failed; when it
// is false, the temporary file is gone and path is untouched.
func WriteFile(path string, data []byte, perm os.FileMode) (renamed bool, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return false, err
	}
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return false, err
	}
	if _, err := tmp.Write(data); err != nil {
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, err
	}
	// Some file systems cannot fsync a directory (EINVAL); their renames are
	// as durable as they make them.
	d, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return true, fmt.Errorf("sync %s: %w", dir, err)
	}
	return true, nil
}

// Restrict takes back group and other access someone gave path (e.g. a
// file holding secrets widened to 0644): if its mode has any of the bits
// 0o077, it is changed to perm, and the mode found is returned with the
// error of that change. A path that cannot be stat'ed is left alone:
// reading it reports that.
func Restrict(path string, perm os.FileMode) (found os.FileMode, err error) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return 0, nil
	}
	return fi.Mode().Perm(), os.Chmod(path, perm)
}

//go:build !linux

package nfs

import (
	"errors"
	"io/fs"
	"os"
)

// statfs is only implemented for Linux; see the package documentation.
func statfs(dir string) (fsUsage, error) {
	return fsUsage{}, &os.PathError{Op: "statfs", Path: dir, Err: errors.ErrUnsupported}
}

// preallocate is only implemented for Linux: volumes elsewhere stay sparse.
func preallocate(*os.File, int64, int64) (bool, error) { return false, nil }

// dataExtent reports the whole rest of the file as data where SEEK_DATA is
// not used; copies still skip all-zero blocks, so they stay sparse.
func dataExtent(_ *os.File, off, size int64) (start, end int64, err error) {
	if off >= size {
		return size, size, nil
	}
	return off, size, nil
}

// allocatedBytes assumes a file occupies its full size where st_blocks is
// not read; the over-estimate only makes a capped thin pool look fuller.
func allocatedBytes(fi fs.FileInfo) int64 { return fi.Size() }

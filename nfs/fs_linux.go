//go:build linux

package nfs

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// statfs measures the file system holding dir, as `df` does: f_blocks and
// f_bavail (space available to unprivileged users) in f_frsize units.
func statfs(dir string) (fsUsage, error) {
	var st unix.Statfs_t
	err := ignoringEINTR(func() error { return unix.Statfs(dir, &st) })
	if err != nil {
		return fsUsage{}, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	unit := uint64(st.Frsize)
	if unit == 0 {
		unit = uint64(st.Bsize)
	}
	return fsUsage{
		total: clampInt64(uint64(st.Blocks), unit),
		avail: clampInt64(uint64(st.Bavail), unit),
	}, nil
}

// preallocate reserves the blocks of bytes [off, off+length) of f with
// fallocate(2), which also extends the file's size to off+length if it was
// smaller. It returns false, nil when the file system does not support
// fallocate (EOPNOTSUPP, e.g. NFSv3 or older ext3), leaving f as it was for
// the caller to size sparsely.
func preallocate(f *os.File, off, length int64) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		ferr = ignoringEINTR(func() error { return unix.Fallocate(int(fd), 0, off, length) })
	}); err != nil {
		return false, &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	switch {
	case ferr == nil:
		return true, nil
	case errors.Is(ferr, unix.EOPNOTSUPP), errors.Is(ferr, unix.ENOSYS):
		return false, nil
	default:
		return false, &os.PathError{Op: "fallocate", Path: f.Name(), Err: ferr}
	}
}

// dataExtent returns the first range [start, end) at or after off that may
// hold data in f, found with lseek(2) SEEK_DATA/SEEK_HOLE, clipped to size.
// start == size means there is no data left. A file system without
// SEEK_DATA support reports the whole rest of the file as data (the kernel's
// generic fallback, or EINVAL here), which only makes the copy slower.
func dataExtent(f *os.File, off, size int64) (start, end int64, err error) {
	if off >= size {
		return size, size, nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, 0, &os.PathError{Op: "seek", Path: f.Name(), Err: err}
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		start, serr = unix.Seek(int(fd), off, unix.SEEK_DATA)
		if serr == nil {
			end, serr = unix.Seek(int(fd), start, unix.SEEK_HOLE)
		}
	}); err != nil {
		return 0, 0, &os.PathError{Op: "seek", Path: f.Name(), Err: err}
	}
	switch {
	case errors.Is(serr, unix.ENXIO): // no data at or after off
		return size, size, nil
	case errors.Is(serr, unix.EINVAL): // SEEK_DATA unsupported
		return off, size, nil
	case serr != nil:
		return 0, 0, &os.PathError{Op: "seek", Path: f.Name(), Err: serr}
	}
	return min(start, size), min(end, size), nil
}

// allocatedBytes is the space a file really occupies (st_blocks is counted
// in 512-byte units whatever the file system's block size).
func allocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}

// ignoringEINTR retries a system call interrupted by a signal; the Go
// runtime's own preemption signals can interrupt a long fallocate.
func ignoringEINTR(call func() error) error {
	for {
		err := call()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func clampInt64(blocks, unit uint64) int64 {
	if unit != 0 && blocks > math.MaxInt64/unit {
		return math.MaxInt64
	}
	return int64(blocks * unit)
}

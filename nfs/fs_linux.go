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

// preallocate reserves size bytes of blocks for f with fallocate(2), which
// also sets the file's size. It returns false, nil when the file system does
// not support fallocate (EOPNOTSUPP, e.g. NFSv3 or older ext3), leaving f
// as it was for the caller to size sparsely.
func preallocate(f *os.File, size int64) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		ferr = ignoringEINTR(func() error { return unix.Fallocate(int(fd), 0, 0, size) })
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

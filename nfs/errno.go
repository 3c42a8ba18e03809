package nfs

import (
	"errors"
	"syscall"
)

// isNoSpace reports a file system that cannot hold more data: full, over
// quota, or unable to hold a file that large.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// dirSyncUnsupported reports a file system that cannot fsync a directory
// (EINVAL); its renames are as durable as it makes them.
func dirSyncUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL)
}

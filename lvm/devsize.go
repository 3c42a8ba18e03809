package lvm

import (
	"io"
	"os"
)

// deviceSize returns the size of a block device (or file) in bytes.
func deviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

package nfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// qcow2 header fields read without running qemu-img, so that listing a
// pool (every Stats) costs one small read per file instead of a process
// per file. Operations that change a chain still go through qemu-img,
// which checks the whole chain (internal/qemuimg.InfoChain).
const (
	qcow2Magic = "QFI\xfb"
	// qcow2HeaderLen covers magic, version, backing file offset and size,
	// cluster bits and the virtual size (qcow2 spec, version 2 and 3).
	qcow2HeaderLen = 32
	// maxBackingName is the qcow2 spec's limit on the backing file name.
	maxBackingName = 1023
	// maxBackingOffset: qemu writes the name right after the header, in the
	// first cluster; a name further away is not one qemu-img wrote.
	maxBackingOffset = 2 << 20
)

// qcow2Header is what the driver reads from a qcow2 image's header.
type qcow2Header struct {
	size    int64  // virtual size in bytes
	backing string // backing file name as recorded; "" if none
}

// readQCOW2Header reads and checks the header of the qcow2 image at path.
func readQCOW2Header(path string) (qcow2Header, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return qcow2Header{}, err
	}
	defer f.Close()
	return parseQCOW2Header(f, path)
}

func parseQCOW2Header(r io.ReaderAt, path string) (qcow2Header, error) {
	var b [qcow2HeaderLen]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return qcow2Header{}, fmt.Errorf("%s is too short for a qcow2 image", path)
		}
		return qcow2Header{}, err
	}
	if string(b[:4]) != qcow2Magic {
		return qcow2Header{}, fmt.Errorf("%s is not a qcow2 image (magic %x)", path, b[:4])
	}
	if v := binary.BigEndian.Uint32(b[4:8]); v != 2 && v != 3 {
		return qcow2Header{}, fmt.Errorf("%s: unsupported qcow2 version %d", path, v)
	}
	size := binary.BigEndian.Uint64(b[24:32])
	if size > uint64(maxVolumeBytes) || size%512 != 0 {
		return qcow2Header{}, fmt.Errorf("%s: implausible qcow2 virtual size %d", path, size)
	}
	h := qcow2Header{size: int64(size)}
	off, n := binary.BigEndian.Uint64(b[8:16]), binary.BigEndian.Uint32(b[16:20])
	if off == 0 {
		return h, nil
	}
	if n == 0 || n > maxBackingName || off < qcow2HeaderLen || off > maxBackingOffset {
		return qcow2Header{}, fmt.Errorf("%s: implausible qcow2 backing file reference (offset %d, length %d)", path, off, n)
	}
	name := make([]byte, n)
	if _, err := r.ReadAt(name, int64(off)); err != nil {
		return qcow2Header{}, fmt.Errorf("%s: read backing file name: %w", path, err)
	}
	h.backing = string(name)
	return h, nil
}

// imageSize is the virtual size of the image at path in format: a raw
// file's size, a qcow2 image's header field.
func imageSize(path, format string) (int64, error) {
	if format == formatQCOW2 {
		h, err := readQCOW2Header(path)
		return h.size, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file (mode %s)", path, fi.Mode())
	}
	return fi.Size(), nil
}

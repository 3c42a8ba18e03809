package qemuimg

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// Image formats. No other format is ever passed to qemu-img.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
)

// Preallocation modes (qemu-img's preallocation option).
const (
	PreallocOff      = "off"
	PreallocMetadata = "metadata" // qcow2 only
	PreallocFalloc   = "falloc"
	PreallocFull     = "full"
)

// MaxSize bounds an image's size: storage.MaxVolumeGiB (1 PiB).
const MaxSize = storage.MaxVolumeGiB * storage.GiB

// maxPath and maxName are Linux's PATH_MAX (less the NUL) and NAME_MAX.
const (
	maxPath = 4095
	maxName = 255
)

// safeChar reports whether c may appear in a path or backing name: letters,
// digits and "._+@-", plus '/' in paths. Notably not ':' (qemu's protocol
// prefixes, "json:"), ',' (option separator), '=' or whitespace.
func safeChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._+@-", c) >= 0
}

// checkPath validates an image path: absolute, clean, safe characters.
func checkPath(what, p string) error {
	if p == "" || p[0] != '/' || len(p) > maxPath {
		return fmt.Errorf("%w: %s %q must be an absolute path of at most %d bytes", ErrInvalid, what, p, maxPath)
	}
	if filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("%w: %s %q is not a clean path to a file", ErrInvalid, what, p)
	}
	for _, elem := range strings.Split(p[1:], "/") {
		if err := checkName(what, elem); err != nil {
			return fmt.Errorf("%w (in %q)", err, p)
		}
	}
	return nil
}

// checkName validates one path element, e.g. a backing file name.
func checkName(what, name string) error {
	if name == "" || name == "." || name == ".." || len(name) > maxName || name[0] == '-' {
		return fmt.Errorf("%w: %s %q is not a file name", ErrInvalid, what, name)
	}
	for i := 0; i < len(name); i++ {
		if !safeChar(name[i]) {
			return fmt.Errorf("%w: %s %q contains %q; only [A-Za-z0-9._+@-] are allowed", ErrInvalid, what, name, name[i])
		}
	}
	return nil
}

// checkFormat accepts "raw" and "qcow2".
func checkFormat(what, format string) error {
	if format != FormatRaw && format != FormatQCOW2 {
		return fmt.Errorf("%w: %s %q is not raw or qcow2", ErrInvalid, what, format)
	}
	return nil
}

// checkSize accepts a positive multiple of 512 up to MaxSize.
func checkSize(size int64) error {
	if size <= 0 || size > MaxSize || size%512 != 0 {
		return fmt.Errorf("%w: size %d is not a multiple of 512 in 512..%d", ErrInvalid, size, MaxSize)
	}
	return nil
}

// checkPrealloc validates a preallocation mode for format; "" is the default.
func checkPrealloc(format, mode string) error {
	switch mode {
	case "", PreallocOff, PreallocFalloc, PreallocFull:
		return nil
	case PreallocMetadata:
		if format == FormatQCOW2 {
			return nil
		}
	}
	return fmt.Errorf("%w: preallocation %q for a %s image", ErrInvalid, mode, format)
}

// heavyPrealloc reports whether mode writes or allocates the whole image,
// which makes a create or resize a data operation.
func heavyPrealloc(mode string) bool { return mode == PreallocFalloc || mode == PreallocFull }

// checkClusterSize accepts 0 (the default, 64 KiB) or a power of two in
// 512..2 MiB, qcow2 only.
func checkClusterSize(format string, n int64) error {
	if n == 0 {
		return nil
	}
	if format != FormatQCOW2 || n < 512 || n > 2<<20 || n&(n-1) != 0 {
		return fmt.Errorf("%w: cluster size %d for a %s image (qcow2 only, a power of two in 512..2M)", ErrInvalid, n, format)
	}
	return nil
}

// backingPath resolves a backing name against the image at path.
func backingPath(path, name string) string { return filepath.Join(filepath.Dir(path), name) }

// checkBacking validates a backing name and format for the image at path.
func checkBacking(path, name, format string) error {
	if err := checkName("backing file", name); err != nil {
		return err
	}
	if err := checkFormat("backing format", format); err != nil {
		return err
	}
	if backingPath(path, name) == path {
		return fmt.Errorf("%w: %s cannot be its own backing file", ErrInvalid, path)
	}
	return nil
}

// qcow2Magic starts every qcow2 image.
const qcow2Magic = "QFI\xfb"

// refuseQCOW2AsRaw fails if a backing file the caller calls raw starts
// with the qcow2 magic. qemu-img accepts "-F raw" for a qcow2 backing file
// without a word, and the overlay then shows the qcow2 metadata as the
// disk's data; this catches a driver's bookkeeping mistake before it does
// that. (A raw volume whose guest wrote the magic into its first sector is
// refused too: better than trusting it.)
func refuseQCOW2AsRaw(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return fmt.Errorf("%w: %w", ErrBackingUnavailable, err)
	}
	if err != nil {
		return openError(path, err)
	}
	defer f.Close()
	head := make([]byte, len(qcow2Magic))
	n, _ := f.ReadAt(head, 0)
	if string(head[:n]) == qcow2Magic {
		return fmt.Errorf("%w: %s is used as raw but starts with a qcow2 header", ErrWrongFormat, path)
	}
	return nil
}

// openError maps an error from opening path ourselves.
func openError(path string, err error) error {
	switch {
	case os.IsExist(err):
		return fmt.Errorf("%w: %s", ErrExists, path)
	case os.IsNotExist(err):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case os.IsPermission(err):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	}
	return err
}

func sizeArg(n int64) string { return strconv.FormatInt(n, 10) }

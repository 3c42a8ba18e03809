package nfs

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/kilnstore/kiln/internal/storage"
)

const (
	// copyChunk is how much of a data extent one read fetches.
	copyChunk = 1 << 20
	// zeroBlock is the granularity at which all-zero data is left unwritten:
	// the page size, the smallest unit a file system can leave as a hole.
	zeroBlock = 4096
)

var zeros [zeroBlock]byte

// copySparse copies the first size bytes of src into dst, which must read
// as zeros over that range: a new file, sparse or preallocated. Only the
// data extents of src are read (dataExtent), and within them all-zero blocks
// are not written, so copying a big mostly-empty volume reads and writes
// only its data, and the copy occupies no more than the source. ctx is
// checked between chunks, so a cancelled copy stops promptly; the caller
// removes the unfinished destination. Progress goes to the context's
// storage.ProgressFunc after every data extent.
func copySparse(ctx context.Context, dst, src *os.File, size int64) error {
	buf := make([]byte, copyChunk)
	progress := storage.Progress(ctx)
	for off := int64(0); off < size; {
		start, end, err := dataExtent(src, off, size)
		if err != nil {
			return err
		}
		if start >= size {
			break
		}
		if end <= start { // never loop on a file system that misreports holes
			end = min(start+copyChunk, size)
		}
		for pos := start; pos < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := int(min(int64(len(buf)), end-pos))
			if _, err := src.ReadAt(buf[:n], pos); err != nil {
				return fmt.Errorf("read %s at offset %d: %w", src.Name(), pos, err)
			}
			if err := writeNonZero(dst, buf[:n], pos); err != nil {
				return noSpace(err)
			}
			pos += int64(n)
		}
		off = end
		progress(off, size)
	}
	progress(size, size)
	return nil
}

// writeNonZero writes the blocks of b that are not all zeros to f at off,
// merging adjacent ones into one write.
func writeNonZero(f *os.File, b []byte, off int64) error {
	block := func(i int) []byte { return b[i:min(i+zeroBlock, len(b))] }
	for i := 0; i < len(b); {
		for i < len(b) && isZero(block(i)) {
			i += zeroBlock
		}
		if i >= len(b) {
			return nil
		}
		j := i
		for j < len(b) && !isZero(block(j)) {
			j += zeroBlock
		}
		j = min(j, len(b))
		if _, err := f.WriteAt(b[i:j], off+int64(i)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func isZero(b []byte) bool { return bytes.Equal(b, zeros[:len(b)]) }

package lvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kilnstore/kiln/internal/storage"
)

// copyChunk is the unit of device I/O for copies and clears.
const copyChunk = 4 << 20

// progressEvery spaces progress reports.
const progressEvery = 2 * time.Second

// device returns the block device of an LV, activating it (also when it
// carries the activation-skip flag, as thin snapshots do) if its node is
// missing.
func (d *Driver) device(ctx context.Context, lv lvRow) (string, error) {
	if lv.Path == "" {
		return "", fmt.Errorf("%s has no device path", lv.Name)
	}
	if _, err := os.Stat(lv.Path); err == nil {
		return lv.Path, nil
	}
	if _, err := d.r.run(ctx, "lvchange", "-ay", "-K", d.ref(lv.Name)); err != nil {
		return "", fmt.Errorf("activate %s: %w", lv.Name, err)
	}
	if _, err := os.Stat(lv.Path); err != nil {
		return "", fmt.Errorf("%s activated but its device is missing: %w", lv.Name, err)
	}
	return lv.Path, nil
}

// clear overwrites the first VolumeClearSizeMiB (or all) of a thick LV
// with zeros.
func (d *Driver) clear(ctx context.Context, lv lvRow) error {
	dev, err := d.device(ctx, lv)
	if err != nil {
		return err
	}
	n := lv.SizeBytes
	if c := d.cfg.VolumeClearSizeMiB << 20; c > 0 && c < n {
		n = c
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer f.Close()
	start := time.Now()
	if err := zeroRange(ctx, f, 0, n); err != nil {
		return fmt.Errorf("zero %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dev, err)
	}
	d.log.Info("cleared volume before removal", "lv", lv.Name, "bytes", n, "took", time.Since(start))
	return nil
}

// zeroRange makes [off, off+n) of a block device read as zeros: with
// BLKZEROOUT (the device zeroes it, offloaded where the hardware can),
// else by writing zeros.
func zeroRange(ctx context.Context, f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	r := [2]uint64{uint64(off), uint64(n)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r))); errno == 0 {
		return nil
	}
	return writeZeros(ctx, f, off, n)
}

func writeZeros(ctx context.Context, w io.WriterAt, off, n int64) error {
	zero := make([]byte, copyChunk)
	for done := int64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(int64(len(zero)), n-done)
		if _, err := w.WriteAt(zero[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// copyDevice copies n bytes from device src to device dst and zeroes dst
// from n to dstSize, so that dst reads exactly as src (then zeros). A thin
// destination is first discarded whole (a thin LV then reads as zeros and
// its blocks go back to the pool), so zero chunks are skipped and it stays
// thin. On a thick destination every chunk is compared with what it must
// hold and written only if it differs: it never keeps a previous volume's
// data, and a revert rewrites only what changed since the snapshot (each
// write to a thick origin with snapshots costs a copy-on-write). Progress
// goes to the context's storage.ProgressFunc.
func copyDevice(ctx context.Context, src, dst string, n, dstSize int64, dstThin bool) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open source %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open destination %s: %w", dst, err)
	}
	defer out.Close()

	dstZeroed := false
	if dstThin {
		if err := discard(out, 0, dstSize); err != nil {
			return fmt.Errorf("discard %s before the copy: %w", dst, err)
		}
		dstZeroed = true
	}
	progress := storage.Progress(ctx)
	want := make([]byte, copyChunk) // what dst must hold
	have := make([]byte, copyChunk) // what it holds
	last := time.Now()
	for off := int64(0); off < dstSize; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if off >= n && !dstZeroed {
			// Past the source: zero the rest in one call (BLKZEROOUT).
			// A thick origin's snapshots do not cover what was added by
			// extending it, so this costs no copy-on-write.
			if err := zeroRange(ctx, out, off, dstSize-off); err != nil {
				return fmt.Errorf("zero the tail of %s: %w", dst, err)
			}
			break
		}
		k := min(int64(copyChunk), dstSize-off)
		if off < n {
			k = min(k, n-off)
			if _, err := io.ReadFull(io.NewSectionReader(in, off, k), want[:k]); err != nil {
				return fmt.Errorf("read %s at %d: %w", src, off, err)
			}
		} else {
			break // the rest of a discarded thin LV reads as zeros
		}
		write := !allZero(want[:k])
		if !dstZeroed {
			if _, err := io.ReadFull(io.NewSectionReader(out, off, k), have[:k]); err != nil {
				return fmt.Errorf("read %s at %d: %w", dst, off, err)
			}
			write = !bytes.Equal(want[:k], have[:k])
		}
		if write {
			if _, err := out.WriteAt(want[:k], off); err != nil {
				return fmt.Errorf("write %s at %d: %w", dst, off, err)
			}
		}
		off += k
		if time.Since(last) >= progressEvery {
			progress(off, dstSize)
			last = time.Now()
		}
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	progress(dstSize, dstSize)
	return nil
}

// discard unmaps [off, off+n) of a block device (BLKDISCARD). On a thin
// LV the range then reads as zeros: dm-thin unmaps whole chunks, and the
// ranges Kiln discards are whole LVs, extent-aligned.
func discard(f *os.File, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r))); errno != 0 {
		return errno
	}
	return nil
}

var zeroChunk = make([]byte, copyChunk)

func allZero(b []byte) bool { return bytes.Equal(b, zeroChunk[:len(b)]) }

// errNotOrigin is returned when a snapshot belongs to another volume.
var errNotOrigin = errors.New("snapshot belongs to another volume")

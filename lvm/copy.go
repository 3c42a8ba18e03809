package lvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

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
	if err := writeZeros(ctx, f, 0, n); err != nil {
		return fmt.Errorf("zero %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dev, err)
	}
	d.log.Info("cleared volume before removal", "lv", lv.Name, "bytes", n, "took", time.Since(start))
	return nil
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
// from n to dstSize. A destination that is known to read as zeros (a new
// thin LV) skips zero chunks, keeping it thin; any other destination is
// written in full, so a thick LV never exposes a previous volume's data.
// Progress goes to the context's storage.ProgressFunc.
func copyDevice(ctx context.Context, src, dst string, n, dstSize int64, dstZeroed bool) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open source %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open destination %s: %w", dst, err)
	}
	defer out.Close()

	progress := storage.Progress(ctx)
	total := dstSize
	buf := make([]byte, copyChunk)
	last := time.Now()
	for off := int64(0); off < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(int64(len(buf)), n-off)
		if _, err := io.ReadFull(io.NewSectionReader(in, off, k), buf[:k]); err != nil {
			return fmt.Errorf("read %s at %d: %w", src, off, err)
		}
		if !dstZeroed || !allZero(buf[:k]) {
			if _, err := out.WriteAt(buf[:k], off); err != nil {
				return fmt.Errorf("write %s at %d: %w", dst, off, err)
			}
		}
		off += k
		if time.Since(last) >= progressEvery {
			progress(off, total)
			last = time.Now()
		}
	}
	if !dstZeroed && dstSize > n {
		if err := writeZeros(ctx, out, n, dstSize-n); err != nil {
			return fmt.Errorf("zero the tail of %s: %w", dst, err)
		}
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	progress(total, total)
	return nil
}

var zeroChunk = make([]byte, copyChunk)

func allZero(b []byte) bool { return bytes.Equal(b, zeroChunk[:len(b)]) }

// errNotOrigin is returned when a snapshot belongs to another volume.
var errNotOrigin = errors.New("snapshot belongs to another volume")

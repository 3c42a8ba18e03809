package nfs

import (
	"context"
	"fmt"
	"os"

	"github.com/kilnstore/kiln/internal/storage"
)

// ExtendVolume grows volume id to newSizeGiB GiB; the data is kept and the
// new part reads as zeros. A volume already of that size is a success (a
// repeated extend), a larger one wraps storage.ErrInvalid (volumes never
// shrink), a missing one storage.ErrNotFound. In a thick pool the added size
// is accounted and its blocks reserved (storage.ErrNoSpace when it does not
// fit). Growing a file is safe while it is open, so an attached volume can
// be extended (the pool reports online_extend_support); the consumer then
// rescans its size.
func (d *Driver) ExtendVolume(ctx context.Context, id string, newSizeGiB int64) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("nfs: extend volume: %w", err)
	}
	if err := storage.ValidateSize(newSizeGiB); err != nil {
		return fmt.Errorf("nfs: extend volume %s: %w", id, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("nfs: extend volume %s to %d GiB in pool %q: %w", id, newSizeGiB, d.cfg.Name, err)
	}
	unlock, err := d.lockIDs(ctx, volKey(id))
	if err != nil {
		return fail(err)
	}
	defer unlock()

	if d.chain {
		if err := d.chainExtend(ctx, id, newSizeGiB*storage.GiB); err != nil {
			return fail(err)
		}
		return nil
	}
	path, fi, err := d.volumeFile(id)
	if err != nil {
		return fail(err)
	}
	cur, size := fi.Size(), newSizeGiB*storage.GiB
	if cur > size {
		return fail(fmt.Errorf("%w: the volume is %s; shrinking is not supported", storage.ErrInvalid, sizeString(cur)))
	}
	if d.thick && size > cur {
		// The new size counts in measure as soon as the file grows, so the
		// check and the growth are one step under the pool lock (as a
		// blank create's were), not a claim released later.
		if err := d.pool.lock(ctx); err != nil {
			return fail(err)
		}
		defer d.pool.unlock()
		if err := d.checkFree(ctx, size-cur); err != nil {
			return fail(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := growFile(path, cur, size, d.thick); err != nil {
		return fail(err)
	}
	return nil
}

// growFile sets path's size to size (>= cur, its current size) and makes
// the change durable. A size change is a single metadata update, so a crash
// leaves the old or the new size and a retry completes it.
func growFile(path string, cur, size int64, thick bool) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = noSpace(cerr)
		}
	}()
	if thick && size > cur {
		if _, err := preallocate(f, cur, size-cur); err != nil {
			return noSpace(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		return noSpace(err)
	}
	return noSpace(f.Sync())
}

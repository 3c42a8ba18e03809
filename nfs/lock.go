package nfs

import (
	"context"
)

// ctxMutex is a mutex whose Lock gives up when the context is done, so a
// caller stuck behind a slow operation can still honour its deadline.
type ctxMutex chan struct{}

func newCtxMutex() ctxMutex { return make(ctxMutex, 1) }

func (m ctxMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m ctxMutex) unlock() { <-m }

// lockIDs takes the lock keys of one operation (see volKey and snapKey),
// failing first if ctx is already done.
func (d *Driver) lockIDs(ctx context.Context, keys ...string) (unlock func(), err error) {
	if err := d.ready(ctx); err != nil {
		return nil, err
	}
	return d.ids.LockAll(ctx, keys...)
}

package nfs

import (
	"context"
	"slices"
	"sync"
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

// keyedMutex serializes work per key (the lock key of a volume or a
// snapshot, see volKey and snapKey) while different keys run in parallel. An
// entry lives only while someone holds or waits for its key, so the map
// stays as small as the number of IDs in flight.
type keyedMutex struct {
	mu      sync.Mutex
	entries map[string]*keyedEntry
}

type keyedEntry struct {
	m    ctxMutex
	refs int // holders + waiters; guarded by keyedMutex.mu
}

func newKeyedMutex() *keyedMutex {
	return &keyedMutex{entries: make(map[string]*keyedEntry)}
}

// lock acquires key and returns the function that releases it.
func (k *keyedMutex) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	e := k.entries[key]
	if e == nil {
		e = &keyedEntry{m: newCtxMutex()}
		k.entries[key] = e
	}
	e.refs++
	k.mu.Unlock()

	if err := e.m.lock(ctx); err != nil {
		k.release(key, e)
		return nil, err
	}
	return func() {
		e.m.unlock()
		k.release(key, e)
	}, nil
}

func (k *keyedMutex) release(key string, e *keyedEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(k.entries, key)
	}
}

// size reports how many keys are held or awaited (for tests).
func (k *keyedMutex) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.entries)
}

// lockAll acquires every key in sorted order and returns the function that
// releases them all. Operations that touch two objects (a clone reads one
// volume and writes another) take both keys through lockAll, so two of them
// can never hold one key each while waiting for the other's. Duplicate keys
// are taken once.
func (k *keyedMutex) lockAll(ctx context.Context, keys ...string) (unlock func(), err error) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	unlocks := make([]func(), 0, len(keys))
	release := func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	for _, key := range keys {
		u, err := k.lock(ctx, key)
		if err != nil {
			release()
			return nil, err
		}
		unlocks = append(unlocks, u)
	}
	return release, nil
}

// lockIDs takes the lock keys of one operation (see volKey and snapKey),
// failing first if ctx is already done.
func (d *Driver) lockIDs(ctx context.Context, keys ...string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return d.ids.lockAll(ctx, keys...)
}

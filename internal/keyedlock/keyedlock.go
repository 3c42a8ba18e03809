// Package keyedlock serializes work per key (a volume or snapshot ID)
// while different keys run in parallel. An entry lives only while someone
// holds or waits for its key, so the map stays as small as the number of
// keys in flight.
package keyedlock

import (
	"context"
	"slices"
	"sync"
)

// Map is a set of per-key mutexes whose Lock gives up when the context is
// done. The zero value is ready to use.
type Map struct {
	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	ch   chan struct{}
	refs int // holders + waiters; guarded by Map.mu
}

// Lock acquires key and returns the function that releases it. It fails
// only with the context's error.
func (m *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	m.mu.Lock()
	if m.entries == nil {
		m.entries = make(map[string]*entry)
	}
	e := m.entries[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		m.entries[key] = e
	}
	e.refs++
	m.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
		return func() {
			<-e.ch
			m.release(key, e)
		}, nil
	case <-ctx.Done():
		m.release(key, e)
		return nil, ctx.Err()
	}
}

// LockAll acquires every key in sorted order (duplicates once) and returns
// the function that releases them all. Operations that touch two objects
// (a clone reads one volume and writes another) take both keys this way,
// so two of them can never hold one key each while waiting for the other.
func (m *Map) LockAll(ctx context.Context, keys ...string) (unlock func(), err error) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	unlocks := make([]func(), 0, len(keys))
	release := func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	for _, key := range keys {
		u, err := m.Lock(ctx, key)
		if err != nil {
			release()
			return nil, err
		}
		unlocks = append(unlocks, u)
	}
	return release, nil
}

// MustLock acquires key without a deadline.
func (m *Map) MustLock(key string) (unlock func()) {
	unlock, _ = m.Lock(context.Background(), key)
	return unlock
}

func (m *Map) release(key string, e *entry) {
	m.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(m.entries, key)
	}
	m.mu.Unlock()
}

// Len reports how many keys are held or waited for (for tests).
func (m *Map) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

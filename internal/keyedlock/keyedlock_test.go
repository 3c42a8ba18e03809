package keyedlock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSameKeySerializesOtherKeysRunInParallel(t *testing.T) {
	var m Map
	var inA atomic.Int32
	var maxA atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := m.MustLock("a")
			if n := inA.Add(1); n > maxA.Load() {
				maxA.Store(n)
			}
			time.Sleep(time.Millisecond)
			inA.Add(-1)
			unlock()
		}()
	}
	// A different key is not blocked by "a".
	unlockA := m.MustLock("a")
	done := make(chan struct{})
	go func() { m.MustLock("b")(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("key b waited for key a")
	}
	unlockA()
	wg.Wait()
	if maxA.Load() != 1 {
		t.Fatalf("%d holders of key a at once, want 1", maxA.Load())
	}
	if m.Len() != 0 {
		t.Fatalf("%d entries left after every unlock, want 0", m.Len())
	}
}

func TestLockGivesUpWithContext(t *testing.T) {
	var m Map
	unlock := m.MustLock("k")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "k"); err != context.DeadlineExceeded {
		t.Fatalf("Lock on a held key with an expiring context = %v, want DeadlineExceeded", err)
	}
	unlock()
	if m.Len() != 0 {
		t.Fatalf("%d entries left, want 0", m.Len())
	}
}

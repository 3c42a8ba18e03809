package keyedlock

import (
	"context"
	"errors"
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

func TestMapSerializesOneKey(t *testing.T) {
	var k Map
	var wg sync.WaitGroup
	inside, maxInside := 0, 0 // guarded by the key; -race flags any overlap
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := k.Lock(context.Background(), "a")
			if err != nil {
				t.Error(err)
				return
			}
			inside++
			maxInside = max(maxInside, inside)
			time.Sleep(time.Millisecond)
			inside--
			unlock()
		}()
	}
	wg.Wait()
	if maxInside != 1 {
		t.Errorf("%d holders at once, want 1", maxInside)
	}
	if n := k.Len(); n != 0 {
		t.Errorf("%d entries left, want 0", n)
	}
}

func TestMapKeysAreIndependent(t *testing.T) {
	var k Map
	unlockA, err := k.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer unlockA()
	// With "a" held, "b" is available at once: a deadline cannot expire.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlockB, err := k.Lock(ctx, "b")
	if err != nil {
		t.Fatalf("lock b while a is held: %v", err)
	}
	unlockB()
}

func TestMapWaitHonoursContext(t *testing.T) {
	var k Map
	unlock, err := k.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := k.Lock(ctx, "a")
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting lock returned %v, want context.Canceled", err)
	}
	if n := k.Len(); n != 1 {
		t.Errorf("%d entries while a is held, want 1", n)
	}
	unlock()
	if n := k.Len(); n != 0 {
		t.Errorf("%d entries after release, want 0", n)
	}
	// The abandoned wait did not leave the key locked.
	unlock, err = k.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

// TestLockAllOrdersKeys takes the same pair of keys in both orders from many
// goroutines: with a fixed order this never deadlocks.
func TestLockAllOrdersKeys(t *testing.T) {
	var k Map
	ctx := context.Background()
	var wg sync.WaitGroup
	var inside atomic.Int32
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := []string{"volume-a", "snapshot-b"}
			if i%2 == 1 {
				keys = []string{"snapshot-b", "volume-a", "volume-a"}
			}
			unlock, err := k.LockAll(ctx, keys...)
			if err != nil {
				t.Error(err)
				return
			}
			if n := inside.Add(1); n != 1 {
				t.Errorf("%d holders of the same keys", n)
			}
			inside.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if n := k.Len(); n != 0 {
		t.Errorf("%d keys still held", n)
	}

	// A cancelled wait for the second key releases the first.
	unlockB, err := k.Lock(ctx, "volume-a")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.LockAll(cctx, "snapshot-b", "volume-a"); err == nil {
		t.Fatal("lockAll with a held key and a cancelled context succeeded")
	}
	unlockB()
	if n := k.Len(); n != 0 {
		t.Errorf("%d keys still held after the cancelled lockAll", n)
	}
}

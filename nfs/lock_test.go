package nfs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeyedMutexSerializesOneKey(t *testing.T) {
	k := newKeyedMutex()
	var wg sync.WaitGroup
	inside, maxInside := 0, 0 // guarded by the key; -race flags any overlap
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := k.lock(context.Background(), "a")
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
	if n := k.size(); n != 0 {
		t.Errorf("%d entries left, want 0", n)
	}
}

func TestKeyedMutexKeysAreIndependent(t *testing.T) {
	k := newKeyedMutex()
	unlockA, err := k.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer unlockA()
	// With "a" held, "b" is available at once: a deadline cannot expire.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlockB, err := k.lock(ctx, "b")
	if err != nil {
		t.Fatalf("lock b while a is held: %v", err)
	}
	unlockB()
}

func TestKeyedMutexWaitHonoursContext(t *testing.T) {
	k := newKeyedMutex()
	unlock, err := k.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := k.lock(ctx, "a")
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting lock returned %v, want context.Canceled", err)
	}
	if n := k.size(); n != 1 {
		t.Errorf("%d entries while a is held, want 1", n)
	}
	unlock()
	if n := k.size(); n != 0 {
		t.Errorf("%d entries after release, want 0", n)
	}
	// The abandoned wait did not leave the key locked.
	unlock, err = k.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

func TestTempOf(t *testing.T) {
	const id = "0123abcd-0000-4000-8000-0123456789ab"
	tests := []struct {
		name   string
		prefix string
		want   string
		ok     bool
	}{
		{".volume-" + id + ".tmp-123", volumePrefix, id, true},
		{".volume-" + id + ".tmp-", volumePrefix, id, true},
		{".snapshot-" + id + ".tmp-9", snapshotPrefix, id, true},
		{".volume-" + id, "", "", false},
		{".volume-" + id + ".bak", "", "", false},
		{".snapshot-" + id + ".meta", "", "", false},
		{"volume-" + id + ".tmp-1", "", "", false},
		{"snapshot-" + id + ".tmp-1", "", "", false},
		{".volume-0123ABCD-0000-4000-8000-0123456789ab.tmp-1", "", "", false},
		{".volume-x.tmp-1", "", "", false},
		{".volume-", "", "", false},
		{".clone-" + id + ".tmp-1", "", "", false},
	}
	for _, tc := range tests {
		prefix, got, ok := tempOf(tc.name)
		if ok != tc.ok || (ok && (got != tc.want || prefix != tc.prefix)) {
			t.Errorf("tempOf(%q) = %q, %q, %v; want %q, %q, %v", tc.name, prefix, got, ok, tc.prefix, tc.want, tc.ok)
		}
	}
}

func TestMetaOf(t *testing.T) {
	const id = "0123abcd-0000-4000-8000-0123456789ab"
	for name, want := range map[string]bool{
		"snapshot-" + id + ".meta":      true,
		"snapshot-" + id:                false,
		".snapshot-" + id + ".meta":     false,
		"volume-" + id + ".meta":        false,
		"snapshot-" + id + ".meta.bak":  false,
		"snapshot-" + id[:35] + ".meta": false,
	} {
		got, ok := metaOf(name)
		if ok != want || (ok && got != id) {
			t.Errorf("metaOf(%q) = %q, %v; want ok=%v", name, got, ok, want)
		}
	}
}

// TestLockAllOrdersKeys takes the same pair of keys in both orders from many
// goroutines: with a fixed order this never deadlocks.
func TestLockAllOrdersKeys(t *testing.T) {
	k := newKeyedMutex()
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
			unlock, err := k.lockAll(ctx, keys...)
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
	if n := k.size(); n != 0 {
		t.Errorf("%d keys still held", n)
	}

	// A cancelled wait for the second key releases the first.
	unlockB, err := k.lock(ctx, "volume-a")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.lockAll(cctx, "snapshot-b", "volume-a"); err == nil {
		t.Fatal("lockAll with a held key and a cancelled context succeeded")
	}
	unlockB()
	if n := k.size(); n != 0 {
		t.Errorf("%d keys still held after the cancelled lockAll", n)
	}
}

package nfs

import (
	"context"
	"errors"
	"sync"
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

func TestTempID(t *testing.T) {
	const id = "0123abcd-0000-4000-8000-0123456789ab"
	tests := []struct {
		name string
		want string
		ok   bool
	}{
		{".volume-" + id + ".tmp-123", id, true},
		{".volume-" + id + ".tmp-", id, true},
		{".volume-" + id, "", false},
		{".volume-" + id + ".bak", "", false},
		{"volume-" + id + ".tmp-1", "", false},
		{".volume-0123ABCD-0000-4000-8000-0123456789ab.tmp-1", "", false},
		{".volume-x.tmp-1", "", false},
		{".volume-", "", false},
	}
	for _, tc := range tests {
		got, ok := tempID(tc.name)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("tempID(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

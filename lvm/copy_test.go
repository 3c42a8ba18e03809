package lvm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// TestCopyDeviceMakesDestinationExact runs the thick copy path on plain
// files (the comparison and write logic is the same for block devices):
// the destination ends up holding the source and then zeros, whatever it
// held before, and progress ends at the full size.
func TestCopyDeviceMakesDestinationExact(t *testing.T) {
	dir := t.TempDir()
	const n, size = 3*copyChunk + 12345, 5 * copyChunk
	src := bytes.Repeat([]byte{0}, n)
	copy(src[100:], bytes.Repeat([]byte{0xab}, 1000))                // data in the first chunk
	copy(src[2*copyChunk+7:], bytes.Repeat([]byte{0xcd}, copyChunk)) // across a chunk boundary
	old := bytes.Repeat([]byte{0xee}, size)                          // a previous volume's data
	copy(old[copyChunk:], src[copyChunk:2*copyChunk])                // one chunk already right
	srcPath, dstPath := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(srcPath, src, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dstPath, old, 0o600); err != nil {
		t.Fatal(err)
	}
	var lastDone, lastTotal int64
	ctx := storage.WithProgress(context.Background(), func(done, total int64) { lastDone, lastTotal = done, total })
	if err := copyDevice(ctx, srcPath, dstPath, n, size, false); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, src...), make([]byte, size-n)...)
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("byte %d is %#x, want %#x", i, got[i], want[i])
			}
		}
	}
	if lastDone != size || lastTotal != size {
		t.Fatalf("last progress %d/%d, want %d/%d", lastDone, lastTotal, size, size)
	}
}

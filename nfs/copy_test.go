//go:build linux

package nfs

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCopySparseCopiesExactlyAndSkipsZeros builds sources mixing holes,
// data, and explicitly written (allocated) zeros, with sizes that are not
// block multiples, and checks that the copy is byte-identical and that the
// allocated zeros did not become allocated blocks in the copy.
func TestCopySparseCopiesExactlyAndSkipsZeros(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(255) + 1)
		}
		return b
	}
	tests := []struct {
		name   string
		size   int64
		writes map[int64][]byte
	}{
		{"empty", 0, nil},
		{"all hole", 5<<20 + 17, nil},
		{"one byte at the end", 3<<20 + 1, map[int64][]byte{3 << 20: {7}}},
		{"unaligned data", 2<<20 + 333, map[int64][]byte{4095: random(2), 1<<20 - 5: random(10_000), 2<<20 + 300: random(33)}},
		// 8 MiB of written zeros with data in the middle and at the end:
		// the zeros are allocated in the source but must not be in the copy.
		{"allocated zeros", 8 << 20, map[int64][]byte{0: make([]byte, 8<<20), 3<<20 + 4096: random(4096), 8<<20 - 10: random(10)}},
		{"dense", 3 << 20, map[int64][]byte{0: random(3 << 20)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srcPath := filepath.Join(dir, "src-"+tc.name)
			src, err := os.Create(srcPath)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if err := src.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			// Map order is random; apply zeros first so data is not erased.
			for off, b := range tc.writes {
				if allZero(b) {
					if _, err := src.WriteAt(b, off); err != nil {
						t.Fatal(err)
					}
				}
			}
			for off, b := range tc.writes {
				if !allZero(b) {
					if _, err := src.WriteAt(b, off); err != nil {
						t.Fatal(err)
					}
				}
			}
			dst, err := os.Create(filepath.Join(dir, "dst-"+tc.name))
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if err := copySparse(context.Background(), dst, src, tc.size); err != nil {
				t.Fatal(err)
			}
			if err := dst.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(srcPath)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("copy differs from source (%d vs %d bytes)", len(got), len(want))
			}
			var nonZero int64
			for i := 0; i < len(want); i += zeroBlock {
				if !allZero(want[i:min(i+zeroBlock, len(want))]) {
					nonZero += zeroBlock
				}
			}
			if a := blocks(t, dst.Name()); a > nonZero+64<<10 {
				t.Errorf("copy occupies %d bytes; the source has %d bytes of non-zero blocks", a, nonZero)
			}
		})
	}
}

func TestCopySparseStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Write(bytes.Repeat([]byte{1}, 4<<20)); err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := copySparse(ctx, dst, src, 4<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if fi, _ := dst.Stat(); fi.Size() != 0 {
		t.Errorf("a cancelled copy wrote %d bytes", fi.Size())
	}
}

func TestDataExtentFindsDataPastHoles(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 40<<20); err != nil {
		t.Fatal(err)
	}
	start, end, err := dataExtent(f, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	// File systems report data at their own block granularity; all that
	// matters is that the extent covers the byte and skips most of the hole.
	if start > 40<<20 || end <= 40<<20 || start < 32<<20 {
		t.Errorf("dataExtent = [%d, %d), want a range around %d", start, end, 40<<20)
	}
	if start, _, err := dataExtent(f, end, size); err != nil || start != size {
		t.Errorf("dataExtent after the data = %d, %v; want %d (no more data)", start, err, size)
	}
}

func blocks(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

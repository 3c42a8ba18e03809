package qemuimg

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkCreate10G times Create of a 10 GiB image: one exclusive file
// creation plus one qemu-img run. The anchor is bare `qemu-img create` of
// 10G: 5.4 ms (qcow2) and 4.3 ms (raw).
func BenchmarkCreate10G(b *testing.B) {
	tool := newTool(b)
	ctx := context.Background()
	for _, format := range []string{FormatQCOW2, FormatRaw} {
		b.Run(format, func(b *testing.B) {
			dir := b.TempDir()
			i := 0
			for b.Loop() {
				i++
				if err := tool.Create(ctx, filepath.Join(dir, fmt.Sprintf("v%d", i)), format, 10*gib, CreateOpts{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}

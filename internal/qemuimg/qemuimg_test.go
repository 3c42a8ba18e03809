package qemuimg

// Tests against the real qemu-img (qemuimgtest.Require: skipped loudly
// without it, a failure under CI=true; installed with apt-get as root).

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/qemuimg/qemuimgtest"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

type region = qemuimgtest.Region

func newTool(t testing.TB) *Tool {
	t.Helper()
	qemuimgtest.Require(t)
	tool, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

// view is what a disk made of layers (bottom first, each a list of
// writes) reads over [0, span): runs of one byte value, zeros included.
func view(span int64, layers ...[]region) []region {
	b := make([]byte, span)
	for _, l := range layers {
		for _, r := range l {
			for i := r.Off; i < r.Off+r.Len; i++ {
				b[i] = r.Pattern
			}
		}
	}
	var out []region
	for i := int64(0); i < span; {
		j := i
		for j < span && b[j] == b[i] {
			j++
		}
		out = append(out, region{Off: i, Len: j - i, Pattern: b[i]})
		i = j
	}
	return out
}

// expectFile reads the raw file at path directly and compares it with
// want.
func expectFile(t *testing.T, path string, want []region) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range want {
		got := make([]byte, r.Len)
		if _, err := f.ReadAt(got, r.Off); err != nil {
			t.Fatalf("read %s at %d: %v", path, r.Off, err)
		}
		for i, c := range got {
			if c != r.Pattern {
				t.Fatalf("%s at %d: byte %#x, want %#x", path, r.Off+int64(i), c, r.Pattern)
			}
		}
	}
}

func mustInfo(t *testing.T, tool *Tool, path, format string) Info {
	t.Helper()
	info, err := tool.Info(context.Background(), path, format)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestCreateAndInfo(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	for _, format := range []string{FormatRaw, FormatQCOW2} {
		path := filepath.Join(dir, "volume."+format)
		if err := tool.Create(ctx, path, format, gib, CreateOpts{}); err != nil {
			t.Fatal(err)
		}
		info := mustInfo(t, tool, path, format)
		if info.Filename != path || info.Format != format || info.VirtualSize != gib || info.BackingFilename != "" {
			t.Fatalf("%s: %+v", format, info)
		}
		if info.ActualSize <= 0 || info.ActualSize > mib { // sparse, or just qcow2 metadata
			t.Errorf("%s: actual size %d of a fresh 1 GiB image", format, info.ActualSize)
		}
		if want := map[string]int64{FormatRaw: 0, FormatQCOW2: 65536}[format]; info.ClusterSize != want {
			t.Errorf("%s: cluster size %d, want %d", format, info.ClusterSize, want)
		}
		// Never overwritten: qemu-img itself would truncate the file.
		qemuimgtest.Write(t, path, format, region{Off: 0, Len: 4096, Pattern: 0x5a})
		for _, f := range []string{FormatRaw, FormatQCOW2} {
			if err := tool.Create(ctx, path, f, 2*gib, CreateOpts{}); !errors.Is(err, storage.ErrExists) {
				t.Fatalf("create over %s: %v, want ErrExists", path, err)
			}
		}
		qemuimgtest.Expect(t, path, format, region{Off: 0, Len: 4096, Pattern: 0x5a})
		if got := mustInfo(t, tool, path, format); got.VirtualSize != gib {
			t.Fatalf("existing image changed: %+v", got)
		}
	}

	big := filepath.Join(dir, "big.qcow2")
	if err := tool.Create(ctx, big, FormatQCOW2, 64*mib, CreateOpts{ClusterSize: 2 * mib, Preallocation: PreallocMetadata}); err != nil {
		t.Fatal(err)
	}
	if info := mustInfo(t, tool, big, FormatQCOW2); info.ClusterSize != 2*mib {
		t.Errorf("cluster size %d", info.ClusterSize)
	}
	thick := filepath.Join(dir, "thick.raw")
	if err := tool.Create(ctx, thick, FormatRaw, 16*mib, CreateOpts{Preallocation: PreallocFalloc}); err != nil {
		t.Fatal(err)
	}
	if info := mustInfo(t, tool, thick, FormatRaw); info.ActualSize < 16*mib {
		t.Errorf("falloc: actual size %d", info.ActualSize)
	}

	// A directory that does not exist.
	if err := tool.Create(ctx, filepath.Join(dir, "nodir", "x"), FormatRaw, gib, CreateOpts{}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("create in a missing directory: %v", err)
	}
	// An overlay of a missing file fails without leaving a file, and does
	// not look like a missing volume.
	ov := filepath.Join(dir, "overlay")
	err := tool.Create(ctx, ov, FormatQCOW2, 0, CreateOpts{BackingFile: "missing", BackingFormat: FormatQCOW2})
	if !errors.Is(err, ErrBackingUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("overlay of a missing file: %v", err)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "No such file") || ce.Args[0] != "create" {
		t.Errorf("overlay of a missing file: %#v", err)
	}
	if _, err := os.Stat(ov); !os.IsNotExist(err) {
		t.Errorf("failed create left %s: %v", ov, err)
	}
	// -F raw on a qcow2 file would show its metadata as data.
	err = tool.Create(ctx, ov, FormatQCOW2, 0, CreateOpts{BackingFile: "volume.qcow2", BackingFormat: FormatRaw})
	if !errors.Is(err, ErrWrongFormat) {
		t.Errorf("qcow2 backing file called raw: %v", err)
	}
	// -F qcow2 on a raw file.
	err = tool.Create(ctx, ov, FormatQCOW2, 0, CreateOpts{BackingFile: "volume.raw", BackingFormat: FormatQCOW2})
	if !errors.Is(err, ErrWrongFormat) {
		t.Errorf("raw backing file called qcow2: %v", err)
	}
	if _, err := os.Stat(ov); !os.IsNotExist(err) {
		t.Errorf("failed create left %s: %v", ov, err)
	}
}

func TestResize(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	for _, format := range []string{FormatRaw, FormatQCOW2} {
		path := filepath.Join(dir, "volume."+format)
		if err := tool.Create(ctx, path, format, gib, CreateOpts{}); err != nil {
			t.Fatal(err)
		}
		qemuimgtest.Write(t, path, format, region{Off: gib - mib, Len: mib, Pattern: 0x77})
		if err := tool.Resize(ctx, path, format, 2*gib, ResizeOpts{}); err != nil {
			t.Fatal(err)
		}
		if info := mustInfo(t, tool, path, format); info.VirtualSize != 2*gib {
			t.Fatalf("%s: size %d after growing", format, info.VirtualSize)
		}
		qemuimgtest.Expect(t, path, format, region{Off: gib - mib, Len: mib, Pattern: 0x77}, region{Off: gib, Len: mib, Pattern: 0})
		if err := tool.Resize(ctx, path, format, 2*gib, ResizeOpts{}); err != nil {
			t.Fatalf("%s: resize to the same size: %v", format, err)
		}
		if err := tool.Resize(ctx, path, format, gib, ResizeOpts{}); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("%s: shrink not asked for: %v", format, err)
		}
		if info := mustInfo(t, tool, path, format); info.VirtualSize != 2*gib {
			t.Fatalf("%s: size %d after a refused shrink", format, info.VirtualSize)
		}
		if err := tool.Resize(ctx, path, format, gib, ResizeOpts{Shrink: true}); err != nil {
			t.Fatalf("%s: shrink: %v", format, err)
		}
		if info := mustInfo(t, tool, path, format); info.VirtualSize != gib {
			t.Fatalf("%s: size %d after shrinking", format, info.VirtualSize)
		}
		qemuimgtest.Expect(t, path, format, region{Off: gib - mib, Len: mib, Pattern: 0x77})
	}
	thick := filepath.Join(dir, "thick.raw")
	if err := tool.Create(ctx, thick, FormatRaw, 8*mib, CreateOpts{Preallocation: PreallocFalloc}); err != nil {
		t.Fatal(err)
	}
	if err := tool.Resize(ctx, thick, FormatRaw, 16*mib, ResizeOpts{Preallocation: PreallocFalloc}); err != nil {
		t.Fatal(err)
	}
	if info := mustInfo(t, tool, thick, FormatRaw); info.ActualSize < 16*mib {
		t.Errorf("grown with falloc: actual size %d", info.ActualSize)
	}
	if err := tool.Resize(ctx, filepath.Join(dir, "missing"), FormatRaw, gib, ResizeOpts{}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("resize of a missing file: %v", err)
	}
}

// progressRecorder collects progress calls and checks they only grow.
type progressRecorder struct {
	mu    sync.Mutex
	calls [][2]int64
}

func (p *progressRecorder) fn(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, [2]int64{done, total})
}

func (p *progressRecorder) check(t *testing.T, total int64) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) == 0 {
		t.Fatal("no progress reported")
	}
	last := int64(-1)
	for _, c := range p.calls {
		if c[1] != total || c[0] <= last || c[0] > total {
			t.Fatalf("progress calls %v (total %d)", p.calls, total)
		}
		last = c[0]
	}
	if last != total {
		t.Fatalf("progress ended at %d of %d: %v", last, total, p.calls)
	}
}

// TestSnapshotChain runs Cinder's NFS snapshot life cycle: a raw volume
// file, qcow2 overlays for snapshots, a flattened copy of a snapshot, and
// deleting the snapshots (commit, unsafe rebase of the image above, remove).
func TestSnapshotChain(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	vol := filepath.Join(dir, "volume-1")
	snap1 := vol + ".snap1"
	active := vol + ".snap2"
	const span = 8 << 20 // the part of the disk the writes touch

	base := []region{{Off: 0, Len: mib, Pattern: 0x11}, {Off: 4 * mib, Len: mib, Pattern: 0x12}}
	l1 := []region{{Off: mib, Len: mib, Pattern: 0x22}, {Off: 4 * mib, Len: mib / 2, Pattern: 0x23}}
	l2 := []region{{Off: 2 * mib, Len: mib, Pattern: 0x33}, {Off: mib / 2, Len: mib / 2, Pattern: 0x34}}

	if err := tool.Create(ctx, vol, FormatRaw, gib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, vol, FormatRaw, base...)
	if err := tool.Create(ctx, snap1, FormatQCOW2, 0, CreateOpts{BackingFile: "volume-1", BackingFormat: FormatRaw}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, snap1, FormatQCOW2, l1...)
	if err := tool.Create(ctx, active, FormatQCOW2, 0, CreateOpts{BackingFile: "volume-1.snap1", BackingFormat: FormatQCOW2}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, active, FormatQCOW2, l2...)

	chain, err := tool.InfoChain(ctx, active, FormatQCOW2)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 ||
		chain[0].Filename != active || chain[0].BackingFilename != "volume-1.snap1" || chain[0].BackingFormat != FormatQCOW2 ||
		chain[0].FullBackingFilename != snap1 || chain[0].VirtualSize != gib ||
		chain[1].Filename != snap1 || chain[1].BackingFilename != "volume-1" || chain[1].BackingFormat != FormatRaw ||
		chain[2].Filename != vol || chain[2].Format != FormatRaw || chain[2].BackingFilename != "" {
		t.Fatalf("chain %+v", chain)
	}

	qemuimgtest.Expect(t, vol, FormatRaw, view(span, base)...)
	qemuimgtest.Expect(t, snap1, FormatQCOW2, view(span, base, l1)...)
	qemuimgtest.Expect(t, active, FormatQCOW2, view(span, base, l1, l2)...)

	// Flattened copies of the active image and of the snapshot, read
	// directly from the files.
	for _, c := range []struct {
		src  string
		want []region
	}{{active, view(span, base, l1, l2)}, {snap1, view(span, base, l1)}} {
		dst := c.src + ".raw"
		var p progressRecorder
		if err := tool.Convert(ctx, c.src, FormatQCOW2, dst, FormatRaw, ConvertOpts{Progress: p.fn}); err != nil {
			t.Fatal(err)
		}
		p.check(t, gib)
		expectFile(t, dst, c.want)
		info := mustInfo(t, tool, dst, FormatRaw)
		if info.VirtualSize != gib || info.ActualSize > 16*mib {
			t.Fatalf("converted %s: %+v (not sparse?)", c.src, info)
		}
		if st, err := os.Stat(dst); err != nil || st.Size() != gib {
			t.Fatalf("converted file: %v, %v", st, err)
		}
	}
	// Progress also reaches the context's ProgressFunc.
	var p progressRecorder
	pctx := storage.WithProgress(ctx, p.fn)
	if err := tool.Convert(pctx, active, FormatQCOW2, active+".qcow2", FormatQCOW2, ConvertOpts{}); err != nil {
		t.Fatal(err)
	}
	p.check(t, gib)
	qemuimgtest.Expect(t, active+".qcow2", FormatQCOW2, view(span, base, l1, l2)...)
	if err := tool.Convert(ctx, active, FormatQCOW2, active+".qcow2", FormatQCOW2, ConvertOpts{}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("convert onto an existing file: %v", err)
	}

	// Delete snap1, which is not the active image: commit it into the
	// volume file, point the active image at the volume file, remove it.
	var cp progressRecorder
	if err := tool.Commit(ctx, snap1, FormatQCOW2, CommitOpts{Progress: cp.fn}); err != nil {
		t.Fatal(err)
	}
	cp.check(t, gib)
	qemuimgtest.Expect(t, vol, FormatRaw, view(span, base, l1)...)
	qemuimgtest.Expect(t, active, FormatQCOW2, view(span, base, l1, l2)...)
	if err := tool.Rebase(ctx, active, FormatQCOW2, "volume-1", FormatRaw, RebaseOpts{Unsafe: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(snap1); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, active, FormatQCOW2, view(span, base, l1, l2)...)
	chain, err = tool.InfoChain(ctx, active, FormatQCOW2)
	if err != nil || len(chain) != 2 || chain[0].BackingFilename != "volume-1" || chain[0].BackingFormat != FormatRaw {
		t.Fatalf("chain after deleting snap1: %+v, %v", chain, err)
	}

	// Delete snap2, whose file is the active image: commit it, and the
	// volume file is active again.
	if err := tool.Commit(ctx, active, FormatQCOW2, CommitOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(active); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, vol, FormatRaw, view(span, base, l1, l2)...)
	if info := mustInfo(t, tool, vol, FormatRaw); info.VirtualSize != gib {
		t.Fatalf("volume after commits: %+v", info)
	}
	if err := tool.Commit(ctx, vol+".snap2.raw", FormatQCOW2, CommitOpts{}); !errors.Is(err, ErrWrongFormat) {
		t.Fatalf("commit of a raw file opened as qcow2: %v", err)
	}
	if err := tool.Commit(ctx, active+".qcow2", FormatQCOW2, CommitOpts{}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("commit of an image without a backing file: %v", err)
	}
}

func TestRebase(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	const span = 4 << 20
	base := []region{{Off: 0, Len: mib, Pattern: 0x11}}
	l1 := []region{{Off: mib, Len: mib, Pattern: 0x22}}
	l2 := []region{{Off: 2 * mib, Len: mib, Pattern: 0x33}}
	// chain makes base <- name.s1 <- name.top and returns the paths.
	chain := func(name string) (b, s1, top string) {
		b, s1, top = filepath.Join(dir, name), filepath.Join(dir, name+".s1"), filepath.Join(dir, name+".top")
		if err := tool.Create(ctx, b, FormatQCOW2, 64*mib, CreateOpts{}); err != nil {
			t.Fatal(err)
		}
		qemuimgtest.Write(t, b, FormatQCOW2, base...)
		if err := tool.Create(ctx, s1, FormatQCOW2, 0, CreateOpts{BackingFile: name, BackingFormat: FormatQCOW2}); err != nil {
			t.Fatal(err)
		}
		qemuimgtest.Write(t, s1, FormatQCOW2, l1...)
		if err := tool.Create(ctx, top, FormatQCOW2, 0, CreateOpts{BackingFile: name + ".s1", BackingFormat: FormatQCOW2}); err != nil {
			t.Fatal(err)
		}
		qemuimgtest.Write(t, top, FormatQCOW2, l2...)
		return b, s1, top
	}

	// A safe rebase past s1 copies s1's data into the image.
	b, s1, top := chain("safe")
	var p progressRecorder
	if err := tool.Rebase(ctx, top, FormatQCOW2, "safe", FormatQCOW2, RebaseOpts{Progress: p.fn}); err != nil {
		t.Fatal(err)
	}
	p.check(t, 64*mib)
	if err := os.Remove(s1); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, top, FormatQCOW2, view(span, base, l1, l2)...)
	if c, err := tool.InfoChain(ctx, top, FormatQCOW2); err != nil || len(c) != 2 || c[0].BackingFilename != "safe" {
		t.Fatalf("chain after safe rebase: %+v, %v", c, err)
	}
	// Flattening makes it standalone.
	if err := tool.Rebase(ctx, top, FormatQCOW2, "", "", RebaseOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, top, FormatQCOW2, view(span, base, l1, l2)...)
	if c, err := tool.InfoChain(ctx, top, FormatQCOW2); err != nil || len(c) != 1 {
		t.Fatalf("chain after flattening: %+v, %v", c, err)
	}

	// An unsafe rebase only rewrites the reference: past s1 without a
	// commit, s1's data is gone from the image's view.
	_, _, top = chain("unsafe")
	if err := tool.Rebase(ctx, top, FormatQCOW2, "unsafe", FormatQCOW2, RebaseOpts{Unsafe: true}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, top, FormatQCOW2, view(span, base, l2)...)
	// qemu-img rebase -u would accept a missing file; Rebase does not.
	err := tool.Rebase(ctx, top, FormatQCOW2, "missing", FormatQCOW2, RebaseOpts{Unsafe: true})
	if !errors.Is(err, ErrBackingUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unsafe rebase onto a missing file: %v", err)
	}
	if info := mustInfo(t, tool, top, FormatQCOW2); info.BackingFilename != "unsafe" {
		t.Fatalf("failed rebase changed the image: %+v", info)
	}

	// Commit with a base further down commits the intermediate images too.
	b, _, top = chain("deep")
	if err := tool.Commit(ctx, top, FormatQCOW2, CommitOpts{Base: "deep"}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Expect(t, b, FormatQCOW2, view(span, base, l1, l2)...)
	if err := tool.Commit(ctx, top, FormatQCOW2, CommitOpts{Base: "safe.top"}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("commit into an image outside the chain: %v", err)
	}
}

// TestCommitGrowsBase: a volume extended while it has snapshots grows only
// its active overlay; committing the overlay grows the volume file.
func TestCommitGrowsBase(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	vol, ov := filepath.Join(dir, "volume-1"), filepath.Join(dir, "volume-1.snap")
	if err := tool.Create(ctx, vol, FormatRaw, 64*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, vol, FormatRaw, region{Off: 63 * mib, Len: mib, Pattern: 0x11})
	if err := tool.Create(ctx, ov, FormatQCOW2, 0, CreateOpts{BackingFile: "volume-1", BackingFormat: FormatRaw}); err != nil {
		t.Fatal(err)
	}
	if err := tool.Resize(ctx, ov, FormatQCOW2, 128*mib, ResizeOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, ov, FormatQCOW2, region{Off: 100 * mib, Len: mib, Pattern: 0x44})
	want := []region{{Off: 63 * mib, Len: mib, Pattern: 0x11}, {Off: 64 * mib, Len: 36 * mib, Pattern: 0}, {Off: 100 * mib, Len: mib, Pattern: 0x44}, {Off: 101 * mib, Len: 27 * mib, Pattern: 0}}
	qemuimgtest.Expect(t, ov, FormatQCOW2, want...)
	if err := tool.Commit(ctx, ov, FormatQCOW2, CommitOpts{}); err != nil {
		t.Fatal(err)
	}
	if info := mustInfo(t, tool, vol, FormatRaw); info.VirtualSize != 128*mib {
		t.Fatalf("volume file after commit: %+v", info)
	}
	expectFile(t, vol, want)
}

func TestErrors(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()

	_, err := tool.Info(ctx, filepath.Join(dir, "missing"), FormatRaw)
	var ce *CommandError
	if !errors.Is(err, storage.ErrNotFound) || !errors.As(err, &ce) || ce.ExitCode != 1 || !strings.Contains(ce.Stderr, "No such file or directory") {
		t.Fatalf("info of a missing file: %#v", err)
	}
	if !strings.Contains(err.Error(), "qemu-img info --output=json -U -f raw "+filepath.Join(dir, "missing")) {
		t.Fatalf("error does not show the command: %v", err)
	}

	raw := filepath.Join(dir, "raw")
	if err := tool.Create(ctx, raw, FormatRaw, 64*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tool.Info(ctx, raw, FormatQCOW2); !errors.Is(err, ErrWrongFormat) {
		t.Fatalf("raw opened as qcow2: %v", err)
	}

	// A chain whose bottom is gone: the top image is there, so the error
	// is about the backing file, not a missing volume.
	vol, ov := filepath.Join(dir, "vol"), filepath.Join(dir, "vol.snap")
	if err := tool.Create(ctx, vol, FormatQCOW2, 64*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := tool.Create(ctx, ov, FormatQCOW2, 0, CreateOpts{BackingFile: "vol", BackingFormat: FormatQCOW2}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(vol, vol+".away"); err != nil {
		t.Fatal(err)
	}
	if _, err := tool.InfoChain(ctx, ov, FormatQCOW2); !errors.Is(err, ErrBackingUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("chain with a missing backing file: %v", err)
	}
	dst := filepath.Join(dir, "copy")
	if err := tool.Convert(ctx, ov, FormatQCOW2, dst, FormatRaw, ConvertOpts{}); !errors.Is(err, ErrBackingUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("convert with a missing backing file: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("failed convert left %s: %v", dst, err)
	}
	if err := tool.Commit(ctx, ov, FormatQCOW2, CommitOpts{}); !errors.Is(err, ErrBackingUnavailable) {
		t.Fatalf("commit with a missing backing file: %v", err)
	}
	if err := os.Rename(vol+".away", vol); err != nil {
		t.Fatal(err)
	}

	// Backing references InfoChain does not follow, written with qemu-img
	// directly (Rebase refuses them).
	for _, bad := range []string{"/etc/hostname", `json:{"driver":"raw","file":{"driver":"file","filename":"/etc/hostname"}}`, "../" + filepath.Base(dir) + "/vol"} {
		out, err := exec.Command("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", bad, ov).CombinedOutput()
		if err != nil {
			t.Fatalf("qemu-img rebase -u -b %s: %v\n%s", bad, err, out)
		}
		if c, err := tool.InfoChain(ctx, ov, FormatQCOW2); !errors.Is(err, ErrUnsafeBacking) {
			t.Fatalf("backing file %q: chain %+v, %v", bad, c, err)
		}
	}
	// A loop.
	if out, err := exec.Command("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", "vol.snap", vol).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := exec.Command("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", "vol", ov).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if c, err := tool.InfoChain(ctx, ov, FormatQCOW2); !errors.Is(err, ErrUnsafeBacking) {
		t.Fatalf("looping chain: %+v, %v", c, err)
	}
}

// holdImage holds the image as a running VM does and checks that qemu-img
// then sees it locked.
func holdImage(t *testing.T, path, format string) {
	t.Helper()
	qemuimgtest.Hold(t, path, format)
	info, err := exec.Command("qemu-img", "info", "-f", format, path).CombinedOutput()
	if err == nil || !strings.Contains(string(info), "lock") {
		t.Fatalf("qemu-io did not lock %s: %v %s", path, err, info)
	}
}

func TestInUse(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "attached")
	if err := tool.Create(ctx, img, FormatQCOW2, 64*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, img, FormatQCOW2, region{Off: 0, Len: mib, Pattern: 0x66})
	if busy, err := tool.InUse(ctx, img, FormatQCOW2); err != nil || busy {
		t.Fatalf("InUse of a free image = %v, %v", busy, err)
	}
	holdImage(t, img, FormatQCOW2)
	if busy, err := tool.InUse(ctx, img, FormatQCOW2); err != nil || !busy {
		t.Fatalf("InUse of an image qemu-io holds = %v, %v", busy, err)
	}
	if _, err := tool.InUse(ctx, filepath.Join(dir, "missing"), FormatQCOW2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("InUse of a missing image: %v", err)
	}

	if info, err := tool.Info(ctx, img, FormatQCOW2); err != nil || info.VirtualSize != 64*mib {
		t.Fatalf("info of an image in use: %+v, %v", info, err)
	}
	if c, err := tool.InfoChain(ctx, img, FormatQCOW2); err != nil || len(c) != 1 {
		t.Fatalf("chain of an image in use: %+v, %v", c, err)
	}
	if err := tool.Resize(ctx, img, FormatQCOW2, 128*mib, ResizeOpts{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("resize of an image in use: %v", err)
	}
	if _, err := tool.Check(ctx, img, FormatQCOW2); !errors.Is(err, ErrInUse) {
		t.Fatalf("check of an image in use: %v", err)
	}
	dst := filepath.Join(dir, "copy")
	if err := tool.Convert(ctx, img, FormatQCOW2, dst, FormatRaw, ConvertOpts{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("convert of an image in use: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("failed convert left %s: %v", dst, err)
	}
	if err := tool.Convert(ctx, img, FormatQCOW2, dst, FormatRaw, ConvertOpts{ForceShare: true}); err != nil {
		t.Fatalf("convert -U of an image in use: %v", err)
	}
	expectFile(t, dst, []region{{Off: 0, Len: mib, Pattern: 0x66}, {Off: mib, Len: mib, Pattern: 0}})
}

func TestCheckAndCorruption(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	if err := tool.Create(ctx, img, FormatQCOW2, 64*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, img, FormatQCOW2, region{Off: 0, Len: mib, Pattern: 0x11})
	r, err := tool.Check(ctx, img, FormatQCOW2)
	if err != nil || r.Filename != img || r.Corruptions != 0 || r.Leaks != 0 || r.AllocatedClusters != 16 || r.TotalClusters != 1024 {
		t.Fatalf("check of a clean image: %+v, %v", r, err)
	}
	raw := filepath.Join(dir, "raw")
	if err := tool.Create(ctx, raw, FormatRaw, mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	if r, err := tool.Check(ctx, raw, FormatRaw); err != nil || r != (CheckResult{Filename: raw, Format: FormatRaw}) {
		t.Fatalf("check of a raw image: %+v, %v", r, err)
	}
	if _, err := tool.Check(ctx, filepath.Join(dir, "missing"), FormatRaw); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("check of a missing raw image: %v", err)
	}
	if _, err := tool.Check(ctx, filepath.Join(dir, "missing"), FormatQCOW2); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("check of a missing qcow2 image: %v", err)
	}
	header, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}

	// The corrupt bit (incompatible feature bit 1, header byte 79).
	flagged := filepath.Join(dir, "flagged")
	b := bytes.Clone(header)
	b[79] |= 2
	if err := os.WriteFile(flagged, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if info := mustInfo(t, tool, flagged, FormatQCOW2); !info.Corrupt {
		t.Fatalf("corrupt bit not reported: %+v", info)
	}
	if err := tool.Resize(ctx, flagged, FormatQCOW2, 128*mib, ResizeOpts{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("resize of a corrupt image: %v", err)
	}

	// An L1 entry pointing far past the end of the file.
	broken := filepath.Join(dir, "broken")
	b = bytes.Clone(header)
	l1 := int64(0)
	for _, c := range b[40:48] {
		l1 = l1<<8 | int64(c)
	}
	copy(b[l1:], []byte{0, 0, 0, 0, 0x7f, 0, 0, 0})
	if err := os.WriteFile(broken, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = tool.Check(ctx, broken, FormatQCOW2)
	if !errors.Is(err, ErrCorrupt) || r.Corruptions == 0 || r.Filename != broken {
		t.Fatalf("check of a broken image: %+v, %v", r, err)
	}
}

// TestNoSpace fills a 1 MiB tmpfs (root only).
func TestNoSpace(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	full := filepath.Join(mnt, "full")
	if err := tool.Create(ctx, full, FormatRaw, 8*mib, CreateOpts{Preallocation: PreallocFull}); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("preallocating 8 MiB on 1 MiB: %v", err)
	}
	if _, err := os.Stat(full); !os.IsNotExist(err) {
		t.Fatalf("failed create left %s: %v", full, err)
	}
	src := filepath.Join(dir, "src")
	if err := tool.Create(ctx, src, FormatRaw, 8*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, src, FormatRaw, region{Off: 0, Len: 8 * mib, Pattern: 0x55})
	dst := filepath.Join(mnt, "copy")
	if err := tool.Convert(ctx, src, FormatRaw, dst, FormatRaw, ConvertOpts{}); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("converting 8 MiB onto 1 MiB: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("failed convert left %s: %v", dst, err)
	}
}

// TestConvertCancel: a cancelled Convert kills qemu-img and removes its
// target. The qemu-img here is real for info and sleeps for convert.
func TestConvertCancel(t *testing.T) {
	qemuimgtest.Require(t)
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu-img")
	script := "#!/bin/sh\ncase \"$1\" in convert) exec sleep 60;; esac\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tool, err := New(Config{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := tool.Create(context.Background(), src, FormatRaw, mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = tool.Convert(ctx, src, FormatRaw, dst, FormatRaw, ConvertOpts{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled convert: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("cancelled convert took %v", took)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("cancelled convert left %s: %v", dst, err)
	}
}

// TestConvertIntoExisting: -n writes over an existing image, which must be
// at least as large; the part beyond the source stays as it was.
func TestConvertIntoExisting(t *testing.T) {
	tool := newTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	src, dst, small := filepath.Join(dir, "src"), filepath.Join(dir, "dst"), filepath.Join(dir, "small")
	if err := tool.Create(ctx, src, FormatQCOW2, 8*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, src, FormatQCOW2, region{Off: mib, Len: mib, Pattern: 0x21})
	if err := tool.Create(ctx, dst, FormatRaw, 16*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	qemuimgtest.Write(t, dst, FormatRaw, region{Off: 0, Len: 16 * mib, Pattern: 0xee})
	var p progressRecorder
	if err := tool.Convert(ctx, src, FormatQCOW2, dst, FormatRaw, ConvertOpts{Existing: true, Progress: p.fn}); err != nil {
		t.Fatal(err)
	}
	p.check(t, 8*mib)
	expectFile(t, dst, []region{{Off: 0, Len: mib, Pattern: 0}, {Off: mib, Len: mib, Pattern: 0x21}, {Off: 2 * mib, Len: 6 * mib, Pattern: 0}, {Off: 8 * mib, Len: 8 * mib, Pattern: 0xee}})
	if err := tool.Create(ctx, small, FormatRaw, 4*mib, CreateOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := tool.Convert(ctx, src, FormatQCOW2, small, FormatRaw, ConvertOpts{Existing: true}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("convert into a smaller image: %v", err)
	}
	if err := tool.Convert(ctx, src, FormatQCOW2, filepath.Join(dir, "missing"), FormatRaw, ConvertOpts{Existing: true}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("convert into a missing image: %v", err)
	}
}

// TestMetadataTimeout: a metadata command that hangs (a dead NFS server)
// is killed after Config.MetadataTimeout.
func TestMetadataTimeout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu-img")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tool, err := New(Config{Binary: bin, MetadataTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := tool.Info(context.Background(), filepath.Join(dir, "img"), FormatRaw); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung info: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("hung info returned after %v", took)
	}
}

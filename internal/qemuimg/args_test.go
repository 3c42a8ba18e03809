package qemuimg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

func TestCheckPath(t *testing.T) {
	for _, ok := range []string{"/a", "/srv/kiln/volume-00000000-0000-4000-8000-000000000001", "/x/.volume-1.tmp-abc", "/a/b+c@d_e.f-g"} {
		if err := checkPath("image", ok); err != nil {
			t.Errorf("checkPath(%q): %v", ok, err)
		}
	}
	for _, bad := range badPaths {
		err := checkPath("image", bad)
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("checkPath(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// badPaths must never reach qemu-img.
var badPaths = []string{
	"",
	"relative",
	"./a",
	"-f",
	"/",
	`json:{"driver":"file","filename":"/etc/shadow"}`,
	"/a/json:{}",
	"nbd:localhost:10809",
	"nbd://localhost/x",
	"/a,b",
	"/a:b",
	"/a b",
	"/a\nb",
	"/a\x00b",
	"/a=b",
	"/a/../b",
	"/a/./b",
	"/a//b",
	"/a/",
	"/a/..",
	"/a/-x",
	"/ä",
	"/" + strings.Repeat("a", 256),
	strings.Repeat("/a", 2048),
}

func TestCheckNames(t *testing.T) {
	for _, ok := range []string{"volume-1", "volume-1.5c6f", ".volume-1.tmp-x", "a..b"} {
		if err := checkName("backing file", ok); err != nil {
			t.Errorf("checkName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "-b", "a/b", "/abs", "../x", "json:{}", "nbd:x", "a,b", "a b", strings.Repeat("a", 256)} {
		if err := checkName("backing file", bad); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("checkName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	for _, c := range []struct {
		size int64
		ok   bool
	}{{512, true}, {1 << 30, true}, {MaxSize, true}, {0, false}, {-512, false}, {1000, false}, {MaxSize + 512, false}} {
		if err := checkSize(c.size); (err == nil) != c.ok {
			t.Errorf("checkSize(%d) = %v", c.size, err)
		}
	}
	for _, c := range []struct {
		format, mode string
		ok           bool
	}{{"raw", "", true}, {"raw", "falloc", true}, {"raw", "metadata", false}, {"qcow2", "metadata", true}, {"qcow2", "full", true}, {"qcow2", "off,x=y", false}} {
		if err := checkPrealloc(c.format, c.mode); (err == nil) != c.ok {
			t.Errorf("checkPrealloc(%q, %q) = %v", c.format, c.mode, err)
		}
	}
}

// fakeTool is a Tool whose qemu-img only leaves a marker file behind, to
// prove that rejected requests never run it.
func fakeTool(t *testing.T) (*Tool, string) {
	t.Helper()
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	bin := filepath.Join(dir, "qemu-img")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" >> "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tool, err := New(Config{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	return tool, marker
}

func TestBadRequestsNeverRunQemuImg(t *testing.T) {
	tool, marker := fakeTool(t)
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	calls := map[string]func() error{}
	for _, p := range badPaths {
		calls["info "+p] = func() error { _, err := tool.Info(ctx, p, "raw"); return err }
		calls["chain "+p] = func() error { _, err := tool.InfoChain(ctx, p, "qcow2"); return err }
		calls["create "+p] = func() error { return tool.Create(ctx, p, "raw", 1<<20, CreateOpts{}) }
		calls["resize "+p] = func() error { return tool.Resize(ctx, p, "raw", 1<<20, ResizeOpts{}) }
		calls["convert from "+p] = func() error { return tool.Convert(ctx, p, "raw", img+"-out", "raw", ConvertOpts{}) }
		calls["convert to "+p] = func() error { return tool.Convert(ctx, img, "raw", p, "raw", ConvertOpts{}) }
		calls["commit "+p] = func() error { return tool.Commit(ctx, p, "qcow2", CommitOpts{}) }
		calls["rebase "+p] = func() error { return tool.Rebase(ctx, p, "qcow2", "base", "raw", RebaseOpts{}) }
		calls["check "+p] = func() error { _, err := tool.Check(ctx, p, "qcow2"); return err }
	}
	for _, b := range []string{"../x", "/abs", "json:{}", "a,b", "-x", ".", "nbd:h:1"} {
		calls["create backing "+b] = func() error {
			return tool.Create(ctx, img, "qcow2", 0, CreateOpts{BackingFile: b, BackingFormat: "qcow2"})
		}
		calls["rebase onto "+b] = func() error { return tool.Rebase(ctx, img, "qcow2", b, "qcow2", RebaseOpts{}) }
		calls["commit base "+b] = func() error { return tool.Commit(ctx, img, "qcow2", CommitOpts{Base: b}) }
	}
	for _, f := range []string{"", "vmdk", "qcow2,x", "QCOW2", "json"} {
		calls["info format "+f] = func() error { _, err := tool.Info(ctx, img, f); return err }
		calls["create format "+f] = func() error { return tool.Create(ctx, img, f, 1<<20, CreateOpts{}) }
		calls["backing format "+f] = func() error {
			return tool.Create(ctx, img, "qcow2", 0, CreateOpts{BackingFile: "base", BackingFormat: f})
		}
		calls["convert format "+f] = func() error { return tool.Convert(ctx, img, "raw", img+"-out", f, ConvertOpts{}) }
	}
	for _, size := range []int64{0, -512, 1000, MaxSize + 512} {
		calls["create size "+sizeArg(size)] = func() error { return tool.Create(ctx, img, "raw", size, CreateOpts{}) }
		calls["resize size "+sizeArg(size)] = func() error { return tool.Resize(ctx, img, "raw", size, ResizeOpts{}) }
	}
	calls["raw overlay"] = func() error {
		return tool.Create(ctx, img, "raw", 0, CreateOpts{BackingFile: "base", BackingFormat: "raw"})
	}
	calls["own backing"] = func() error {
		return tool.Create(ctx, img, "qcow2", 0, CreateOpts{BackingFile: "img", BackingFormat: "qcow2"})
	}
	calls["preallocated overlay"] = func() error {
		return tool.Create(ctx, img, "qcow2", 0, CreateOpts{BackingFile: "base", BackingFormat: "qcow2", Preallocation: "metadata"})
	}
	calls["metadata prealloc raw"] = func() error { return tool.Create(ctx, img, "raw", 1<<20, CreateOpts{Preallocation: "metadata"}) }
	calls["raw cluster size"] = func() error { return tool.Create(ctx, img, "raw", 1<<20, CreateOpts{ClusterSize: 65536}) }
	calls["odd cluster size"] = func() error { return tool.Create(ctx, img, "qcow2", 1<<20, CreateOpts{ClusterSize: 3000}) }
	calls["convert onto itself"] = func() error { return tool.Convert(ctx, img, "raw", img, "raw", ConvertOpts{}) }
	calls["convert -n with options"] = func() error {
		return tool.Convert(ctx, img, "raw", img+"-out", "raw", ConvertOpts{Existing: true, Preallocation: "full"})
	}
	calls["commit raw"] = func() error { return tool.Commit(ctx, img, "raw", CommitOpts{}) }
	calls["commit into itself"] = func() error { return tool.Commit(ctx, img, "qcow2", CommitOpts{Base: "img"}) }
	calls["rebase raw"] = func() error { return tool.Rebase(ctx, img, "raw", "base", "raw", RebaseOpts{}) }
	calls["unsafe flatten"] = func() error { return tool.Rebase(ctx, img, "qcow2", "", "", RebaseOpts{Unsafe: true}) }
	calls["flatten with format"] = func() error { return tool.Rebase(ctx, img, "qcow2", "", "raw", RebaseOpts{}) }

	for name, call := range calls {
		if err := call(); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if ran, err := os.ReadFile(marker); err == nil {
		t.Fatalf("qemu-img ran for rejected requests:\n%s", ran)
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Fatalf("a rejected request left %s: %v", img, err)
	}
}

func TestNewConfig(t *testing.T) {
	if _, err := New(Config{Binary: "bin/qemu-img"}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("relative binary path: %v", err)
	}
	if _, err := New(Config{MetadataTimeout: -1}); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("negative timeout: %v", err)
	}
	tool, err := New(Config{})
	if err != nil || tool.binary != "qemu-img" || tool.timeout <= 0 {
		t.Fatalf("defaults: %+v, %v", tool, err)
	}
	var lc []string
	for _, kv := range tool.env {
		if strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			lc = append(lc, kv)
		}
	}
	if strings.Join(lc, " ") != "LC_ALL=C LANG=C" {
		t.Fatalf("locale environment %v", lc)
	}
}

package qemuimg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// CreateOpts are the optional parts of Create.
type CreateOpts struct {
	// BackingFile makes the new image a qcow2 overlay of this file: a name
	// of a file in the new image's directory, recorded as given (relative,
	// as Cinder records them). BackingFormat, "raw" or "qcow2", is
	// required with it.
	BackingFile, BackingFormat string
	// Preallocation is "" (qemu's default, off), "off", "metadata" (qcow2),
	// "falloc" or "full". Overlays cannot be preallocated.
	Preallocation string
	// ClusterSize of a qcow2 image; 0 means 64 KiB.
	ClusterSize int64
}

// Create makes a new image of size bytes (a multiple of 512) at path in
// format ("raw" or "qcow2"). An overlay (opts.BackingFile) may pass size 0
// to take its backing file's size. Create never overwrites: an existing path
// fails with ErrExists, and a failed or cancelled create leaves no file.
func (t *Tool) Create(ctx context.Context, path, format string, size int64, opts CreateOpts) error {
	if err := checkPath("image", path); err != nil {
		return err
	}
	if err := checkFormat("format", format); err != nil {
		return err
	}
	overlay := opts.BackingFile != "" || opts.BackingFormat != ""
	if !overlay || size != 0 {
		if err := checkSize(size); err != nil {
			return err
		}
	}
	if err := checkPrealloc(format, opts.Preallocation); err != nil {
		return err
	}
	if err := checkClusterSize(format, opts.ClusterSize); err != nil {
		return err
	}
	var o []string
	if opts.Preallocation != "" {
		o = append(o, "preallocation="+opts.Preallocation)
	}
	if opts.ClusterSize != 0 {
		o = append(o, "cluster_size="+sizeArg(opts.ClusterSize))
	}
	args := []string{"create", "-q", "-f", format}
	if len(o) > 0 {
		args = append(args, "-o", strings.Join(o, ","))
	}
	if overlay {
		if format != FormatQCOW2 {
			return fmt.Errorf("%w: only a qcow2 image can have a backing file", ErrInvalid)
		}
		if err := checkBacking(path, opts.BackingFile, opts.BackingFormat); err != nil {
			return err
		}
		if opts.Preallocation != "" && opts.Preallocation != PreallocOff {
			return fmt.Errorf("%w: an overlay cannot be preallocated", ErrInvalid)
		}
		if opts.BackingFormat == FormatRaw {
			if err := refuseQCOW2AsRaw(backingPath(path, opts.BackingFile)); err != nil {
				return err
			}
		}
		args = append(args, "-b", opts.BackingFile, "-F", opts.BackingFormat)
	}
	args = append(args, path)
	if size != 0 {
		args = append(args, sizeArg(size))
	}
	return t.intoNewFile(path, func() error {
		_, err := t.run(ctx, invocation{args: args, dir: filepath.Dir(path), metadata: !heavyPrealloc(opts.Preallocation)})
		return err
	})
}

// intoNewFile creates path exclusively, runs fill, and removes path again
// if fill fails: qemu-img would truncate an existing file.
func (t *Tool) intoNewFile(path string, fill func() error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return openError(path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	if err := fill(); err != nil {
		if rmErr := os.Remove(path); rmErr != nil && !os.IsNotExist(rmErr) {
			t.log.Warn("remove unfinished image", "path", path, "err", rmErr)
		}
		return err
	}
	return nil
}

// ResizeOpts are the optional parts of Resize.
type ResizeOpts struct {
	// Shrink allows a smaller size; the data beyond it is lost.
	Shrink bool
	// Preallocation of the added part: "", "off", "metadata" (qcow2),
	// "falloc" or "full".
	Preallocation string
}

// Resize sets the virtual size of the image at path to size bytes (a
// multiple of 512). Resizing to the current size does nothing; a smaller
// size fails with ErrInvalid unless opts.Shrink.
func (t *Tool) Resize(ctx context.Context, path, format string, size int64, opts ResizeOpts) error {
	if err := checkSize(size); err != nil {
		return err
	}
	if err := checkPrealloc(format, opts.Preallocation); err != nil {
		return err
	}
	info, err := t.Info(ctx, path, format)
	if err != nil {
		return err
	}
	switch {
	case size == info.VirtualSize:
		return nil
	case size < info.VirtualSize && !opts.Shrink:
		return fmt.Errorf("%w: %s is %d bytes; shrinking it to %d was not asked for", ErrInvalid, path, info.VirtualSize, size)
	case size < info.VirtualSize && opts.Preallocation != "":
		return fmt.Errorf("%w: preallocation applies only when growing", ErrInvalid)
	}
	args := []string{"resize", "-q", "-f", format}
	if opts.Preallocation != "" {
		args = append(args, "--preallocation="+opts.Preallocation)
	}
	if size < info.VirtualSize {
		args = append(args, "--shrink")
	}
	args = append(args, path, sizeArg(size))
	_, err = t.run(ctx, invocation{args: args, dir: filepath.Dir(path), metadata: !heavyPrealloc(opts.Preallocation)})
	return err
}

// ConvertOpts are the optional parts of Convert.
type ConvertOpts struct {
	// Progress receives the copy's progress in bytes of the source's
	// virtual size; nil means storage.Progress(ctx). It is called from
	// another goroutine, never concurrently, and never after Convert
	// returns; the last call is (size, size).
	Progress storage.ProgressFunc
	// Preallocation of a new target: "" (off), "off", "metadata" (qcow2),
	// "falloc" or "full".
	Preallocation string
	// ClusterSize of a new qcow2 target; 0 means 64 KiB.
	ClusterSize int64
	// Existing writes into an existing image (qemu-img -n) instead of
	// creating dst; it must be at least as large as the source, and any
	// part beyond the source's size is left as it was.
	Existing bool
	// ForceShare reads a source that another process (a running VM) has
	// open for writing (-U). The copy is then not consistent.
	ForceShare bool
}

// Convert copies the disk that the image at src presents (its whole backing
// chain, flattened) into a new image at dst in dstFormat: sparse (-S 4k),
// flushed before Convert returns. dst must not exist unless opts.Existing;
// a failed or cancelled Convert removes the dst it created.
func (t *Tool) Convert(ctx context.Context, src, srcFormat, dst, dstFormat string, opts ConvertOpts) error {
	if err := checkPath("target", dst); err != nil {
		return err
	}
	if err := checkFormat("target format", dstFormat); err != nil {
		return err
	}
	if src == dst {
		return fmt.Errorf("%w: convert %s onto itself", ErrInvalid, src)
	}
	if err := checkPrealloc(dstFormat, opts.Preallocation); err != nil {
		return err
	}
	if err := checkClusterSize(dstFormat, opts.ClusterSize); err != nil {
		return err
	}
	if opts.Existing && (opts.Preallocation != "" || opts.ClusterSize != 0) {
		return fmt.Errorf("%w: preallocation and cluster size apply only to a new target", ErrInvalid)
	}
	in, err := t.Info(ctx, src, srcFormat)
	if err != nil {
		return err
	}
	args := []string{"convert", "-p", "-f", srcFormat, "-O", dstFormat, "-t", "writeback", "-S", "4k"}
	if opts.ForceShare {
		args = append(args, "-U")
	}
	if opts.Existing {
		out, err := t.Info(ctx, dst, dstFormat)
		if err != nil {
			return err
		}
		if out.VirtualSize < in.VirtualSize {
			return fmt.Errorf("%w: %s (%d bytes) is smaller than %s (%d bytes)", ErrInvalid, dst, out.VirtualSize, src, in.VirtualSize)
		}
		args = append(args, "-n")
	} else {
		o := "preallocation=" + PreallocOff
		if opts.Preallocation != "" {
			o = "preallocation=" + opts.Preallocation
		}
		if opts.ClusterSize != 0 {
			o += ",cluster_size=" + sizeArg(opts.ClusterSize)
		}
		args = append(args, "-o", o)
	}
	args = append(args, src, dst)
	p := newByteProgress(ctx, opts.Progress, in.VirtualSize)
	convert := func() error {
		_, err := t.run(ctx, invocation{args: args, dir: filepath.Dir(dst), progress: p.percent})
		return err
	}
	if opts.Existing {
		err = convert()
	} else {
		err = t.intoNewFile(dst, convert)
	}
	if err != nil {
		return err
	}
	p.done()
	return nil
}

// CommitOpts are the optional parts of Commit.
type CommitOpts struct {
	// Base names the image to commit into: a file in the directory of the
	// committed image, somewhere down its backing chain. "" means its
	// backing file. The images between the two are committed too.
	Base string
	// Progress as in ConvertOpts, in bytes of the image's virtual size.
	Progress storage.ProgressFunc
}

// Commit writes the data of the qcow2 image at path into its backing file
// (or opts.Base), as Cinder's _img_commit does when a snapshot is deleted:
// `qemu-img commit -d`. The image itself is left as it was (-d: not
// emptied), because the caller's next step is to remove it, after rebasing
// the image above it, if any, onto the base with an unsafe Rebase (the
// data is already there). Other images backed by the base, if any, see its
// content change. A base smaller than the image is grown to its size.
func (t *Tool) Commit(ctx context.Context, path, format string, opts CommitOpts) error {
	if err := checkPath("image", path); err != nil {
		return err
	}
	if format != FormatQCOW2 {
		return fmt.Errorf("%w: only a qcow2 image has a backing file to commit into (format %q)", ErrInvalid, format)
	}
	if opts.Base != "" {
		if err := checkName("base", opts.Base); err != nil {
			return err
		}
		if backingPath(path, opts.Base) == path {
			return fmt.Errorf("%w: commit %s into itself", ErrInvalid, path)
		}
	}
	info, err := t.Info(ctx, path, format)
	if err != nil {
		return err
	}
	if info.BackingFilename == "" {
		return fmt.Errorf("%w: %s has no backing file to commit into", ErrInvalid, path)
	}
	args := []string{"commit", "-f", format, "-d", "-p"}
	if opts.Base != "" {
		args = append(args, "-b", opts.Base)
	}
	args = append(args, path)
	p := newByteProgress(ctx, opts.Progress, info.VirtualSize)
	if _, err := t.run(ctx, invocation{args: args, dir: filepath.Dir(path), progress: p.percent}); err != nil {
		return err
	}
	p.done()
	return nil
}

// RebaseOpts are the optional parts of Rebase.
type RebaseOpts struct {
	// Unsafe only rewrites the backing file reference (-u). Use it when the
	// new backing file reads the same as the old chain, e.g. after Commit
	// merged the old backing file into the new one; otherwise the image's
	// content changes.
	Unsafe bool
	// Progress of a safe rebase, as in ConvertOpts.
	Progress storage.ProgressFunc
}

// Rebase makes backing (a file in path's directory, of backingFormat) the
// backing file of the qcow2 image at path. A safe rebase (the default)
// first copies into the image every cluster where the old chain and the new
// backing file differ, so the image reads the same afterwards; it needs the
// old chain intact. backing "" (with backingFormat "") makes the image
// standalone: everything it reads from its chain is copied into it.
func (t *Tool) Rebase(ctx context.Context, path, format, backing, backingFormat string, opts RebaseOpts) error {
	if err := checkPath("image", path); err != nil {
		return err
	}
	if format != FormatQCOW2 {
		return fmt.Errorf("%w: only a qcow2 image can have a backing file (format %q)", ErrInvalid, format)
	}
	args := []string{"rebase", "-f", format}
	if backing == "" {
		if backingFormat != "" || opts.Unsafe {
			return fmt.Errorf("%w: removing the backing file of %s must be a safe rebase without a backing format", ErrInvalid, path)
		}
		args = append(args, "-b", "")
	} else {
		if err := checkBacking(path, backing, backingFormat); err != nil {
			return err
		}
		// qemu-img rebase -u does not even check that the new backing file
		// exists; a typo would silently break the chain.
		bpath := backingPath(path, backing)
		if _, err := t.Info(ctx, bpath, backingFormat); err != nil {
			return fmt.Errorf("new backing file: %w", backingError(err))
		}
		if backingFormat == FormatRaw {
			if err := refuseQCOW2AsRaw(bpath); err != nil {
				return err
			}
		}
		args = append(args, "-b", backing, "-F", backingFormat)
	}
	if opts.Unsafe {
		args = append(args, "-u", path)
		_, err := t.run(ctx, invocation{args: args, dir: filepath.Dir(path), metadata: true})
		return err
	}
	info, err := t.Info(ctx, path, format)
	if err != nil {
		return err
	}
	args = append(args, "-p", path)
	p := newByteProgress(ctx, opts.Progress, info.VirtualSize)
	if _, err := t.run(ctx, invocation{args: args, dir: filepath.Dir(path), progress: p.percent}); err != nil {
		return err
	}
	p.done()
	return nil
}

// Check looks for corruption in the qcow2 metadata of the image at path
// (`qemu-img check`, no repair). Leaked clusters (wasted space, left by an
// interrupted write) are reported in the result without an error;
// corruptions return the result and an error matching ErrCorrupt. A raw
// image has no metadata: its check is empty. The image must not be in use
// (ErrInUse): a check against a writer reports false corruptions.
func (t *Tool) Check(ctx context.Context, path, format string) (CheckResult, error) {
	if err := checkPath("image", path); err != nil {
		return CheckResult{}, err
	}
	if err := checkFormat("format", format); err != nil {
		return CheckResult{}, err
	}
	if format == FormatRaw {
		if _, err := os.Stat(path); err != nil {
			return CheckResult{}, openError(path, err)
		}
		return CheckResult{Filename: path, Format: format}, nil
	}
	out, err := t.run(ctx, invocation{args: []string{"check", "--output=json", "-f", format, path}, dir: filepath.Dir(path)})
	// qemu-img check exits 2 for corruptions and 3 for leaks only, with
	// its report on stdout either way.
	var ce *CommandError
	if err != nil && !(errors.As(err, &ce) && (ce.ExitCode == 2 || ce.ExitCode == 3)) {
		return CheckResult{}, err
	}
	r, perr := parseCheck(out)
	if perr != nil {
		if err != nil {
			return CheckResult{}, err
		}
		return CheckResult{}, fmt.Errorf("qemu-img check %s: %w", path, perr)
	}
	if r.Corruptions > 0 || (ce != nil && ce.ExitCode == 2) {
		err := fmt.Errorf("%w: %s: %d corruptions, %d leaked clusters, %d check errors", ErrCorrupt, path, r.Corruptions, r.Leaks, r.CheckErrors)
		if ce != nil {
			err = fmt.Errorf("%w: %w", err, ce) // ce.Stderr names the broken clusters
		}
		return r, err
	}
	return r, nil
}

package qemuimg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Info is what `qemu-img info` reports about one image (not its backing
// files).
type Info struct {
	// Filename is the path as given to qemu-img.
	Filename string
	// Format is the image's format ("raw", "qcow2").
	Format string
	// VirtualSize is the size of the disk the image presents, in bytes.
	VirtualSize int64
	// ActualSize is the space the file occupies on its file system (its
	// allocated blocks: small for a sparse or fresh qcow2 file). 0 when
	// qemu-img cannot tell.
	ActualSize int64
	// ClusterSize is the qcow2 cluster size; 0 for raw.
	ClusterSize int64
	// BackingFilename is the backing file exactly as recorded in the image
	// (a name relative to the image's directory for chains this package
	// makes); "" if the image has none.
	BackingFilename string
	// FullBackingFilename is BackingFilename resolved by qemu-img.
	FullBackingFilename string
	// BackingFormat is the backing file's format as recorded in the image;
	// "" means qemu would probe it, which InfoChain refuses.
	BackingFormat string
	// Encrypted images (LUKS inside qcow2) need a secret this package does
	// not pass; operations on them fail.
	Encrypted bool
	// DirtyFlag: a qcow2 image with lazy refcounts was not closed cleanly.
	DirtyFlag bool
	// Corrupt: the qcow2 corrupt bit is set; qemu opens the image read-only
	// only, and writes fail with ErrCorrupt until it is repaired.
	Corrupt bool
}

// maxChain bounds the length of a backing chain InfoChain follows.
const maxChain = 1024

// Info reports the image at path, opened as format ("raw" or "qcow2"). It
// reads only the image's header, does not open backing files, and passes
// -U so that images a running VM holds can be read.
func (t *Tool) Info(ctx context.Context, path, format string) (Info, error) {
	if err := checkPath("image", path); err != nil {
		return Info{}, err
	}
	if err := checkFormat("format", format); err != nil {
		return Info{}, err
	}
	out, err := t.run(ctx, invocation{
		args:     []string{"info", "--output=json", "-U", "-f", format, path},
		dir:      filepath.Dir(path),
		metadata: true,
	})
	if err != nil {
		return Info{}, err
	}
	info, err := parseInfo(out)
	if err != nil {
		return Info{}, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	if info.Filename != path || info.Format != format {
		return Info{}, fmt.Errorf("qemu-img info %s -f %s: reported filename %q, format %q", path, format, info.Filename, info.Format)
	}
	return info, nil
}

// InUse reports whether another process (a VM's qemu, another qemu-img)
// holds the image at path open for writing: it runs qemu-img info without
// -U, which needs the image's shared lock and fails with ErrInUse when a
// writer holds it. Other failures are returned as errors.
func (t *Tool) InUse(ctx context.Context, path, format string) (bool, error) {
	if err := checkPath("image", path); err != nil {
		return false, err
	}
	if err := checkFormat("format", format); err != nil {
		return false, err
	}
	_, err := t.run(ctx, invocation{
		args:     []string{"info", "--output=json", "-f", format, path},
		dir:      filepath.Dir(path),
		metadata: true,
	})
	switch {
	case errors.Is(err, ErrInUse):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}

// InfoChain reports the image at path and its backing files, top first.
// It follows the chain itself, one image at a time, and checks each backing
// reference before opening it: it must name a file in path's directory
// (relative, or absolute within that directory) of safe characters, with a
// recorded format of raw or qcow2; otherwise ErrUnsafeBacking. A missing
// backing file is ErrBackingUnavailable (never ErrNotFound: the volume is
// there, its chain is broken).
func (t *Tool) InfoChain(ctx context.Context, path, format string) ([]Info, error) {
	top, err := t.Info(ctx, path, format)
	if err != nil {
		return nil, err
	}
	chain := []Info{top}
	seen := map[string]bool{path: true}
	for cur := top; cur.BackingFilename != ""; {
		next, err := nextInChain(path, cur)
		if err != nil {
			return nil, err
		}
		if seen[next] {
			return nil, fmt.Errorf("%w: backing chain of %s loops at %s", ErrUnsafeBacking, path, next)
		}
		if len(chain) >= maxChain {
			return nil, fmt.Errorf("%w: backing chain of %s is longer than %d", ErrUnsafeBacking, path, maxChain)
		}
		seen[next] = true
		if cur, err = t.Info(ctx, next, cur.BackingFormat); err != nil {
			return nil, fmt.Errorf("backing chain of %s: %w", path, backingError(err))
		}
		chain = append(chain, cur)
	}
	return chain, nil
}

// nextInChain checks img's backing reference and returns the backing
// file's path. top is the chain's top image, whose directory holds them all.
func nextInChain(top string, img Info) (string, error) {
	dir := filepath.Dir(top)
	b := img.BackingFilename
	var next string
	if filepath.IsAbs(b) {
		if checkPath("backing file", b) != nil || filepath.Dir(b) != dir {
			return "", fmt.Errorf("%w: %s has backing file %q outside %s", ErrUnsafeBacking, img.Filename, b, dir)
		}
		next = b
	} else {
		if checkName("backing file", b) != nil {
			return "", fmt.Errorf("%w: %s has backing file %q, not a file name in its directory", ErrUnsafeBacking, img.Filename, b)
		}
		next = filepath.Join(dir, b)
	}
	if img.FullBackingFilename != "" && img.FullBackingFilename != next {
		return "", fmt.Errorf("%w: %s has backing file %q, which qemu-img resolves to %q, not %q", ErrUnsafeBacking, img.Filename, b, img.FullBackingFilename, next)
	}
	if checkFormat("backing format", img.BackingFormat) != nil {
		return "", fmt.Errorf("%w: %s records backing format %q for %q (raw or qcow2 required; empty means probing)", ErrUnsafeBacking, img.Filename, img.BackingFormat, b)
	}
	return next, nil
}

// backingError turns a not-found error about a backing file into
// ErrBackingUnavailable.
func backingError(err error) error {
	var ce *CommandError
	if errors.As(err, &ce) && errors.Is(ce.kind, ErrNotFound) {
		c := *ce
		c.kind = ErrBackingUnavailable
		return &c
	}
	return err
}

// infoJSON is `qemu-img info --output=json` for one image. Pointers tell
// missing fields from zeros.
type infoJSON struct {
	Filename            *string `json:"filename"`
	Format              *string `json:"format"`
	VirtualSize         *int64  `json:"virtual-size"`
	ActualSize          *int64  `json:"actual-size"`
	ClusterSize         *int64  `json:"cluster-size"`
	BackingFilename     *string `json:"backing-filename"`
	FullBackingFilename *string `json:"full-backing-filename"`
	BackingFormat       *string `json:"backing-filename-format"`
	Encrypted           *bool   `json:"encrypted"`
	DirtyFlag           *bool   `json:"dirty-flag"`
	FormatSpecific      *struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"format-specific"`
}

// parseInfo parses and checks `qemu-img info --output=json` for one image.
// A missing filename, format or virtual size, a negative size, a cluster
// size that is not a power of two, a backing format or full name without a
// backing name, or output of an unexpected shape is an error, never a zero.
func parseInfo(out []byte) (Info, error) {
	if len(out) > maxStdout {
		return Info{}, fmt.Errorf("info of %d bytes is larger than %d", len(out), maxStdout)
	}
	var j infoJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return Info{}, fmt.Errorf("parse info: %w", err)
	}
	var info Info
	var err error
	if info.Filename, err = reqString("filename", j.Filename); err != nil {
		return Info{}, err
	}
	if j.Format == nil || !formatName(*j.Format) {
		return Info{}, fmt.Errorf("parse info: format %s is missing or not a format name", quoteOpt(j.Format))
	}
	info.Format = *j.Format
	if j.VirtualSize == nil || *j.VirtualSize < 0 {
		return Info{}, fmt.Errorf("parse info: virtual-size %s is missing or negative", intOpt(j.VirtualSize))
	}
	info.VirtualSize = *j.VirtualSize
	if j.ActualSize != nil {
		if *j.ActualSize < 0 {
			return Info{}, fmt.Errorf("parse info: negative actual-size %d", *j.ActualSize)
		}
		info.ActualSize = *j.ActualSize
	}
	if j.ClusterSize != nil {
		n := *j.ClusterSize
		if n <= 0 || n&(n-1) != 0 {
			return Info{}, fmt.Errorf("parse info: cluster-size %d is not a power of two", n)
		}
		info.ClusterSize = n
	}
	if j.BackingFilename != nil {
		if info.BackingFilename, err = reqString("backing-filename", j.BackingFilename); err != nil {
			return Info{}, err
		}
	}
	if j.FullBackingFilename != nil {
		if info.BackingFilename == "" {
			return Info{}, errors.New("parse info: full-backing-filename without backing-filename")
		}
		if info.FullBackingFilename, err = reqString("full-backing-filename", j.FullBackingFilename); err != nil {
			return Info{}, err
		}
	}
	if j.BackingFormat != nil {
		if info.BackingFilename == "" || !formatName(*j.BackingFormat) {
			return Info{}, fmt.Errorf("parse info: backing-filename-format %q without a backing file or not a format name", *j.BackingFormat)
		}
		info.BackingFormat = *j.BackingFormat
	}
	info.Encrypted = j.Encrypted != nil && *j.Encrypted
	info.DirtyFlag = j.DirtyFlag != nil && *j.DirtyFlag
	if fs := j.FormatSpecific; fs != nil && fs.Type == FormatQCOW2 {
		var q struct {
			Corrupt *bool `json:"corrupt"`
		}
		if err := json.Unmarshal(fs.Data, &q); err != nil {
			return Info{}, fmt.Errorf("parse info: qcow2 format-specific data: %w", err)
		}
		info.Corrupt = q.Corrupt != nil && *q.Corrupt
	}
	return info, nil
}

// CheckResult is what `qemu-img check` found.
type CheckResult struct {
	Filename, Format string
	// Corruptions are metadata errors: data may be lost or wrong.
	Corruptions int64
	// Leaks are clusters allocated but unused: wasted space, harmless.
	Leaks int64
	// CheckErrors are errors that kept the check from completing parts.
	CheckErrors int64
	// ImageEndOffset is the end of the image's last used cluster, in bytes.
	ImageEndOffset int64
	// TotalClusters and AllocatedClusters count the image's clusters.
	TotalClusters, AllocatedClusters int64
}

type checkJSON struct {
	Filename          *string `json:"filename"`
	Format            *string `json:"format"`
	CheckErrors       *int64  `json:"check-errors"`
	Corruptions       *int64  `json:"corruptions"`
	Leaks             *int64  `json:"leaks"`
	ImageEndOffset    *int64  `json:"image-end-offset"`
	TotalClusters     *int64  `json:"total-clusters"`
	AllocatedClusters *int64  `json:"allocated-clusters"`
}

// parseCheck parses and checks `qemu-img check --output=json`.
func parseCheck(out []byte) (CheckResult, error) {
	if len(out) > maxStdout {
		return CheckResult{}, fmt.Errorf("check output of %d bytes is larger than %d", len(out), maxStdout)
	}
	var j checkJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return CheckResult{}, fmt.Errorf("parse check: %w", err)
	}
	var r CheckResult
	var err error
	if r.Filename, err = reqString("filename", j.Filename); err != nil {
		return CheckResult{}, err
	}
	if j.Format == nil || !formatName(*j.Format) {
		return CheckResult{}, fmt.Errorf("parse check: format %s is missing or not a format name", quoteOpt(j.Format))
	}
	r.Format = *j.Format
	if j.CheckErrors == nil {
		return CheckResult{}, errors.New("parse check: check-errors is missing")
	}
	for _, f := range []struct {
		name string
		v    *int64
		dst  *int64
	}{
		{"check-errors", j.CheckErrors, &r.CheckErrors},
		{"corruptions", j.Corruptions, &r.Corruptions},
		{"leaks", j.Leaks, &r.Leaks},
		{"image-end-offset", j.ImageEndOffset, &r.ImageEndOffset},
		{"total-clusters", j.TotalClusters, &r.TotalClusters},
		{"allocated-clusters", j.AllocatedClusters, &r.AllocatedClusters},
	} {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return CheckResult{}, fmt.Errorf("parse check: negative %s %d", f.name, *f.v)
		}
		*f.dst = *f.v
	}
	return r, nil
}

func reqString(field string, s *string) (string, error) {
	if s == nil || *s == "" || strings.IndexByte(*s, 0) >= 0 || len(*s) > maxPath {
		return "", fmt.Errorf("parse: %s %s is missing, empty, too long or contains NUL", field, quoteOpt(s))
	}
	return *s, nil
}

// formatName accepts what qemu calls a block driver: 1-32 of [a-z0-9_-].
func formatName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func quoteOpt(s *string) string {
	if s == nil {
		return "(missing)"
	}
	return fmt.Sprintf("%q", *s)
}

func intOpt(n *int64) string {
	if n == nil {
		return "(missing)"
	}
	return fmt.Sprint(*n)
}

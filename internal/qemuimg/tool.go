package qemuimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// kindError is a sentinel with its own message that still matches a
// storage sentinel with errors.Is.
type kindError struct {
	msg  string
	base error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.base }

// Errors qemu-img's failures map to. Match them with errors.Is.
var (
	// ErrNotFound: the image file (or, for Create, its directory) does not
	// exist. A missing backing file is ErrBackingUnavailable instead, so
	// that "already gone" logic never mistakes a broken chain for a
	// deleted volume.
	ErrNotFound error = &kindError{"image not found", storage.ErrNotFound}
	// ErrExists: Create or Convert found its target already there.
	ErrExists error = &kindError{"image file already exists", storage.ErrExists}
	// ErrNoSpace: the file system is full.
	ErrNoSpace error = &kindError{"no space left for the image", storage.ErrNoSpace}
	// ErrInvalid: the request cannot work (bad path, format, size, a shrink
	// not asked for, a commit of an image without a backing file, ...).
	ErrInvalid error = &kindError{"invalid image request", storage.ErrInvalid}
	// ErrInUse: another process (a VM's qemu, another qemu-img) holds the
	// image's lock.
	ErrInUse = errors.New("image is in use by another process")
	// ErrBackingUnavailable: a backing file of the image is missing or
	// cannot be opened.
	ErrBackingUnavailable = errors.New("backing file of the image cannot be opened")
	// ErrUnsafeBacking: an image records a backing file outside its
	// directory, with unsafe characters, or without a backing format; the
	// chain is not followed.
	ErrUnsafeBacking = errors.New("image has an unsafe backing file reference")
	// ErrWrongFormat: the image is not in the format it was opened as.
	ErrWrongFormat = errors.New("image is not in the expected format")
	// ErrCorrupt: qcow2 metadata is corrupt (the corrupt bit is set, or
	// Check found corruptions).
	ErrCorrupt = errors.New("image is corrupt")
	// ErrPermission: the file cannot be opened with the needed access.
	ErrPermission error = &kindError{"permission denied on the image", fs.ErrPermission}
)

// CommandError is a qemu-img command that failed: its arguments (paths,
// formats and sizes: nothing secret), exit status and stderr.
type CommandError struct {
	Args []string
	// ExitCode of qemu-img; -1 if it was killed.
	ExitCode int
	// Stderr is qemu-img's message, cut at maxStderr bytes.
	Stderr string
	kind   error // a sentinel above, or nil
}

func (e *CommandError) Error() string {
	msg := strings.Join(strings.Fields(e.Stderr), " ")
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("qemu-img %s: exit status %d: %s", strings.Join(e.Args, " "), e.ExitCode, msg)
}

// Unwrap lets errors.Is reach the mapped sentinel.
func (e *CommandError) Unwrap() error { return e.kind }

// stderrKinds maps qemu-img 7.2's messages (LC_ALL=C) to sentinels; the
// first match wins. Messages about a backing file are handled before them
// (backingKinds).
var stderrKinds = []struct {
	text string
	kind error
}{
	{"No space left on device", ErrNoSpace},
	{"Disk quota exceeded", ErrNoSpace},
	{`Failed to get "write" lock`, ErrInUse},
	{`Failed to get shared "write" lock`, ErrInUse},
	{`Failed to get "consistent read" lock`, ErrInUse},
	{"Is another process using the image", ErrInUse},
	{"Image is corrupt", ErrCorrupt},
	{"is not in qcow2 format", ErrWrongFormat},
	{"Image does not have a backing file", ErrInvalid},
	{"in the backing chain of", ErrInvalid}, // commit -b with a base not in the chain
	{"Use the --shrink option", ErrInvalid},
	{"output file is smaller than input file", ErrInvalid},
	{"Invalid image size", ErrInvalid},
	{"Image size must be less than", ErrInvalid},
	{"No such file or directory", ErrNotFound},
	{"Permission denied", ErrPermission},
	{"Operation not permitted", ErrPermission},
	{"Read-only file system", ErrPermission},
}

// backingMarks are the messages of a backing file that cannot be opened.
// They embed the backing file's own error, whose "No such file or
// directory" must not read as a missing image.
var backingMarks = []string{
	"Could not open backing file",
	"Could not open backing image",
	"Could not open old backing file",
	"Could not open new backing file",
}

// classify maps stderr to a sentinel: for a backing file that cannot be
// opened, ErrBackingUnavailable, joined with ErrWrongFormat or ErrCorrupt
// when that is the reason.
func classify(stderr string) error {
	for _, m := range backingMarks {
		if strings.Contains(stderr, m) {
			switch {
			case strings.Contains(stderr, "is not in qcow2 format"):
				return errors.Join(ErrBackingUnavailable, ErrWrongFormat)
			case strings.Contains(stderr, "Image is corrupt"):
				return errors.Join(ErrBackingUnavailable, ErrCorrupt)
			}
			return ErrBackingUnavailable
		}
	}
	for _, k := range stderrKinds {
		if strings.Contains(stderr, k.text) {
			return k.kind
		}
	}
	return nil
}

// Config configures a Tool.
type Config struct {
	// Binary is "qemu-img" (looked up in PATH) or an absolute path; empty
	// means "qemu-img".
	Binary string
	// MetadataTimeout bounds a command that only touches image metadata
	// (info, create and resize without preallocation, unsafe rebase): on a
	// hung NFS server they would otherwise wait forever. 0 means 2 minutes.
	// Commands that move data are bounded by the caller's context only.
	MetadataTimeout time.Duration
	// Logger receives a debug record per command; nil discards.
	Logger *slog.Logger
}

// Tool runs qemu-img. It holds no state between calls and is safe for
// concurrent use; serializing operations on one chain is the caller's job.
type Tool struct {
	binary  string
	env     []string
	timeout time.Duration
	log     *slog.Logger
}

// New checks cfg and returns a Tool. It does not run qemu-img.
func New(cfg Config) (*Tool, error) {
	bin := cfg.Binary
	if bin == "" {
		bin = "qemu-img"
	}
	if strings.ContainsRune(bin, '/') && !filepath.IsAbs(bin) {
		return nil, fmt.Errorf("%w: qemu-img binary %q must be a name in PATH or an absolute path", ErrInvalid, bin)
	}
	if cfg.MetadataTimeout < 0 {
		return nil, fmt.Errorf("%w: negative metadata timeout", ErrInvalid)
	}
	timeout := cfg.MetadataTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "LANGUAGE=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C", "LANG=C")
	return &Tool{binary: bin, env: env, timeout: timeout, log: log}, nil
}

// Output bounds. qemu-img's JSON for one image is a few hundred bytes;
// check's stderr lists every leaked cluster, so it is cut.
const (
	maxStdout = 1 << 20
	maxStderr = 64 << 10
)

// invocation is one qemu-img run.
type invocation struct {
	args []string
	// dir is the working directory: the image's, so that backing file names
	// resolve the same whether qemu-img takes them relative to the image or
	// to its working directory.
	dir string
	// metadata marks a command bounded by the metadata timeout.
	metadata bool
	// progress, if set, receives -p updates (percent) parsed from stdout,
	// which is then not returned.
	progress func(pct float64)
}

// run executes qemu-img and returns its stdout.
func (t *Tool) run(ctx context.Context, inv invocation) ([]byte, error) {
	if inv.metadata {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, t.binary, inv.args...)
	cmd.Env = t.env
	cmd.Dir = inv.dir
	cmd.WaitDelay = 5 * time.Second
	stdout := &limitBuffer{max: maxStdout}
	stderr := &headBuffer{max: maxStderr}
	if inv.progress != nil {
		cmd.Stdout = &progressWriter{report: inv.progress}
	} else {
		cmd.Stdout = stdout
	}
	cmd.Stderr = stderr
	start := time.Now()
	err := cmd.Run()
	t.log.Debug("qemu-img", "args", inv.args, "took", time.Since(start), "err", err)
	if err == nil {
		return stdout.Bytes(), nil
	}
	se := stderr.String()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("qemu-img %s: %w (stderr: %s)", strings.Join(inv.args, " "), ctx.Err(), strings.TrimSpace(se))
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return nil, fmt.Errorf("qemu-img %s: %w", strings.Join(inv.args, " "), err)
	}
	return stdout.Bytes(), &CommandError{Args: inv.args, ExitCode: exit.ExitCode(), Stderr: se, kind: classify(se)}
}

// limitBuffer fails writes past max bytes, which ends the command.
type limitBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, fmt.Errorf("qemu-img wrote more than %d bytes to stdout", b.max)
	}
	return b.Buffer.Write(p)
}

// headBuffer keeps the first max bytes and drops the rest, so a long
// stderr never blocks or fails the command.
type headBuffer struct {
	buf []byte
	max int
	cut bool
}

func (b *headBuffer) Write(p []byte) (int, error) {
	n, room := len(p), b.max-len(b.buf)
	if n > room {
		b.cut = true
		p = p[:max(room, 0)]
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *headBuffer) String() string {
	if b.cut {
		return string(b.buf) + "\n[stderr cut]"
	}
	return string(b.buf)
}

package nfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Defaults for empty ShareConfig fields.
const (
	// DefaultMountPointBase is where shares are mounted, each in a
	// directory of its own (MountPoint); Cinder's nfs_mount_point_base.
	DefaultMountPointBase = "/var/lib/kiln/mnt"
	// DefaultMountBinary is util-linux mount, looked up in PATH; it runs
	// mount.nfs from nfs-common.
	DefaultMountBinary = "mount"
	// DefaultMountTimeout bounds one mount command. mount.nfs retries an
	// unreachable server for 2 minutes by default (retry=2); the timeout
	// keeps an agent from waiting that long at start.
	DefaultMountTimeout = 60 * time.Second
)

// ErrMountFailed is what every failure of Mounter.Ensure to make the share
// available wraps (except a cancelled context): mount failed or timed out,
// the mount point could not be made, or something else is mounted there
// (then the error also wraps ErrMountPointInUse).
var ErrMountFailed = errors.New("NFS share could not be mounted")

// ErrMountPointInUse is a mount point that has something other than the
// share mounted on it. Ensure leaves it alone: unmounting is the
// operator's call.
var ErrMountPointInUse = errors.New("mount point has something else mounted")

const (
	mountinfoPath = "/proc/self/mountinfo"
	// maxMountOutput bounds what is kept of mount's stdout and stderr each;
	// mount.nfs says what went wrong in one or two lines.
	maxMountOutput = 16 << 10
	// maxMountError bounds how much of mount's output an error quotes.
	maxMountError = 2 << 10
	// mountWaitDelay is how long Ensure waits, after killing a timed-out
	// mount, for a child it left behind to let go of the output pipes.
	mountWaitDelay = 5 * time.Second
	mountDirPerm   = 0o750
	maxShareLen    = 1024
	maxOptionsLen  = 1024
)

// ShareConfig is one remote NFS share a pool lives on, mounted by the agent
// itself (Cinder's nfs_shares_config line, nfs_mount_options and
// nfs_mount_point_base).
type ShareConfig struct {
	// Share is "host:/export/path". host is an IPv4 address, an IPv6
	// address in brackets ("[fd00::5]:/export") or a DNS name; the path is
	// clean and absolute, of [A-Za-z0-9/._+-] ("/" alone is the server's
	// NFSv4 root). Nothing in it can reach mount as an option.
	Share string
	// MountOptions are mount -o options, comma-separated, e.g.
	// "vers=4.1,proto=tcp,port=2049". Each is a key of [A-Za-z0-9_-]
	// starting with a letter or digit, optionally "=value" with a value of
	// [A-Za-z0-9._:/+@-]. "" passes no -o: mount.nfs negotiates the version.
	MountOptions string
	// MountPointBase is an absolute directory; the share is mounted on
	// MountPoint(MountPointBase, Share). DefaultMountPointBase if empty.
	MountPointBase string
	// MountBinary is the mount program, a name looked up in PATH or an
	// absolute path; DefaultMountBinary if empty.
	MountBinary string
	// Timeout bounds one mount command; DefaultMountTimeout if 0.
	Timeout time.Duration
}

// MountPoint returns where share is mounted under base: base/<hex MD5 of
// the share string>, the name Cinder's remotefs drivers give it
// (os-brick RemoteFsClient.get_mount_point), so a host moved from Cinder
// finds its shares where they were.
func MountPoint(base, share string) string {
	sum := md5.Sum([]byte(share))
	return filepath.Join(base, hex.EncodeToString(sum[:]))
}

// Mounter mounts one NFS share on its mount point and checks that it is
// mounted. It never unmounts. Ensure calls are serialized; a Mounter is
// safe for concurrent use.
type Mounter struct {
	share   string
	options string
	dir     string
	binary  string
	timeout time.Duration
	// env is the agent's with LC_ALL=C (of duplicates the last wins), so
	// that mount's messages are the English ones mountHints knows.
	env []string
	log *slog.Logger
	// mountinfo is /proc/self/mountinfo; tests point it at a file of their
	// own.
	mountinfo string
	// sem serializes Ensure, unlike a mutex with a wait the caller's
	// context can end.
	sem chan struct{}
}

// NewMounter checks cfg and returns a Mounter for it. It has no side
// effects: nothing is created, run or mounted. Invalid settings wrap
// storage.ErrInvalid. log may be nil (slog.Default()).
func NewMounter(cfg ShareConfig, log *slog.Logger) (*Mounter, error) {
	if cfg.MountPointBase == "" {
		cfg.MountPointBase = DefaultMountPointBase
	}
	if cfg.MountBinary == "" {
		cfg.MountBinary = DefaultMountBinary
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultMountTimeout
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	dir := MountPoint(filepath.Clean(cfg.MountPointBase), cfg.Share)
	return &Mounter{
		share:     cfg.Share,
		options:   cfg.MountOptions,
		dir:       dir,
		binary:    cfg.MountBinary,
		timeout:   cfg.Timeout,
		env:       append(os.Environ(), "LC_ALL=C"),
		log:       log.With("component", "nfs-mount", "share", cfg.Share, "mount_point", dir),
		mountinfo: mountinfoPath,
		sem:       make(chan struct{}, 1),
	}, nil
}

// validate reports every problem in a defaulted config, each wrapping
// storage.ErrInvalid.
func (cfg ShareConfig) validate() error {
	var errs []error
	if err := validateShare(cfg.Share); err != nil {
		errs = append(errs, err)
	}
	if err := validateMountOptions(cfg.MountOptions); err != nil {
		errs = append(errs, err)
	}
	if !filepath.IsAbs(cfg.MountPointBase) || strings.ContainsFunc(cfg.MountPointBase, mountControl) {
		errs = append(errs, fmt.Errorf("%w: mount point base %q must be an absolute path without control characters",
			storage.ErrInvalid, cfg.MountPointBase))
	}
	if err := storage.ValidateCommand("mount binary", cfg.MountBinary); err != nil {
		errs = append(errs, err)
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: mount timeout %v must not be negative", storage.ErrInvalid, cfg.Timeout))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("nfs: invalid share config: %w", errors.Join(errs...))
}

func mountControl(r rune) bool { return r < 0x20 || r == 0x7f }

// validateShare checks "host:/path" strictly: the share becomes an argument
// of mount and mount.nfs, is looked for in mountinfo, and names the mount
// point.
func validateShare(share string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: NFS share %q %s", storage.ErrInvalid, share, why)
	}
	if share == "" {
		return bad("is empty; want host:/export/path")
	}
	if len(share) > maxShareLen {
		return bad(fmt.Sprintf("is longer than %d bytes", maxShareLen))
	}
	var host, path string
	if strings.HasPrefix(share, "[") {
		end := strings.Index(share, "]:")
		if end < 0 {
			return bad("must be [IPv6 address]:/path")
		}
		host, path = share[1:end], share[end+2:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return bad("must have an IPv6 address without a zone between the brackets")
		}
	} else {
		var ok bool
		host, path, ok = strings.Cut(share, ":")
		if !ok {
			return bad("must be host:/path")
		}
		if err := validateShareHost(host); err != nil {
			return bad(err.Error())
		}
	}
	if path == "" || path[0] != '/' {
		return bad("must have an absolute export path after the colon")
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if !(mountAlnum(c) || strings.IndexByte("/._+-", c) >= 0) {
			return bad("has an export path with characters other than [A-Za-z0-9/._+-]")
		}
	}
	if filepath.Clean(path) != path {
		return bad("must have a clean export path (no //, trailing /, . or .. components)")
	}
	return nil
}

// validateShareHost accepts an IPv4 address or a DNS name (RFC 1123
// labels); IPv6 addresses go in brackets.
func validateShareHost(host string) error {
	if host == "" {
		return errors.New("has no host before the colon")
	}
	if strings.Contains(host, "]") || strings.Contains(host, "[") {
		return errors.New("has a stray bracket")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return errors.New("must put an IPv6 address in brackets")
		}
		return nil
	}
	if len(host) > 253 {
		return errors.New("has a host name longer than 253 characters")
	}
	numeric := true
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("has a host that is neither an IPv4 address nor a DNS name")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !mountAlnum(c) && c != '-' {
				return errors.New("has a host that is neither an IPv4 address nor a DNS name")
			}
			if c < '0' || c > '9' {
				numeric = false
			}
		}
	}
	if numeric {
		// "10.0.0.256" or "10.1": not a valid IPv4 address, and not a name
		// either (a top-level domain is never all digits).
		return errors.New("has a host that is not a valid IPv4 address")
	}
	return nil
}

func mountAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validateMountOptions checks the -o list: comma-separated key[=value]
// options of characters that no program on the way splits or interprets.
func validateMountOptions(opts string) error {
	if opts == "" {
		return nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: NFS mount options %q: %s", storage.ErrInvalid, opts, why)
	}
	if len(opts) > maxOptionsLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxOptionsLen))
	}
	for _, opt := range strings.Split(opts, ",") {
		key, value, hasValue := strings.Cut(opt, "=")
		if key == "" || !mountAlnum(key[0]) {
			return bad(fmt.Sprintf("option %q must start with a letter or digit", opt))
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; !mountAlnum(c) && c != '_' && c != '-' {
				return bad(fmt.Sprintf("option %q has a name with characters other than [A-Za-z0-9_-]", opt))
			}
		}
		if hasValue && value == "" {
			return bad(fmt.Sprintf("option %q has an empty value", opt))
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; !mountAlnum(c) && strings.IndexByte("._:/+@-", c) < 0 {
				return bad(fmt.Sprintf("option %q has a value with characters other than [A-Za-z0-9._:/+@-]", opt))
			}
		}
	}
	return nil
}

// Dir returns the mount point: MountPoint(MountPointBase, Share).
func (m *Mounter) Dir() string { return m.dir }

// Share returns the share, as configured.
func (m *Mounter) Share() string { return m.share }

// Ensure makes sure the share is mounted on Dir. If mountinfo already shows
// it there (fstype nfs or nfs4, source the share), Ensure returns at once
// without running anything. If something else is mounted on Dir it fails
// (ErrMountFailed and ErrMountPointInUse) and changes nothing. Otherwise it
// creates Dir (0750, with parents), runs `mount -t nfs [-o OPTIONS] SHARE
// DIR` (no shell, LC_ALL=C, stdin /dev/null, bounded by the configured
// timeout) and checks mountinfo again. Failures wrap ErrMountFailed and
// carry the share, the mount point, mount's exit status and message, and a
// hint when the message is a known one. Concurrent calls are serialized.
func (m *Mounter) Ensure(ctx context.Context) error {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("nfs: mount %s on %s: %w", m.share, m.dir, ctx.Err())
	}
	defer func() { <-m.sem }()

	mounted, err := m.check()
	if err != nil || mounted {
		return err
	}
	if err := os.MkdirAll(m.dir, mountDirPerm); err != nil {
		return fmt.Errorf("nfs: mount %s on %s: %w: create the mount point: %w", m.share, m.dir, ErrMountFailed, err)
	}
	m.log.Info("mounting NFS share", "options", m.options)
	start := time.Now()
	if err := m.run(ctx); err != nil {
		// Another process (an operator, a second Mounter for the share) may
		// have mounted it meanwhile; mount then fails as "already mounted".
		if ctx.Err() == nil {
			if mounted, cerr := m.check(); cerr == nil && mounted {
				m.log.Info("NFS share was mounted by someone else meanwhile", "mount_error", err)
				return nil
			}
		}
		m.log.Warn("mounting NFS share failed", "error", err)
		return err
	}
	mounted, err = m.check()
	if err != nil {
		return err
	}
	if !mounted {
		m.log.Warn("mount succeeded, but the share is not mounted")
		return fmt.Errorf("nfs: mount %s on %s: %w: mount reported success, but %s shows nothing mounted there",
			m.share, m.dir, ErrMountFailed, m.mountinfo)
	}
	m.log.Info("mounted NFS share", "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// check reports whether the share is mounted on Dir, and fails if
// something else is.
func (m *Mounter) check() (bool, error) {
	entries, err := readMountinfo(m.mountinfo)
	if err != nil {
		return false, fmt.Errorf("nfs: mount %s on %s: %w: %w", m.share, m.dir, ErrMountFailed, err)
	}
	dirs := []string{m.dir}
	// mountinfo shows a path with its symlinks resolved, e.g. a base under
	// a symlinked /var/lib. Only the base is resolved: a stat of the mount
	// point itself would hang on a share whose server is gone.
	if base, err := filepath.EvalSymlinks(filepath.Dir(m.dir)); err == nil {
		if real := filepath.Join(base, filepath.Base(m.dir)); real != m.dir {
			dirs = append(dirs, real)
		}
	}
	// Of several mounts stacked on one directory the last one is on top,
	// the one the directory shows.
	var top *mountEntry
	for i := range entries {
		for _, d := range dirs {
			if entries[i].mountPoint == d {
				top = &entries[i]
			}
		}
	}
	switch {
	case top == nil:
		return false, nil
	case (top.fsType == "nfs" || top.fsType == "nfs4") && top.source == m.share:
		m.log.Debug("NFS share is mounted", "fstype", top.fsType)
		return true, nil
	}
	return false, fmt.Errorf("nfs: mount %s on %s: %w: %w: %s (type %s) is mounted there instead; unmount it or use another mount point base",
		m.share, m.dir, ErrMountFailed, ErrMountPointInUse, top.source, top.fsType)
}

// run runs the mount command once.
func (m *Mounter) run(ctx context.Context) error {
	args := []string{"-t", "nfs"}
	if m.options != "" {
		args = append(args, "-o", m.options)
	}
	args = append(args, m.share, m.dir)

	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, m.binary, args...)
	cmd.Env = m.env
	cmd.Stdin = nil // /dev/null
	var stdout, stderr mountOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = mountWaitDelay
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up: not the share's fault.
		return fmt.Errorf("nfs: mount %s on %s: %w", m.share, m.dir, ctx.Err())
	}
	e := &MountError{Share: m.share, MountPoint: m.dir, Args: append([]string{m.binary}, args...), ExitCode: -1,
		Output: mountClip(strings.Join(strings.Fields(stderr.String()+" "+stdout.String()), " "), maxMountError)}
	var exitErr *exec.ExitError
	switch {
	case cctx.Err() != nil:
		e.Hint = fmt.Sprintf("mount did not finish within %v (killed): the server does not answer; check its address, port and firewalls", m.timeout)
	case errors.As(err, &exitErr):
		e.ExitCode = exitErr.ExitCode()
		e.Hint = mountHint(e.Output)
	default:
		// Not started: the binary is missing or not executable.
		e.Output = err.Error()
		e.Hint = "the mount program could not be run (util-linux mount, with mount.nfs from nfs-common)"
	}
	return e
}

// MountError is a mount command that failed. It wraps ErrMountFailed.
type MountError struct {
	Share      string
	MountPoint string
	// Args is the command line, program first (no secrets: NFS mount
	// options carry none Kiln allows).
	Args []string
	// ExitCode is mount's exit status; -1 if it was killed or did not
	// start. mount(8) exits 32 when the mount failed.
	ExitCode int
	// Output is mount's stderr and stdout, whitespace collapsed, cut to a
	// few KiB.
	Output string
	// Hint is one line on the likely cause, "" if the message is not a
	// known one.
	Hint string
}

func (e *MountError) Error() string {
	out := e.Output
	if out == "" {
		out = "no message"
	}
	status := "failed"
	if e.ExitCode >= 0 {
		status = fmt.Sprintf("exited %d", e.ExitCode)
	}
	msg := fmt.Sprintf("nfs: mount %s on %s: %v: %s %s: %s",
		e.Share, e.MountPoint, ErrMountFailed, filepath.Base(e.Args[0]), status, out)
	if e.Hint != "" {
		msg += " (hint: " + e.Hint + ")"
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrMountFailed) true.
func (e *MountError) Unwrap() error { return ErrMountFailed }

// mountHints maps mount and mount.nfs messages (LC_ALL=C) to a one-line
// hint; the first match wins.
var mountHints = []struct{ text, hint string }{
	{"bad option; for several filesystems", "mount.nfs is missing: install nfs-common"},
	{"only root can", "mounting needs root (CAP_SYS_ADMIN)"},
	{"Failed to find '", "mount.nfs cannot resolve the proto= transport: check the option, /etc/netconfig (libtirpc-common) and /etc/protocols (netbase)"},
	{"access denied by server", "the server refuses this host: check the export's client list (and, with NFSv3, that the path is exported)"},
	{"No such file or directory", "the export path does not exist on the server (with NFSv4, check the export's pseudo path)"},
	{"Connection refused", "nothing listens on the server's NFS port: check that the server runs and the port= option"},
	{"timed out", "the server does not answer: check its address, port and firewalls"},
	{"Protocol not supported", "the NFS version asked for (vers=) is not served by the server or not supported by this kernel"},
	{"No such device", "this kernel has no NFS client: modprobe nfs (and nfsv4)"},
	{"Permission denied", "the server denied access: check the export's client list and security flavour"},
}

func mountHint(output string) string {
	for _, h := range mountHints {
		if strings.Contains(output, h.text) {
			return h.hint
		}
	}
	return ""
}

// mountEntry is one line of /proc/self/mountinfo, unescaped.
type mountEntry struct {
	mountPoint string
	fsType     string
	source     string
}

func readMountinfo(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := parseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return entries, nil
}

// parseMountinfo parses proc_pid_mountinfo(5):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// mount ID, parent ID, major:minor, root, mount point, mount options, zero
// or more optional fields, "-", fstype, source, super options. The kernel
// escapes space, tab, newline and backslash in paths and sources as \ and
// three octal digits.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var entries []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("line %d is not a mountinfo line: %q", n, mountClip(line, 200))
		}
		entries = append(entries, mountEntry{
			mountPoint: unescapeMountinfo(f[4]),
			fsType:     unescapeMountinfo(f[sep+1]),
			source:     unescapeMountinfo(f[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return entries, nil
}

// unescapeMountinfo undoes the kernel's \ooo escapes; anything else is
// kept as it is.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' && mountOctal(s[i+2]) && mountOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mountOctal(c byte) bool { return c >= '0' && c <= '7' }

// mountOutput keeps the first maxMountOutput bytes written to it and drops
// the rest, so a runaway child cannot fill the agent's memory.
type mountOutput struct{ b bytes.Buffer }

func (c *mountOutput) Write(p []byte) (int, error) {
	if room := maxMountOutput - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *mountOutput) String() string { return c.b.String() }

// mountClip cuts s to at most n bytes, marking the cut.
func mountClip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

package rbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Errors the runner maps rbd's and ceph's failures to. Those callers branch
// on wrap the storage sentinels, so the agent's error codes follow.
var (
	// ErrImageNotFound: the image (or snapshot) does not exist (ENOENT).
	ErrImageNotFound = fmt.Errorf("rbd image %w", storage.ErrNotFound)
	// ErrImageExists: the name is taken (EEXIST).
	ErrImageExists = fmt.Errorf("rbd image %w", storage.ErrExists)
	// ErrNoSpace: the cluster is full (ENOSPC, EDQUOT).
	ErrNoSpace = fmt.Errorf("ceph: %w", storage.ErrNoSpace)
	// ErrBusy: a protected snapshot, a snapshot with clones, an image with
	// snapshots or watchers (EBUSY, ENOTEMPTY).
	ErrBusy = errors.New("rbd image or snapshot is in use")
	// ErrUnreachable: the cluster did not answer in time or refused the
	// user (timeout, EACCES/EPERM: keyring or caps).
	ErrUnreachable = errors.New("ceph cluster unreachable")
)

// Exit codes of rbd (the negated errno of the failed librbd call).
const (
	exitPerm     = 1
	exitNoEnt    = 2
	exitAccess   = 13
	exitBusy     = 16
	exitExists   = 17
	exitNoSpace  = 28
	exitNotEmpty = 39
	exitQuota    = 122
	exitTimedOut = 110
)

// CommandError is a failed rbd or ceph command: what ran (pool, image and
// snapshot names, sizes: nothing secret, the keyring is a path), its exit
// status and stderr.
type CommandError struct {
	Args     []string
	ExitCode int
	Stderr   string
	kind     error
}

func (e *CommandError) Error() string {
	msg := strings.Join(strings.Fields(e.Stderr), " ")
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("%s: exit status %d: %s", strings.Join(e.Args, " "), e.ExitCode, msg)
}

// Unwrap lets errors.Is reach the mapped sentinel.
func (e *CommandError) Unwrap() error { return e.kind }

// classify maps an exit code (and stderr where codes are shared) to a
// sentinel.
func classify(code int, stderr string) error {
	switch code {
	case exitNoEnt:
		if strings.Contains(stderr, "pool") && strings.Contains(stderr, "does not exist") {
			return fmt.Errorf("%w: the Ceph pool does not exist", ErrUnreachable)
		}
		return ErrImageNotFound
	case exitExists:
		return ErrImageExists
	case exitNoSpace, exitQuota:
		return ErrNoSpace
	case exitBusy, exitNotEmpty:
		return ErrBusy
	case exitTimedOut:
		// --rados-osd-op-timeout: the OSDs did not complete a write in
		// time, which is what a full pool (quota, full ratio) or down
		// OSDs look like.
		return fmt.Errorf("%w: an OSD operation timed out (a full pool or OSDs down)", ErrUnreachable)
	case exitPerm, exitAccess:
		if strings.Contains(stderr, "Operation not permitted") || strings.Contains(stderr, "Permission denied") ||
			strings.Contains(stderr, "auth") || strings.Contains(stderr, "keyring") {
			return ErrUnreachable
		}
	}
	if strings.Contains(stderr, "timed out") || strings.Contains(stderr, "monclient") {
		return ErrUnreachable
	}
	return nil
}

// runner executes rbd and ceph as one cephx user against one cluster:
// exec without a shell, LC_ALL=C, JSON output, stdin closed, stdout and
// stderr bounded, every command under a timeout (without quorum they wait
// forever).
type runner struct {
	cfg Config
	env []string
	log *slog.Logger
}

const maxOutput = 64 << 20

func newRunner(cfg Config, log *slog.Logger) *runner {
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		// CEPH_ARGS or CEPH_KEYRING in the agent's environment would
		// silently change which user and cluster the commands reach.
		if strings.HasPrefix(kv, "CEPH_") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C", "LANG=C")
	return &runner{cfg: cfg, env: env, log: log}
}

// common are the connection arguments of every command.
func (r *runner) common() []string {
	args := []string{"--conf", r.cfg.Conf, "--id", r.cfg.User, "--cluster", r.cfg.ClusterName}
	if r.cfg.Keyring != "" {
		args = append(args, "--keyring", r.cfg.Keyring)
	}
	return args
}

// rbd runs `rbd <common> args...`; long commands (flatten, copies) get ten
// times the timeout.
func (r *runner) rbd(ctx context.Context, long bool, args ...string) ([]byte, error) {
	// A write to a full pool blocks instead of failing; the OSD op timeout
	// makes it fail with ETIMEDOUT before the command's own timeout.
	opTimeout := strconv.Itoa(int(r.cfg.Timeout.Seconds()) * 9 / 10)
	if long {
		opTimeout = "0" // flatten and rollback may take long: bounded by the command timeout only
	}
	common := append(r.common(), "--rados-osd-op-timeout", opTimeout)
	return r.run(ctx, r.cfg.RBD, long, append(common, args...))
}

// ceph runs `ceph <common> args... --format json`.
func (r *runner) ceph(ctx context.Context, args ...string) ([]byte, error) {
	return r.run(ctx, r.cfg.Ceph, false, append(append(r.common(), args...), "--format", "json"))
}

func (r *runner) run(parent context.Context, bin string, long bool, args []string) ([]byte, error) {
	timeout := r.cfg.Timeout
	if long {
		timeout *= 10
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = r.env
	cmd.WaitDelay = 5 * time.Second
	stdout := &limitBuffer{max: maxOutput}
	stderr := &limitBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err := cmd.Run()
	shown := append([]string{bin}, args...)
	r.log.Debug("ceph command", "args", shown, "took", time.Since(start), "err", err)
	if err == nil {
		if stdout.over {
			return nil, fmt.Errorf("%s: output larger than %d bytes", strings.Join(shown, " "), maxOutput)
		}
		return stdout.Bytes(), nil
	}
	if err := parent.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(shown, " "), err)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w: no answer within %s (stderr: %s)", strings.Join(shown, " "), ErrUnreachable, timeout, strings.TrimSpace(stderr.String()))
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return nil, fmt.Errorf("%s: %w", strings.Join(shown, " "), err)
	}
	se := stderr.String()
	return nil, &CommandError{Args: shown, ExitCode: exit.ExitCode(), Stderr: se, kind: classify(exit.ExitCode(), se)}
}

type limitBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// image is one image of `rbd ls -l --format json` (entries without a
// snapshot) or one snapshot (entries with one).
type lsEntry struct {
	Image     string          `json:"image"`
	Snapshot  string          `json:"snapshot"`
	Size      *int64          `json:"size"`
	Protected json.RawMessage `json:"protected"`
}

// parseLs parses `rbd ls -l --format json`: images and their snapshots.
// Sizes must be present and non-negative, names non-empty.
func parseLs(out []byte) (images map[string]int64, snaps map[string][]snapEntry, err error) {
	var rows []lsEntry
	if err := strictJSON(out, &rows); err != nil {
		return nil, nil, fmt.Errorf("parse rbd ls: %w", err)
	}
	images, snaps = map[string]int64{}, map[string][]snapEntry{}
	for i, row := range rows {
		if row.Image == "" || row.Size == nil || *row.Size < 0 {
			return nil, nil, fmt.Errorf("parse rbd ls: entry %d: image %q, size %v", i, row.Image, row.Size)
		}
		if row.Snapshot == "" {
			images[row.Image] = *row.Size
			continue
		}
		p, err := parseBool(row.Protected)
		if err != nil {
			return nil, nil, fmt.Errorf("parse rbd ls: entry %d: protected: %w", i, err)
		}
		snaps[row.Image] = append(snaps[row.Image], snapEntry{Name: row.Snapshot, Size: *row.Size, Protected: p})
	}
	return images, snaps, nil
}

// snapEntry is a snapshot of an image.
type snapEntry struct {
	Name      string
	Size      int64
	Protected bool
}

// parseBool reads rbd's "protected": "true"/"false" (a string in pacific),
// or a JSON boolean; absent means false.
func parseBool(raw json.RawMessage) (bool, error) {
	switch strings.TrimSpace(string(raw)) {
	case "", `"false"`, "false":
		return false, nil
	case `"true"`, "true":
		return true, nil
	}
	return false, fmt.Errorf("not a boolean: %s", raw)
}

// imageInfo is what Kiln reads from `rbd info --format json`.
type imageInfo struct {
	Name   string `json:"name"`
	Size   *int64 `json:"size"`
	Parent *struct {
		Pool     string `json:"pool"`
		Image    string `json:"image"`
		Snapshot string `json:"snapshot"`
	} `json:"parent"`
}

func parseInfo(out []byte) (imageInfo, error) {
	var info imageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return imageInfo{}, fmt.Errorf("parse rbd info: %w", err)
	}
	if info.Name == "" || info.Size == nil || *info.Size < 0 {
		return imageInfo{}, fmt.Errorf("parse rbd info: name %q, size %v", info.Name, info.Size)
	}
	if p := info.Parent; p != nil && (p.Pool == "" || p.Image == "" || p.Snapshot == "") {
		return imageInfo{}, fmt.Errorf("parse rbd info: incomplete parent %+v", *p)
	}
	return info, nil
}

// parseChildren parses `rbd children --format json`: the images cloned
// from a snapshot, as "pool/image".
func parseChildren(out []byte) ([]string, error) {
	var rows []struct {
		Pool      string `json:"pool"`
		Namespace string `json:"pool_namespace"`
		Image     string `json:"image"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, fmt.Errorf("parse rbd children: %w", err)
	}
	out2 := make([]string, 0, len(rows))
	for i, r := range rows {
		if r.Pool == "" || r.Image == "" {
			return nil, fmt.Errorf("parse rbd children: entry %d incomplete", i)
		}
		spec := r.Pool + "/" + r.Image
		if r.Namespace != "" {
			spec = r.Pool + "/" + r.Namespace + "/" + r.Image
		}
		out2 = append(out2, spec)
	}
	return out2, nil
}

// poolUsage is a pool's figures from `ceph df --format json`.
type poolUsage struct {
	Stored   int64 // bytes of data stored (before replication)
	Used     int64 // bytes used (after replication)
	MaxAvail int64 // bytes that can still be stored
}

func parseDF(out []byte, pool string) (poolUsage, error) {
	var df struct {
		Pools []struct {
			Name  string `json:"name"`
			Stats *struct {
				Stored    *int64 `json:"stored"`
				BytesUsed *int64 `json:"bytes_used"`
				MaxAvail  *int64 `json:"max_avail"`
			} `json:"stats"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(out, &df); err != nil {
		return poolUsage{}, fmt.Errorf("parse ceph df: %w", err)
	}
	for _, p := range df.Pools {
		if p.Name != pool {
			continue
		}
		s := p.Stats
		if s == nil || s.Stored == nil || s.BytesUsed == nil || s.MaxAvail == nil || *s.Stored < 0 || *s.BytesUsed < 0 || *s.MaxAvail < 0 {
			return poolUsage{}, fmt.Errorf("parse ceph df: pool %q has incomplete stats", pool)
		}
		return poolUsage{Stored: *s.Stored, Used: *s.BytesUsed, MaxAvail: *s.MaxAvail}, nil
	}
	return poolUsage{}, fmt.Errorf("ceph df does not list pool %q", pool)
}

// monitor is a monitor's v1 address (what libvirt and os-brick connect
// to) from `ceph mon dump --format json`.
type monitor struct{ Host, Port string }

func parseMonDump(out []byte) ([]monitor, error) {
	var dump struct {
		Mons []struct {
			PublicAddrs struct {
				AddrVec []struct {
					Type string `json:"type"`
					Addr string `json:"addr"`
				} `json:"addrvec"`
			} `json:"public_addrs"`
		} `json:"mons"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		return nil, fmt.Errorf("parse ceph mon dump: %w", err)
	}
	var mons []monitor
	for _, m := range dump.Mons {
		for _, a := range m.PublicAddrs.AddrVec {
			if a.Type != "v1" {
				continue
			}
			i := strings.LastIndexByte(a.Addr, ':')
			if i <= 0 || i == len(a.Addr)-1 {
				return nil, fmt.Errorf("parse ceph mon dump: address %q", a.Addr)
			}
			host := strings.TrimSuffix(strings.TrimPrefix(a.Addr[:i], "["), "]")
			mons = append(mons, monitor{Host: host, Port: a.Addr[i+1:]})
		}
	}
	if len(mons) == 0 {
		return nil, errors.New("parse ceph mon dump: no monitor with a v1 address")
	}
	return mons, nil
}

// strictJSON decodes out into v, which must be the whole output.
func strictJSON(out []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// parseSnapLs parses `rbd snap ls --format json`.
func parseSnapLs(out []byte) ([]snapEntry, error) {
	var rows []struct {
		Name      string          `json:"name"`
		Size      *int64          `json:"size"`
		Protected json.RawMessage `json:"protected"`
	}
	if err := strictJSON(out, &rows); err != nil {
		return nil, fmt.Errorf("parse rbd snap ls: %w", err)
	}
	snaps := make([]snapEntry, 0, len(rows))
	for i, r := range rows {
		if r.Name == "" || r.Size == nil || *r.Size < 0 {
			return nil, fmt.Errorf("parse rbd snap ls: entry %d: name %q, size %v", i, r.Name, r.Size)
		}
		p, err := parseBool(r.Protected)
		if err != nil {
			return nil, fmt.Errorf("parse rbd snap ls: entry %d: protected: %w", i, err)
		}
		snaps = append(snaps, snapEntry{Name: r.Name, Size: *r.Size, Protected: p})
	}
	return snaps, nil
}

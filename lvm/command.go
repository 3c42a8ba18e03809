package lvm

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
	"sync"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Errors the runner maps lvm's exit status and stderr to. They wrap the
// storage sentinels so the agent's error codes follow.
var (
	// ErrLVNotFound: the logical volume does not exist.
	ErrLVNotFound = fmt.Errorf("logical volume %w", storage.ErrNotFound)
	// ErrVGNotFound: the volume group does not exist (a configuration or
	// disk problem, not a missing volume).
	ErrVGNotFound = errors.New("volume group not found")
	// ErrLVExists: the name is taken.
	ErrLVExists = fmt.Errorf("logical volume %w", storage.ErrExists)
	// ErrInsufficientSpace: the VG or thin pool cannot hold the request.
	ErrInsufficientSpace = fmt.Errorf("volume group: %w", storage.ErrNoSpace)
	// ErrNoDeviceMapper: the operation needs device-mapper, which this
	// kernel lacks (snapshots, thin pools, activation).
	ErrNoDeviceMapper = errors.New("device-mapper is not available")
)

// CommandError is a failed lvm command: what ran (never a secret: lvm
// arguments are validated IDs, sizes and names), its exit status and stderr.
type CommandError struct {
	Args     []string
	ExitCode int
	Stderr   string
	kind     error // one of the sentinels above, or nil
}

func (e *CommandError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("lvm %s: exit status %d: %s", strings.Join(e.Args, " "), e.ExitCode, msg)
}

// Unwrap lets errors.Is reach the mapped sentinel.
func (e *CommandError) Unwrap() error { return e.kind }

// classify maps lvm's stderr to a sentinel. lvm exits 5 for nearly every
// failure, so the message is what tells them apart (LC_ALL=C keeps it
// English).
func classify(stderr string) error {
	switch {
	case strings.Contains(stderr, "Failed to find logical volume"),
		strings.Contains(stderr, "Logical volume") && strings.Contains(stderr, "not found"),
		strings.Contains(stderr, "One or more specified logical volume(s) not found"):
		return ErrLVNotFound
	case strings.Contains(stderr, "Volume group") && strings.Contains(stderr, "not found"):
		return ErrVGNotFound
	case strings.Contains(stderr, "already exists in volume group"):
		return ErrLVExists
	case strings.Contains(stderr, "insufficient free space"),
		strings.Contains(stderr, "Insufficient free space"),
		strings.Contains(stderr, "Insufficient suitable allocatable extents"),
		strings.Contains(stderr, "exceeds the size of thin pools"),
		strings.Contains(stderr, "free space in thin pool"):
		return ErrInsufficientSpace
	case strings.Contains(stderr, "without using device-mapper kernel driver"),
		strings.Contains(stderr, "device-mapper kernel driver"),
		strings.Contains(stderr, "compiled without activation support") && strings.Contains(stderr, "Can't"):
		return ErrNoDeviceMapper
	}
	return nil
}

// runner executes the lvm binary the way TopoLVM does: exec without a
// shell, LC_ALL=C, JSON reports in bytes, stderr captured.
type runner struct {
	binary string   // "lvm" or an absolute path
	env    []string // the process environment plus LC_ALL and LVM_SYSTEM_DIR
	config string   // passed as --config to every command, if set
	log    *slog.Logger
	// timeout bounds one command; lvm holds VG locks while it runs, so a
	// hung command must not hold them forever.
	timeout time.Duration
}

func newRunner(binary, systemDir, config string, timeout time.Duration, log *slog.Logger) *runner {
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LC_ALL=") || strings.HasPrefix(kv, "LANG=") ||
			(systemDir != "" && strings.HasPrefix(kv, "LVM_SYSTEM_DIR=")) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C", "LANG=C",
		// An inherited descriptor makes lvm print a warning on every call.
		"LVM_SUPPRESS_FD_WARNINGS=1")
	if systemDir != "" {
		env = append(env, "LVM_SYSTEM_DIR="+systemDir)
	}
	return &runner{binary: binary, env: env, config: config, timeout: timeout, log: log}
}

// run executes `lvm <sub> [--config C] args...` and returns stdout.
func (r *runner) run(ctx context.Context, sub string, args ...string) ([]byte, error) {
	full := make([]string, 0, len(args)+3)
	full = append(full, sub)
	if r.config != "" {
		full = append(full, "--config", r.config)
	}
	full = append(full, args...)
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, r.binary, full...)
	cmd.Env = r.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	logArgs := full
	if r.config != "" {
		logArgs = append([]string{sub}, args...) // the config string is noise in logs
	}
	r.log.Debug("lvm", "args", logArgs, "took", time.Since(start), "err", err)
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("lvm %s: %w (stderr: %s)", sub, ctx.Err(), strings.TrimSpace(stderr.String()))
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return nil, fmt.Errorf("lvm %s: %w", sub, err)
	}
	se := stderr.String()
	return nil, &CommandError{Args: logArgs, ExitCode: exit.ExitCode(), Stderr: se, kind: classify(se)}
}

// reportArgs are the flags every report command carries.
var reportArgs = []string{"--reportformat", "json", "--units", "b", "--nosuffix"}

// lvRow is one row of `lvs` as Kiln asks for it.
type lvRow struct {
	Name        string
	SizeBytes   int64
	Attr        string
	Origin      string
	PoolLV      string
	DataPercent float64 // thin pools and thin LVs; 0 when empty
	Path        string
	Tags        []string
}

// lvFields are the lvs columns parseLVs reads, in order.
const lvFields = "lv_name,lv_size,lv_attr,origin,pool_lv,data_percent,lv_path,lv_tags"

// vgRow is one row of `vgs`.
type vgRow struct {
	Name       string
	SizeBytes  int64
	FreeBytes  int64
	ExtentSize int64
}

const vgFields = "vg_name,vg_size,vg_free,vg_extent_size"

// maxReportBytes bounds a report we parse; a VG with 100k LVs is ~25 MB.
const maxReportBytes = 256 << 20

type report[T any] struct {
	Report []T `json:"report"`
}

// parseLVs parses `lvs --reportformat json --units b --nosuffix -o lvFields`.
// Every value is checked: a size that is not a non-negative integer, a
// name that is empty, or a report of an unexpected shape is an error,
// never a zero.
func parseLVs(out []byte) ([]lvRow, error) {
	if len(out) > maxReportBytes {
		return nil, fmt.Errorf("lvs report of %d bytes is larger than %d", len(out), maxReportBytes)
	}
	var rep report[struct {
		LV []map[string]string `json:"lv"`
	}]
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("parse lvs report: %w", err)
	}
	var rows []lvRow
	for _, part := range rep.Report {
		for _, m := range part.LV {
			row, err := lvFromMap(m)
			if err != nil {
				return nil, fmt.Errorf("parse lvs report: %w", err)
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func lvFromMap(m map[string]string) (lvRow, error) {
	name := m["lv_name"]
	if name == "" {
		return lvRow{}, errors.New("row without lv_name")
	}
	size, err := parseBytes("lv_size", m["lv_size"])
	if err != nil {
		return lvRow{}, fmt.Errorf("lv %q: %w", name, err)
	}
	row := lvRow{Name: name, SizeBytes: size, Attr: m["lv_attr"], Origin: m["origin"], PoolLV: m["pool_lv"], Path: m["lv_path"]}
	if tags := m["lv_tags"]; tags != "" {
		row.Tags = strings.Split(tags, ",")
	}
	if dp := strings.TrimSpace(m["data_percent"]); dp != "" {
		f, err := strconv.ParseFloat(dp, 64)
		if err != nil || f < 0 || f > 100 {
			return lvRow{}, fmt.Errorf("lv %q: data_percent %q is not a percentage", name, dp)
		}
		row.DataPercent = f
	}
	return row, nil
}

// parseVGs parses `vgs --reportformat json --units b --nosuffix -o vgFields`.
func parseVGs(out []byte) ([]vgRow, error) {
	if len(out) > maxReportBytes {
		return nil, fmt.Errorf("vgs report of %d bytes is larger than %d", len(out), maxReportBytes)
	}
	var rep report[struct {
		VG []map[string]string `json:"vg"`
	}]
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("parse vgs report: %w", err)
	}
	var rows []vgRow
	for _, part := range rep.Report {
		for _, m := range part.VG {
			name := m["vg_name"]
			if name == "" {
				return nil, errors.New("parse vgs report: row without vg_name")
			}
			var row = vgRow{Name: name}
			var err error
			if row.SizeBytes, err = parseBytes("vg_size", m["vg_size"]); err != nil {
				return nil, fmt.Errorf("parse vgs report: vg %q: %w", name, err)
			}
			if row.FreeBytes, err = parseBytes("vg_free", m["vg_free"]); err != nil {
				return nil, fmt.Errorf("parse vgs report: vg %q: %w", name, err)
			}
			if row.ExtentSize, err = parseBytes("vg_extent_size", m["vg_extent_size"]); err != nil {
				return nil, fmt.Errorf("parse vgs report: vg %q: %w", name, err)
			}
			if row.ExtentSize <= 0 || row.FreeBytes > row.SizeBytes {
				return nil, fmt.Errorf("parse vgs report: vg %q: inconsistent sizes (size %d, free %d, extent %d)", name, row.SizeBytes, row.FreeBytes, row.ExtentSize)
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func parseBytes(field, s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q is not a byte count", field, s)
	}
	return n, nil
}

// Locks serializes the driver's mutating lvm commands per volume group,
// across every pool of one agent that shares the VG (a thick and a thin
// pool may live in one VG): give all of an agent's LVM drivers the same
// Locks. lvm has its own file locks; ours keeps concurrent requests from
// queueing inside lvm against its lock timeouts and keeps the driver's
// read-modify-write sequences (check, then create) atomic.
type Locks struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// NewLocks returns an empty lock set.
func NewLocks() *Locks { return &Locks{m: map[string]chan struct{}{}} }

func (l *Locks) lock(ctx context.Context, vg string) (func(), error) {
	l.mu.Lock()
	ch := l.m[vg]
	if ch == nil {
		ch = make(chan struct{}, 1)
		l.m[vg] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for volume group %s lock: %w", vg, ctx.Err())
	}
}

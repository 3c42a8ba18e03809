package tgt

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
)

// The messages are real tgtadm 1.0.85 output, collected against a running
// tgtd (and one not running).
func TestClassify(t *testing.T) {
	tests := []struct {
		code   int
		stderr string
		want   error
	}{
		{107, "tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected", ErrTargetUnavailable},
		{111, "tgtadm: can't connect to tgt daemon, Connection refused", ErrTargetUnavailable},
		{107, "", ErrTargetUnavailable},
		{22, "tgtadm: can't find the target", storage.ErrNotFound},
		{22, "tgtadm: can't find the logical unit", storage.ErrNotFound},
		{22, "tgtadm: can't find the account", storage.ErrNotFound},
		{22, "tgtadm: this access control rule does not exist", storage.ErrNotFound},
		{22, "tgtadm: this target already exists", storage.ErrExists},
		{22, "tgtadm: this logical unit number already exists", storage.ErrExists},
		{22, "tgtadm: this access control rule already exists", storage.ErrExists},
		{22, "tgtadm: this account already exists", storage.ErrExists},
		{22, "tgtadm: this target is still active", ErrBusy},
		{22, "tgtadm: invalid request", storage.ErrInvalid},
		{22, "tgtadm: 'tid' cannot be 0", storage.ErrInvalid},
		{22, "tgtadm: something new", nil},
		{1, "", nil},
	}
	for _, tt := range tests {
		if got := classify(tt.code, tt.stderr); got != tt.want {
			t.Errorf("classify(%d, %q) = %v, want %v", tt.code, tt.stderr, got, tt.want)
		}
	}
}

// fakeTgtadm writes a tgtadm stand-in that echoes its arguments to stderr
// (as tgtadm does in some of its messages) and exits with code.
func fakeTgtadm(t *testing.T, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tgtadm")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCommandErrorsAndLogsRedactSecret(t *testing.T) {
	const secret = "Sup3rS3cretXYZ12"
	bin := fakeTgtadm(t, `echo "tgtadm: -p argument value '$*' invalid" >&2; echo "LC_ALL=$LC_ALL" >&2; exit 22`)
	var logs testenv.SyncBuffer
	m, err := New(Config{Tgtadm: bin, Portals: []string{"127.0.0.1:3261"}, ControlPort: 32619},
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.tgtadm(context.Background(), "create CHAP account kiln", secret,
		"--mode", "account", "--op", "new", "--user", "kiln", "--password", secret)
	var ce *CommandError
	if !errors.As(err, &ce) || !errors.Is(err, storage.ErrInvalid) || ce.ExitCode != 22 {
		t.Fatalf("err = %#v, want a CommandError with exit 22 wrapping ErrInvalid", err)
	}
	msg := err.Error()
	for _, want := range []string{"create CHAP account kiln", "exited 22", "argument value", "-C 32619 --lld iscsi", redacted, "LC_ALL=C"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
		t.Fatalf("secret leaked:\nerror: %s\nlogs: %s", msg, logs.String())
	}
	if !strings.Contains(logs.String(), "--password") {
		t.Errorf("debug log lacks the (redacted) command: %s", logs.String())
	}
}

func TestCommandTimeoutIsUnavailable(t *testing.T) {
	bin := fakeTgtadm(t, `exec sleep 10`)
	m, err := New(Config{Tgtadm: bin, Portals: []string{"127.0.0.1:3261"}, CommandTimeout: 100 * time.Millisecond},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = m.Targets(context.Background())
	if !errors.Is(err, ErrTargetUnavailable) || !strings.Contains(err.Error(), "list targets") {
		t.Errorf("Targets against a hung tgtadm = %v, want ErrTargetUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	// A cancelled caller gets its own error, not "unavailable".
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Targets(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrTargetUnavailable) {
		t.Errorf("Targets with a cancelled context = %v", err)
	}
}

func TestEnsureRejectsBadExportsWithoutRunning(t *testing.T) {
	bin := fakeTgtadm(t, `echo ran >> "$0.ran"; exit 1`)
	m, err := New(Config{Tgtadm: bin, Portals: []string{"127.0.0.1:3261"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bad := Export{VolumeID: testVolumeID, BackingStore: "/x", Initiators: []string{"iqn.2024-01.com.example:a b"}}
	if _, err := m.Ensure(ctx, bad); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Ensure(bad initiator) = %v", err)
	}
	if err := m.Remove(ctx, "../../etc"); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("Remove(bad id) = %v", err)
	}
	if _, err := m.TargetName("x"); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("TargetName(bad id) = %v", err)
	}
	if _, err := os.Stat(bin + ".ran"); err == nil {
		t.Error("tgtadm ran for an invalid request")
	}
}

package tgt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

const redacted = "<redacted>"

// tgtadm runs one tgtadm command against the configured control socket and
// returns its standard output. what says what is being done, for errors and
// logs. secret, if not empty, is an argument that must never be logged or
// returned: tgtadm takes CHAP passwords only on its command line.
func (m *Manager) tgtadm(ctx context.Context, what, secret string, args ...string) (string, error) {
	argv := make([]string, 0, len(args)+4)
	if m.cfg.ControlPort != 0 {
		argv = append(argv, "-C", strconv.Itoa(m.cfg.ControlPort))
	}
	argv = append(argv, "--lld", "iscsi")
	argv = append(argv, args...)

	cctx, cancel := context.WithTimeout(ctx, m.cfg.CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, m.tgtadmPath, argv...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err == nil {
		m.log.Debug("tgtadm", "op", what, "args", redactArgs(argv, secret), "duration", elapsed)
		return stdout.String(), nil
	}

	msg := redact(strings.TrimSpace(stderr.String()), secret)
	if msg == "" {
		msg = redact(strings.TrimSpace(stdout.String()), secret)
	}
	ce := &CommandError{Op: what, ExitCode: -1, Stderr: msg}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		// The caller gave up; that is not tgtd's fault.
		return "", fmt.Errorf("tgt: %s: %w", what, ctx.Err())
	case cctx.Err() != nil:
		ce.Err = fmt.Errorf("%w: no answer within %s", ErrTargetUnavailable, m.cfg.CommandTimeout)
	case errors.As(err, &exitErr) && exitErr.Exited():
		ce.ExitCode = exitErr.ExitCode()
		ce.Err = classify(ce.ExitCode, msg)
	default:
		// Not started, or killed by a signal; exec errors name the binary,
		// never the arguments.
		ce.Err = fmt.Errorf("%w: %s", ErrTargetUnavailable, redact(err.Error(), secret))
	}
	m.log.Debug("tgtadm failed", "op", what, "args", redactArgs(argv, secret), "duration", elapsed,
		"exit_code", ce.ExitCode, "stderr", msg)
	return "", ce
}

// redact replaces every occurrence of secret in s.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, redacted)
}

// redactArgs returns a copy of argv safe to log.
func redactArgs(argv []string, secret string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = redact(a, secret)
	}
	return out
}

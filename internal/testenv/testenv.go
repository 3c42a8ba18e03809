// Package testenv holds what the test-support packages (tgttest,
// ganeshatest, lvmtest, qemuimgtest) and tests share: the rule for a test
// that cannot run here (skip loudly, or fail under CI=true, where a skip
// would hide a gap), the checks behind it, and a goroutine-safe log sink.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// SkipOrFail skips t loudly ("SKIPPED: ...") for a developer whose machine
// cannot run it, and fails it under CI (CI=true), where a skip would hide a
// gap.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and this test cannot run: "+format, args...)
	}
	t.Skipf("SKIPPED: "+format, args...)
}

// RequireRoot skips (or, under CI=true, fails) t unless it runs as root;
// why completes "needs root ...", e.g. "to run tgtd".
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root %s", why)
	}
}

// MissingCommands returns those of names that are not in PATH, in order.
func MissingCommands(names ...string) []string {
	var out []string
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			out = append(out, name)
		}
	}
	return out
}

// RequireInstalled skips (or, under CI=true, fails) t while missing
// reports something missing. When it does, install (which should run its
// work at most once per test binary, e.g. a sync.OnceValue) gets a chance
// first; hint names what installs the missing parts, e.g.
// "scripts/tgtd.sh deps".
func RequireInstalled(t testing.TB, hint string, install func() error, missing func() []string) {
	t.Helper()
	if len(missing()) == 0 {
		return
	}
	err := install()
	if m := missing(); len(m) > 0 {
		SkipOrFail(t, "missing %v (%s installs them): %v", m, hint, err)
	}
}

// Script returns the path of scripts/name in the source tree (the
// directory holding go.mod) containing the working directory.
func Script(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", name)
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%s: %w", p, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("scripts/" + name + " not found: not in the source tree")
		}
		dir = parent
	}
}

// DepsOnce returns a function that runs `bash SCRIPT deps`, which installs
// what a script's daemon and its tests need, the first time it is called,
// and returns that run's error (with the script's output) every time.
// script finds the script (e.g. tgttest.Script).
func DepsOnce(script func() (string, error)) func() error {
	return sync.OnceValue(func() error {
		p, err := script()
		if err != nil {
			return err
		}
		if out, err := exec.Command("bash", p, "deps").CombinedOutput(); err != nil {
			return fmt.Errorf("%s deps: %v\n%s", p, err, out)
		}
		return nil
	})
}

// SyncBuffer is a goroutine-safe log sink, e.g. for a slog handler whose
// output a test checks.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// The agent's tests need no coordinator, so they do not import
// internal/testcluster (which builds one): these are its Logger and WaitForT
// in small.

// testLogger logs to the test log at Warn level (Debug or Info with
// KILN_TEST_LOG=debug|info, as testcluster.Logger), and everything at Info
// and above also to also, if not nil.
func testLogger(t testing.TB, also io.Writer) *slog.Logger {
	level := slog.LevelWarn
	switch os.Getenv("KILN_TEST_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	h := slog.Handler(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
	if also != nil {
		h = teeHandler{h, slog.NewTextHandler(also, &slog.HandlerOptions{Level: min(level, slog.LevelInfo)})}
	}
	return slog.New(h)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // logging after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// teeHandler sends records to two handlers, each applying its own level.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errA, errB error
	if h.a.Enabled(ctx, r.Level) {
		errA = h.a.Handle(ctx, r.Clone())
	}
	if h.b.Enabled(ctx, r.Level) {
		errB = h.b.Handle(ctx, r)
	}
	return errors.Join(errA, errB)
}

func (h teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(attrs), h.b.WithAttrs(attrs)}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{h.a.WithGroup(name), h.b.WithGroup(name)}
}

// waitFor polls cond every 20 ms until it returns nil, failing t after
// timeout.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("condition not met within %s: %w", timeout, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

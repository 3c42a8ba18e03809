package logging

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"time"
)

// NewStdLogger returns a *log.Logger for libraries that log through the
// standard library (Serf, memberlist). Each line they print, such as
// "[WARN] memberlist: Refuting a suspect message", becomes one slog record
// at the matching level (TRACE → LevelTrace, DEBUG, INFO, WARN/WARNING,
// ERR/ERROR; a missing or unknown token → Info) with the attribute
// component=<component>. The level token, a leading log.LstdFlags timestamp
// and a leading "<component>: " are stripped from the message, since the
// record carries all three as structured data.
func NewStdLogger(l *slog.Logger, component string) *log.Logger {
	return log.New(&stdWriter{h: l.Handler(), component: component}, "", 0)
}

// stdWriter is the io.Writer behind the loggers NewStdLogger returns.
// log.Logger calls Write once per line and serializes the calls.
type stdWriter struct {
	h         slog.Handler
	component string
}

func (w *stdWriter) Write(p []byte) (int, error) {
	level, msg, _ := parseStdLine(string(p))
	ctx := context.Background()
	if !w.h.Enabled(ctx, level) {
		return len(p), nil
	}
	if w.component != "" {
		msg = strings.TrimPrefix(msg, w.component+": ")
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	if w.component != "" {
		r.AddAttrs(slog.String(ComponentKey, w.component))
	}
	// A *log.Logger has no way to report a failed write that a caller would
	// act on, and a logging failure must not break gossip.
	_ = w.h.Handle(ctx, r)
	return len(p), nil
}

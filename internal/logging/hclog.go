package logging

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// NewHCLogger returns an hclog.Logger (what hashicorp/raft logs through) that
// forwards to l. Levels map TRACE → LevelTrace, DEBUG, INFO, WARN, ERROR to
// the slog levels of the same name; key/value arguments and With arguments
// become slog attributes, and the logger's name (name, extended by Named)
// becomes the attribute component=<name>, e.g. component=raft.snapshot.
//
// Whether a record is emitted is decided by the slog handler's Enabled;
// SetLevel only adds a further minimum on top of it, shared by every logger
// derived from this one.
func NewHCLogger(l *slog.Logger, name string) hclog.Logger {
	return &hcLogger{
		h:     l.Handler(),
		name:  name,
		level: new(atomic.Int32),
	}
}

// hcLogger implements hclog.Logger. It is immutable apart from the shared
// level, so derived loggers are cheap and safe for concurrent use.
type hcLogger struct {
	h       slog.Handler
	name    string
	implied []any
	// level is the minimum set by SetLevel (hclog.NoLevel = none), shared
	// with every logger derived through With/Named/ResetNamed.
	level *atomic.Int32
}

var _ hclog.Logger = (*hcLogger)(nil)

// slogLevel maps an hclog level onto slog. NoLevel is logged as Info, as
// hclog itself does for a logger without a level.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (l *hcLogger) enabled(level hclog.Level) bool {
	if level == hclog.Off {
		return false
	}
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	if floor := hclog.Level(l.level.Load()); floor != hclog.NoLevel && level < floor {
		return false
	}
	return l.h.Enabled(context.Background(), slogLevel(level))
}

// log emits one record. skip is the number of frames between the caller of
// the public method and runtime.Callers, used for the record's source.
func (l *hcLogger) log(skip int, level hclog.Level, msg string, args []any) {
	if !l.enabled(level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(skip, pcs[:])
	r := slog.NewRecord(time.Now(), slogLevel(level), msg, pcs[0])
	if l.name != "" {
		r.AddAttrs(slog.String(ComponentKey, l.name))
	}
	r.AddAttrs(argsToAttrs(l.implied)...)
	r.AddAttrs(argsToAttrs(args)...)
	// hclog has no error return; a failing handler must not break Raft.
	_ = l.h.Handle(context.Background(), r)
}

// argsToAttrs converts hclog's alternating key/value arguments, following
// hclog's own rules: a trailing value without a key is kept under
// hclog.MissingKey (or "stacktrace" for a hclog.CapturedStacktrace), and
// hclog's formatting helper types are rendered as hclog renders them.
func argsToAttrs(args []any) []slog.Attr {
	if len(args) == 0 {
		return nil
	}
	attrs := make([]slog.Attr, 0, (len(args)+1)/2)
	for i := 0; i < len(args); i += 2 {
		if a, ok := args[i].(slog.Attr); ok {
			attrs = append(attrs, a)
			i--
			continue
		}
		if i == len(args)-1 {
			if st, ok := args[i].(hclog.CapturedStacktrace); ok {
				attrs = append(attrs, slog.String("stacktrace", string(st)))
			} else {
				attrs = append(attrs, slog.Any(hclog.MissingKey, hclogValue(args[i])))
			}
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		attrs = append(attrs, slog.Any(key, hclogValue(args[i+1])))
	}
	return attrs
}

func hclogValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return "0x" + strconv.FormatUint(uint64(v), 16)
	case hclog.Octal:
		return "0" + strconv.FormatUint(uint64(v), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatUint(uint64(v), 2)
	case hclog.Quote:
		return strconv.Quote(string(v))
	case hclog.CapturedStacktrace:
		return string(v)
	default:
		return v
	}
}

// Log emits msg at level.
func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	l.log(3, level, msg, args)
}

// Trace emits msg at TRACE.
func (l *hcLogger) Trace(msg string, args ...any) { l.log(3, hclog.Trace, msg, args) }

// Debug emits msg at DEBUG.
func (l *hcLogger) Debug(msg string, args ...any) { l.log(3, hclog.Debug, msg, args) }

// Info emits msg at INFO.
func (l *hcLogger) Info(msg string, args ...any) { l.log(3, hclog.Info, msg, args) }

// Warn emits msg at WARN.
func (l *hcLogger) Warn(msg string, args ...any) { l.log(3, hclog.Warn, msg, args) }

// Error emits msg at ERROR.
func (l *hcLogger) Error(msg string, args ...any) { l.log(3, hclog.Error, msg, args) }

// IsTrace reports whether TRACE records would be emitted.
func (l *hcLogger) IsTrace() bool { return l.enabled(hclog.Trace) }

// IsDebug reports whether DEBUG records would be emitted.
func (l *hcLogger) IsDebug() bool { return l.enabled(hclog.Debug) }

// IsInfo reports whether INFO records would be emitted.
func (l *hcLogger) IsInfo() bool { return l.enabled(hclog.Info) }

// IsWarn reports whether WARN records would be emitted.
func (l *hcLogger) IsWarn() bool { return l.enabled(hclog.Warn) }

// IsError reports whether ERROR records would be emitted.
func (l *hcLogger) IsError() bool { return l.enabled(hclog.Error) }

// ImpliedArgs returns the key/value pairs added by With.
func (l *hcLogger) ImpliedArgs() []any {
	return append([]any(nil), l.implied...)
}

// With returns a logger that adds args to every record.
func (l *hcLogger) With(args ...any) hclog.Logger {
	if len(args) == 0 {
		return l
	}
	c := *l
	// A fresh slice, so that siblings derived from l never share appends.
	c.implied = make([]any, 0, len(l.implied)+len(args)+1)
	c.implied = append(c.implied, l.implied...)
	if len(args)%2 != 0 {
		extra := args[len(args)-1]
		args = append(args[:len(args)-1:len(args)-1], hclog.MissingKey, extra)
	}
	c.implied = append(c.implied, args...)
	return &c
}

// Name returns the logger's name ("" for none).
func (l *hcLogger) Name() string { return l.name }

// Named returns a logger whose name is name appended to the current one
// with a ".", as hclog does.
func (l *hcLogger) Named(name string) hclog.Logger {
	c := *l
	if c.name != "" {
		c.name = c.name + "." + name
	} else {
		c.name = name
	}
	return &c
}

// ResetNamed returns a logger whose name is exactly name.
func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel sets a minimum level on top of the slog handler's own, for this
// logger and every logger related to it; hclog.NoLevel removes it and
// hclog.Off silences them.
func (l *hcLogger) SetLevel(level hclog.Level) {
	l.level.Store(int32(level))
}

// GetLevel returns the most verbose level that would be emitted, taking
// both SetLevel and the handler into account (hclog.Off if none).
func (l *hcLogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if l.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

// StandardLogger returns a *log.Logger writing into this logger; see
// StandardWriter for opts.
func (l *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns an io.Writer that logs each write as one record.
// As in hclog: with opts.ForceLevel every line is logged at that level
// (any level token stripped); with opts.InferLevels the level is taken
// from a "[LEVEL]" token (after a timestamp when
// opts.InferLevelsWithTimestamp); otherwise lines are logged at INFO as they
// are.
func (l *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &hcStdWriter{l: l, opts: *opts}
}

type hcStdWriter struct {
	l    *hcLogger
	opts hclog.StandardLoggerOptions
}

func (w *hcStdWriter) Write(p []byte) (int, error) {
	line := string(p)
	var level hclog.Level
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		_, text, ok := parseStdLine(line)
		if ok {
			line = text
		}
		level = w.opts.ForceLevel
	case w.opts.InferLevels:
		if !w.opts.InferLevelsWithTimestamp && stdTimestamp.MatchString(line) {
			// Without timestamp inference a timestamped line has no
			// leading level token: keep it whole.
			level, line = hclog.Info, trimLine(line)
			break
		}
		slv, text, _ := parseStdLine(line)
		level, line = hclogLevel(slv), text
	default:
		level, line = hclog.Info, trimLine(line)
	}
	w.l.log(5, level, line, nil)
	return len(p), nil
}

func trimLine(s string) string { return strings.TrimRight(s, " \t\r\n") }

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l <= LevelTrace:
		return hclog.Trace
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	default:
		return hclog.Error
	}
}

// Package logging builds Kiln's slog loggers and the adapters that feed the
// logs of our HashiCorp dependencies into the same handler: a *log.Logger
// for Serf and memberlist, and an hclog.Logger for Raft.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// LevelTrace is the slog level Kiln uses for the TRACE level of Serf,
// memberlist and Raft, which slog does not define: one step below Debug.
const LevelTrace = slog.LevelDebug - 4

// ComponentKey is the attribute key under which the adapters record which
// library (or named sub-logger) produced a record.
const ComponentKey = "component"

// New returns a logger writing records at or above level to w, as
// "text" (logfmt-style key=value) or "json" (one object per line).
func New(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: must be \"text\" or \"json\"", format)
	}
}

// stdTimestamp matches the date/time prefix a *log.Logger adds with
// log.LstdFlags (optionally with microseconds), so that lines from a logger
// someone built with flags still parse.
var stdTimestamp = regexp.MustCompile(`^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(\.\d+)? `)

// parseStdLine splits a line in the HashiCorp convention
// "[2006/01/02 15:04:05 ][LEVEL] text" into its level and text. ok is false
// when the line carries no recognised level token; text is then the whole
// line without the timestamp, so that nothing is lost.
func parseStdLine(line string) (level slog.Level, text string, ok bool) {
	line = strings.TrimRight(line, " \t\r\n")
	line = stdTimestamp.ReplaceAllString(line, "")
	if !strings.HasPrefix(line, "[") {
		return slog.LevelInfo, line, false
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return slog.LevelInfo, line, false
	}
	switch strings.ToUpper(line[1:end]) {
	case "TRACE":
		level = LevelTrace
	case "DEBUG":
		level = slog.LevelDebug
	case "INFO":
		level = slog.LevelInfo
	case "WARN", "WARNING":
		level = slog.LevelWarn
	case "ERR", "ERROR":
		level = slog.LevelError
	default:
		return slog.LevelInfo, line, false
	}
	return level, strings.TrimSpace(line[end+1:]), true
}

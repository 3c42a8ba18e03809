package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// capture returns a JSON logger at level and a function that returns the
// records written so far, decoded.
func capture(t *testing.T, level slog.Level) (*slog.Logger, func() []map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level, AddSource: true}))
	return l, func() []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("bad JSON record %q: %v", line, err)
			}
			out = append(out, m)
		}
		buf.Reset()
		return out
	}
}

func one(t *testing.T, recs []map[string]any) map[string]any {
	t.Helper()
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1: %v", len(recs), recs)
	}
	return recs[0]
}

func levelName(l slog.Level) string { return l.String() }

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, slog.LevelInfo, "json")
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hidden")
	l.Info("shown", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("json output %q: %v", buf.String(), err)
	}
	if m["msg"] != "shown" || m["k"] != float64(1) || m["level"] != "INFO" {
		t.Errorf("json record = %v", m)
	}

	buf.Reset()
	l, err = New(&buf, slog.LevelDebug, "text")
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hello", "k", "v")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "msg=hello") || !strings.Contains(got, "k=v") {
		t.Errorf("text output = %q", got)
	}

	for _, f := range []string{"", "JSON", "logfmt", "console"} {
		if _, err := New(&buf, slog.LevelInfo, f); err == nil {
			t.Errorf("New(format %q) succeeded, want error", f)
		}
	}
}

func TestStdLogger(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:4000", slog.LevelDebug, "Stream connection from=127.0.0.1:4000"},
		{"[INFO] serf: EventMemberJoin: a 127.0.0.1", slog.LevelInfo, "serf: EventMemberJoin: a 127.0.0.1"},
		{"[WARN] memberlist: Refuting a suspect message (from: b)", slog.LevelWarn, "Refuting a suspect message (from: b)"},
		{"[WARNING] memberlist: x", slog.LevelWarn, "x"},
		{"[ERR] memberlist: Failed fallback ping: EOF", slog.LevelError, "Failed fallback ping: EOF"},
		{"[ERROR] memberlist: boom", slog.LevelError, "boom"},
		{"[TRACE] memberlist: fine detail", LevelTrace, "fine detail"},
		{"2026/01/01 12:00:00 [DEBUG] memberlist: with timestamp", slog.LevelDebug, "with timestamp"},
		{"2026/01/01 12:00:00.123456 [ERR] memberlist: micro", slog.LevelError, "micro"},
		{"[FOO] memberlist: unknown level", slog.LevelInfo, "[FOO] memberlist: unknown level"},
		{"no level at all", slog.LevelInfo, "no level at all"},
		{"[WARN unterminated", slog.LevelInfo, "[WARN unterminated"},
		{"", slog.LevelInfo, ""},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			l, records := capture(t, LevelTrace)
			std := NewStdLogger(l, "memberlist")
			std.Print(tc.line)
			r := one(t, records())
			if r["level"] != levelName(tc.level) {
				t.Errorf("level = %v, want %v", r["level"], levelName(tc.level))
			}
			if r["msg"] != tc.msg {
				t.Errorf("msg = %q, want %q", r["msg"], tc.msg)
			}
			if r["component"] != "memberlist" {
				t.Errorf("component = %v, want memberlist", r["component"])
			}
		})
	}
}

func TestStdLoggerRespectsHandlerLevel(t *testing.T) {
	l, records := capture(t, slog.LevelWarn)
	std := NewStdLogger(l, "serf")
	std.Printf("[DEBUG] serf: %s", "dropped")
	std.Printf("[INFO] serf: %s", "dropped")
	std.Printf("[WARN] serf: %s", "kept")
	r := one(t, records())
	if r["msg"] != "kept" || r["level"] != "WARN" || r["component"] != "serf" {
		t.Errorf("record = %v", r)
	}
}

func TestHCLoggerLevels(t *testing.T) {
	l, records := capture(t, LevelTrace)
	hl := NewHCLogger(l, "raft")
	tests := []struct {
		log   func(string, ...any)
		level slog.Level
	}{
		{hl.Trace, LevelTrace},
		{hl.Debug, slog.LevelDebug},
		{hl.Info, slog.LevelInfo},
		{hl.Warn, slog.LevelWarn},
		{hl.Error, slog.LevelError},
		{func(m string, a ...any) { hl.Log(hclog.Warn, m, a...) }, slog.LevelWarn},
		{func(m string, a ...any) { hl.Log(hclog.NoLevel, m, a...) }, slog.LevelInfo},
	}
	for i, tc := range tests {
		tc.log("message", "term", 3)
		r := one(t, records())
		if r["level"] != levelName(tc.level) || r["msg"] != "message" || r["term"] != float64(3) || r["component"] != "raft" {
			t.Errorf("case %d: record = %v, want level %v", i, r, levelName(tc.level))
		}
		src, _ := r["source"].(map[string]any)
		if file, _ := src["file"].(string); !strings.HasSuffix(file, "logging_test.go") {
			t.Errorf("case %d: source = %v, want the caller in logging_test.go", i, src)
		}
	}
	hl.Log(hclog.Off, "never")
	if recs := records(); len(recs) != 0 {
		t.Errorf("Off level logged %v", recs)
	}
}

func TestHCLoggerArgs(t *testing.T) {
	l, records := capture(t, LevelTrace)
	hl := NewHCLogger(l, "")
	hl.Info("args",
		"err", errors.New("disk full"),
		"fmt", hclog.Fmt("%d-%s", 7, "x"),
		"hex", hclog.Hex(255),
		"oct", hclog.Octal(8),
		"bin", hclog.Binary(5),
		"quote", hclog.Quote("a b"),
		42, "non-string key",
		"odd")
	r := one(t, records())
	want := map[string]any{
		"msg":            "args",
		"err":            "disk full",
		"fmt":            "7-x",
		"hex":            "0xff",
		"oct":            "010",
		"bin":            "0b101",
		"quote":          `"a b"`,
		"42":             "non-string key",
		hclog.MissingKey: "odd",
		"level":          "INFO",
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %#v, want %#v", k, r[k], v)
		}
	}
	if _, ok := r["component"]; ok {
		t.Errorf("unnamed logger has a component: %v", r)
	}
}

func TestHCLoggerWithAndNamed(t *testing.T) {
	l, records := capture(t, LevelTrace)
	base := NewHCLogger(l, "raft")
	if base.Name() != "raft" {
		t.Errorf("Name = %q", base.Name())
	}

	w := base.With("node", "c1")
	w2 := w.With("peer", "c2", "dangling")
	sibling := w.With("peer", "c3")
	if got := w2.ImpliedArgs(); len(got) != 6 || got[0] != "node" || got[3] != "c2" || got[4] != hclog.MissingKey {
		t.Errorf("ImpliedArgs = %v", got)
	}
	if got := sibling.ImpliedArgs(); len(got) != 4 || got[3] != "c3" {
		t.Errorf("sibling ImpliedArgs = %v (siblings must not share appends)", got)
	}
	if len(base.ImpliedArgs()) != 0 {
		t.Errorf("With modified its parent: %v", base.ImpliedArgs())
	}

	w2.Info("hello", "index", 9)
	r := one(t, records())
	if r["node"] != "c1" || r["peer"] != "c2" || r["index"] != float64(9) || r["component"] != "raft" || r[hclog.MissingKey] != "dangling" {
		t.Errorf("record = %v", r)
	}

	n := w.Named("snapshot")
	if n.Name() != "raft.snapshot" {
		t.Errorf("Named = %q", n.Name())
	}
	n.Warn("named")
	r = one(t, records())
	if r["component"] != "raft.snapshot" || r["node"] != "c1" {
		t.Errorf("named record = %v", r)
	}

	rn := n.ResetNamed("fsm")
	if rn.Name() != "fsm" {
		t.Errorf("ResetNamed = %q", rn.Name())
	}
	if NewHCLogger(l, "").Named("x").Name() != "x" {
		t.Error("Named on an unnamed logger should not add a dot")
	}
}

func TestHCLoggerGating(t *testing.T) {
	l, records := capture(t, slog.LevelInfo)
	hl := NewHCLogger(l, "raft")
	if hl.IsTrace() || hl.IsDebug() || !hl.IsInfo() || !hl.IsWarn() || !hl.IsError() {
		t.Errorf("Is* do not follow the handler level: %v %v %v %v %v", hl.IsTrace(), hl.IsDebug(), hl.IsInfo(), hl.IsWarn(), hl.IsError())
	}
	if got := hl.GetLevel(); got != hclog.Info {
		t.Errorf("GetLevel = %v, want info", got)
	}
	hl.Debug("dropped")
	if recs := records(); len(recs) != 0 {
		t.Errorf("debug passed an info handler: %v", recs)
	}

	// SetLevel adds a floor shared by derived loggers, but cannot lower the
	// handler's own.
	child := hl.Named("child")
	hl.SetLevel(hclog.Warn)
	if child.IsInfo() || !child.IsWarn() || child.GetLevel() != hclog.Warn {
		t.Errorf("SetLevel not shared with derived logger")
	}
	child.Info("dropped")
	child.Error("kept")
	if r := one(t, records()); r["msg"] != "kept" {
		t.Errorf("record = %v", r)
	}
	hl.SetLevel(hclog.Trace)
	if hl.IsDebug() {
		t.Error("SetLevel(Trace) lowered below the handler's level")
	}
	hl.SetLevel(hclog.Off)
	if hl.IsError() || hl.GetLevel() != hclog.Off {
		t.Error("SetLevel(Off) did not silence the logger")
	}
	hl.SetLevel(hclog.NoLevel)
	if !hl.IsInfo() {
		t.Error("SetLevel(NoLevel) did not remove the floor")
	}
}

func TestHCLoggerStandardLogger(t *testing.T) {
	l, records := capture(t, LevelTrace)
	hl := NewHCLogger(l, "raft")

	hl.StandardLogger(nil).Print("[WARN] plain")
	if r := one(t, records()); r["level"] != "INFO" || r["msg"] != "[WARN] plain" || r["component"] != "raft" {
		t.Errorf("default options: %v", r)
	}

	hl.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERR] inferred")
	if r := one(t, records()); r["level"] != "ERROR" || r["msg"] != "inferred" {
		t.Errorf("InferLevels: %v", r)
	}

	hl.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true}).
		Print("2026/01/01 12:00:00 [DEBUG] stamped")
	if r := one(t, records()); r["level"] != "DEBUG" || r["msg"] != "stamped" {
		t.Errorf("InferLevelsWithTimestamp: %v", r)
	}

	hl.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Print("[DEBUG] forced")
	if r := one(t, records()); r["level"] != "ERROR" || r["msg"] != "forced" {
		t.Errorf("ForceLevel: %v", r)
	}

	w := hl.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	if _, err := w.Write([]byte("[TRACE] via writer\n")); err != nil {
		t.Fatal(err)
	}
	if r := one(t, records()); r["level"] != levelName(LevelTrace) || r["msg"] != "via writer" {
		t.Errorf("StandardWriter: %v", r)
	}
}

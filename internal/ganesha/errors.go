package ganesha

import (
	"errors"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

var (
	// ErrUnavailable: the D-Bus system bus cannot be reached, nobody owns
	// org.ganesha.nfsd (ganesha not running, or started without D-Bus), the
	// bus policy refuses the call, or ganesha did not answer in time or
	// exited while answering. Retrying later may succeed; the Keeper re-adds
	// the exports once ganesha is back.
	ErrUnavailable = errors.New("nfs-ganesha unavailable over D-Bus")
	// ErrBusy: ganesha refused because another export admin operation was
	// in progress ("try again later"). Calls are retried a few times before
	// this is returned.
	ErrBusy = errors.New("nfs-ganesha export admin busy")
)

// CallError is a D-Bus call to ganesha's ExportMgr that failed. errors.Is
// matches the sentinel the failure maps to: storage.ErrNotFound,
// storage.ErrExists, storage.ErrInvalid, ErrBusy or ErrUnavailable.
type CallError struct {
	// Op says what was being done, e.g. "add export 1001 (/etc/kiln/ganesha/export-1001.conf)".
	Op string
	// Method is the D-Bus method, e.g. "AddExport".
	Method string
	// Name is the D-Bus error name, e.g. org.freedesktop.DBus.Error.InvalidArgs;
	// empty for failures that are not D-Bus error replies (no connection,
	// timeout, a success reply that reports config errors).
	Name string
	// Message is ganesha's (or the bus's) message.
	Message string
	// Hint explains a message that misleads, e.g. ganesha's "No such file or
	// directory" for an export file it could not parse.
	Hint string
	// Log holds the lines ganesha logged while handling the call, when
	// BusConfig.GaneshaLog names its log file.
	Log string
	// Err is the sentinel (or transport error) the failure maps to; nil for
	// failures this package does not recognise.
	Err error
}

func (e *CallError) Error() string {
	var b strings.Builder
	b.WriteString("ganesha: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Method)
	b.WriteString(" failed")
	if e.Name != "" {
		b.WriteString(": ")
		b.WriteString(e.Name)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(strings.TrimSpace(e.Message))
	}
	if e.Err != nil && (e.Message == "" || errors.Is(e.Err, ErrUnavailable) || errors.Is(e.Err, ErrBusy)) {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	if e.Log != "" {
		b.WriteString("; ganesha logged: ")
		b.WriteString(e.Log)
	}
	return b.String()
}

func (e *CallError) Unwrap() error { return e.Err }

// D-Bus error names that mean ganesha (or the bus) is not there to answer.
var unavailableNames = map[string]string{
	"org.freedesktop.DBus.Error.ServiceUnknown": "",
	"org.freedesktop.DBus.Error.NameHasNoOwner": "",
	"org.freedesktop.DBus.Error.Disconnected":   "",
	"org.freedesktop.DBus.Error.Timeout":        "",
	"org.freedesktop.DBus.Error.TimedOut":       "",
	"org.freedesktop.DBus.Error.LimitsExceeded": "",
	"org.freedesktop.DBus.Error.UnknownObject":  "ganesha is on the bus but does not serve /org/ganesha/nfsd/ExportMgr",
	"org.freedesktop.DBus.Error.UnknownMethod":  "this ganesha does not have the method (not ganesha 2.5 or later?)",
	"org.freedesktop.DBus.Error.AccessDenied":   "the bus policy does not let this user call org.ganesha.nfsd (see /etc/dbus-1/system.d/nfs-ganesha-dbus.conf)",
	// The recipient exited while the call was pending. ganesha 4.3 does that
	// when its config parser crashes on some malformed export files
	// (e.g. a missing ';' after a quoted string).
	"org.freedesktop.DBus.Error.NoReply": "ganesha exited or hung while handling the call: killed, or crashed (4.3 crashes on some malformed export files); see its log",
}

// messageKinds maps ganesha 4.3's messages (src/MainNFSD/export_mgr.c,
// src/support/exports.c) to sentinels; the first match wins.
var messageKinds = []struct {
	text string
	kind error
	hint string
}{
	{"another export admin operation is in progress", ErrBusy, ""},
	{"export id not found", storage.ErrNotFound, ""},
	// AddExport/UpdateExport of a file that does not exist.
	{"when attempting to stat config file", storage.ErrNotFound, ""},
	// find_config_nodes found no EXPORT block with the Export_Id: the file
	// holds another ID, or it has a syntax error that swallowed the block
	// (an unclosed brace), or it is empty. ganesha reports all of them with
	// strerror(ENOENT).
	{"error finding exports", storage.ErrInvalid,
		"ganesha says \"No such file or directory\" when the file has no EXPORT block with that Export_Id, which is also what a syntax error in the file looks like"},
	{"already active", storage.ErrExists, ""},
	{"cannot remove export with id 0", storage.ErrInvalid, "export 0 is ganesha's pseudo root"},
	{"cannot remove export with submounts", ErrBusy, "other exports are mounted below it in the pseudo file system"},
	{"no new export entries found", storage.ErrInvalid, ""},
	{"error while parsing", storage.ErrInvalid, ""},
	{"export entries in", storage.ErrInvalid, ""},
	{"errors found", storage.ErrInvalid, ""},
}

// classify maps a D-Bus error name and message to a hint and a sentinel
// (nil if unrecognised).
// logged is what ganesha logged meanwhile (may be empty): its reply to an
// export that clashes with another ("0 export entries in F added because
// (invalid param value) errors") says less than its log ("Pseudo path (P)
// is a duplicate").
func classify(name, message, logged string) (hint string, kind error) {
	if h, ok := unavailableNames[name]; ok {
		return h, ErrUnavailable
	}
	msg := strings.ToLower(message)
	for _, k := range messageKinds {
		if strings.Contains(msg, k.text) {
			kind, hint = k.kind, k.hint
			break
		}
	}
	if kind == nil {
		switch name {
		case "org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.InvalidFileContent",
			"org.freedesktop.DBus.Error.InvalidSignature":
			kind = storage.ErrInvalid
		}
	}
	if kind == storage.ErrInvalid && !strings.Contains(msg, "syntax error") && strings.Contains(logged, " is a duplicate") {
		return "another export has the same Pseudo path or Export_Id", storage.ErrExists
	}
	return hint, kind
}

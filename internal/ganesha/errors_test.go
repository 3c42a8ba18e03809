package ganesha

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// The names and messages are real nfs-ganesha 4.3 and dbus-daemon 1.14
// replies, collected against a running ganesha (and a bus without one).
func TestClassify(t *testing.T) {
	const (
		invalidArgs = "org.freedesktop.DBus.Error.InvalidArgs"
		fileContent = "org.freedesktop.DBus.Error.InvalidFileContent"
	)
	tests := []struct {
		name, message, logged string
		want                  error
		hint                  string
	}{
		{"org.freedesktop.DBus.Error.ServiceUnknown", "The name org.ganesha.nfsd was not provided by any .service files", "", ErrUnavailable, ""},
		{"org.freedesktop.DBus.Error.NoReply", "Message recipient disconnected from message bus without replying", "", ErrUnavailable, "crashes"},
		{"org.freedesktop.DBus.Error.NoReply", "Did not receive a reply.", "", ErrUnavailable, ""},
		{"org.freedesktop.DBus.Error.AccessDenied", "Rejected send message, 0 matched rules", "", ErrUnavailable, "bus policy"},
		{"org.freedesktop.DBus.Error.UnknownMethod", "No such method", "", ErrUnavailable, ""},
		{invalidArgs, "lookup_export failed with Export id not found", "", storage.ErrNotFound, ""},
		{invalidArgs, "error 2 (No such file or directory) when attempting to stat config file /x/e.conf", "", storage.ErrNotFound, ""},
		{invalidArgs, "Error finding exports: EXPORT(Export_Id=22) because No such file or directory", "", storage.ErrInvalid, "syntax error"},
		{invalidArgs, "Cannot remove export with id 0", "", storage.ErrInvalid, "pseudo root"},
		{invalidArgs, "another export admin operation is in progress, try again later", "", ErrBusy, ""},
		{fileContent, "Selected entries in /x/export-7.conf already active!!!", "", storage.ErrExists, ""},
		{fileContent, "0 export entries in /x/e23.conf added because (block validation) errors. Details:\n" +
			"Config File (/x/e23.conf:10): 1 validation errors in block FSAL", "", storage.ErrInvalid, ""},
		{fileContent, "0 export entries in /x/e24.conf added because (invalid param value) errors. Details:\n",
			"export_commit_common :CONFIG :CRIT :Pseudo path (/kiln/vol1) is a duplicate", storage.ErrExists, "same Pseudo"},
		{fileContent, "Error while parsing /x/e34.conf because of (parser rule) errors. Details:\n" +
			"Config File (/x/e34.conf:9): Syntax error in statement", "", storage.ErrInvalid, ""},
		// A syntax error stays one even if the log also has a duplicate.
		{fileContent, "0 export entries in /x/b.conf added because (invalid param value) errors. Details:\n" +
			"Config File (/x/b.conf:13): Syntax error in statement", "Pseudo path (/kiln/x) is a duplicate", storage.ErrInvalid, ""},
		{fileContent, "No new export entries found in /x/e.conf", "", storage.ErrInvalid, ""},
		{invalidArgs, "something new", "", storage.ErrInvalid, ""},
		{"org.example.Error.New", "something new", "", nil, ""},
	}
	for _, tt := range tests {
		hint, got := classify(tt.name, tt.message, tt.logged)
		if got != tt.want || !strings.Contains(hint, tt.hint) {
			t.Errorf("classify(%s, %q, %q) = %v, %q; want %v, a hint with %q", tt.name, tt.message, tt.logged, got, hint, tt.want, tt.hint)
		}
	}
}

func TestCallError(t *testing.T) {
	ce := &CallError{Op: "add export 1502 from /x/e.conf", Method: "AddExport", Name: "org.freedesktop.DBus.Error.InvalidArgs",
		Message: "Error finding exports: EXPORT(Export_Id=1502) because No such file or directory\n", Err: storage.ErrInvalid,
		Hint: "a syntax error", Log: "ganesha_yyerror :CONFIG :CRIT :Config file (/x/e.conf:23) error: syntax error"}
	want := "ganesha: add export 1502 from /x/e.conf: AddExport failed: org.freedesktop.DBus.Error.InvalidArgs: " +
		"Error finding exports: EXPORT(Export_Id=1502) because No such file or directory (a syntax error); " +
		"ganesha logged: ganesha_yyerror :CONFIG :CRIT :Config file (/x/e.conf:23) error: syntax error"
	if ce.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", ce.Error(), want)
	}
	if !errors.Is(ce, storage.ErrInvalid) {
		t.Error("CallError does not unwrap to its sentinel")
	}
	timeout := &CallError{Op: "list exports", Method: "ShowExports", Err: errors.Join(ErrUnavailable, errors.New("no answer within 5s"))}
	if !errors.Is(timeout, ErrUnavailable) || !strings.Contains(timeout.Error(), "no answer within 5s") {
		t.Errorf("timeout error = %v", timeout)
	}
}

func TestLogHints(t *testing.T) {
	log := `21/11/2026 20:15:38 : epoch 6b01fbea : vm : nfs-ganesha-24161[dbus_heartbeat] client_commit :CONFIG :WARN :A protocol is specified for a CLIENT block that is not enabled in NFS_CORE_PARAM, fixing up
21/11/2026 20:15:38 : epoch 6b01fbea : vm : nfs-ganesha-24161[dbus_heartbeat] export_commit_common :CONFIG :CRIT :Pseudo path (/kiln/vol1) is a duplicate
21/11/2026 20:15:38 : epoch 6b01fbea : vm : nfs-ganesha-24161[dbus_heartbeat] dbus_message_entrypoint :DBUS :MAJ :Method (AddExport) on (org.ganesha.nfsd.exportmgr) failed: name = (org.freedesktop.DBus.Error.InvalidFileContent)
21/11/2026 20:15:26 : epoch 6b01fb92 : vm : nfs-ganesha-4847[svc_4] rpc :TIRPC :EVENT :svc_vc_wait: 0x7fc76c002fe0 fd 14 recv errno 104 (will set dead)
21/11/2026 20:15:38 : epoch 6b01fbea : vm : nfs-ganesha-24161[main] nfs_start :NFS STARTUP :EVENT :NFS SERVER INITIALIZED
`
	want := "client_commit :CONFIG :WARN :A protocol is specified for a CLIENT block that is not enabled in NFS_CORE_PARAM, fixing up | " +
		"export_commit_common :CONFIG :CRIT :Pseudo path (/kiln/vol1) is a duplicate"
	if got := logHints([]byte(log)); got != want {
		t.Errorf("logHints =\n%s\nwant\n%s", got, want)
	}
	if got := logHints(nil); got != "" {
		t.Errorf("logHints(nil) = %q", got)
	}
}

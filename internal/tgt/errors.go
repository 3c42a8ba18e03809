package tgt

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

var (
	// ErrTargetUnavailable: tgtd does not answer on its control socket (not
	// running, restarting, or hung past the command timeout). Retrying later
	// may succeed; the Keeper re-creates the exports once it is back.
	ErrTargetUnavailable = errors.New("iSCSI target daemon (tgtd) unavailable")
	// ErrPortalMismatch: tgtd does not listen on exactly the configured
	// portals, typically because it could not bind them and fell back to
	// 0.0.0.0:3260. Nothing must be exported through such a tgtd.
	ErrPortalMismatch = errors.New("tgtd portals differ from the configured portals")
	// ErrBusy: tgtd refused because the object is in use ("this target is
	// still active").
	ErrBusy = errors.New("target busy")
)

// CommandError is a tgtadm command that failed. Errors.Is matches the
// sentinel the failure maps to: storage.ErrNotFound, storage.ErrExists,
// storage.ErrInvalid, ErrBusy or ErrTargetUnavailable.
type CommandError struct {
	// Op says what was being done, e.g. "create target tid 3 (iqn...)".
	Op string
	// ExitCode of tgtadm; -1 if it did not exit by itself (not started,
	// timed out). tgtadm exits 22 (EINVAL) for nearly every refusal, which
	// is why the kind comes from Stderr.
	ExitCode int
	// Stderr is tgtadm's message with any CHAP secret redacted.
	Stderr string
	// Err is the sentinel (or start/timeout error) the failure maps to; nil
	// for failures tgtadm does not explain.
	Err error
}

func (e *CommandError) Error() string {
	var b strings.Builder
	b.WriteString("tgt: ")
	b.WriteString(e.Op)
	b.WriteString(": tgtadm")
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, " exited %d", e.ExitCode)
	}
	if e.Stderr != "" {
		b.WriteString(": ")
		b.WriteString(e.Stderr)
	}
	if e.Err != nil && (e.Stderr == "" || errors.Is(e.Err, ErrTargetUnavailable)) {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *CommandError) Unwrap() error { return e.Err }

// stderrKinds maps tgtadm's messages (usr/tgtadm.c, LC_ALL=C) to sentinels.
// Order matters only where one message contains another; the first match
// wins.
var stderrKinds = []struct {
	text string
	kind error
}{
	// The control socket: tgtd not running, stale socket, or dying.
	{"can't connect to tgt daemon", ErrTargetUnavailable},
	{"failed to send request hdr to tgt daemon", ErrTargetUnavailable},
	{"failed to send request buf to tgt daemon", ErrTargetUnavailable},
	{"can't get the response", ErrTargetUnavailable},
	{"failed to read from tgtd", ErrTargetUnavailable},
	{"tgtd is not running", ErrTargetUnavailable},
	{"can't create a socket", ErrTargetUnavailable},
	{"connection refused", ErrTargetUnavailable},
	{"transport endpoint is not connected", ErrTargetUnavailable},
	// Missing objects.
	{"can't find the target", storage.ErrNotFound},
	{"can't find the logical unit", storage.ErrNotFound},
	{"can't find the account", storage.ErrNotFound},
	{"can't find the session", storage.ErrNotFound},
	{"can't find the connection", storage.ErrNotFound},
	{"can't find the binding", storage.ErrNotFound},
	{"this access control rule does not exist", storage.ErrNotFound},
	// Existing objects. "this target already exists" is also the answer
	// for a tid that is taken by a target of another name.
	{"this target already exists", storage.ErrExists},
	{"this logical unit number already exists", storage.ErrExists},
	{"this access control rule already exists", storage.ErrExists},
	{"this account already exists", storage.ErrExists},
	{"this binding already exists", storage.ErrExists},
	{"this target already has an outgoing account", storage.ErrExists},
	// In use.
	{"this target is still active", ErrBusy},
	{"this logical unit is still active", ErrBusy},
	{"this driver is busy", ErrBusy},
	{"this device has prevent removal set", ErrBusy},
	// Refused requests (a missing backing store file is "invalid request").
	{"invalid request", storage.ErrInvalid},
	{"unknown parameter", storage.ErrInvalid},
	{"cannot be 0", storage.ErrInvalid},
	{"must not be 0", storage.ErrInvalid},
	{"argument value", storage.ErrInvalid},
	{"not supported", storage.ErrInvalid},
	{"isn't supported", storage.ErrInvalid},
	{"is not allowed/supported", storage.ErrInvalid},
	{"unknown operation", storage.ErrInvalid},
	{"unknown mode", storage.ErrInvalid},
}

// classify maps a failed tgtadm's exit code and message to a sentinel, or
// nil if it says nothing we recognise.
func classify(exitCode int, stderr string) error {
	msg := strings.ToLower(stderr)
	for _, k := range stderrKinds {
		if strings.Contains(msg, k.text) {
			return k.kind
		}
	}
	switch exitCode {
	case 107, 111: // ENOTCONN, ECONNREFUSED without a message
		return ErrTargetUnavailable
	}
	return nil
}

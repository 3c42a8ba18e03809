package ganesha

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// ganesha's D-Bus names.
const (
	BusName        = "org.ganesha.nfsd"
	ExportMgrPath  = dbus.ObjectPath("/org/ganesha/nfsd/ExportMgr")
	ExportMgrIface = "org.ganesha.nfsd.exportmgr"
)

const (
	busDaemonName  = "org.freedesktop.DBus"
	busDaemonPath  = dbus.ObjectPath("/org/freedesktop/DBus")
	busDaemonIface = "org.freedesktop.DBus"
	// ganesha refuses concurrent export admin operations ("try again
	// later"): retry 5 times, 20 ms apart at first.
	busyRetries    = 5
	busyFirstPause = 20 * time.Millisecond
	// How much of ganesha's log a failed call's error may quote.
	maxLogHintBytes = 64 << 10
	maxLogHintLines = 12
)

// ExportMgr calls ganesha's export manager over D-Bus (object
// /org/ganesha/nfsd/ExportMgr, interface org.ganesha.nfsd.exportmgr of
// org.ganesha.nfsd on the system bus). It keeps one bus connection, made
// on first use and again after it breaks. Each call is bounded by
// BusConfig.CallTimeout. Safe for concurrent use.
//
// It is the raw interface: the Manager builds exports on it. Failures are
// *CallError.
type ExportMgr struct {
	cfg BusConfig
	log *slog.Logger

	mu   sync.Mutex
	conn *dbus.Conn
}

// ShownExport is one export in ganesha's ShowExports answer.
type ShownExport struct {
	ID uint16
	// Path is the export's path as ganesha shows it: its Path, or its Pseudo
	// path when ganesha runs with mount_path_pseudo = true.
	Path string
}

// ExportDetails is ganesha's DisplayExport answer.
type ExportDetails struct {
	ID uint16
	// FullPath is the export's Path.
	FullPath string
	// Path is its Path, or its Pseudo path with mount_path_pseudo = true
	// (ganesha 4.3 does not show the Pseudo path otherwise).
	Path string
	Tag  string
	// Clients are the CLIENT entries as ganesha prints them, in order:
	// "127.0.0.1/32", "fd00::/64", "*", a netgroup or a host pattern.
	Clients []string
}

// NewExportMgr returns an ExportMgr for the bus in cfg. It does not
// connect. log may be nil (slog.Default()).
func NewExportMgr(cfg BusConfig, log *slog.Logger) (*ExportMgr, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &ExportMgr{cfg: cfg, log: log.With("component", "ganesha", "bus", cfg.Address)}, nil
}

// Address returns the bus address in use.
func (x *ExportMgr) Address() string { return x.cfg.Address }

// Close closes the bus connection, if any. The ExportMgr connects again on
// its next call.
func (x *ExportMgr) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.conn == nil {
		return nil
	}
	err := x.conn.Close()
	x.conn = nil
	return err
}

// AddExport makes ganesha load the EXPORT block with Export_Id id from
// file (AddExport(s path, s "EXPORT(Export_Id=id)") → s) and returns its
// reply, e.g. "1 exports added". A reply with "Errors found:" means ganesha
// added the export but ignored options it did not understand; AddExport
// returns it without error and does not undo it.
func (x *ExportMgr) AddExport(ctx context.Context, file string, id uint16) (string, error) {
	return x.loadExport(ctx, "AddExport", "add", file, id)
}

// UpdateExport makes ganesha re-read the EXPORT block with Export_Id id
// from file and apply it to the running export: clients, access, squash
// and Pseudo change in place (Path and FSAL cannot). ganesha 4.3 adds the
// export if it does not exist.
func (x *ExportMgr) UpdateExport(ctx context.Context, file string, id uint16) (string, error) {
	return x.loadExport(ctx, "UpdateExport", "update", file, id)
}

func (x *ExportMgr) loadExport(ctx context.Context, method, verb, file string, id uint16) (string, error) {
	op := fmt.Sprintf("%s export %d from %s", verb, id, file)
	if err := validatePath("export file", file); err != nil {
		return "", fmt.Errorf("ganesha: %s: %w", op, err)
	}
	if err := validateExportID(id); err != nil {
		return "", fmt.Errorf("ganesha: %s: %w", op, err)
	}
	body, err := x.call(ctx, op, method, file, exportExpr(id))
	if err != nil {
		return "", err
	}
	var reply string
	if len(body) > 0 {
		reply, _ = body[0].(string)
	}
	return strings.TrimSpace(reply), nil
}

// RemoveExport makes ganesha drop export id (RemoveExport(q id)), ending
// its clients' access at once. An unknown id is storage.ErrNotFound.
func (x *ExportMgr) RemoveExport(ctx context.Context, id uint16) error {
	_, err := x.call(ctx, fmt.Sprintf("remove export %d", id), "RemoveExport", id)
	return err
}

// ShowExports lists ganesha's exports, including the pseudo root (ID 0)
// and exports that are not Kiln's.
func (x *ExportMgr) ShowExports(ctx context.Context) ([]ShownExport, error) {
	body, err := x.call(ctx, "list exports", "ShowExports")
	if err != nil {
		return nil, err
	}
	shown, err := parseShowExports(body)
	if err != nil {
		return nil, fmt.Errorf("ganesha: list exports: %w", err)
	}
	return shown, nil
}

// DisplayExport returns export id's paths and clients. An unknown id is
// storage.ErrNotFound.
func (x *ExportMgr) DisplayExport(ctx context.Context, id uint16) (ExportDetails, error) {
	op := fmt.Sprintf("show export %d", id)
	body, err := x.call(ctx, op, "DisplayExport", id)
	if err != nil {
		return ExportDetails{}, err
	}
	d, err := parseDisplayExport(body)
	if err != nil {
		return ExportDetails{}, fmt.Errorf("ganesha: %s: %w", op, err)
	}
	return d, nil
}

// Owner returns the unique bus name of the process owning org.ganesha.nfsd,
// or "" if none does (ganesha is not running, or runs without D-Bus).
func (x *ExportMgr) Owner(ctx context.Context) (string, error) {
	conn, err := x.connection(ctx, "look up ganesha's bus name")
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, x.cfg.CallTimeout)
	defer cancel()
	var owner string
	err = conn.BusObject().CallWithContext(cctx, busDaemonIface+".GetNameOwner", 0, BusName).Store(&owner)
	var de dbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner" {
		return "", nil
	}
	if err != nil {
		return "", x.failure(ctx, cctx, conn, "look up ganesha's bus name", "GetNameOwner", err, "")
	}
	return owner, nil
}

// OwnerChange is a change of the owner of org.ganesha.nfsd on the bus: Old
// is "" when ganesha appeared, New is "" when it went away.
type OwnerChange struct {
	Old, New string
}

// WatchOwner reports every change of org.ganesha.nfsd's owner
// (org.freedesktop.DBus.NameOwnerChanged) on a bus connection of its own.
// The channel is closed when ctx is done or the connection breaks (the bus
// went away); watch again then.
func (x *ExportMgr) WatchOwner(ctx context.Context) (<-chan OwnerChange, error) {
	const op = "watch ganesha's bus name"
	conn, err := x.dial(ctx, op)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, x.cfg.CallTimeout)
	defer cancel()
	if err := conn.AddMatchSignalContext(cctx,
		dbus.WithMatchSender(busDaemonName),
		dbus.WithMatchObjectPath(busDaemonPath),
		dbus.WithMatchInterface(busDaemonIface),
		dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, BusName),
	); err != nil {
		conn.Close()
		return nil, x.failure(ctx, cctx, nil, op, "AddMatch", err, "")
	}
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	out := make(chan OwnerChange, 16)
	go func() {
		defer close(out)
		defer conn.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-signals:
				if !ok {
					return
				}
				if s.Name != busDaemonIface+".NameOwnerChanged" || len(s.Body) != 3 {
					continue
				}
				name, _ := s.Body[0].(string)
				oldOwner, _ := s.Body[1].(string)
				newOwner, _ := s.Body[2].(string)
				if name != BusName {
					continue
				}
				select {
				case out <- OwnerChange{Old: oldOwner, New: newOwner}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// call calls method on ganesha's ExportMgr, retrying while ganesha says
// another export admin operation is in progress.
func (x *ExportMgr) call(ctx context.Context, op, method string, args ...any) ([]any, error) {
	pause := busyFirstPause
	for attempt := 1; ; attempt++ {
		body, err := x.callOnce(ctx, op, method, args...)
		if err == nil || !errors.Is(err, ErrBusy) || attempt == busyRetries {
			return body, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ganesha: %s: %w", op, ctx.Err())
		case <-time.After(pause):
		}
		pause *= 2
	}
}

func (x *ExportMgr) callOnce(ctx context.Context, op, method string, args ...any) ([]any, error) {
	conn, err := x.connection(ctx, op)
	if err != nil {
		return nil, err
	}
	logOffset := x.logSize()
	cctx, cancel := context.WithTimeout(ctx, x.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	call := conn.Object(BusName, ExportMgrPath).CallWithContext(cctx, ExportMgrIface+"."+method, 0, args...)
	if call.Err == nil {
		x.log.Debug("ganesha D-Bus call", "op", op, "method", method, "duration", time.Since(start))
		return call.Body, nil
	}
	err = x.failure(ctx, cctx, conn, op, method, call.Err, x.logSince(logOffset))
	x.log.Debug("ganesha D-Bus call failed", "op", op, "method", method, "duration", time.Since(start), "err", err)
	return nil, err
}

// failure turns a failed call into a *CallError (or the caller's own
// context error), dropping conn if it broke.
func (x *ExportMgr) failure(ctx, cctx context.Context, conn *dbus.Conn, op, method string, err error, logged string) error {
	ce := &CallError{Op: op, Method: method, Log: logged}
	var de dbus.Error
	switch {
	case errors.As(err, &de):
		ce.Name = de.Name
		if len(de.Body) > 0 {
			ce.Message, _ = de.Body[0].(string)
		}
		ce.Hint, ce.Err = classify(ce.Name, ce.Message, logged)
		if ce.Err == nil {
			ce.Err = errors.New("unrecognised D-Bus error")
		}
	case ctx.Err() != nil:
		// The caller gave up; that is not ganesha's fault.
		return fmt.Errorf("ganesha: %s: %w", op, ctx.Err())
	case cctx.Err() != nil:
		ce.Err = fmt.Errorf("%w: no answer within %s", ErrUnavailable, x.cfg.CallTimeout)
	default:
		// The connection broke (the bus went away): connect again next time.
		ce.Err = fmt.Errorf("%w: %v", ErrUnavailable, err)
		x.drop(conn)
	}
	return ce
}

// connection returns the shared bus connection, connecting if needed.
func (x *ExportMgr) connection(ctx context.Context, op string) (*dbus.Conn, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.conn != nil && x.conn.Connected() {
		return x.conn, nil
	}
	if x.conn != nil {
		x.conn.Close()
		x.conn = nil
	}
	conn, err := x.dial(ctx, op)
	if err != nil {
		return nil, err
	}
	x.conn = conn
	return conn, nil
}

func (x *ExportMgr) drop(conn *dbus.Conn) {
	if conn == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.conn == conn {
		x.conn = nil
	}
	conn.Close()
}

// dial opens a new private connection to the bus: connect, authenticate
// (EXTERNAL, as the process's uid), Hello; bounded by the call timeout.
func (x *ExportMgr) dial(ctx context.Context, op string) (*dbus.Conn, error) {
	unavailable := func(err error) error {
		return &CallError{Op: op, Method: "connect", Err: fmt.Errorf("%w: system bus %s: %v", ErrUnavailable, x.cfg.Address, err)}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ganesha: %s: %w", op, ctx.Err())
	}
	conn, err := dbus.Dial(x.cfg.Address)
	if err != nil {
		return nil, unavailable(err)
	}
	done := make(chan error, 1)
	go func() {
		err := conn.Auth(nil)
		if err == nil {
			err = conn.Hello()
		}
		done <- err
	}()
	timer := time.NewTimer(x.cfg.CallTimeout)
	defer timer.Stop()
	select {
	case err = <-done:
	case <-timer.C:
		err = fmt.Errorf("no answer within %s", x.cfg.CallTimeout)
	case <-ctx.Done():
		conn.Close()
		<-done
		return nil, fmt.Errorf("ganesha: %s: %w", op, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, unavailable(err)
	}
	return conn, nil
}

// logSize returns the size of ganesha's log, where the lines of a call
// about to be made will start; -1 if there is no log to read.
func (x *ExportMgr) logSize() int64 {
	if x.cfg.GaneshaLog == "" {
		return -1
	}
	fi, err := os.Stat(x.cfg.GaneshaLog)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// logSince returns the warnings and errors ganesha logged from offset on,
// without their timestamp prefix, joined by " | ". The lines come from the
// whole process, so a concurrent operation's lines may be among them.
func (x *ExportMgr) logSince(offset int64) string {
	if offset < 0 {
		return ""
	}
	f, err := os.Open(x.cfg.GaneshaLog)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() < offset {
		offset = 0 // rotated or truncated
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, maxLogHintBytes))
	return logHints(data)
}

// logHints picks the CONFIG/EXPORT/DBUS warnings and errors out of ganesha
// log lines like
//
//	21/11/2026 20:15:38 : epoch 6b01fbea : vm : nfs-ganesha-24161[dbus_heartbeat] export_commit_common :CONFIG :CRIT :Pseudo path (/kiln/x) is a duplicate
//
// leaving out the lines that only repeat the D-Bus reply.
func logHints(data []byte) string {
	var hints []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxLogHintBytes)
	for sc.Scan() && len(hints) < maxLogHintLines {
		line := sc.Text()
		if i := strings.Index(line, "] "); i >= 0 {
			line = line[i+2:]
		}
		if strings.HasPrefix(line, "dbus_message_entrypoint ") || strings.HasPrefix(line, "dbus_heartbeat_cb ") {
			continue
		}
		if !strings.Contains(line, " :CRIT :") && !strings.Contains(line, " :MAJ :") && !strings.Contains(line, " :WARN :") &&
			!strings.Contains(line, " :FATAL :") {
			continue
		}
		if !strings.Contains(line, ":CONFIG :") && !strings.Contains(line, ":EXPORT :") && !strings.Contains(line, ":DBUS :") &&
			!strings.Contains(line, ":FSAL :") {
			continue
		}
		hints = append(hints, line)
	}
	return strings.Join(hints, " | ")
}

package ganesha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/kilnstore/kiln/internal/atomicfile"
	"github.com/kilnstore/kiln/internal/storage"
)

// Manager exports directories through one ganesha: it writes an export
// file per export into Config.ExportDir and tells ganesha to load, reload
// or drop it over D-Bus. It is safe for concurrent use; its changes are
// serialised. Exports that are not in its directory (ganesha.conf's own)
// are never touched.
type Manager struct {
	cfg Config
	x   *ExportMgr
	log *slog.Logger

	mu sync.Mutex
}

// ExportInfo is where an export is reachable.
type ExportInfo struct {
	VolumeID string
	ExportID uint16
	// Path is the exported directory.
	Path string
	// Pseudo is the NFSv4 path clients mount: Config.PseudoRoot + "/" +
	// VolumeID.
	Pseudo string
	// ConfigFile is the export file ganesha was given.
	ConfigFile string
	// Clients are the admitted clients, canonical and sorted.
	Clients []string
}

// Repair records what Reconcile changed for one export.
type Repair struct {
	VolumeID string
	ExportID uint16
	Actions  []string
}

// New returns a Manager. It checks the configuration and creates the
// export directory (0750) if needed; it does not connect to the bus. log
// may be nil (slog.Default()).
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	x, err := NewExportMgr(cfg.Bus, log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.ExportDir, 0o750); err != nil {
		return nil, fmt.Errorf("ganesha: export directory: %w", err)
	}
	return &Manager{cfg: cfg, x: x, log: log.With("component", "ganesha", "export_dir", cfg.ExportDir)}, nil
}

// ExportMgr returns the D-Bus interface the Manager uses.
func (m *Manager) ExportMgr() *ExportMgr { return m.x }

// Close closes the Manager's bus connection.
func (m *Manager) Close() error { return m.x.Close() }

// Pseudo returns the NFSv4 pseudo path of volumeID's export.
func (m *Manager) Pseudo(volumeID string) (string, error) {
	if err := storage.ValidateID(volumeID); err != nil {
		return "", fmt.Errorf("ganesha: %w", err)
	}
	return m.pseudo(volumeID), nil
}

func (m *Manager) pseudo(volumeID string) string { return m.cfg.PseudoRoot + "/" + volumeID }

// ConfigFile returns the path of the export file for exportID.
func (m *Manager) ConfigFile(exportID uint16) string {
	return filepath.Join(m.cfg.ExportDir, "export-"+strconv.Itoa(int(exportID))+".conf")
}

// exportFilePattern matches the names of the Manager's export files.
var exportFilePattern = regexp.MustCompile(`^export-([1-9][0-9]{0,4})\.conf$`)

// Ensure makes ganesha export e exactly: e.Path at the volume's pseudo
// path, read-write for e.Clients only, with Export_Id e.ExportID. It
// rewrites the export file if it differs and then adds the export
// (AddExport) or, if ganesha has it, reloads it (UpdateExport) when the
// file changed or ganesha's client list differs. An export that is already
// right costs two D-Bus calls (ShowExports, DisplayExport) and changes
// nothing. Clients that lose access are refused from their next operation
// on; nothing else is disturbed.
//
// It fails with storage.ErrInvalid for a bad export (before any D-Bus call)
// or an export file ganesha refuses, storage.ErrNotFound if e.Path does not
// exist, storage.ErrExists if another export holds e.ExportID or the pseudo
// path, and ErrUnavailable when ganesha cannot be reached.
func (m *Manager) Ensure(ctx context.Context, e Export) (ExportInfo, error) {
	if err := e.Validate(); err != nil {
		return ExportInfo{}, err
	}
	e = e.normalized()
	m.mu.Lock()
	defer m.mu.Unlock()
	shown, err := m.shown(ctx)
	if err != nil {
		return ExportInfo{}, err
	}
	info, actions, err := m.ensureLocked(ctx, e, shown)
	if len(actions) > 0 {
		m.log.Info("NFS export changed", "volume_id", e.VolumeID, "export_id", e.ExportID, "pseudo", info.Pseudo,
			"clients", e.Clients, "actions", actions)
	}
	return info, err
}

// shown returns ganesha's exports by ID.
func (m *Manager) shown(ctx context.Context) (map[uint16]string, error) {
	list, err := m.x.ShowExports(ctx)
	if err != nil {
		return nil, err
	}
	shown := make(map[uint16]string, len(list))
	for _, s := range list {
		shown[s.ID] = s.Path
	}
	return shown, nil
}

// ensureLocked does Ensure's work given ganesha's exports (which it keeps
// up to date); it returns what it changed, also when it fails halfway.
func (m *Manager) ensureLocked(ctx context.Context, e Export, shown map[uint16]string) (ExportInfo, []string, error) {
	pseudo := m.pseudo(e.VolumeID)
	file := m.ConfigFile(e.ExportID)
	info := ExportInfo{VolumeID: e.VolumeID, ExportID: e.ExportID, Path: e.Path, Pseudo: pseudo, ConfigFile: file,
		Clients: slices.Clone(e.Clients)}
	var actions []string
	fail := func(err error) (ExportInfo, []string, error) { return info, actions, err }

	if err := checkDir(e); err != nil {
		return fail(err)
	}
	path, live := shown[e.ExportID]
	if live && path != e.Path && path != pseudo {
		return fail(fmt.Errorf("ganesha: export volume %s: %w: export ID %d is ganesha's export of %s, not this agent's "+
			"(an export in ganesha.conf? keep the agent's export ID range clear of those)",
			e.VolumeID, storage.ErrExists, e.ExportID, path))
	}

	content := renderExport(e, pseudo, m.cfg.Squash)
	fileChanged := false
	if old, err := os.ReadFile(file); err != nil || !bytes.Equal(old, content) {
		if _, err := atomicfile.WriteFile(file, content, 0o640); err != nil {
			return fail(fmt.Errorf("ganesha: export volume %s: write %s: %w", e.VolumeID, file, err))
		}
		fileChanged = true
		actions = append(actions, "wrote "+filepath.Base(file))
	}

	// add adds the export; errExportActive means ganesha already has it.
	errExportActive := errors.New("already active")
	add := func(what string) error {
		reply, err := m.x.AddExport(ctx, file, e.ExportID)
		switch {
		case err != nil && errors.Is(err, storage.ErrExists) && strings.Contains(err.Error(), "already active"):
			return errExportActive
		case err != nil:
			return err
		case hasConfigErrors(reply):
			// ganesha added it but ignored what it did not understand,
			// possibly an access restriction: take it out again.
			rmErr := m.x.RemoveExport(ctx, e.ExportID)
			return errors.Join(&CallError{Op: fmt.Sprintf("add export %d from %s", e.ExportID, file), Method: "AddExport",
				Message: reply, Err: storage.ErrInvalid, Hint: "ganesha added it with the options it understood; removed it again"}, rmErr)
		}
		shown[e.ExportID] = e.Path
		actions = append(actions, what)
		return nil
	}

	if !live {
		switch err := add("added to ganesha"); {
		case err == nil:
			return info, actions, nil
		case errors.Is(err, errExportActive):
			// Added meanwhile by someone else, or ShowExports was stale:
			// reload it below to be sure it is as written.
			fileChanged = true
		default:
			return fail(err)
		}
	}
	if !fileChanged {
		d, err := m.x.DisplayExport(ctx, e.ExportID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			// Removed since ShowExports.
			if err := add("re-added to ganesha"); err != nil {
				return fail(err)
			}
			return info, actions, nil
		case err != nil:
			return fail(err)
		case slices.Equal(canonicalClients(d.Clients), e.Clients):
			return info, actions, nil
		}
		actions = append(actions, fmt.Sprintf("ganesha had clients %v", d.Clients))
	}
	reply, err := m.x.UpdateExport(ctx, file, e.ExportID)
	if err != nil {
		return fail(err)
	}
	shown[e.ExportID] = e.Path
	if hasConfigErrors(reply) {
		return fail(&CallError{Op: fmt.Sprintf("update export %d from %s", e.ExportID, file), Method: "UpdateExport",
			Message: reply, Err: storage.ErrInvalid, Hint: "ganesha applied the options it understood"})
	}
	actions = append(actions, "reloaded in ganesha")
	return info, actions, nil
}

// hasConfigErrors reports whether a successful AddExport or UpdateExport
// reply says ganesha skipped parts of the file ("1 exports added. Errors
// found: ... Unknown parameter").
func hasConfigErrors(reply string) bool {
	return strings.Contains(strings.ToLower(reply), "errors found")
}

// canonicalClients returns ganesha's client entries in ValidateClient's
// canonical form, sorted; entries that are not addresses or prefixes stay
// as they are, so that they never compare equal to Kiln's.
func canonicalClients(clients []string) []string {
	out := make([]string, 0, len(clients))
	for _, c := range clients {
		if canonical, err := ValidateClient(c); err == nil {
			c = canonical
		}
		out = append(out, c)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func checkDir(e Export) error {
	fi, err := os.Stat(e.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ganesha: export volume %s: directory %s: %w", e.VolumeID, e.Path, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("ganesha: export volume %s: %w", e.VolumeID, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("ganesha: export volume %s: %w: %s is not a directory (NFS exports directories; export the one holding the volume file)",
			e.VolumeID, storage.ErrInvalid, e.Path)
	}
	return nil
}

// Remove makes ganesha drop e's export, which ends its clients' access at
// once, and deletes its export file. An export ganesha does not have is
// success; one whose ID ganesha uses for another path is left alone. When
// ganesha cannot be reached it fails with ErrUnavailable and keeps the
// file, so that a later Remove or Reconcile can still find the export.
func (m *Manager) Remove(ctx context.Context, e Export) error {
	if err := storage.ValidateID(e.VolumeID); err != nil {
		return fmt.Errorf("ganesha: remove export: %w", err)
	}
	if err := validateExportID(e.ExportID); err != nil {
		return fmt.Errorf("ganesha: remove export of volume %s: %w", e.VolumeID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	shown, err := m.shown(ctx)
	if err != nil {
		return err
	}
	actions, err := m.removeLocked(ctx, e.VolumeID, e.ExportID, e.Path, shown)
	if len(actions) > 0 {
		m.log.Info("NFS export removed", "volume_id", e.VolumeID, "export_id", e.ExportID, "actions", actions)
	}
	return err
}

// removeLocked drops export id from ganesha if it is volumeID's (its path
// is path or the volume's pseudo path) and deletes its file if the file is
// volumeID's. path may be empty: it is then read from the file.
func (m *Manager) removeLocked(ctx context.Context, volumeID string, id uint16, path string, shown map[uint16]string) ([]string, error) {
	var actions []string
	file := m.ConfigFile(id)
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ganesha: remove export %d of volume %s: %w", id, volumeID, err)
	}
	fileVolume, filePath := parseExportFile(data)
	ownFile := err == nil && fileVolume == volumeID
	if path == "" && ownFile {
		path = filePath
	}
	if live, ok := shown[id]; ok {
		switch {
		case path != "" && (live == path || live == m.pseudo(volumeID)):
			if err := m.x.RemoveExport(ctx, id); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return actions, err
			}
			delete(shown, id)
			actions = append(actions, "removed from ganesha")
		default:
			m.log.Warn("ganesha's export with this ID is not this volume's; leaving it", "volume_id", volumeID,
				"export_id", id, "ganesha_path", live, "recorded_path", path)
		}
	}
	if ownFile {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return actions, fmt.Errorf("ganesha: remove export %d of volume %s: %w", id, volumeID, err)
		}
		actions = append(actions, "deleted "+filepath.Base(file))
	} else if err == nil {
		m.log.Warn("export file belongs to another volume; leaving it", "volume_id", volumeID, "export_id", id,
			"file", file, "file_volume_id", fileVolume)
	}
	return actions, nil
}

var (
	fileVolumePattern = regexp.MustCompile(`(?m)^# Kiln export of volume ([0-9a-f-]{36})\.`)
	filePathPattern   = regexp.MustCompile(`(?m)^\tPath = "([^"\n]*)";$`)
)

// parseExportFile returns the volume ID and path an export file written by
// renderExport holds ("" for what it cannot find).
func parseExportFile(data []byte) (volumeID, path string) {
	if m := fileVolumePattern.FindSubmatch(data); m != nil && storage.ValidateID(string(m[1])) == nil {
		volumeID = string(m[1])
	}
	if m := filePathPattern.FindSubmatch(data); m != nil && validatePath("path", string(m[1])) == nil {
		path = string(m[1])
	}
	return volumeID, path
}

// Reconcile makes ganesha export every export want returns (Ensure for
// each, listing ganesha once) and drops the exports of files in the export
// directory that no wanted export owns (left behind when the agent died
// between forgetting an export and removing it). It reports what it
// changed. want is called with the Manager's lock held, so that an export
// recorded before its Ensure is never taken for an orphan.
//
// Use it after ganesha restarted: exports added over D-Bus are gone then,
// and come back from the agent's own records (Store). Exports that are not
// the Manager's are left alone.
//
// It stops at the first ErrUnavailable; other failures are joined and the
// remaining exports are still tried.
func (m *Manager) Reconcile(ctx context.Context, want func() []Export) ([]Repair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	shown, err := m.shown(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	var repairs []Repair
	wanted := map[uint16]bool{}
	for _, e := range want() {
		if err := e.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		e = e.normalized()
		wanted[e.ExportID] = true
		info, actions, err := m.ensureLocked(ctx, e, shown)
		if len(actions) > 0 {
			repairs = append(repairs, Repair{VolumeID: e.VolumeID, ExportID: e.ExportID, Actions: actions})
			m.log.Info("NFS export repaired", "volume_id", e.VolumeID, "export_id", e.ExportID, "pseudo", info.Pseudo,
				"actions", actions)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
				return repairs, err
			}
			errs = append(errs, err)
		}
	}

	entries, err := os.ReadDir(m.cfg.ExportDir)
	if err != nil {
		return repairs, errors.Join(append(errs, fmt.Errorf("ganesha: read export directory: %w", err))...)
	}
	for _, de := range entries {
		name := de.Name()
		if strings.HasPrefix(name, ".export-") && strings.Contains(name, ".conf.tmp-") {
			_ = os.Remove(filepath.Join(m.cfg.ExportDir, name)) // a write that died halfway
			continue
		}
		sub := exportFilePattern.FindStringSubmatch(name)
		if sub == nil {
			continue
		}
		n, _ := strconv.Atoi(sub[1])
		if n < MinExportID || n > MaxExportID || wanted[uint16(n)] {
			continue
		}
		id := uint16(n)
		data, err := os.ReadFile(filepath.Join(m.cfg.ExportDir, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("ganesha: read orphaned export file: %w", err))
			continue
		}
		volumeID, _ := parseExportFile(data)
		if volumeID == "" {
			errs = append(errs, fmt.Errorf("ganesha: export file %s is not one this agent wrote; leaving it and export %d alone",
				filepath.Join(m.cfg.ExportDir, name), id))
			continue
		}
		actions, err := m.removeLocked(ctx, volumeID, id, "", shown)
		if len(actions) > 0 {
			repairs = append(repairs, Repair{VolumeID: volumeID, ExportID: id, Actions: append([]string{"orphaned"}, actions...)})
			m.log.Warn("removed orphaned NFS export (no record wants it)", "volume_id", volumeID, "export_id", id, "actions", actions)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
				return repairs, err
			}
			errs = append(errs, err)
		}
	}
	return repairs, errors.Join(errs...)
}

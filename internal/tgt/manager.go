package tgt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"

	"github.com/kilnstore/kiln/internal/storage"
)

// Manager exports volumes through one tgtd. It is safe for concurrent use;
// its changes to tgtd are serialised. Other writers to the same tgtd (an
// operator's tgtadm, a second Manager) are tolerated where tgtd makes it
// possible (a taken tid is retried), not coordinated with.
type Manager struct {
	cfg        Config
	tgtadmPath string
	portals    []netip.AddrPort
	log        *slog.Logger

	mu sync.Mutex
	// accounts fingerprints the secret this Manager gave each CHAP account
	// it created. tgtd never shows secrets, so an account this Manager did
	// not create (or created with another secret) is re-created before it is
	// trusted. In memory only; the secrets themselves live in the Store.
	accounts map[string][sha256.Size]byte
}

// TargetInfo is where an export is reachable.
type TargetInfo struct {
	IQN     string
	TID     int
	LUN     int
	Portals []string // "ip:port", as configured
}

// Repair records what Reconcile changed for one export.
type Repair struct {
	VolumeID string
	Actions  []string
}

// New returns a Manager for the tgtd at cfg.ControlPort. It checks the
// configuration and that tgtadm exists, not that tgtd runs (see
// CheckPortals). log may be nil (slog.Default()).
func New(cfg Config, log *slog.Logger) (*Manager, error) {
	cfg, portals, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	path, err := exec.LookPath(cfg.Tgtadm)
	if err != nil {
		return nil, fmt.Errorf("tgt: tgtadm (Debian package tgt): %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Manager{
		cfg:        cfg,
		tgtadmPath: path,
		portals:    portals,
		log:        log.With("component", "tgt", "tgtd_control_port", cfg.ControlPort),
		accounts:   map[string][sha256.Size]byte{},
	}, nil
}

// TargetName returns the iSCSI name of volumeID's target.
func (m *Manager) TargetName(volumeID string) (string, error) {
	if err := storage.ValidateID(volumeID); err != nil {
		return "", fmt.Errorf("tgt: %w", err)
	}
	return m.targetName(volumeID), nil
}

func (m *Manager) targetName(volumeID string) string {
	return m.cfg.IQNPrefix + "volume-" + volumeID
}

// Portals returns the configured portals, canonical, in configured order.
func (m *Manager) Portals() []string { return slices.Clone(m.cfg.Portals) }

// CheckPortals verifies that tgtd listens on exactly the configured portals.
// A tgtd that cannot bind its portal does not fail: it keeps running on
// 0.0.0.0:3260 and [::]:3260, exposing every export on every address. Such a
// tgtd gets ErrPortalMismatch, and Ensure and Reconcile refuse to export
// through it.
func (m *Manager) CheckPortals(ctx context.Context) error {
	out, err := m.tgtadm(ctx, "list portals", "", "--mode", "portal", "--op", "show")
	if err != nil {
		return err
	}
	got, err := parsePortals(out)
	if err != nil {
		return err
	}
	slices.SortFunc(got, netip.AddrPort.Compare)
	got = slices.Compact(got)
	if slices.Equal(got, m.portals) {
		return nil
	}
	have := make([]string, len(got))
	for i, p := range got {
		have[i] = p.String()
	}
	hint := ""
	if slices.ContainsFunc(got, func(p netip.AddrPort) bool { return p.Addr().IsUnspecified() }) {
		hint = " (it could not bind a configured portal and fell back to all addresses)"
	}
	return fmt.Errorf("tgt: %w: tgtd listens on %v, configured %v%s; refusing to export through it",
		ErrPortalMismatch, have, m.cfg.Portals, hint)
}

// Targets lists every target tgtd has, including targets that are not
// Kiln's.
func (m *Manager) Targets(ctx context.Context) ([]Target, error) {
	out, err := m.tgtadm(ctx, "list targets", "", "--mode", "target", "--op", "show")
	if err != nil {
		return nil, err
	}
	return parseTargets(out)
}

// Ensure makes tgtd export e exactly: a target named TargetName(e.VolumeID)
// whose only LUN besides the controller is LUN 1 on e.BackingStore, whose
// ACL is e.Initiators, and which requires e's CHAP account (or none). It
// creates what is missing and removes what differs; an export that is
// already right costs two tgtadm calls (portals, targets) and changes
// nothing. Sessions already logged in are not dropped when the ACL or the
// secret changes.
//
// It fails with storage.ErrInvalid for a bad export, storage.ErrNotFound if
// the backing store does not exist, storage.ErrExists if the CHAP user is
// bound to another target, ErrPortalMismatch, or ErrTargetUnavailable.
func (m *Manager) Ensure(ctx context.Context, e Export) (TargetInfo, error) {
	if err := e.Validate(); err != nil {
		return TargetInfo{}, err
	}
	e = e.normalized()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.CheckPortals(ctx); err != nil {
		return TargetInfo{}, err
	}
	targets, err := m.Targets(ctx)
	if err != nil {
		return TargetInfo{}, err
	}
	info, actions, err := m.ensureLocked(ctx, e, targets)
	if len(actions) > 0 {
		m.log.Info("iSCSI export changed", "volume_id", e.VolumeID, "iqn", info.IQN, "tid", info.TID, "actions", actions)
	}
	return info, err
}

// ensureLocked does Ensure's work given the current targets; it returns
// what it changed, also when it fails halfway.
func (m *Manager) ensureLocked(ctx context.Context, e Export, targets []Target) (TargetInfo, []string, error) {
	iqn := m.targetName(e.VolumeID)
	info := TargetInfo{IQN: iqn, LUN: LUN, Portals: slices.Clone(m.cfg.Portals)}
	var actions []string
	did := func(format string, args ...any) { actions = append(actions, fmt.Sprintf(format, args...)) }
	fail := func(err error) (TargetInfo, []string, error) { return info, actions, err }

	if e.CHAPUser != "" {
		if other := boundElsewhere(targets, e.CHAPUser, iqn); other != nil {
			return fail(fmt.Errorf("tgt: export volume %s: %w: CHAP user %s is bound to target %d (%s)",
				e.VolumeID, storage.ErrExists, e.CHAPUser, other.TID, other.Name))
		}
	}
	t, found := findTarget(targets, iqn)
	if !found {
		// Create the target last-open: a new target has no ACL and refuses
		// everyone until its LUN and CHAP account are in place.
		if err := backingStoreExists(e); err != nil {
			return fail(err)
		}
		var created bool
		var err error
		t, targets, created, err = m.createTarget(ctx, iqn, targets)
		if err != nil {
			return fail(err)
		}
		if created {
			did("created target tid %d", t.TID)
		}
	}
	info.TID = t.TID
	tid := strconv.Itoa(t.TID)

	// LUNs: exactly LUN 1 on the backing store (LUN 0 is tgtd's controller).
	lunOK := false
	for _, l := range t.LUNs {
		if l.Number == 0 {
			continue
		}
		if l.Number == LUN && l.BackingStorePath == e.BackingStore && l.BackingStoreType == m.cfg.BackingStoreType {
			lunOK = true
			continue
		}
		if _, err := m.tgtadm(ctx, fmt.Sprintf("delete LUN %d (%s) of target %d (%s)", l.Number, l.BackingStorePath, t.TID, iqn), "",
			"--mode", "logicalunit", "--op", "delete", "--tid", tid, "--lun", strconv.Itoa(l.Number)); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fail(err)
		}
		did("deleted LUN %d (%s %s)", l.Number, l.BackingStoreType, l.BackingStorePath)
	}
	if !lunOK {
		if err := backingStoreExists(e); err != nil {
			return fail(err)
		}
		if _, err := m.tgtadm(ctx, fmt.Sprintf("add LUN %d on %s to target %d (%s)", LUN, e.BackingStore, t.TID, iqn), "",
			"--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", strconv.Itoa(LUN),
			"--backing-store", e.BackingStore, "--bstype", m.cfg.BackingStoreType); err != nil {
			return fail(err)
		}
		did("added LUN %d (%s %s)", LUN, m.cfg.BackingStoreType, e.BackingStore)
	}

	// CHAP before the ACL, so that a target never admits its initiators
	// without the secret it should require.
	acl := t.ACL
	if e.CHAPUser == "" {
		if err := m.unbindAccounts(ctx, t, targets, "", &actions); err != nil {
			return fail(err)
		}
	} else if fp := fingerprint(e.CHAPUser, e.CHAPSecret); !slices.Equal(t.Accounts, []string{e.CHAPUser}) || m.accounts[e.CHAPUser] != fp {
		out, err := m.tgtadm(ctx, "list CHAP accounts", "", "--mode", "account", "--op", "show")
		if err != nil {
			return fail(err)
		}
		exists := slices.Contains(parseAccounts(out), e.CHAPUser)
		known := m.accounts[e.CHAPUser] == fp
		// Whatever is bound is unbound first (see unbindAccounts). The
		// target would then admit its ACL without CHAP: clear the ACL
		// first (fail closed); it is restored below.
		if len(t.Accounts) > 0 && len(acl) > 0 {
			for _, a := range acl {
				if err := m.unbindACL(ctx, t, a); err != nil {
					return fail(err)
				}
			}
			did("cleared ACL while changing CHAP accounts")
			acl = nil
		}
		if err := m.unbindAccounts(ctx, t, targets, e.CHAPUser, &actions); err != nil {
			return fail(err)
		}
		if exists && !known {
			// tgtd never shows a secret: an account this Manager did not
			// set is re-created with the recorded one.
			if err := m.deleteAccount(ctx, e.CHAPUser); err != nil {
				return fail(err)
			}
			exists = false
			did("deleted CHAP account %s (secret not set by this agent)", e.CHAPUser)
		}
		if !exists {
			if _, err := m.tgtadm(ctx, fmt.Sprintf("create CHAP account %s", e.CHAPUser), e.CHAPSecret,
				"--mode", "account", "--op", "new", "--user", e.CHAPUser, "--password", e.CHAPSecret); err != nil {
				return fail(err)
			}
			m.accounts[e.CHAPUser] = fp
			did("created CHAP account %s", e.CHAPUser)
		}
		if _, err := m.tgtadm(ctx, fmt.Sprintf("bind CHAP user %s to target %d (%s)", e.CHAPUser, t.TID, iqn), "",
			"--mode", "account", "--op", "bind", "--tid", tid, "--user", e.CHAPUser); err != nil {
			return fail(err)
		}
		did("bound CHAP user %s", e.CHAPUser)
	}
	if u := t.OutgoingAccount; u != "" {
		if _, err := m.tgtadm(ctx, fmt.Sprintf("unbind outgoing CHAP user %s from target %d (%s)", u, t.TID, iqn), "",
			"--mode", "account", "--op", "unbind", "--tid", tid, "--user", u, "--outgoing"); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fail(err)
		}
		did("unbound outgoing CHAP user %s", u)
	}

	// ACL: remove before adding, so that a replaced initiator never
	// overlaps its replacement.
	for _, a := range acl {
		if slices.Contains(e.Initiators, a) {
			continue
		}
		if err := m.unbindACL(ctx, t, a); err != nil {
			return fail(err)
		}
		did("removed ACL entry %s", a)
	}
	for _, i := range e.Initiators {
		if slices.Contains(acl, i) {
			continue
		}
		if _, err := m.tgtadm(ctx, fmt.Sprintf("allow initiator %s on target %d (%s)", i, t.TID, iqn), "",
			"--mode", "target", "--op", "bind", "--tid", tid, "--initiator-name", i); err != nil && !errors.Is(err, storage.ErrExists) {
			return fail(err)
		}
		did("allowed initiator %s", i)
	}
	return info, actions, nil
}

// createTarget creates a target named iqn at the lowest free tid. tgtadm
// needs an explicit tid; if another writer takes it first ("this target
// already exists" covers both a taken tid and a taken name), it looks again.
func (m *Manager) createTarget(ctx context.Context, iqn string, targets []Target) (t Target, now []Target, created bool, err error) {
	const attempts = 5
	for range attempts {
		tid := freeTID(targets)
		_, err = m.tgtadm(ctx, fmt.Sprintf("create target tid %d (%s)", tid, iqn), "",
			"--mode", "target", "--op", "new", "--tid", strconv.Itoa(tid), "--targetname", iqn)
		if err == nil {
			t = Target{TID: tid, Name: iqn}
			return t, append(slices.Clone(targets), t), true, nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return Target{}, targets, false, err
		}
		if targets, err = m.Targets(ctx); err != nil {
			return Target{}, targets, false, err
		}
		if t, ok := findTarget(targets, iqn); ok {
			return t, targets, false, nil
		}
	}
	return Target{}, targets, false, fmt.Errorf("tgt: create target %s: tids taken concurrently %d times: %w", iqn, attempts, err)
}

// Remove deletes volumeID's target, dropping any sessions, and the CHAP
// accounts bound only to it. A missing target is success.
func (m *Manager) Remove(ctx context.Context, volumeID string) error {
	if err := storage.ValidateID(volumeID); err != nil {
		return fmt.Errorf("tgt: remove export: %w", err)
	}
	iqn := m.targetName(volumeID)
	m.mu.Lock()
	defer m.mu.Unlock()
	targets, err := m.Targets(ctx)
	if err != nil {
		return err
	}
	t, found := findTarget(targets, iqn)
	if !found {
		return nil
	}
	if _, err := m.tgtadm(ctx, fmt.Sprintf("delete target %d (%s)", t.TID, iqn), "",
		"--mode", "target", "--op", "delete", "--force", "--tid", strconv.Itoa(t.TID)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	// The target is gone first, so a failure below leaves at most an
	// unbound account behind, never an open target.
	var deleted []string
	for _, u := range t.Accounts {
		if boundElsewhere(targets, u, iqn) != nil {
			continue
		}
		if err := m.deleteAccount(ctx, u); err != nil {
			return err
		}
		deleted = append(deleted, u)
	}
	log := m.log.Info
	if len(t.Sessions) > 0 {
		log = m.log.Warn
	}
	log("iSCSI export removed", "volume_id", volumeID, "iqn", iqn, "tid", t.TID,
		"sessions_dropped", len(t.Sessions), "chap_accounts_deleted", deleted)
	return nil
}

// Reconcile makes tgtd export every export in want (Ensure for each,
// listing tgtd once), and reports what it had to change. Use it after tgtd
// restarted: tgtd keeps nothing across restarts, and the exports must come
// from the agent's own records (Store), never from `tgt-admin --dump`, which
// drops CHAP secrets and restores targets with "allow ALL". Targets that are
// not in want are left alone (Remove removes exports).
//
// It stops at the first ErrPortalMismatch or ErrTargetUnavailable; other
// failures are joined and the remaining exports are still tried.
func (m *Manager) Reconcile(ctx context.Context, want []Export) ([]Repair, error) {
	var errs []error
	valid := make([]Export, 0, len(want))
	for _, e := range want {
		if err := e.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		valid = append(valid, e.normalized())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.CheckPortals(ctx); err != nil {
		return nil, err
	}
	targets, err := m.Targets(ctx)
	if err != nil {
		return nil, err
	}
	var repairs []Repair
	for _, e := range valid {
		info, actions, err := m.ensureLocked(ctx, e, targets)
		if len(actions) > 0 {
			repairs = append(repairs, Repair{VolumeID: e.VolumeID, Actions: actions})
			m.log.Info("iSCSI export repaired", "volume_id", e.VolumeID, "iqn", info.IQN, "tid", info.TID, "actions", actions)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrTargetUnavailable) {
				return repairs, err
			}
			errs = append(errs, err)
		}
		if len(actions) > 0 || err != nil {
			if targets, err = m.Targets(ctx); err != nil {
				return repairs, err
			}
		}
	}
	return repairs, errors.Join(errs...)
}

// unbindAccounts unbinds every incoming account from t, last bound first,
// and deletes the ones this Manager created that no other target uses,
// except keep.
//
// The order matters: tgt 1.0.85 unbinds an account by zeroing its slot in
// the target's account array without compacting it, and the next
// `--mode target --op show` (or CHAP login) dereferences the hole and
// segfaults tgtd. Unbinding (or deleting) the last slot first never leaves
// a hole. For the same reason a target never has more than one account
// bound by this package.
func (m *Manager) unbindAccounts(ctx context.Context, t Target, targets []Target, keep string, actions *[]string) error {
	tid := strconv.Itoa(t.TID)
	for i := len(t.Accounts) - 1; i >= 0; i-- {
		u := t.Accounts[i]
		if _, err := m.tgtadm(ctx, fmt.Sprintf("unbind CHAP user %s from target %d (%s)", u, t.TID, t.Name), "",
			"--mode", "account", "--op", "unbind", "--tid", tid, "--user", u); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		*actions = append(*actions, "unbound CHAP user "+u)
	}
	for _, u := range t.Accounts {
		if _, ours := m.accounts[u]; !ours || u == keep || boundElsewhere(targets, u, t.Name) != nil {
			continue
		}
		if err := m.deleteAccount(ctx, u); err != nil {
			return err
		}
		*actions = append(*actions, "deleted CHAP account "+u)
	}
	return nil
}

func (m *Manager) unbindACL(ctx context.Context, t Target, entry string) error {
	flag := "--initiator-name"
	switch {
	case ValidateInitiator(entry) == nil:
	case aclAddress(entry):
		flag = "--initiator-address"
	default:
		return fmt.Errorf("tgt: target %d (%s) has ACL entry %q, which is neither an initiator name nor an address; not touching it",
			t.TID, t.Name, entry)
	}
	_, err := m.tgtadm(ctx, fmt.Sprintf("remove ACL entry %s from target %d (%s)", entry, t.TID, t.Name), "",
		"--mode", "target", "--op", "unbind", "--tid", strconv.Itoa(t.TID), flag, entry)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

func (m *Manager) deleteAccount(ctx context.Context, user string) error {
	_, err := m.tgtadm(ctx, fmt.Sprintf("delete CHAP account %s", user), "",
		"--mode", "account", "--op", "delete", "--user", user)
	delete(m.accounts, user)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}

func findTarget(targets []Target, iqn string) (Target, bool) {
	for _, t := range targets {
		if t.Name == iqn {
			return t, true
		}
	}
	return Target{}, false
}

// boundElsewhere returns a target other than iqn that has user bound.
func boundElsewhere(targets []Target, user, iqn string) *Target {
	for i := range targets {
		if targets[i].Name != iqn && (slices.Contains(targets[i].Accounts, user) || targets[i].OutgoingAccount == user) {
			return &targets[i]
		}
	}
	return nil
}

// freeTID returns the lowest tid no target uses.
func freeTID(targets []Target) int {
	used := make(map[int]bool, len(targets))
	for _, t := range targets {
		used[t.TID] = true
	}
	tid := 1
	for used[tid] {
		tid++
	}
	return tid
}

func fingerprint(user, secret string) [sha256.Size]byte {
	return sha256.Sum256([]byte(user + "\x00" + secret))
}

func backingStoreExists(e Export) error {
	if _, err := os.Stat(e.BackingStore); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tgt: export volume %s: backing store %s: %w", e.VolumeID, e.BackingStore, storage.ErrNotFound)
		}
		return fmt.Errorf("tgt: export volume %s: %w", e.VolumeID, err)
	}
	return nil
}

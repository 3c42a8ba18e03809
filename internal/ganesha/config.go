package ganesha

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// Defaults applied to empty Config fields.
const (
	// DefaultSystemBusAddress is libdbus's default system bus.
	DefaultSystemBusAddress = "unix:path=/run/dbus/system_bus_socket"
	DefaultCallTimeout      = 5 * time.Second
	DefaultPseudoRoot       = "/kiln"
	// DefaultSquash is ganesha's own default and what Cinder's NFS driver
	// assumes with nas_secure_file_operations (root on the client acts as
	// the anonymous user, uid/gid 65534 here): volume files must then be
	// readable and writable by that user or by the uid qemu runs as on the
	// client. no_root_squash lets the client's root act as root on the
	// exported directory.
	DefaultSquash = "root_squash"
)

// Squash values a Config may use (ganesha accepts more spellings; these are
// the canonical ones).
var squashValues = []string{"root_squash", "root_id_squash", "all_squash", "no_root_squash"}

// BusConfig says how to reach ganesha's D-Bus interface.
type BusConfig struct {
	// Address is the D-Bus address of the system bus ganesha is on, e.g.
	// "unix:path=/run/dbus/system_bus_socket". Empty means
	// $DBUS_SYSTEM_BUS_ADDRESS, else DefaultSystemBusAddress, as libdbus
	// (and so ganesha) does.
	Address string
	// CallTimeout bounds each D-Bus call (and connecting);
	// DefaultCallTimeout if 0. A ganesha that does not answer in time counts
	// as ErrUnavailable.
	CallTimeout time.Duration
	// GaneshaLog is ganesha's log file (its -L option), optional. When set,
	// a failed call's error quotes what ganesha logged meanwhile: ganesha's
	// D-Bus replies often say less than its log (the line of a syntax
	// error, which of two exports clashed).
	GaneshaLog string
}

func (c BusConfig) withDefaults() (BusConfig, error) {
	if c.Address == "" {
		c.Address = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	}
	if c.Address == "" {
		c.Address = DefaultSystemBusAddress
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.CallTimeout < 0 {
		return c, fmt.Errorf("%w: ganesha: negative D-Bus call timeout %s", storage.ErrInvalid, c.CallTimeout)
	}
	if c.GaneshaLog != "" && !filepath.IsAbs(c.GaneshaLog) {
		return c, fmt.Errorf("%w: ganesha: log file %q is not an absolute path", storage.ErrInvalid, c.GaneshaLog)
	}
	return c, nil
}

// Config configures a Manager.
type Config struct {
	Bus BusConfig
	// ExportDir is the directory, owned by the agent, that holds one export
	// file per export (export-<Export_Id>.conf, mode 0640), created 0750 if
	// missing. ganesha reads the files when told to over D-Bus; Reconcile
	// removes the exports of files no record wants. One Manager per
	// directory. It must be a clean absolute path of [A-Za-z0-9/._+@:-].
	ExportDir string
	// PseudoRoot is the NFSv4 pseudo-file-system directory the exports
	// appear under: PseudoRoot + "/" + volume ID; DefaultPseudoRoot if
	// empty. A clean absolute path of [A-Za-z0-9/._-], not "/".
	PseudoRoot string
	// Squash is every export's Squash option: root_squash (DefaultSquash),
	// root_id_squash, all_squash or no_root_squash.
	Squash string
}

func (c Config) withDefaults() (Config, error) {
	var err error
	if c.Bus, err = c.Bus.withDefaults(); err != nil {
		return c, err
	}
	if c.PseudoRoot == "" {
		c.PseudoRoot = DefaultPseudoRoot
	}
	if c.Squash == "" {
		c.Squash = DefaultSquash
	}
	if c.ExportDir == "" {
		return c, fmt.Errorf("%w: ganesha: no export directory configured", storage.ErrInvalid)
	}
	if err := validatePath("export directory", c.ExportDir); err != nil {
		return c, fmt.Errorf("ganesha: %w", err)
	}
	if err := validatePseudoRoot(c.PseudoRoot); err != nil {
		return c, fmt.Errorf("ganesha: %w", err)
	}
	ok := false
	for _, s := range squashValues {
		ok = ok || c.Squash == s
	}
	if !ok {
		return c, fmt.Errorf("%w: ganesha: squash %q is not one of %s", storage.ErrInvalid, c.Squash, strings.Join(squashValues, ", "))
	}
	return c, nil
}

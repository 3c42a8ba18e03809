package ganesha

import (
	"bytes"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// Export IDs. ganesha's Export_Id is a uint16; 0 is the pseudo-file-system
// root ganesha creates by itself ("Cannot remove export with id 0", and an
// export file with Export_Id = 0 is refused as "already active"), and
// 65535 is kept out as UINT16_MAX, which C code likes to use as a marker.
const (
	MinExportID = 1
	MaxExportID = 65534
)

// AnonymousID is the uid and gid squashed users act as (nobody and nogroup
// on Debian).
const AnonymousID = 65534

// Export is one directory exported over NFSv4 by ganesha to a list of
// clients: the agent's record (Store) and what it re-adds after ganesha
// restarts.
type Export struct {
	// VolumeID (storage.ValidateID) names the export's pseudo path:
	// Config.PseudoRoot + "/" + VolumeID.
	VolumeID string `json:"volume_id"`
	// ExportID is ganesha's Export_Id, stable for the life of the export
	// (NFS file handles carry it, so a re-added export must keep it);
	// MinExportID..MaxExportID. Store.Put allocates one.
	ExportID uint16 `json:"export_id"`
	// Path is the exported directory (the one holding the volume's file):
	// a clean absolute path of [A-Za-z0-9/._+@:-], not "/".
	Path string `json:"path"`
	// Clients are the IP addresses and CIDR prefixes (ValidateClient) given
	// read-write access, canonical and sorted once normalized. Empty
	// refuses everyone: the export-wide Access_Type is None.
	Clients []string `json:"clients,omitempty"`
}

// Validate checks every field that reaches an export file or a D-Bus call.
func (e Export) Validate() error {
	if err := storage.ValidateID(e.VolumeID); err != nil {
		return fmt.Errorf("ganesha: export: %w", err)
	}
	if err := validateExportID(e.ExportID); err != nil {
		return fmt.Errorf("ganesha: export of volume %s: %w", e.VolumeID, err)
	}
	if err := validatePath("exported path", e.Path); err != nil {
		return fmt.Errorf("ganesha: export of volume %s: %w", e.VolumeID, err)
	}
	for _, c := range e.Clients {
		if _, err := ValidateClient(c); err != nil {
			return fmt.Errorf("ganesha: export of volume %s: %w", e.VolumeID, err)
		}
	}
	return nil
}

// normalized returns a copy with the clients canonical, sorted and
// deduplicated. e must be valid.
func (e Export) normalized() Export {
	clients := make([]string, 0, len(e.Clients))
	for _, c := range e.Clients {
		canonical, _ := ValidateClient(c)
		clients = append(clients, canonical)
	}
	slices.Sort(clients)
	e.Clients = slices.Compact(clients)
	return e
}

func (e Export) clone() Export {
	e.Clients = slices.Clone(e.Clients)
	return e
}

func validateExportID(id uint16) error {
	if id < MinExportID || id > MaxExportID {
		return fmt.Errorf("%w: export ID %d is outside %d..%d", storage.ErrInvalid, id, MinExportID, MaxExportID)
	}
	return nil
}

// ValidateClient checks a client entry, an IPv4 or IPv6 address or CIDR
// prefix, and returns its canonical form: the address for a single host
// ("10.0.0.5", also for "10.0.0.5/32" and "::ffff:10.0.0.5"), else the
// masked prefix ("10.0.0.0/24"). Host names, netgroups, wildcards, zones,
// "0.0.0.0/0" and the unspecified address are refused: anything else would
// either widen access beyond the attaching host or reach ganesha's config
// parser as more than one token.
func ValidateClient(c string) (string, error) {
	invalid := func(why string) (string, error) {
		return "", fmt.Errorf("%w: NFS client %q %s", storage.ErrInvalid, c, why)
	}
	if len(c) > 64 {
		return invalid("is too long for an IP address or prefix")
	}
	var p netip.Prefix
	if strings.Contains(c, "/") {
		var err error
		if p, err = netip.ParsePrefix(c); err != nil {
			return invalid("is not an IP address or CIDR prefix")
		}
	} else {
		a, err := netip.ParseAddr(c)
		if err != nil || a.Zone() != "" {
			return invalid("is not an IP address or CIDR prefix")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		a = p.Addr()
	}
	if p.Bits() == 0 || a.IsUnspecified() {
		return invalid("would admit every host")
	}
	p = p.Masked()
	if p.IsSingleIP() {
		return p.Addr().String(), nil
	}
	return p.String(), nil
}

const maxPathLen = 1024

// validatePath checks a path that goes into an export file or a D-Bus
// argument: clean, absolute, not "/", of characters that need no quoting in
// ganesha's config syntax and cannot end a quoted string.
func validatePath(what, p string) error {
	ok := len(p) > 1 && len(p) <= maxPathLen && p[0] == '/' && filepath.Clean(p) == p
	for i := 0; ok && i < len(p); i++ {
		c := p[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._+@:-", c) >= 0
	}
	if !ok {
		return fmt.Errorf("%w: %s %q must be a clean absolute path other than / of at most %d characters of [A-Za-z0-9/._+@:-]",
			storage.ErrInvalid, what, p, maxPathLen)
	}
	return nil
}

func validatePseudoRoot(p string) error {
	if err := validatePath("pseudo root", p); err != nil {
		return err
	}
	if strings.ContainsAny(p, "+@:") {
		return fmt.Errorf("%w: pseudo root %q must be of [A-Za-z0-9/._-]", storage.ErrInvalid, p)
	}
	return nil
}

// exportExpr is the selector AddExport and UpdateExport take.
func exportExpr(id uint16) string {
	return "EXPORT(Export_Id=" + strconv.Itoa(int(id)) + ")"
}

// renderExport returns the export file for e (valid, normalized).
//
// The export-wide Access_Type is None and the clients get RW in a CLIENT
// block: ganesha applies the EXPORT block's permissions to every client no
// CLIENT block matches, so an export-wide RW would admit any host. Protocols
// is repeated in the CLIENT block, which otherwise inherits 3,4,9P and makes
// ganesha log a warning on every add. Clients go unquoted: ganesha refuses
// quoted clients ("Expected a client, got a double quoted string").
func renderExport(e Export, pseudo, squash string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Kiln export of volume %s. Written by the Kiln agent, which re-adds it to\n", e.VolumeID)
	b.WriteString("# ganesha over D-Bus after restarts; edits are overwritten.\n")
	b.WriteString("EXPORT {\n")
	fmt.Fprintf(&b, "\tExport_Id = %d;\n", e.ExportID)
	fmt.Fprintf(&b, "\tPath = \"%s\";\n", e.Path)
	fmt.Fprintf(&b, "\tPseudo = \"%s\";\n", pseudo)
	b.WriteString("\tAccess_Type = None;\n")
	fmt.Fprintf(&b, "\tSquash = %s;\n", squash)
	fmt.Fprintf(&b, "\tAnonymous_uid = %d;\n", AnonymousID)
	fmt.Fprintf(&b, "\tAnonymous_gid = %d;\n", AnonymousID)
	b.WriteString("\tProtocols = 4;\n")
	b.WriteString("\tTransports = TCP;\n")
	b.WriteString("\tSecType = sys;\n")
	b.WriteString("\tAttr_Expiration_Time = 0;\n")
	b.WriteString("\tFSAL {\n\t\tName = VFS;\n\t}\n")
	if len(e.Clients) > 0 {
		b.WriteString("\tCLIENT {\n")
		fmt.Fprintf(&b, "\t\tClients = %s;\n", strings.Join(e.Clients, ", "))
		b.WriteString("\t\tAccess_Type = RW;\n")
		b.WriteString("\t\tProtocols = 4;\n")
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.Bytes()
}

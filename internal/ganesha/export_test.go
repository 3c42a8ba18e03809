package ganesha

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

func TestValidateClient(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":           "127.0.0.1",
		"10.0.0.5/32":         "10.0.0.5",
		"10.0.0.5/24":         "10.0.0.0/24",
		"::ffff:10.0.0.5":     "10.0.0.5",
		"::ffff:10.0.0.0/120": "10.0.0.0/24",
		"2001:DB8::5":         "2001:db8::5",
		"2001:db8::5/128":     "2001:db8::5",
		"fd00::1/64":          "fd00::/64",
		"192.168.1.1/1":       "128.0.0.0/1",
	} {
		got, err := ValidateClient(in)
		if err != nil || got != want {
			t.Errorf("ValidateClient(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "*", "@netgroup", "host", "host.example.com", "10.0.0.*", "0.0.0.0", "0.0.0.0/0", "10.0.0.0/0", "::", "::/0",
		"::ffff:0.0.0.0", "fe80::1%eth0", "fe80::1%eth0/64", "127.0.0.1/33", "127.0.0.1 ", " 127.0.0.1", "127.0.0.1;",
		"127.0.0.1,10.0.0.1", "127.0.0.1}", "\"127.0.0.1\"", "127.0.0.1\n", "127.1", "0x7f.0.0.1", "127.000.000.001",
		strings.Repeat("1", 100),
	} {
		if got, err := ValidateClient(in); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ValidateClient(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestValidatePath(t *testing.T) {
	for _, p := range []string{"/srv/kiln/volumes/0a", "/a", "/var/lib/kiln/nfs@pool:1/v+x_y-z.d"} {
		if err := validatePath("path", p); err != nil {
			t.Errorf("validatePath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", "/", "a", "./a", "/a/", "/a//b", "/a/../b", "/a/./b", `/a"b`, "/a b", "/a;b", "/a{b", "/a}b",
		"/a#b", "/a$b", "/a\\b", "/a\nb", "/a\x00b", "/a%b", "/é", "/a'b", "/a,b", "/a=b", "/" + strings.Repeat("a", maxPathLen)} {
		if err := validatePath("path", p); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("validatePath(%q) = %v, want ErrInvalid", p, err)
		}
	}
	if err := validatePseudoRoot("/nfs@x"); err == nil {
		t.Error("validatePseudoRoot accepts '@'")
	}
}

func TestRenderExport(t *testing.T) {
	e := Export{VolumeID: "0000000a-6e66-4000-8000-00000000000a", ExportID: 1000, Path: "/srv/kiln/volumes/a",
		Clients: []string{"10.0.0.0/24", "127.0.0.1", "fd00::/64"}}
	want := `# Kiln export of volume 0000000a-6e66-4000-8000-00000000000a. Written by the Kiln agent, which re-adds it to
# ganesha over D-Bus after restarts; edits are overwritten.
EXPORT {
	Export_Id = 1000;
	Path = "/srv/kiln/volumes/a";
	Pseudo = "/kiln/0000000a-6e66-4000-8000-00000000000a";
	Access_Type = None;
	Squash = root_squash;
	Anonymous_uid = 65534;
	Anonymous_gid = 65534;
	Protocols = 4;
	Transports = TCP;
	SecType = sys;
	Attr_Expiration_Time = 0;
	FSAL {
		Name = VFS;
	}
	CLIENT {
		Clients = 10.0.0.0/24, 127.0.0.1, fd00::/64;
		Access_Type = RW;
		Protocols = 4;
	}
}
`
	if got := string(renderExport(e, "/kiln/"+e.VolumeID, "root_squash")); got != want {
		t.Errorf("renderExport =\n%s\nwant\n%s", got, want)
	}
	if v, p := parseExportFile([]byte(want)); v != e.VolumeID || p != e.Path {
		t.Errorf("parseExportFile = %q, %q", v, p)
	}
	e.Clients = nil
	if got := string(renderExport(e, "/kiln/x", "all_squash")); strings.Contains(got, "CLIENT") || !strings.Contains(got, "Access_Type = None;") {
		t.Errorf("export without clients:\n%s", got)
	}
}

// exportLine is every line renderExport may write.
var exportLine = regexp.MustCompile(`^(# .*|EXPORT \{|\tExport_Id = [0-9]+;|\tPath = "[A-Za-z0-9/._+@:-]+";|` +
	`\tPseudo = "[A-Za-z0-9/._-]+";|\tAccess_Type = None;|\tSquash = [a-z_]+;|\tAnonymous_[ug]id = 65534;|\tProtocols = 4;|` +
	`\tTransports = TCP;|\tSecType = sys;|\tAttr_Expiration_Time = 0;|\tFSAL \{|\t\tName = VFS;|\t\}|\tCLIENT \{|` +
	`\t\tClients = [0-9a-f.:/]+(, [0-9a-f.:/]+)*;|\t\tAccess_Type = RW;|\t\tProtocols = 4;|\})$`)

// FuzzExportFile: whatever path and clients pass validation, the export
// file has exactly the intended structure, so that nothing a caller
// passes can add options, blocks or clients.
func FuzzExportFile(f *testing.F) {
	f.Add("/srv/kiln/v", "127.0.0.1", "10.0.0.0/24")
	f.Add("/a\";Access_Type=RW;\"", "127.0.0.1; Access_Type = RW", "*")
	f.Add("/a b", "10.0.0.1}", "::ffff:1.2.3.4")
	f.Add("/x\n}\nEXPORT {", "fd00::/64", "@ng")
	f.Fuzz(func(t *testing.T, path, c1, c2 string) {
		e := Export{VolumeID: "0000000a-6e66-4000-8000-00000000000a", ExportID: 1000, Path: path, Clients: []string{c1, c2}}
		if e.Validate() != nil {
			return
		}
		e = e.normalized()
		out := string(renderExport(e, "/kiln/"+e.VolumeID, DefaultSquash))
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 23 {
			t.Fatalf("export file has %d lines, want 23:\n%s", len(lines), out)
		}
		for _, l := range lines {
			if !exportLine.MatchString(l) {
				t.Fatalf("unexpected line %q in\n%s", l, out)
			}
		}
		if strings.Count(out, "{") != 3 || strings.Count(out, "}") != 3 || strings.Count(out, `"`) != 4 {
			t.Fatalf("unbalanced export file:\n%s", out)
		}
		if v, p := parseExportFile([]byte(out)); v != e.VolumeID || p != path {
			t.Fatalf("parseExportFile = %q, %q; want %q, %q", v, p, e.VolumeID, path)
		}
	})
}

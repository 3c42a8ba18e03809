package tgt

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

const testVolumeID = "0a1b2c3d-0000-4000-8000-00000000abcd"

func TestValidateInitiator(t *testing.T) {
	good := []string{
		"iqn.1993-08.org.debian:01:abcdef123456",
		"iqn.1994-05.com.redhat:185ce16b55ad",
		"iqn.1991-05.com.microsoft:win-host.example.com",
		"iqn.1998-01.com.vmware:esx01-4f3c2a1b",
		"iqn.2005-03.org.open-iscsi:Host_1",
		"iqn.2010-10.org.openstack",
		"iqn.2024-12.example",
		"eui.02004567A425678D",
		"naa.52004567ba64678d",
		"naa.52004567BA64678D52004567BA64678D",
		"iqn.2024-01.com.example:" + strings.Repeat("a", MaxISCSINameLen-len("iqn.2024-01.com.example:")),
	}
	bad := []string{
		"",
		"-iqn.2024-01.com.example:x",
		"iqn.2024-01.com.example:has space",
		"iqn.2024-01.com.example:quote\"",
		"iqn.2024-01.com.example:quote'",
		"iqn.2024-01.com.example:semi;colon",
		"iqn.2024-01.com.example:new\nline",
		"iqn.2024-01.com.example:tab\t",
		"iqn.2024-01.com.example:nul\x00",
		"iqn.2024-01.com.example:comma,x",
		"iqn.2024-01.com.example:eq=x",
		"iqn.2024-01.com.example:slash/x",
		"iqn.2024-01.com.example:ünïcode",
		"iqn.2024-01.com.example:",
		"iqn.2024-13.com.example:x",
		"iqn.24-01.com.example:x",
		"iqn.2024-01.COM.example:x",
		"iqn.2024-01.-com.example:x",
		"iqn.2024-01..example:x",
		"iqn.2024-01:x",
		"IQN.2024-01.com.example:x",
		"eui.02004567A425678",
		"eui.02004567A425678DX",
		"naa.1234",
		"ALL",
		"127.0.0.1",
		"iqn.2024-01.com.example:" + strings.Repeat("a", MaxISCSINameLen),
	}
	for _, n := range good {
		if err := ValidateInitiator(n); err != nil {
			t.Errorf("ValidateInitiator(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateInitiator(n); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("ValidateInitiator(%q) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestValidateCHAP(t *testing.T) {
	tests := []struct {
		user, secret string
		ok           bool
	}{
		{"kiln", "abcdefghijkl", true},
		{"a", "abcdefghijklmnop", true},
		{strings.Repeat("u", 64), "A1b2C3d4E5f6.-_x", true},
		{"user.name_x-1", "_abcdefghijk", true},
		{"", "abcdefghijkl", false},
		{strings.Repeat("u", 65), "abcdefghijkl", false},
		{"-user", "abcdefghijkl", false},
		{"us er", "abcdefghijkl", false},
		{"user", "abcdefghijk", false},       // 11
		{"user", "abcdefghijklmnopq", false}, // 17
		{"user", "-abcdefghijkl", false},
		{"user", "abcdef ghijkl", false},
		{"user", "abcdef'ghijkl", false},
		{"user", "abcdef\nghijkl", false},
		{"user", "", false},
	}
	for _, tt := range tests {
		err := ValidateCHAP(tt.user, tt.secret)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, storage.ErrInvalid)) {
			t.Errorf("ValidateCHAP(%q, %q) = %v, want ok=%v", tt.user, tt.secret, err, tt.ok)
		}
		if err != nil && tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
			t.Errorf("ValidateCHAP error %q contains the secret", err)
		}
	}
}

func TestGenerateCHAP(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		user, secret := GenerateCHAP()
		if err := ValidateCHAP(user, secret); err != nil {
			t.Fatal(err)
		}
		if len(user) != GeneratedCHAPUserLen || len(secret) != MaxCHAPSecretLen {
			t.Fatalf("GenerateCHAP() = %d, %d characters", len(user), len(secret))
		}
		for _, s := range []string{user, secret} {
			if strings.Trim(s, alphanumerics) != "" {
				t.Fatalf("%q has characters outside [A-Za-z0-9]", s)
			}
			if seen[s] {
				t.Fatalf("GenerateCHAP repeated %q", s)
			}
			seen[s] = true
		}
	}
}

func TestExportValidate(t *testing.T) {
	ok := Export{VolumeID: testVolumeID, BackingStore: "/dev/kiln-vg/volume-" + testVolumeID,
		Initiators: []string{"iqn.1993-08.org.debian:01:abc"}, CHAPUser: "u", CHAPSecret: "abcdefghijklmnop"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	noACL := ok
	noACL.Initiators, noACL.CHAPUser, noACL.CHAPSecret = nil, "", ""
	if err := noACL.Validate(); err != nil {
		t.Errorf("export without ACL or CHAP: %v", err)
	}
	for name, edit := range map[string]func(*Export){
		"bad id":             func(e *Export) { e.VolumeID = "Volume-1" },
		"relative path":      func(e *Export) { e.BackingStore = "dev/x" },
		"unclean path":       func(e *Export) { e.BackingStore = "/dev/../etc/shadow" },
		"trailing slash":     func(e *Export) { e.BackingStore = "/dev/x/" },
		"comma in path":      func(e *Export) { e.BackingStore = "/dev/x,bsopts=y" },
		"space in path":      func(e *Export) { e.BackingStore = "/dev/x y" },
		"newline in path":    func(e *Export) { e.BackingStore = "/dev/x\ny" },
		"root":               func(e *Export) { e.BackingStore = "/" },
		"empty path":         func(e *Export) { e.BackingStore = "" },
		"bad initiator":      func(e *Export) { e.Initiators = []string{"ALL"} },
		"user without pass":  func(e *Export) { e.CHAPSecret = "" },
		"pass without user":  func(e *Export) { e.CHAPUser = "" },
		"short secret":       func(e *Export) { e.CHAPSecret = "short" },
		"option-like user":   func(e *Export) { e.CHAPUser = "--outgoing" },
		"option-like secret": func(e *Export) { e.CHAPSecret = "--password-xyz" },
	} {
		e := ok.clone()
		edit(&e)
		err := e.Validate()
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", name, err)
		}
		if err != nil && strings.Contains(err.Error(), ok.CHAPSecret) {
			t.Errorf("%s: error %q contains the secret", name, err)
		}
	}
}

func TestExportNeverPrintsSecret(t *testing.T) {
	const secret = "S3cretS3cret-xyz"
	e := Export{VolumeID: testVolumeID, BackingStore: "/dev/vg/lv", Initiators: []string{"iqn.2024-01.com.example:h"},
		CHAPUser: "kiln-user", CHAPSecret: secret}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("export", "export", e)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("export", "export", e, "ptr", &e)
	out := buf.String() + fmt.Sprint(e) + fmt.Sprintf("%v %+v %#v %s %v", e, e, e, e, []Export{e})
	if strings.Contains(out, secret) {
		t.Fatalf("secret printed: %s", out)
	}
	if !strings.Contains(out, "kiln-user") || !strings.Contains(out, redacted) {
		t.Errorf("output lacks the user or the redaction marker: %s", out)
	}
}

func TestConfigDefaultsAndChecks(t *testing.T) {
	c, portals, err := Config{Portals: []string{"[::1]:3261", "127.0.0.1:3261"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Tgtadm != "tgtadm" || c.IQNPrefix != "iqn.2010-10.org.openstack:" || c.BackingStoreType != "rdwr" ||
		c.CommandTimeout != 10*time.Second || c.ControlPort != 0 {
		t.Errorf("defaults: %+v", c)
	}
	// Configured order kept for initiators, sorted for comparing with tgtd.
	if len(portals) != 2 || c.Portals[0] != "[::1]:3261" || c.Portals[1] != "127.0.0.1:3261" ||
		portals[0].String() != "127.0.0.1:3261" {
		t.Errorf("portals: %v %v", c.Portals, portals)
	}
	for name, cfg := range map[string]Config{
		"no portals":       {},
		"portal no port":   {Portals: []string{"127.0.0.1"}},
		"portal port 0":    {Portals: []string{"127.0.0.1:0"}},
		"portal hostname":  {Portals: []string{"localhost:3260"}},
		"duplicate portal": {Portals: []string{"127.0.0.1:3260", "127.0.0.1:3260"}},
		"control port":     {Portals: []string{"127.0.0.1:3260"}, ControlPort: 32768},
		"negative port":    {Portals: []string{"127.0.0.1:3260"}, ControlPort: -1},
		"bstype":           {Portals: []string{"127.0.0.1:3260"}, BackingStoreType: "sg"},
		"uppercase prefix": {Portals: []string{"127.0.0.1:3260"}, IQNPrefix: "iqn.2010-10.org.OpenStack:"},
		"eui prefix":       {Portals: []string{"127.0.0.1:3260"}, IQNPrefix: "eui."},
		"prefix space":     {Portals: []string{"127.0.0.1:3260"}, IQNPrefix: "iqn.2010-10.org.openstack: "},
		"tgtadm option":    {Portals: []string{"127.0.0.1:3260"}, Tgtadm: "-x"},
		"timeout":          {Portals: []string{"127.0.0.1:3260"}, CommandTimeout: -time.Second},
	} {
		if _, _, err := cfg.withDefaults(); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: withDefaults() = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := New(Config{Portals: []string{"127.0.0.1:3260"}, Tgtadm: "/nonexistent/tgtadm"}, nil); err == nil {
		t.Error("New with a missing tgtadm succeeded")
	}
}

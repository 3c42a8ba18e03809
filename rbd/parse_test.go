package rbd

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

func TestParseLs(t *testing.T) {
	out := `[{"image":"volume-a","id":"10a2","size":1073741824,"format":2},
	{"image":"volume-a","id":"10a2","snapshot":"snapshot-s","snapshot_id":4,"size":1073741824,"format":2,"protected":"true"},
	{"image":"volume-b","id":"10a3","size":2147483648,"format":2,"parent":{"pool":"kiln","image":"volume-a","snapshot":"snapshot-s"}},
	{"image":"volume-a","id":"10a2","snapshot":"clone-x","snapshot_id":5,"size":1073741824,"format":2,"protected":"false"}]`
	images, snaps, err := parseLs([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != 2 || images["volume-a"] != 1<<30 || images["volume-b"] != 2<<30 {
		t.Fatalf("images %v", images)
	}
	if s := snaps["volume-a"]; len(s) != 2 || s[0] != (snapEntry{"snapshot-s", 1 << 30, true}) || s[1].Protected {
		t.Fatalf("snapshots %v", snaps)
	}
	if i, s, err := parseLs([]byte("[]")); err != nil || len(i) != 0 || len(s) != 0 {
		t.Fatalf("empty pool: %v %v %v", i, s, err)
	}
	for _, bad := range []string{
		``, `{}`, `[{"image":"volume-a"}]`, `[{"image":"","size":1}]`, `[{"image":"volume-a","size":-1}]`,
		`[{"image":"volume-a","size":"1"}]`, `[{"image":"a","snapshot":"s","size":1,"protected":"maybe"}]`,
		`[] []`,
	} {
		if _, _, err := parseLs([]byte(bad)); err == nil {
			t.Errorf("parseLs(%q) accepted", bad)
		}
	}
}

func TestParseInfoSnapLsChildrenDFMons(t *testing.T) {
	info, err := parseInfo([]byte(`{"name":"volume-b","id":"10a3","size":2147483648,"objects":512,"order":22,
		"parent":{"pool":"kiln","pool_namespace":"","image":"volume-a","id":"10a2","snapshot":"snapshot-s","trash":false,"overlap":1073741824}}`))
	if err != nil || *info.Size != 2<<30 || info.Parent == nil || info.Parent.Image != "volume-a" || info.Parent.Snapshot != "snapshot-s" {
		t.Fatalf("info %+v, %v", info, err)
	}
	for _, bad := range []string{`{}`, `{"name":"x"}`, `{"name":"x","size":-5}`, `{"name":"x","size":1,"parent":{"pool":"kiln"}}`} {
		if _, err := parseInfo([]byte(bad)); err == nil {
			t.Errorf("parseInfo(%q) accepted", bad)
		}
	}
	snaps, err := parseSnapLs([]byte(`[{"id":4,"name":"snapshot-s","size":1073741824,"protected":"true","timestamp":"Sat Nov 21 22:00:00 2026"}]`))
	if err != nil || len(snaps) != 1 || !snaps[0].Protected || snaps[0].Size != 1<<30 {
		t.Fatalf("snap ls %+v, %v", snaps, err)
	}
	if _, err := parseSnapLs([]byte(`[{"name":"s"}]`)); err == nil {
		t.Error("snap without size accepted")
	}
	children, err := parseChildren([]byte(`[{"pool":"kiln","pool_namespace":"","image":"volume-b"},{"pool":"kiln","pool_namespace":"ns","image":"volume-c"}]`))
	if err != nil || len(children) != 2 || children[0] != "kiln/volume-b" || children[1] != "kiln/ns/volume-c" {
		t.Fatalf("children %v, %v", children, err)
	}
	df := `{"stats":{"total_bytes":2147483648},"pools":[{"name":"device_health_metrics","id":1,"stats":{"stored":0,"bytes_used":0,"max_avail":100}},
	{"name":"kiln","id":2,"stats":{"stored":1048576,"objects":3,"kb_used":1024,"bytes_used":1048576,"percent_used":0.0005,"max_avail":2040109465}}]}`
	u, err := parseDF([]byte(df), "kiln")
	if err != nil || u.Stored != 1<<20 || u.MaxAvail != 2040109465 {
		t.Fatalf("df %+v, %v", u, err)
	}
	if _, err := parseDF([]byte(df), "other"); err == nil {
		t.Error("a pool ceph df does not list was accepted")
	}
	if _, err := parseDF([]byte(`{"pools":[{"name":"kiln","stats":{"stored":1}}]}`), "kiln"); err == nil {
		t.Error("incomplete pool stats accepted")
	}
	mons, err := parseMonDump([]byte(`{"epoch":1,"mons":[{"rank":0,"name":"a","public_addrs":{"addrvec":[
		{"type":"v2","addr":"127.0.0.1:33300","nonce":0},{"type":"v1","addr":"127.0.0.1:36789","nonce":0}]}},
		{"rank":1,"name":"b","public_addrs":{"addrvec":[{"type":"v1","addr":"[fd00::2]:6789","nonce":0}]}}]}`))
	if err != nil || len(mons) != 2 || mons[0] != (monitor{"127.0.0.1", "36789"}) || mons[1] != (monitor{"fd00::2", "6789"}) {
		t.Fatalf("mons %+v, %v", mons, err)
	}
	if _, err := parseMonDump([]byte(`{"mons":[{"public_addrs":{"addrvec":[{"type":"v2","addr":"127.0.0.1:3300"}]}}]}`)); err == nil {
		t.Error("monitors without a v1 address accepted")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code   int
		stderr string
		want   error
	}{
		{2, "rbd: error opening image volume-x: (2) No such file or directory", storage.ErrNotFound},
		{2, "rbd: error opening pool 'nope': (2) No such file or directory\nerror: pool does not exist", ErrUnreachable},
		{17, "rbd: create error: (17) File exists", storage.ErrExists},
		{28, "(28) No space left on device", storage.ErrNoSpace},
		{16, "rbd: unprotecting snap failed: (16) Device or resource busy", ErrBusy},
		{39, "rbd: image has snapshots - these must be deleted", ErrBusy},
		{110, "rbd: create error: (110) Connection timed out", ErrUnreachable},
		{1, "failed to fetch mon config (--no-mon-config to skip)\n(1) Operation not permitted", ErrUnreachable},
	} {
		if got := classify(tc.code, tc.stderr); !errors.Is(got, tc.want) {
			t.Errorf("classify(%d, %q) = %v, want %v", tc.code, tc.stderr, got, tc.want)
		}
	}
	if got := classify(22, "invalid argument"); got != nil {
		t.Errorf("EINVAL mapped to %v", got)
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{Name: "ceph", Pool: "kiln"}
	if err := good.withDefaults().validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"no pool":           func(c *Config) { c.Pool = "" },
		"pool with slash":   func(c *Config) { c.Pool = "a/b" },
		"pool with at":      func(c *Config) { c.Pool = "a@b" },
		"pool option":       func(c *Config) { c.Pool = "-x" },
		"user with client.": func(c *Config) { c.User = "client.kiln" },
		"user with space":   func(c *Config) { c.User = "a b" },
		"relative conf":     func(c *Config) { c.Conf = "ceph.conf" },
		"relative keyring":  func(c *Config) { c.Keyring = "k" },
		"bad secret uuid":   func(c *Config) { c.SecretUUID = "x" },
		"negative depth":    func(c *Config) { c.MaxCloneDepth = -1 },
		"tiny timeout":      func(c *Config) { c.Timeout = 1 },
		"relative rbd":      func(c *Config) { c.RBD = "bin/rbd" },
		"bad name":          func(c *Config) { c.Name = "a#b" },
	} {
		c := good
		edit(&c)
		err := c.withDefaults().validate()
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParsers(f *testing.F) {
	f.Add([]byte(`[{"image":"volume-a","size":1}]`))
	f.Add([]byte(`{"name":"x","size":1,"parent":{"pool":"p","image":"i","snapshot":"s"}}`))
	f.Add([]byte(`{"pools":[{"name":"kiln","stats":{"stored":1,"bytes_used":1,"max_avail":1}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if images, snaps, err := parseLs(b); err == nil {
			for name, size := range images {
				if name == "" || size < 0 {
					t.Fatalf("parseLs accepted %q %d", name, size)
				}
			}
			for _, ss := range snaps {
				for _, s := range ss {
					if s.Name == "" || s.Size < 0 {
						t.Fatalf("parseLs accepted snapshot %+v", s)
					}
				}
			}
		}
		if info, err := parseInfo(b); err == nil && (info.Name == "" || *info.Size < 0) {
			t.Fatalf("parseInfo accepted %+v", info)
		}
		if u, err := parseDF(b, "kiln"); err == nil && (u.MaxAvail < 0 || u.Stored < 0) {
			t.Fatalf("parseDF accepted %+v", u)
		}
		if mons, err := parseMonDump(b); err == nil {
			for _, m := range mons {
				if m.Port == "" || strings.ContainsAny(m.Host, "[]") {
					t.Fatalf("parseMonDump accepted %+v", m)
				}
			}
		}
	})
}

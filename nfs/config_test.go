package nfs_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	tooMany := map[string]string{}
	for i := range nfs.MaxCapabilities + 1 {
		tooMany[fmt.Sprintf("cap%d", i)] = "x"
	}
	tests := []struct {
		name string
		edit func(*nfs.Config)
		want string // in the error message
	}{
		{"empty name", func(c *nfs.Config) { c.Name = "" }, "pool name"},
		{"name with slash", func(c *nfs.Config) { c.Name = "a/b" }, "pool name"},
		{"name with pool separator", func(c *nfs.Config) { c.Name = "host#pool" }, "pool name"},
		{"name too long", func(c *nfs.Config) { c.Name = strings.Repeat("a", 64) }, "pool name"},
		{"backend with space", func(c *nfs.Config) { c.Backend = "my backend" }, "backend name"},
		{"backend starting with dot", func(c *nfs.Config) { c.Backend = ".hidden" }, "backend name"},
		{"empty dir", func(c *nfs.Config) { c.Dir = "" }, "dir is required"},
		{"relative dir", func(c *nfs.Config) { c.Dir = "pools/local" }, "not an absolute path"},
		{"negative capacity", func(c *nfs.Config) { c.CapacityGB = -1 }, "capacity_gb"},
		{"NaN capacity", func(c *nfs.Config) { c.CapacityGB = math.NaN() }, "capacity_gb"},
		{"infinite capacity", func(c *nfs.Config) { c.CapacityGB = math.Inf(1) }, "capacity_gb"},
		{"capacity beyond int64 bytes", func(c *nfs.Config) { c.CapacityGB = 1e10 }, "capacity_gb"},
		{"unknown provisioning", func(c *nfs.Config) { c.Provisioning = "sparse" }, "provisioning"},
		{"provisioning wrong case", func(c *nfs.Config) { c.Provisioning = "Thick" }, "provisioning"},
		{"negative reserved", func(c *nfs.Config) { c.ReservedPercentage = -1 }, "reserved_percentage"},
		{"reserved over 100", func(c *nfs.Config) { c.ReservedPercentage = 101 }, "reserved_percentage"},
		{"ratio below 1", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "0.5" }, "max_over_subscription_ratio"},
		{"ratio zero", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "0" }, "max_over_subscription_ratio"},
		{"ratio negative", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "-2" }, "max_over_subscription_ratio"},
		{"ratio not a number", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "lots" }, "max_over_subscription_ratio"},
		{"ratio NaN", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "NaN" }, "max_over_subscription_ratio"},
		{"ratio infinite", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "Inf" }, "max_over_subscription_ratio"},
		{"ratio with spaces", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = " 2" }, "max_over_subscription_ratio"},
		{"ratio AUTO", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "AUTO" }, "max_over_subscription_ratio"},
		{"empty capability key", func(c *nfs.Config) { c.Capabilities = map[string]string{"": "x"} }, "capability key"},
		{"capability key with space", func(c *nfs.Config) { c.Capabilities = map[string]string{"a b": "x"} }, "capability key"},
		{"capability key too long", func(c *nfs.Config) { c.Capabilities = map[string]string{strings.Repeat("k", 256): "x"} }, "capability key"},
		{"capability shadows driver fact", func(c *nfs.Config) { c.Capabilities = map[string]string{"storage_protocol": "iSCSI"} }, "reported by the driver"},
		{"capability shadows backend", func(c *nfs.Config) { c.Capabilities = map[string]string{"volume_backend_name": "x"} }, "reported by the driver"},
		{"capability shadows online extend", func(c *nfs.Config) { c.Capabilities = map[string]string{"online_extend_support": "False"} }, "reported by the driver"},
		{"capability value too long", func(c *nfs.Config) { c.Capabilities = map[string]string{"k": strings.Repeat("v", 256)} }, "value must be"},
		{"capability value with newline", func(c *nfs.Config) { c.Capabilities = map[string]string{"k": "a\nb"} }, "value must be"},
		{"capability value not UTF-8", func(c *nfs.Config) { c.Capabilities = map[string]string{"k": "\xff"} }, "value must be"},
		{"too many capabilities", func(c *nfs.Config) { c.Capabilities = tooMany }, "at most 64"},
		{"unknown snapshot mode", func(c *nfs.Config) { c.Snapshots = "overlay" }, "snapshots"},
		{"qcow2 volumes with copy snapshots", func(c *nfs.Config) { c.QCOW2Volumes, c.Snapshots = true, nfs.SnapshotsCopy }, "qcow2 volumes need qcow2 snapshots"},
		{"file mode without owner write", func(c *nfs.Config) { c.FileMode = 0o440 }, "file mode"},
		{"file mode with setuid", func(c *nfs.Config) { c.FileMode = 0o660 | os.ModeSetuid }, "file mode"},
		{"relative qemu-img", func(c *nfs.Config) { c.Snapshots, c.QemuImg = nfs.SnapshotsQCOW2, "bin/qemu-img" }, "qemu-img"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pool")
			cfg := nfs.Config{Name: "local", Dir: dir}
			tc.edit(&cfg)
			d, err := nfs.New(cfg)
			if !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("New: driver %v, err = %v; want ErrInvalid", d, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			// An invalid config changes nothing on disk.
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pool directory exists after a rejected config: %v", err)
			}
		})
	}
}

func TestNewReportsEveryInvalidField(t *testing.T) {
	_, err := nfs.New(nfs.Config{
		Name:                     "",
		Dir:                      "relative",
		Provisioning:             "both",
		ReservedPercentage:       200,
		MaxOverSubscriptionRatio: "0",
	})
	if !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, s := range []string{"pool name", "absolute", "provisioning", "reserved_percentage", "max_over_subscription_ratio"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestNewRejectsDirThatIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pool")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := nfs.New(nfs.Config{Name: "local", Dir: file})
	if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("err = %v, want ErrInvalid saying not a directory", err)
	}
}

func TestNewAcceptsValidConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*nfs.Config)
	}{
		{"defaults", func(*nfs.Config) {}},
		{"thick", func(c *nfs.Config) { c.Provisioning = "thick" }},
		{"explicit thin", func(c *nfs.Config) { c.Provisioning = "thin" }},
		{"fractional cap", func(c *nfs.Config) { c.CapacityGB = 0.5 }},
		{"reserved bounds", func(c *nfs.Config) { c.ReservedPercentage = 100 }},
		{"ratio auto", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "auto" }},
		{"ratio 1", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "1" }},
		{"ratio 1.5", func(c *nfs.Config) { c.MaxOverSubscriptionRatio = "1.5" }},
		{"backend", func(c *nfs.Config) { c.Backend = "nfs-dev_1.0" }},
		{"capabilities", func(c *nfs.Config) {
			c.Capabilities = map[string]string{"multiattach": "<is> True", "kiln:tier": "gold", "empty": ""}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nfs.Config{Name: "local", Dir: filepath.Join(t.TempDir(), "pool")}
			tc.edit(&cfg)
			if _, err := nfs.New(cfg); err != nil {
				t.Fatalf("New(%+v): %v", cfg, err)
			}
		})
	}
}

package lvm_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/lvm"
)

func TestConfigValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  lvm.Config
		want string
	}{
		"no vg":               {lvm.Config{Name: "p"}, "volume_group"},
		"vg option":           {lvm.Config{Name: "p", VG: "-x"}, "volume_group"},
		"vg path":             {lvm.Config{Name: "p", VG: "a/b"}, "volume_group"},
		"bad type":            {lvm.Config{Name: "p", VG: "v", Type: "lvm"}, "lvm_type"},
		"bad thin pool":       {lvm.Config{Name: "p", VG: "v", ThinPool: "a b"}, "thin_pool"},
		"bad clear":           {lvm.Config{Name: "p", VG: "v", VolumeClear: "shred"}, "volume_clear"},
		"bad snapshot pct":    {lvm.Config{Name: "p", VG: "v", SnapshotPercent: 101}, "snapshot_percent"},
		"bad reserved":        {lvm.Config{Name: "p", VG: "v", ReservedPercentage: -1}, "reserved_percentage"},
		"bad ratio":           {lvm.Config{Name: "p", VG: "v", MaxOverSubscriptionRatio: "0.5"}, "max_over_subscription_ratio"},
		"relative conf":       {lvm.Config{Name: "p", VG: "v", ConfFile: "lvm.conf"}, "lvm_conf"},
		"conf not lvm.conf":   {lvm.Config{Name: "p", VG: "v", ConfFile: "/etc/hosts"}, "lvm_conf"},
		"control in config":   {lvm.Config{Name: "p", VG: "v", ConfigOverride: "a\x00b"}, "lvm_config"},
		"relative binary":     {lvm.Config{Name: "p", VG: "v", Binary: "bin/lvm"}, "lvm_binary"},
		"bad pool name":       {lvm.Config{Name: "a b", VG: "v"}, "pool name"},
		"reserved capability": {lvm.Config{Name: "p", VG: "v", Capabilities: map[string]string{"driver": "x"}}, "capability"},
	} {
		_, err := lvm.New(context.Background(), tc.cfg)
		if !errors.Is(err, storage.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", name, err, tc.want)
		}
	}
}

// Package config reads Kiln's TOML configuration file (documented in
// docs/configuration.md). Decoding is strict: an unknown key is an error, so
// a typo never silently falls back to a default.
package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// File is the whole configuration file.
type File struct {
	LogLevel    string       `toml:"log_level"`
	LogFormat   string       `toml:"log_format"`
	Coordinator *Coordinator `toml:"coordinator"`
	Agent       *Agent       `toml:"agent"`
}

// Coordinator is the [coordinator] section.
type Coordinator struct {
	Name              string    `toml:"name"`
	DataDir           string    `toml:"data_dir"`
	RaftAddr          string    `toml:"raft_addr"`
	SerfAddr          string    `toml:"serf_addr"`
	APIAddr           string    `toml:"api_addr"`
	PublicURL         string    `toml:"public_url"`
	Join              []string  `toml:"join"`
	BootstrapExpect   int       `toml:"bootstrap_expect"`
	Timing            string    `toml:"timing"`
	DefaultZone       string    `toml:"default_zone"`
	MaxAttempts       int       `toml:"max_attempts"`
	AgentTimeout      Duration  `toml:"agent_timeout"`
	TaskTimeout       Duration  `toml:"task_timeout"`
	ReconcileInterval Duration  `toml:"reconcile_interval"`
	InventoryInterval Duration  `toml:"inventory_interval"`
	Placement         Placement `toml:"placement"`
}

// Placement is [coordinator.placement].
type Placement struct {
	Filters                           []string `toml:"filters"`
	Weighers                          []string `toml:"weighers"`
	CapacityWeightMultiplier          *float64 `toml:"capacity_weight_multiplier"`
	AllocatedCapacityWeightMultiplier *float64 `toml:"allocated_capacity_weight_multiplier"`
	VolumeNumberWeightMultiplier      *float64 `toml:"volume_number_weight_multiplier"`
	ChanceWeightMultiplier            *float64 `toml:"chance_weight_multiplier"`
}

// Agent is the [agent] section.
type Agent struct {
	Name          string   `toml:"name"`
	Zone          string   `toml:"zone"`
	DataDir       string   `toml:"data_dir"`
	RPCAddr       string   `toml:"rpc_addr"`
	SerfAddr      string   `toml:"serf_addr"`
	Join          []string `toml:"join"`
	Timing        string   `toml:"timing"`
	StatsInterval Duration `toml:"stats_interval"`
	Pools         []Pool   `toml:"pools"`
	// ISCSI is the agent's iSCSI target (tgtd), shared by its LVM pools.
	ISCSI *ISCSI `toml:"iscsi"`
	// NFSExport is the nfs-ganesha on this host that exports the pools
	// marked nfs_export = true.
	NFSExport *NFSExport `toml:"nfs_export"`
}

// NFSExport is the [agent.nfs_export] section: nfs-ganesha on the agent's
// host, managed over D-Bus (docs/configuration.md).
type NFSExport struct {
	// Server is the ip:port clients mount from (ganesha's NFS address).
	Server string `toml:"server"`
	// DBusAddress is the system bus ganesha is on ("" = the default).
	DBusAddress string `toml:"dbus_address"`
	// ExportDir holds the export files the agent writes for ganesha;
	// <data_dir>/ganesha-exports if empty.
	ExportDir  string `toml:"export_dir"`
	PseudoRoot string `toml:"pseudo_root"`
	Squash     string `toml:"squash"`
	// MountPointBase is shown in connection info (Cinder's
	// nfs_mount_point_base).
	MountPointBase string `toml:"mount_point_base"`
	// GaneshaLog is ganesha's log file, quoted in errors when set.
	GaneshaLog   string   `toml:"ganesha_log"`
	KeepInterval Duration `toml:"keep_interval"`
}

// ISCSI is the [agent.iscsi] section: the tgtd the agent exports through.
type ISCSI struct {
	// Portals are the ip:port addresses tgtd listens on and initiators
	// are given (Cinder's target_ip_address + target_port).
	Portals []string `toml:"portals"`
	// IQNPrefix starts every target name (Cinder's target_prefix).
	IQNPrefix string `toml:"iqn_prefix"`
	// Tgtadm is the tgtadm binary; ControlPort selects tgtd's control
	// socket (tgtadm -C N, 0 = the default socket).
	Tgtadm      string `toml:"tgtadm"`
	ControlPort int    `toml:"control_port"`
	// BackingStoreType is tgt's --bstype: rdwr (default) or aio.
	BackingStoreType string `toml:"bstype"`
	// KeepInterval is how often the agent checks that tgtd still has every
	// export (tgtd forgets them when it restarts); 10s if unset.
	KeepInterval Duration `toml:"keep_interval"`
}

// Pool is one [[agent.pools]] entry.
type Pool struct {
	Name                     string            `toml:"name"`
	Driver                   string            `toml:"driver"`
	Backend                  string            `toml:"backend"`
	Dir                      string            `toml:"dir"`
	CapacityGB               float64           `toml:"capacity_gb"`
	Provisioning             string            `toml:"provisioning"`
	ReservedPercentage       int               `toml:"reserved_percentage"`
	MaxOverSubscriptionRatio string            `toml:"max_over_subscription_ratio"`
	Capabilities             map[string]string `toml:"capabilities"`

	// NFSExport exports an nfs pool through [agent.nfs_export].
	NFSExport bool `toml:"nfs_export"`
	// NFS pools: qcow2 volume files (Cinder's nfs_qcow2_volumes), the
	// snapshot mode ("copy" or "qcow2"), the files' permission as an octal
	// string ("0660") and the qemu-img binary; see docs/backends/nfs.md.
	NFSQCOW2Volumes bool   `toml:"nfs_qcow2_volumes"`
	NFSSnapshots    string `toml:"nfs_snapshots"`
	FileMode        string `toml:"file_mode"`
	QemuImg         string `toml:"qemu_img"`
	// NFSShare is a remote share ("host:/path") the agent mounts for the
	// pool instead of a local dir, with mount -o NFSMountOptions under
	// NFSMountPointBase (Cinder's nfs_mount_options, nfs_mount_point_base).
	NFSShare          string `toml:"nfs_share"`
	NFSMountOptions   string `toml:"nfs_mount_options"`
	NFSMountPointBase string `toml:"nfs_mount_point_base"`

	// LVM pools (driver = "lvm"); see docs/backends/lvm.md.
	VolumeGroup        string `toml:"volume_group"`
	LVMType            string `toml:"lvm_type"`
	ThinPool           string `toml:"thin_pool"`
	VolumeClear        string `toml:"volume_clear"`
	VolumeClearSizeMiB int64  `toml:"volume_clear_size_mib"`
	SnapshotPercent    int    `toml:"snapshot_percent"`
	LVMConf            string `toml:"lvm_conf"`
	LVMConfig          string `toml:"lvm_config"`

	// Ceph RBD pools (driver = "rbd"), Cinder's option names; see
	// docs/backends/rbd.md.
	RBDPool                string   `toml:"rbd_pool"`
	RBDUser                string   `toml:"rbd_user"`
	RBDCephConf            string   `toml:"rbd_ceph_conf"`
	RBDKeyring             string   `toml:"rbd_keyring"`
	RBDClusterName         string   `toml:"rbd_cluster_name"`
	RBDSecretUUID          string   `toml:"rbd_secret_uuid"`
	RBDMaxCloneDepth       int      `toml:"rbd_max_clone_depth"`
	RBDFlattenFromSnapshot bool     `toml:"rbd_flatten_volume_from_snapshot"`
	RBDTimeout             Duration `toml:"rbd_timeout"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", b)
	}
	d.Duration = v
	return nil
}

// Load reads and strictly decodes a configuration file. An empty path
// returns an empty File.
func Load(path string) (*File, error) {
	f := &File{}
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// errorWithPosition is the parser's message with the offending line shown.
// toml v1.6.0's ErrorWithPosition panics on some inputs (an unterminated
// string at the end of the text, `"\`, index -1; found by FuzzParse): then
// the plain message, which also names the line, is used.
func errorWithPosition(perr toml.ParseError) (msg string) {
	defer func() {
		if recover() != nil {
			msg = perr.Error()
		}
	}()
	return perr.ErrorWithPosition()
}

// Parse decodes configuration text; name is used in error messages.
func Parse(data []byte, name string) (*File, error) {
	f := &File{}
	md, err := toml.Decode(string(data), f)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("config %s: %s", name, errorWithPosition(perr))
		}
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("config %s: unknown key(s): %s", name, strings.Join(keys, ", "))
	}
	switch f.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return nil, fmt.Errorf("config %s: log_level %q must be debug, info, warn or error", name, f.LogLevel)
	}
	switch f.LogFormat {
	case "", "text", "json":
	default:
		return nil, fmt.Errorf("config %s: log_format %q must be text or json", name, f.LogFormat)
	}
	return f, nil
}

package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kilnstore/kiln/agent"
	"github.com/kilnstore/kiln/coordinator"
	"github.com/kilnstore/kiln/internal/config"
	"github.com/kilnstore/kiln/internal/ganesha"
	"github.com/kilnstore/kiln/internal/tgt"
	"github.com/kilnstore/kiln/lvm"
	"github.com/kilnstore/kiln/nfs"
	"github.com/kilnstore/kiln/placement"
	"github.com/kilnstore/kiln/rbd"
)

// Default ports: the API on Cinder's 8776, the rest next to it.
const (
	DefaultAPIAddr        = "127.0.0.1:8776"
	DefaultRaftAddr       = "127.0.0.1:8778"
	DefaultSerfAddr       = "127.0.0.1:8779"
	DefaultAgentRPCAddr   = "127.0.0.1:8780"
	DefaultAgentSerfAddr  = "127.0.0.1:8781"
	defaultCoordinatorDir = "/var/lib/kiln/coordinator"
	defaultAgentDir       = "/var/lib/kiln/agent"
)

type commonFlags struct {
	config    string
	logLevel  string
	logFormat string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "path of the TOML configuration file (docs/configuration.md)")
	fs.StringVar(&c.logLevel, "log-level", "", "log level: debug, info, warn, error (default info)")
	fs.StringVar(&c.logFormat, "log-format", "", "log format: text or json (default text)")
}

// load reads the file and applies the logging flags over it.
func (c *commonFlags) load(set map[string]bool) (*config.File, error) {
	f, err := config.Load(c.config)
	if err != nil {
		return nil, err
	}
	if set["log-level"] {
		f.LogLevel = c.logLevel
	}
	if set["log-format"] {
		f.LogFormat = c.logFormat
	}
	return f, nil
}

type coordFlags struct {
	name, dataDir, raftAddr, serfAddr, apiAddr, publicURL, timing string
	join                                                          listFlag
	expect                                                        int
}

func (c *coordFlags) register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&c.name, "name", host, "unique node name (Raft ID, Serf name)")
	fs.StringVar(&c.dataDir, "data-dir", defaultCoordinatorDir, "directory for Raft log, stable store and snapshots")
	fs.StringVar(&c.raftAddr, "raft-addr", DefaultRaftAddr, "host:port of the Raft transport")
	fs.StringVar(&c.serfAddr, "serf-addr", DefaultSerfAddr, "host:port Serf binds")
	fs.StringVar(&c.apiAddr, "api-addr", DefaultAPIAddr, "host:port of the Cinder v3 API")
	fs.StringVar(&c.publicURL, "public-url", "", "base URL clients use, for links (default http://<api-addr>)")
	fs.StringVar(&c.timing, "timing", "lan", "Raft and Serf timing: lan or local")
	fs.Var(&c.join, "join", "Serf address(es) to join, comma-separated or repeated")
	fs.IntVar(&c.expect, "bootstrap-expect", 1, "number of coordinators forming the cluster (1, 3 or 5)")
}

// override sets *dst to the flag's value when the flag was given or the
// file left the key empty (so flag defaults fill what the file omits).
func override(set map[string]bool, flag string, dst *string, v string) {
	if set[flag] || *dst == "" {
		*dst = v
	}
}

// apply overlays set flags on the file section (flags win).
func (c *coordFlags) apply(f *config.Coordinator, set map[string]bool) {
	str := func(flag string, dst *string, v string) { override(set, flag, dst, v) }
	str("name", &f.Name, c.name)
	str("data-dir", &f.DataDir, c.dataDir)
	str("raft-addr", &f.RaftAddr, c.raftAddr)
	str("serf-addr", &f.SerfAddr, c.serfAddr)
	str("api-addr", &f.APIAddr, c.apiAddr)
	str("public-url", &f.PublicURL, c.publicURL)
	str("timing", &f.Timing, c.timing)
	if set["join"] {
		f.Join = c.join
	}
	if set["bootstrap-expect"] || f.BootstrapExpect == 0 {
		f.BootstrapExpect = c.expect
	}
}

func coordinatorConfig(f *config.Coordinator, version string) (coordinator.Config, error) {
	pc := placement.DefaultConfig()
	if len(f.Placement.Filters) > 0 {
		pc.Filters = f.Placement.Filters
	}
	if len(f.Placement.Weighers) > 0 {
		pc.Weighers = f.Placement.Weighers
	}
	for _, m := range []struct {
		src *float64
		dst *float64
	}{
		{f.Placement.CapacityWeightMultiplier, &pc.CapacityWeightMultiplier},
		{f.Placement.AllocatedCapacityWeightMultiplier, &pc.AllocatedCapacityWeightMultiplier},
		{f.Placement.VolumeNumberWeightMultiplier, &pc.VolumeNumberWeightMultiplier},
		{f.Placement.ChanceWeightMultiplier, &pc.ChanceWeightMultiplier},
	} {
		if m.src != nil {
			*m.dst = *m.src
		}
	}
	if _, err := placement.New(pc); err != nil {
		return coordinator.Config{}, fmt.Errorf("[coordinator.placement]: %w", err)
	}
	return coordinator.Config{
		NodeName: f.Name, DataDir: f.DataDir, RaftAddr: f.RaftAddr, SerfAddr: f.SerfAddr,
		Join: f.Join, APIAddr: f.APIAddr, PublicURL: f.PublicURL, BootstrapExpect: f.BootstrapExpect,
		Timing: f.Timing, DefaultZone: f.DefaultZone, Placement: pc, MaxAttempts: f.MaxAttempts,
		AgentTimeout: f.AgentTimeout.Duration, TaskTimeout: f.TaskTimeout.Duration,
		ReconcileInterval: f.ReconcileInterval.Duration, InventoryInterval: f.InventoryInterval.Duration, Version: version,
	}, nil
}

// setup parses a subcommand's flags, loads the config file, lets apply
// overlay the flags, and builds the logger.
func setup(name, summary string, args []string, stdout, stderr io.Writer,
	register func(*flag.FlagSet), apply func(*config.File, map[string]bool)) (*config.File, *slog.Logger, error) {
	fs := newFlagSet(name, summary, stdout, stderr)
	var cf commonFlags
	cf.register(fs)
	register(fs)
	if err := parse(fs, args, stdout); err != nil {
		return nil, nil, err
	}
	set := setFlags(fs)
	file, err := cf.load(set)
	if err != nil {
		return nil, nil, err
	}
	apply(file, set)
	log, err := newLogger(stderr, file.LogLevel, file.LogFormat)
	if err != nil {
		return nil, nil, err
	}
	return file, log, nil
}

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var co coordFlags
	file, log, err := setup("coordinator", "Runs a coordinator: Raft-replicated state, the Cinder v3 API and, on the\nleader, placement and dispatch to agents. Flags override the config file.",
		args, stdout, stderr, co.register, func(f *config.File, set map[string]bool) {
			if f.Coordinator == nil {
				f.Coordinator = &config.Coordinator{}
			}
			co.apply(f.Coordinator, set)
		})
	if err != nil {
		return err
	}
	cfg, err := coordinatorConfig(file.Coordinator, Version)
	if err != nil {
		return err
	}
	cfg.Logger = log
	srv, err := coordinator.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kiln coordinator %s: API on %s/v3/\n", cfg.NodeName, "http://"+srv.APIAddr())
	<-ctx.Done()
	log.Info("shutting down")
	srv.Shutdown()
	return nil
}

type agentFlags struct {
	name, zone, dataDir, rpcAddr, serfAddr, timing string
	join                                           listFlag
	poolDir                                        string
	poolCapacity                                   float64
}

func (a *agentFlags) register(fs *flag.FlagSet, withPool bool) {
	host, _ := os.Hostname()
	fs.StringVar(&a.name, "name", host, "unique agent name (the host part of pool names)")
	fs.StringVar(&a.zone, "zone", "nova", "availability zone of this agent's pools")
	fs.StringVar(&a.dataDir, "data-dir", defaultAgentDir, "directory for the agent's Serf snapshot")
	fs.StringVar(&a.rpcAddr, "rpc-addr", DefaultAgentRPCAddr, "host:port of the agent RPC endpoint")
	fs.StringVar(&a.serfAddr, "serf-addr", DefaultAgentSerfAddr, "host:port Serf binds")
	fs.StringVar(&a.timing, "timing", "lan", "Serf timing: lan or local")
	fs.Var(&a.join, "join", "Serf address(es) of coordinators or agents to join, comma-separated or repeated")
	if withPool {
		fs.StringVar(&a.poolDir, "pool-dir", "", "add a local-directory pool named \"local\" at this path")
		fs.Float64Var(&a.poolCapacity, "pool-capacity-gb", 0, "cap the --pool-dir pool's capacity in GiB (0 = file system size)")
	}
}

func (a *agentFlags) apply(f *config.Agent, set map[string]bool) {
	str := func(flag string, dst *string, v string) { override(set, flag, dst, v) }
	str("name", &f.Name, a.name)
	str("zone", &f.Zone, a.zone)
	str("data-dir", &f.DataDir, a.dataDir)
	str("rpc-addr", &f.RPCAddr, a.rpcAddr)
	str("serf-addr", &f.SerfAddr, a.serfAddr)
	str("timing", &f.Timing, a.timing)
	if set["join"] {
		f.Join = a.join
	}
	if set["pool-dir"] {
		f.Pools = append(f.Pools, config.Pool{Name: "local", Driver: "nfs", Dir: a.poolDir, CapacityGB: a.poolCapacity})
	}
}

// drivers builds one driver per configured pool.
// drivers builds an agent's pools, and the background work they need (the
// iSCSI export keeper when LVM pools export through tgtd).
func drivers(ctx context.Context, f *config.Agent, log *slog.Logger) ([]agent.Driver, []func(context.Context), error) {
	var (
		out        []agent.Driver
		background []func(context.Context)
		exporter   lvm.Exporter
		locks      = lvm.NewLocks()
	)
	if f.ISCSI != nil {
		m, err := tgt.New(tgt.Config{
			Tgtadm: f.ISCSI.Tgtadm, ControlPort: f.ISCSI.ControlPort, Portals: f.ISCSI.Portals,
			IQNPrefix: f.ISCSI.IQNPrefix, BackingStoreType: f.ISCSI.BackingStoreType,
		}, log)
		if err != nil {
			return nil, nil, fmt.Errorf("[agent.iscsi]: %w", err)
		}
		if f.DataDir == "" {
			return nil, nil, fmt.Errorf("[agent.iscsi]: the agent needs data_dir to keep its export records")
		}
		store, err := tgt.OpenStore(filepath.Join(f.DataDir, "iscsi-exports.json"))
		if err != nil {
			return nil, nil, fmt.Errorf("[agent.iscsi]: %w", err)
		}
		exporter = tgt.NewVolumes(m, store)
		background = append(background, tgt.NewKeeper(m, store.List, f.ISCSI.KeepInterval.Duration).Run)
	}
	var nfsExporter nfs.Exporter
	if f.NFSExport != nil {
		x, keep, err := ganeshaExporter(f.NFSExport, f.DataDir, log)
		if err != nil {
			return nil, nil, fmt.Errorf("[agent.nfs_export]: %w", err)
		}
		nfsExporter = x
		background = append(background, keep)
	}
	for i, p := range f.Pools {
		where := fmt.Sprintf("[[agent.pools]] #%d (%s)", i+1, p.Name)
		switch p.Driver {
		case "nfs", "":
			cfg := nfs.Config{
				Name: p.Name, Backend: p.Backend, Dir: p.Dir, CapacityGB: p.CapacityGB,
				Provisioning: p.Provisioning, ReservedPercentage: p.ReservedPercentage,
				MaxOverSubscriptionRatio: p.MaxOverSubscriptionRatio, Capabilities: p.Capabilities,
			}
			cfg.QCOW2Volumes, cfg.Snapshots, cfg.QemuImg, cfg.Logger = p.NFSQCOW2Volumes, p.NFSSnapshots, p.QemuImg, log
			if p.NFSShare != "" {
				cfg.Share = &nfs.ShareConfig{Share: p.NFSShare, MountOptions: p.NFSMountOptions, MountPointBase: p.NFSMountPointBase}
			} else if p.NFSMountOptions != "" || p.NFSMountPointBase != "" {
				return nil, nil, fmt.Errorf("%s: nfs_mount_options and nfs_mount_point_base need nfs_share", where)
			}
			if p.FileMode != "" {
				mode, err := strconv.ParseUint(p.FileMode, 8, 32)
				if err != nil || mode == 0 {
					return nil, nil, fmt.Errorf("%s: file_mode %q must be an octal permission such as \"0660\"", where, p.FileMode)
				}
				cfg.FileMode = os.FileMode(mode)
			}
			if p.NFSExport {
				if nfsExporter == nil {
					return nil, nil, fmt.Errorf("%s: nfs_export = true needs an [agent.nfs_export] section", where)
				}
				cfg.Exporter = nfsExporter
			}
			d, err := nfs.New(cfg)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			out = append(out, d)
		case "lvm":
			if exporter == nil {
				log.Warn("LVM pool without [agent.iscsi]: its volumes cannot be attached", "pool", p.Name)
			}
			d, err := lvm.New(ctx, lvm.Config{
				Name: p.Name, Backend: p.Backend, VG: p.VolumeGroup, Type: p.LVMType, ThinPool: p.ThinPool,
				ReservedPercentage: p.ReservedPercentage, MaxOverSubscriptionRatio: p.MaxOverSubscriptionRatio,
				Capabilities: p.Capabilities, SnapshotPercent: p.SnapshotPercent,
				VolumeClear: p.VolumeClear, VolumeClearSizeMiB: p.VolumeClearSizeMiB,
				ConfFile: p.LVMConf, ConfigOverride: p.LVMConfig,
				Exporter: exporter, Locks: locks, Logger: log,
			})
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			out = append(out, d)
		case "rbd":
			d, err := rbd.New(rbd.Config{
				Name: p.Name, Backend: p.Backend, Pool: p.RBDPool, User: p.RBDUser, Conf: p.RBDCephConf,
				Keyring: p.RBDKeyring, ClusterName: p.RBDClusterName, SecretUUID: p.RBDSecretUUID,
				MaxCloneDepth: p.RBDMaxCloneDepth, FlattenFromSnapshot: p.RBDFlattenFromSnapshot,
				Timeout:            p.RBDTimeout.Duration,
				ReservedPercentage: p.ReservedPercentage, MaxOverSubscriptionRatio: p.MaxOverSubscriptionRatio,
				Capabilities: p.Capabilities,
			}, log)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			out = append(out, d)
		default:
			return nil, nil, fmt.Errorf("%s: unknown driver %q (want nfs, lvm or rbd)", where, p.Driver)
		}
	}
	return out, background, nil
}

// ganeshaExporter connects to nfs-ganesha over D-Bus and returns the NFS
// pools' exporter and the keeper that re-adds exports when ganesha
// restarts.
func ganeshaExporter(c *config.NFSExport, dataDir string, log *slog.Logger) (nfs.Exporter, func(context.Context), error) {
	server, err := netip.ParseAddrPort(c.Server)
	if err != nil {
		return nil, nil, fmt.Errorf("server %q must be the ip:port clients mount from: %w", c.Server, err)
	}
	if dataDir == "" {
		return nil, nil, fmt.Errorf("the agent needs data_dir to keep its export records")
	}
	exportDir := c.ExportDir
	if exportDir == "" {
		exportDir = filepath.Join(dataDir, "ganesha-exports")
	}
	m, err := ganesha.New(ganesha.Config{
		Bus:       ganesha.BusConfig{Address: c.DBusAddress, GaneshaLog: c.GaneshaLog},
		ExportDir: exportDir, PseudoRoot: c.PseudoRoot, Squash: c.Squash,
	}, log)
	if err != nil {
		return nil, nil, err
	}
	store, err := ganesha.OpenStore(filepath.Join(dataDir, "nfs-exports.json"), ganesha.IDRange{})
	if err != nil {
		return nil, nil, err
	}
	keep := ganesha.NewKeeper(m, store.List, c.KeepInterval.Duration).Run
	return ganesha.VolumeExporter{Volumes: ganesha.NewVolumes(m, store), Server: server, MountPointBase: c.MountPointBase}, keep, nil
}

func agentConfig(ctx context.Context, f *config.Agent, version string, log *slog.Logger) (agent.Config, error) {
	if f.DataDir != "" {
		if err := os.MkdirAll(f.DataDir, 0o750); err != nil {
			return agent.Config{}, fmt.Errorf("agent data dir: %w", err)
		}
	}
	ds, background, err := drivers(ctx, f, log)
	if err != nil {
		return agent.Config{}, err
	}
	return agent.Config{
		Name: f.Name, Zone: f.Zone, RPCAddr: f.RPCAddr, SerfAddr: f.SerfAddr, Join: f.Join,
		DataDir: f.DataDir, Timing: f.Timing, StatsInterval: f.StatsInterval.Duration,
		Drivers: ds, Background: background, Version: version, Logger: log,
	}, nil
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var af agentFlags
	file, log, err := setup("agent", "Runs a storage agent: serves its pools to the coordinators and publishes\ntheir capacity over Serf. Pools come from [[agent.pools]] in the config file\nor --pool-dir. Flags override the config file.",
		args, stdout, stderr, func(fs *flag.FlagSet) { af.register(fs, true) }, func(f *config.File, set map[string]bool) {
			if f.Agent == nil {
				f.Agent = &config.Agent{}
			}
			af.apply(f.Agent, set)
		})
	if err != nil {
		return err
	}
	cfg, err := agentConfig(ctx, file.Agent, Version, log)
	if err != nil {
		return err
	}
	a, err := agent.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kiln agent %s: RPC on %s, Serf on %s\n", cfg.Name, a.RPCAddr(), a.SerfAddr())
	<-ctx.Done()
	log.Info("shutting down")
	a.Leave()
	return nil
}

// defaultDevDir is ~/.local/share/kiln-dev, or ./kiln-data without a home.
func defaultDevDir() string {
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "share", "kiln-dev")
	}
	return "kiln-data"
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var dataDir, apiAddr, project string
	var capGB float64
	_, log, err := setup("dev", "Runs one coordinator and one agent in one process with a local-directory\npool: zero setup. State persists in --data-dir across restarts.",
		args, stdout, stderr, func(fs *flag.FlagSet) {
			fs.StringVar(&dataDir, "data-dir", defaultDevDir(), "directory for Raft state and the pool's volume files")
			fs.StringVar(&apiAddr, "api-addr", DefaultAPIAddr, "host:port of the Cinder v3 API")
			fs.Float64Var(&capGB, "pool-capacity-gb", 0, "cap the local pool's capacity in GiB (0 = file system size)")
			fs.StringVar(&project, "project", "demo", "project used in the printed example commands")
		}, func(*config.File, map[string]bool) {})
	if err != nil {
		return err
	}
	d, err := StartDev(DevConfig{DataDir: dataDir, APIAddr: apiAddr, PoolCapacityGB: capGB, Logger: log})
	if err != nil {
		return err
	}
	defer d.Stop()
	if err := d.WaitReady(ctx, 30*time.Second); err != nil {
		return err
	}
	url := "http://" + d.Coordinator.APIAddr()
	fmt.Fprintf(stdout, `Kiln dev is running (data in %s).
  Cinder v3 API: %s/v3/
  Try:  cinder --os-auth-type noauth --os-user-id %[3]s --os-project-id %[3]s --os-endpoint %[2]s/v3/%[3]s create --name first 1
        curl -s -H 'X-Auth-Token: %[3]s:%[3]s' %[2]s/v3/%[3]s/volumes/detail
Press Ctrl-C to stop.
`, dataDir, url, project)
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseFull(t *testing.T) {
	f, err := Parse([]byte(`
log_level = "debug"
[coordinator]
name = "c1"
data_dir = "/var/lib/kiln"
raft_addr = "127.0.0.1:8778"
bootstrap_expect = 3
join = ["127.0.0.2:8779"]
task_timeout = "5m"
[coordinator.placement]
weighers = ["CapacityWeigher", "VolumeNumberWeigher"]
capacity_weight_multiplier = -1.0
[agent]
name = "a1"
stats_interval = "10s"
[[agent.pools]]
name = "local"
driver = "nfs"
dir = "/srv/kiln"
capacity_gb = 100
[agent.pools.capabilities]
tier = "gold"
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	if f.Coordinator.Name != "c1" || f.Coordinator.BootstrapExpect != 3 || f.Coordinator.TaskTimeout.Duration != 5*time.Minute {
		t.Fatalf("coordinator = %+v", f.Coordinator)
	}
	if m := f.Coordinator.Placement.CapacityWeightMultiplier; m == nil || *m != -1 {
		t.Fatalf("multiplier = %v", m)
	}
	if len(f.Agent.Pools) != 1 || f.Agent.Pools[0].Capabilities["tier"] != "gold" || f.Agent.StatsInterval.Duration != 10*time.Second {
		t.Fatalf("agent = %+v", f.Agent)
	}
}

func TestParseRejects(t *testing.T) {
	for name, tc := range map[string]struct{ text, want string }{
		"unknown key":     {"[coordinator]\nnmae = \"x\"", "unknown key(s): coordinator.nmae"},
		"syntax":          {"[coordinator\nname=1", "config test"},
		"wrong type":      {"[coordinator]\nbootstrap_expect = \"three\"", "bootstrap_expect"},
		"bad duration":    {"[coordinator]\ntask_timeout = \"soon\"", "duration"},
		"negative dur":    {"[coordinator]\ntask_timeout = \"-1s\"", "negative"},
		"bad log level":   {"log_level = \"loud\"", "log_level"},
		"bad log format":  {"log_format = \"xml\"", "log_format"},
		"unknown section": {"[scheduler]\nx = 1", "unknown key(s)"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "test")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want containing %q", err, tc.want)
			}
		})
	}
}

// FuzzParse feeds arbitrary text to the strict decoder: it must return a
// File or an error, never panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("[coordinator]\nname = \"c1\"\nbootstrap_expect = 3\n"))
	f.Add([]byte("[[agent.pools]]\nname = \"p\"\ncapacity_gb = 1e309\n"))
	f.Add([]byte("log_level = \"debug\"\n[agent]\nstats_interval = \"-5s\"\n"))
	f.Add([]byte("[coordinator.placement]\ncapacity_weight_multiplier = nan\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "fuzz")
		if err == nil && file == nil {
			t.Fatal("nil file without error")
		}
	})
}

package tgt

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// testdata/targets_*.txt are real `tgtadm --lld iscsi --mode target --op
// show` output of tgt 1.0.85 (Debian 12), captured with qemu-io sessions
// logged in.
func TestParseTargetsRealOutput(t *testing.T) {
	controller := LogicalUnit{Number: 0, Type: "controller", BackingStoreType: "null", BackingStorePath: "None"}
	got, err := parseTargets(readTestdata(t, "targets_rich.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{
			TID:   1,
			Name:  "iqn.2010-10.org.openstack:volume-11111111-2222-4333-8444-555555555555",
			State: "ready",
			Sessions: []Session{{Nexus: 4, Initiator: "iqn.1993-08.org.debian:01:abcdef123456", Alias: "none",
				Addresses: []string{"127.0.0.1"}}},
			LUNs: []LogicalUnit{controller,
				{Number: 1, Type: "disk", BackingStoreType: "rdwr", BackingStorePath: "/tmp/tgtx/vol1.img"}},
			Accounts: []string{"kiln-0123456789"},
			ACL:      []string{"iqn.1993-08.org.debian:01:abcdef123456"},
		},
		{
			TID:   2,
			Name:  "iqn.2010-10.org.openstack:volume-empty",
			State: "ready",
			LUNs:  []LogicalUnit{controller},
		},
		{
			TID:   7,
			Name:  "iqn.2003-01.org.example:multi",
			State: "ready",
			Sessions: []Session{
				{Nexus: 3, Initiator: "iqn.2024-01.com.example:h1", Alias: "none", Addresses: []string{"127.0.0.1"}},
				{Nexus: 5, Initiator: "iqn.2024-01.com.example:h2", Alias: "none", Addresses: []string{"127.0.0.1"}},
			},
			LUNs: []LogicalUnit{controller,
				{Number: 1, Type: "disk", BackingStoreType: "aio", BackingStorePath: "/tmp/tgtx/vol2.img"},
				{Number: 2, Type: "disk", BackingStoreType: "rdwr", BackingStorePath: "/tmp/tgtx/vol 3.img"}},
			Accounts:        []string{"in2"},
			OutgoingAccount: "out1",
			ACL:             []string{"ALL", "192.168.0.0/24", "iqn.1991-05.com.microsoft:win-host.example.com"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseTargets:\n got %+v\nwant %+v", got, want)
	}
	if l, ok := got[2].LUN(2); !ok || l.BackingStorePath != "/tmp/tgtx/vol 3.img" {
		t.Errorf("LUN(2) = %+v, %v", l, ok)
	}
	if _, ok := got[1].LUN(1); ok {
		t.Error("LUN(1) of a target without it reported present")
	}
}

func TestParseTargetsSessionAndEmpty(t *testing.T) {
	got, err := parseTargets(readTestdata(t, "targets_session.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Sessions) != 1 || got[0].Sessions[0].Initiator != "iqn.2024-01.com.example:host1" ||
		len(got[0].LUNs) != 2 || got[0].LUNs[1].BackingStorePath != "/tmp/tgtx/vol1.img" {
		t.Errorf("parseTargets(session) = %+v", got)
	}
	for _, in := range []string{readTestdata(t, "targets_empty.txt"), "\n", "  \n\n"} {
		got, err := parseTargets(in)
		if err != nil || len(got) != 0 {
			t.Errorf("parseTargets(%q) = %+v, %v; want none", in, got, err)
		}
	}
}

func TestParseTargetsIndentationNotText(t *testing.T) {
	// Entries that read like headers stay entries.
	in := "Target 3: iqn.2010-10.org.openstack:volume-x\n" +
		"    Account information:\n" +
		"        LUN information:\n" +
		"        ACL information: (outgoing)\n" +
		"    ACL information:\n" +
		"        Target 4: nope\n" +
		"    Something new:\n" +
		"        LUN: notanumber\n"
	got, err := parseTargets(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{TID: 3, Name: "iqn.2010-10.org.openstack:volume-x",
		Accounts: []string{"LUN information:"}, OutgoingAccount: "ACL information:", ACL: []string{"Target 4: nope"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestParseTargetsRejects(t *testing.T) {
	for _, in := range []string{
		"    LUN information:\n",          // before any target
		"Target x: iqn.x\n",               // bad tid
		"Target 0: iqn.x\n",               // tid 0
		"Target 1:\n",                     // no name
		"Target 1: a\nTarget 1: b\n",      // duplicate
		"tgtadm: can't find the target\n", // an error message
		"Target 1: a\n    LUN information:\n        LUN: x\n",
		"Target 1: a\n    I_T nexus information:\n        I_T nexus: -1\n",
	} {
		if got, err := parseTargets(in); err == nil {
			t.Errorf("parseTargets(%q) = %+v, want an error", in, got)
		}
	}
}

func TestParsePortals(t *testing.T) {
	tests := []struct {
		file string
		want []netip.AddrPort
	}{
		{"portals_ok.txt", []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3261")}},
		// What a tgtd that could not bind its portal reports (real output).
		{"portals_fallback.txt", []netip.AddrPort{netip.MustParseAddrPort("[::]:3260"), netip.MustParseAddrPort("0.0.0.0:3260")}},
	}
	for _, tt := range tests {
		got, err := parsePortals(readTestdata(t, tt.file))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePortals(%s) = %v, %v; want %v", tt.file, got, err, tt.want)
		}
	}
	for _, bad := range []string{"Portal: nope,1\n", "127.0.0.1:3260,1\n", "Portal: 127.0.0.1,1\n"} {
		if got, err := parsePortals(bad); err == nil {
			t.Errorf("parsePortals(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseAccounts(t *testing.T) {
	got := parseAccounts("Account list:\n    out1\n    in2\n    we ird\n")
	if want := []string{"out1", "in2", "we ird"}; !reflect.DeepEqual(got, want) {
		t.Errorf("parseAccounts = %q, want %q", got, want)
	}
	if got := parseAccounts(""); len(got) != 0 {
		t.Errorf("parseAccounts(\"\") = %q", got)
	}
}

func FuzzParseTargets(f *testing.F) {
	for _, name := range []string{"targets_rich.txt", "targets_session.txt", "targets_empty.txt"} {
		f.Add(readTestdata(f, name))
	}
	f.Add("Target 1: a\n    LUN information:\n        LUN: 1\n            Backing store path: /x\n")
	f.Add("Target 1: a\n    I_T nexus information:\n            Initiator: x\n                IP Address: y\n")
	f.Fuzz(func(t *testing.T, in string) {
		targets, err := parseTargets(in)
		if err != nil {
			return
		}
		seen := map[int]bool{}
		for _, tg := range targets {
			if tg.TID < 1 || seen[tg.TID] || tg.Name == "" || strings.Contains(tg.Name, "\n") {
				t.Fatalf("parseTargets(%q) returned target %+v", in, tg)
			}
			seen[tg.TID] = true
		}
		// Portal and account output parsing must not panic on it either.
		_, _ = parsePortals(in)
		_ = parseAccounts(in)
	})
}

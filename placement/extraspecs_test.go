package placement

import (
	"math"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// The expected results below were checked against Cinder's
// extra_specs_ops.match running under CPython 3.
func TestMatchOp(t *testing.T) {
	tests := []struct {
		value, req string
		want       bool
	}{
		// No operator: the whole requirement must equal the value.
		{"iSCSI", "iSCSI", true},
		{"iSCSI", "iscsi", false},
		{"lvm", "lvm ", false}, // not trimmed
		{"a b", "a b", true},
		{"", "", true},
		{"x", "", false},
		{"", "   ", false}, // blank: still a literal compare
		{"   ", "   ", true},
		{"1", "1.0", false},
		{"<bogus> x", "<bogus> x", true}, // unknown operator: literal
		{"True", "True", true},

		// "=" is numeric >=.
		{"10", "= 10", true},
		{"11", "= 10", true},
		{"9", "= 10", false},
		{"10.5", "= 10", true},
		{"1e2", "= 99", true},
		{"abc", "= 10", false},
		{"10", "= abc", false},
		{"10", "=", false}, // no operand
		{" 12 ", "= 10", true},
		{"1_000", "= 999", true}, // Python float() accepts underscores
		{"0x10", "= 1", false},   // ...but not hex
		{"inf", "= 1e308", true},
		{"nan", "= 0", false},
		{"10", "= 5 20", true}, // only the first operand counts
		{"10", "=\t11", false},

		// ">=" and "<=".
		{"10", ">= 10", true},
		{"9.99", ">= 10", false},
		{"x", ">= 1", false},
		{"10", "<= 10", true},
		{"10.01", "<= 10", false},
		{"-Infinity", "<= -1e308", true},
		{"x", "<= 1", false},

		// "==" and "!=" are numeric.
		{"10", "== 10", true},
		{"10.0", "== 10", true}, // numeric, unlike s==
		{"1e1", "== 10", true},
		{"10", "== 11", false},
		{"abc", "== abc", false}, // not numbers: false, even if equal strings
		{"nan", "== nan", false},
		{"10", "!= 11", true},
		{"10", "!= 10.0", false},
		{"abc", "!= 1", false}, // not a number: false, not "different"
		{"nan", "!= nan", true},

		// String comparisons.
		{"abc", "s== abc", true},
		{"abc", "s== abd", false},
		{"10.0", "s== 10", false},
		{"abc", "s!= abd", true},
		{"abc", "s!= abc", false},
		{"abc", "s< abd", true},
		{"abd", "s< abc", false},
		{"abc", "s< abc", false},
		{"abc", "s<= abc", true},
		{"abd", "s<= abc", false},
		{"b", "s> a", true},
		{"a", "s> b", false},
		{"10", "s> 9", false}, // string order, not numeric
		{"b", "s>= b", true},
		{"a", "s>= b", false},
		{"a", "s==", false}, // no operand

		// <in> is substring.
		{"iSCSI,FC", "<in> FC", true},
		{"iSCSI", "<in> FC", false},
		{"abc", "<in> abc", true},
		{"ab", "<in> abc", false},
		{"", "<in> a", false},

		// <is> compares oslo bool_from_string of both sides.
		{"True", "<is> True", true},
		{"true", "<is> True", true},
		{"  YES ", "<is> True", true},
		{"1", "<is> true", true},
		{"on", "<is> True", true},
		{"t", "<is> True", true},
		{"y", "<is> True", true},
		{"False", "<is> True", false},
		{"False", "<is> False", true},
		{"garbage", "<is> False", true}, // unrecognised is False
		{"", "<is> False", true},
		{"True", "<is> False", false},
		{"True", "<is> garbage", false}, // operand unrecognised: False
		{"True", "<is>", false},         // no operand
		{"2", "<is> True", false},
		{"\u0130", "<is> False", true},      // non-ASCII never reads as true
		{"\x1ctrue\x1c", "<is> True", true}, // str.strip() strips 0x1c

		// <or> matches any of several options.
		{"nfs", "<or> iSCSI <or> nfs <or> rbd", true},
		{"rbd", "<or> iSCSI <or> nfs <or> rbd", true},
		{"iSCSI", "<or> iSCSI", true},
		{"FC", "<or> iSCSI <or> nfs <or> rbd", false},
		{"<or>", "<or> iSCSI <or> nfs", false}, // separators are not options
		{"b", "<or> a b c", false},             // every other word is an option
		{"c", "<or> a b c", true},
		{"x", "<or>", false}, // Cinder raises IndexError
		{"a", "<or> a <or>", true},
		{"NFS", "<or> nfs", false}, // case matters

		// Whitespace as Python's str.split() sees it.
		{"10", "=\u00a010", true},
		{"10", "=\x1c10", true},
		{"10", "=\u200310", true},
		{"10", "\t= 10\n", true},
	}
	for _, tc := range tests {
		if got := MatchOp(tc.value, tc.req); got != tc.want {
			t.Errorf("MatchOp(%q, %q) = %v, want %v", tc.value, tc.req, got, tc.want)
		}
	}
}

func TestPyFloat(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"10", 10, true},
		{"-10.5", -10.5, true},
		{"+3", 3, true},
		{".5", 0.5, true},
		{"5.", 5, true},
		{"1e3", 1000, true},
		{"1E-3", 0.001, true},
		{"1_000.000_1", 1000.0001, true},
		{"  7\t", 7, true},
		{"\u00a07\u2003", 7, true},
		{"7\x1c", 0, false}, // float() strips less than str.split()
		{"inf", math.Inf(1), true},
		{"-Infinity", math.Inf(-1), true},
		{"iNfInItY", math.Inf(1), true},
		{"1e400", math.Inf(1), true},
		{"-1e400", math.Inf(-1), true},
		{"1e-400", 0, true},
		{"", 0, false},
		{".", 0, false},
		{"e5", 0, false},
		{"1e", 0, false},
		{"1e+", 0, false},
		{"_1", 0, false},
		{"1_", 0, false},
		{"1__0", 0, false},
		{"1_.5", 0, false},
		{"0x10", 0, false},
		{"1.5.5", 0, false},
		{"10 GB", 0, false},
		{"infx", 0, false},
		{"+-1", 0, false},
	}
	for _, tc := range tests {
		got, ok := pyFloat(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("pyFloat(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, s := range []string{"nan", "NaN", "+nan", "-NAN"} {
		if v, ok := pyFloat(s); !ok || !math.IsNaN(v) {
			t.Errorf("pyFloat(%q) = %v, %v; want NaN", s, v, ok)
		}
	}
}

func TestPyFloatRepr(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{100, "100.0"},
		{100.5, "100.5"},
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{-3, "-3.0"},
		{1e15, "1000000000000000.0"},
		{1e16, "1e+16"},
		{1.5e16, "1.5e+16"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{1.5e-5, "1.5e-05"},
		{0.1, "0.1"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
		{math.NaN(), "nan"},
	}
	for _, tc := range tests {
		if got := pyFloatRepr(tc.v); got != tc.want {
			t.Errorf("pyFloatRepr(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestNextWord(t *testing.T) {
	var got []string
	rest := " \ta\u00a0bb\x1f c\u3000\xff d "
	for {
		var w string
		w, rest = nextWord(rest)
		if w == "" {
			break
		}
		got = append(got, w)
	}
	want := []string{"a", "bb", "c", "\xff", "d"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("words = %q, want %q", got, want)
	}
}

// capsPool is a thin LVM pool over iSCSI with a few custom capabilities.
func capsPool() Pool {
	p := thinPool(100, 40, 60, 20)
	p.Name = "h1@lvm#fast"
	p.ThickProvisioning = false
	p.ReservedPercentage = 10
	p.Capabilities = map[string]string{
		"storage_protocol":    "iSCSI",
		"driver_version":      "2.1",
		"QoS_support":         "True",
		"vendor_name":         "Open Source",
		"multiattach":         "False",
		"raid:level":          "10",
		"volume_backend_name": "stale-name",
		"total_capacity_gb":   "999999",
	}
	return p
}

func TestMatchExtraSpecs(t *testing.T) {
	tests := []struct {
		name   string
		pool   Pool
		specs  map[string]string
		ok     bool
		reason string
	}{
		{name: "no specs", pool: capsPool(), ok: true},
		{name: "empty specs", pool: capsPool(), specs: map[string]string{}, ok: true},

		// Scopes.
		{name: "unscoped key matches", pool: capsPool(), specs: map[string]string{"storage_protocol": "iSCSI"}, ok: true},
		{name: "unscoped key mismatch", pool: capsPool(), specs: map[string]string{"storage_protocol": "nfs"},
			reason: `capabilities: storage_protocol "iSCSI" does not match "nfs"`},
		{name: "capabilities scope matches", pool: capsPool(), specs: map[string]string{"capabilities:storage_protocol": "<in> iSCSI"}, ok: true},
		{name: "capabilities scope mismatch", pool: capsPool(), specs: map[string]string{"capabilities:storage_protocol": "<or> nfs <or> ceph"},
			reason: `capabilities: storage_protocol "iSCSI" does not match "<or> nfs <or> ceph"`},
		{name: "foreign scopes ignored", pool: capsPool(), specs: map[string]string{
			"provisioning:type":            "thin",
			"qos:maxIOPS":                  "5000",
			"vendor:feature":               "nonexistent",
			"RESKEY:availability_zones":    "az9",
			"replication_enabled:whatever": "<is> True",
		}, ok: true},
		{name: "nested capabilities key is a flat key", pool: capsPool(), specs: map[string]string{"capabilities:raid:level": "== 10"}, ok: true},
		{name: "nested key missing", pool: capsPool(), specs: map[string]string{"capabilities:raid:stripes": "4"},
			reason: `capabilities: raid:stripes is not reported`},
		{name: "bare capabilities key names nothing", pool: capsPool(), specs: map[string]string{"capabilities": "iSCSI"},
			reason: `capabilities: "capabilities" names no capability`},
		{name: "empty capability name", pool: capsPool(), specs: map[string]string{"capabilities:": "x"},
			reason: `capabilities: "" is not reported`},
		{name: "missing capability fails", pool: capsPool(), specs: map[string]string{"capabilities:replication": "<is> True"},
			reason: `capabilities: replication is not reported`},
		{name: "nil capabilities map", pool: with(capsPool(), func(p *Pool) { p.Capabilities = nil }), specs: map[string]string{"storage_protocol": "iSCSI"},
			reason: `capabilities: storage_protocol is not reported`},

		// volume_backend_name comes from Pool.Backend.
		{name: "volume_backend_name matches Backend", pool: capsPool(), specs: map[string]string{"volume_backend_name": "lvm"}, ok: true},
		{name: "volume_backend_name mismatch", pool: capsPool(), specs: map[string]string{"volume_backend_name": "nfs"},
			reason: `capabilities: volume_backend_name "lvm" does not match "nfs"`},
		{name: "volume_backend_name ignores the map", pool: capsPool(), specs: map[string]string{"volume_backend_name": "stale-name"},
			reason: `capabilities: volume_backend_name "lvm" does not match "stale-name"`},
		{name: "scoped volume_backend_name", pool: capsPool(), specs: map[string]string{"capabilities:volume_backend_name": "<or> nfs <or> lvm"}, ok: true},

		// Capabilities derived from typed fields.
		{name: "pool_name", pool: capsPool(), specs: map[string]string{"pool_name": "fast"}, ok: true},
		{name: "thin support <is> True", pool: capsPool(), specs: map[string]string{"capabilities:thin_provisioning_support": "<is> True"}, ok: true},
		{name: "thin support on thick pool", pool: thickPool(100, 50), specs: map[string]string{"capabilities:thin_provisioning_support": "<is> True"},
			reason: `capabilities: thin_provisioning_support "False" does not match "<is> True"`},
		{name: "thick support <is> False", pool: capsPool(), specs: map[string]string{"thick_provisioning_support": "<is> False"}, ok: true},
		{name: "bool plain True (string capabilities)", pool: capsPool(), specs: map[string]string{"thin_provisioning_support": "True"}, ok: true},
		{name: "total_capacity_gb numeric, map ignored", pool: capsPool(), specs: map[string]string{"total_capacity_gb": ">= 100"}, ok: true},
		{name: "total_capacity_gb too small", pool: capsPool(), specs: map[string]string{"total_capacity_gb": ">= 1000"},
			reason: `capabilities: total_capacity_gb "100.0" does not match ">= 1000"`},
		{name: "total_capacity_gb as Python spells it", pool: capsPool(), specs: map[string]string{"total_capacity_gb": "s== 100.0"}, ok: true},
		{name: "free_capacity_gb", pool: capsPool(), specs: map[string]string{"free_capacity_gb": "<= 40"}, ok: true},
		{name: "free unknown is not a number", pool: with(capsPool(), func(p *Pool) { p.FreeKind = storage.Unknown }), specs: map[string]string{"free_capacity_gb": ">= 1"},
			reason: `capabilities: free_capacity_gb "unknown" does not match ">= 1"`},
		{name: "free infinite literal", pool: with(capsPool(), func(p *Pool) { p.FreeKind = storage.Infinite }), specs: map[string]string{"free_capacity_gb": "infinite"}, ok: true},
		{name: "allocated_capacity_gb", pool: capsPool(), specs: map[string]string{"allocated_capacity_gb": "== 60"}, ok: true},
		{name: "provisioned_capacity_gb", pool: capsPool(), specs: map[string]string{"provisioned_capacity_gb": "<= 59"},
			reason: `capabilities: provisioned_capacity_gb "60.0" does not match "<= 59"`},
		{name: "reserved_percentage is an integer", pool: capsPool(), specs: map[string]string{"reserved_percentage": "s== 10"}, ok: true},
		{name: "reserved_percentage numeric", pool: capsPool(), specs: map[string]string{"reserved_percentage": "!= 10"},
			reason: `capabilities: reserved_percentage "10" does not match "!= 10"`},
		{name: "max ratio numeric", pool: capsPool(), specs: map[string]string{"max_over_subscription_ratio": "= 10"}, ok: true},
		{name: "max ratio auto", pool: with(capsPool(), func(p *Pool) { p.OverSubscriptionAuto = true }), specs: map[string]string{"max_over_subscription_ratio": "auto"}, ok: true},
		{name: "max ratio auto not numeric", pool: with(capsPool(), func(p *Pool) { p.OverSubscriptionAuto = true }), specs: map[string]string{"max_over_subscription_ratio": ">= 1"},
			reason: `capabilities: max_over_subscription_ratio "auto" does not match ">= 1"`},

		// Several specs: all must match; the first failing key is reported.
		{name: "all match", pool: capsPool(), specs: map[string]string{
			"volume_backend_name":            "lvm",
			"capabilities:storage_protocol":  "iSCSI",
			"capabilities:QoS_support":       "<is> True",
			"driver_version":                 ">= 2",
			"capabilities:vendor_name":       "<in> Open",
			"capabilities:multiattach":       "<is> False",
			"provisioning:type":              "thin",
			"capabilities:free_capacity_gb":  "= 1",
			"capabilities:total_capacity_gb": "<= 100",
		}, ok: true},
		{name: "typed-field capabilities are checked first", pool: capsPool(), specs: map[string]string{
			"capabilities:storage_protocol": "nfs",
			"driver_version":                ">= 3",
			"volume_backend_name":           "nfs",
		}, reason: `capabilities: volume_backend_name "lvm" does not match "nfs"`},
		{name: "then map capabilities in key order", pool: capsPool(), specs: map[string]string{
			"volume_backend_name":           "lvm",
			"driver_version":                ">= 3",
			"capabilities:storage_protocol": "nfs",
		}, reason: `capabilities: storage_protocol "iSCSI" does not match "nfs"`},
		{name: "typed-field group in key order", pool: capsPool(), specs: map[string]string{
			"volume_backend_name":    "nfs",
			"reserved_percentage":    "== 5",
			"capabilities:pool_name": "slow",
		}, reason: `capabilities: pool_name "fast" does not match "slow"`},
		{name: "long values are cut short", pool: with(capsPool(), func(p *Pool) { p.Capabilities["storage_protocol"] = strings.Repeat("x", 100) }),
			specs:  map[string]string{"storage_protocol": "y"},
			reason: `capabilities: storage_protocol "` + strings.Repeat("x", 64) + `"... does not match "y"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := MatchExtraSpecs(tc.pool, tc.specs)
			if ok != tc.ok || reason != tc.reason {
				t.Fatalf("MatchExtraSpecs = %v, %q; want %v, %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

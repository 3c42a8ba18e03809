package placement

import (
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// maxReason bounds a rejection reason whatever the input: names and values
// are cut to 64 bytes before quoting, and quoting expands a byte to at most
// ten characters.
const maxReason = 2048

func FuzzMatchOp(f *testing.F) {
	for _, s := range [][2]string{
		{"iSCSI", "iSCSI"},
		{"10", "= 10"},
		{"10.0", "== 10"},
		{"abc", "!= 1"},
		{"5", ">= 1_000"},
		{"inf", "<= nan"},
		{"abc", "s< abd"},
		{"abc", "s<= abc"},
		{"b", "s> a"},
		{"b", "s>= b"},
		{"abc", "s== abc"},
		{"abc", "s!= abc"},
		{"iSCSI,FC", "<in> FC"},
		{" yes ", "<is> True"},
		{"garbage", "<is> False"},
		{"nfs", "<or> iSCSI <or> nfs"},
		{"x", "<or>"},
		{"", ""},
		{"\x1c", "=\u00a01e400"},
		{"\xff\xfe", "<in> \xff"},
		{"0x10", "= 0x1p3"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, value, req string) {
		got := MatchOp(value, req)
		if MatchOp(value, req) != got {
			t.Fatal("MatchOp is not deterministic")
		}
		op, _ := nextWord(req)
		if _, isOp := lookupOp(op); !isOp && got != (value == req) {
			t.Fatalf("MatchOp(%q, %q) = %v; without an operator it must be string equality", value, req, got)
		}
		// A single word is one of the options of "<or> word", and equal to
		// itself under "s==".
		if w, rest := nextWord(value); w == value && w != "" && rest == "" {
			if !MatchOp(value, "<or> "+value) {
				t.Fatalf("MatchOp(%q, <or> itself) = false", value)
			}
			if !MatchOp(value, "s== "+value) {
				t.Fatalf("MatchOp(%q, s== itself) = false", value)
			}
		}
	})
}

func FuzzMatchExtraSpecs(f *testing.F) {
	f.Add("capabilities:storage_protocol", "<in> iSCSI", "storage_protocol", "iSCSI", 100.0, 50.0, true)
	f.Add("volume_backend_name", "lvm", "x", "y", 0.0, 0.0, false)
	f.Add("capabilities:thin_provisioning_support", "<is> True", "", "", 1.0, 1.0, true)
	f.Add("provisioning:type", "thick", "a", "b", -1.0, 2.0, false)
	f.Add("capabilities", "", "capabilities", "", 0.0, 0.0, false)
	f.Add("capabilities:a:b", "<or> x <or> y", "a:b", "y", 1e300, 1e-300, true)
	f.Add("total_capacity_gb", "s== 100.0", "k", "v", 100.0, 1.0, false)
	f.Add("free_capacity_gb", ">= nan", "k", strings.Repeat("\xff", 300), 5.0, 3.0, true)
	f.Fuzz(func(t *testing.T, key, req, capKey, capVal string, total, free float64, thin bool) {
		p := Pool{
			Name: "h@b#p", Host: "h", Backend: "b",
			TotalKind: storage.Known, TotalGB: total,
			FreeKind: storage.Known, FreeGB: free,
			ThinProvisioning: thin, MaxOverSubscriptionRatio: 20,
			Capabilities: map[string]string{capKey: capVal},
		}
		specs := map[string]string{key: req, "capabilities:" + capKey: req}
		ok, reason := MatchExtraSpecs(p, specs)
		if ok != (reason == "") {
			t.Fatalf("ok=%v with reason %q", ok, reason)
		}
		if len(reason) > maxReason {
			t.Fatalf("reason is %d bytes", len(reason))
		}
		if ok2, reason2 := MatchExtraSpecs(p, specs); ok2 != ok || reason2 != reason {
			t.Fatal("MatchExtraSpecs is not deterministic")
		}
		// The engine reaches the same verdict.
		cfg := DefaultConfig()
		cfg.Filters = []string{CapabilitiesFilter}
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.Place(Request{SizeGB: 1, ExtraSpecs: specs}, []Pool{p}, nil)
		if (err == nil) != ok {
			t.Fatalf("Place err=%v but MatchExtraSpecs ok=%v", err, ok)
		}
		if !ok && (len(d.Rejected) != 1 || d.Rejected[0].Reason != reason) {
			t.Fatalf("Place rejected %+v, MatchExtraSpecs said %q", d.Rejected, reason)
		}
		// Capacity never panics on the same figures either.
		if ok, reason := CheckCapacity(p, int64(len(req))); ok != (reason == "") || len(reason) > maxReason {
			t.Fatalf("CheckCapacity = %v, %q", ok, reason)
		}
	})
}

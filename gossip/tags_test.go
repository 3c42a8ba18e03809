package gossip

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

func agentTags() Tags {
	return Tags{
		Role:       RoleAgent,
		Version:    "0.1.0-dev+abc123",
		Zone:       "nova",
		RPCAddr:    "10.0.0.5:8776",
		Generation: 42,
		BootID:     "9f3c01ab",
		Pools: []PoolCapacity{
			{Name: "local", TotalKind: storage.Known, TotalGB: 1862.5, FreeKind: storage.Known, FreeGB: 1024.25, ProvisionedGB: 800, Volumes: 12},
			{Name: "thin-pool_1", TotalKind: storage.Infinite, FreeKind: storage.Unknown, ProvisionedGB: 0.01, Volumes: 0},
			{Name: "ceph.rbd", TotalKind: storage.Unknown, FreeKind: storage.Infinite, ProvisionedGB: 1e9, Volumes: 1_000_000},
		},
	}
}

func coordinatorTags() Tags {
	return Tags{
		Role:     RoleCoordinator,
		Version:  "0.1.0",
		RPCAddr:  "coord-1.example.com:8900",
		RaftAddr: "[fd00::1]:8300",
		Expect:   3,
	}
}

func TestTagsRoundTrip(t *testing.T) {
	for _, tags := range []Tags{
		agentTags(),
		coordinatorTags(),
		{Role: RoleAgent},
		{Role: RoleCoordinator},
		{Role: RoleAgent, PoolsTruncated: true, Generation: math.MaxUint64},
		{Role: RoleAgent, BootID: NewBootID()},
	} {
		m, err := tags.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", tags, err)
		}
		if size := encodedSize(m); size > MaxTagBytes {
			t.Errorf("encoded size %d > %d", size, MaxTagBytes)
		}
		got, err := DecodeTags(m)
		if err != nil {
			t.Fatalf("DecodeTags(%v): %v", m, err)
		}
		if !reflect.DeepEqual(got, tags) {
			t.Errorf("round trip:\n got %+v\nwant %+v\n via %v", got, tags, m)
		}
	}
}

func TestTagsEncodingIsCompact(t *testing.T) {
	m, err := agentTags().Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"r": "a", "v": "0.1.0-dev+abc123", "z": "nova", "a": "10.0.0.5:8776", "g": "42", "b": "9f3c01ab",
		"p": "local:1862.5:1024.25:800:12,thin-pool_1:i:u:0.01:0,ceph.rbd:u:i:1000000000:1000000",
	}
	if !maps.Equal(m, want) {
		t.Errorf("Encode =\n %v\nwant\n %v", m, want)
	}
}

func TestTagsRounding(t *testing.T) {
	in := Tags{Role: RoleAgent, Pools: []PoolCapacity{{
		Name: "p", TotalKind: storage.Known, TotalGB: 1862.9999923706055,
		FreeKind: storage.Infinite, FreeGB: 17, // dropped: not Known
		ProvisionedGB: 0.004,
	}}}
	m, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if m["p"] != "p:1863:i:0:0" {
		t.Errorf("pools = %q", m["p"])
	}
	got, err := DecodeTags(m)
	if err != nil {
		t.Fatal(err)
	}
	want := PoolCapacity{Name: "p", TotalKind: storage.Known, TotalGB: 1863, FreeKind: storage.Infinite}
	if got.Pools[0] != want {
		t.Errorf("decoded %+v, want %+v", got.Pools[0], want)
	}
}

// manyPools returns n pools with 63-character names and long numbers.
func manyPools(n int) []PoolCapacity {
	pools := make([]PoolCapacity, n)
	for i := range pools {
		name := fmt.Sprintf("pool-%02d-", i)
		name += strings.Repeat("x", 63-len(name))
		pools[i] = PoolCapacity{
			Name: name, TotalKind: storage.Known, TotalGB: 123456.78,
			FreeKind: storage.Known, FreeGB: 65432.1, ProvisionedGB: 99999.99, Volumes: 12345,
		}
	}
	return pools
}

func TestTagsTruncation(t *testing.T) {
	in := agentTags()
	in.Pools = manyPools(30)
	m, kept, err := in.encode()
	if err != nil {
		t.Fatal(err)
	}
	if size := encodedSize(m); size > MaxTagBytes {
		t.Fatalf("encoded size %d > %d", size, MaxTagBytes)
	}
	got, err := DecodeTags(m)
	if err != nil {
		t.Fatal(err)
	}
	if !got.PoolsTruncated {
		t.Error("PoolsTruncated not set")
	}
	if kept != len(got.Pools) || kept == 0 || kept >= 30 {
		t.Fatalf("kept %d pools, decoded %d", kept, len(got.Pools))
	}
	if !reflect.DeepEqual(got.Pools, in.Pools[:kept]) {
		t.Errorf("decoded pools are not the leading pools")
	}
	// Maximal: one more pool would not have fitted.
	more := in
	more.Pools = in.Pools[:kept+1]
	if _, kept2, err := more.encode(); err != nil || kept2 != kept {
		t.Errorf("with %d pools kept %d (err %v), want %d", kept+1, kept2, err, kept)
	}
	t.Logf("%d of 30 long-named pools fit, %d bytes", kept, encodedSize(m))

	// Next to a long address fewer pools fit, down to none.
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60)
	for _, tags := range []Tags{
		{Role: RoleAgent, RPCAddr: long + ":1", Pools: manyPools(5)},
		{Role: RoleAgent, RPCAddr: long + ":1", Zone: strings.Repeat("z", 63), Version: strings.Repeat("v", 64), Pools: manyPools(5)},
	} {
		m, kept, err := tags.encode()
		if err != nil {
			t.Fatal(err)
		}
		if encodedSize(m) > MaxTagBytes || m["t"] != "1" || kept >= 5 {
			t.Errorf("size %d, truncated %q, kept %d", encodedSize(m), m["t"], kept)
		}
		t.Logf("kept %d pools next to a %d-byte address: %d bytes", kept, len(tags.RPCAddr), encodedSize(m))
	}
}

func TestTagsTooLarge(t *testing.T) {
	host := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	in := Tags{Role: RoleCoordinator, RPCAddr: host + ":1", RaftAddr: host + ":2"}
	if _, err := in.Encode(); !errors.Is(err, ErrTagsTooLarge) {
		t.Fatalf("Encode = %v, want ErrTagsTooLarge", err)
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	nan := math.NaN()
	pool := func(f func(*PoolCapacity)) Tags {
		tags := agentTags()
		tags.Pools = append([]PoolCapacity(nil), tags.Pools...)
		f(&tags.Pools[0])
		return tags
	}
	tests := map[string]Tags{
		"no role":              {},
		"unknown role":         {Role: "admin"},
		"bad version":          {Role: RoleAgent, Version: "1.0 beta"},
		"long version":         {Role: RoleAgent, Version: strings.Repeat("1", 65)},
		"bad zone":             {Role: RoleAgent, Zone: "zone a"},
		"rpc without port":     {Role: RoleAgent, RPCAddr: "10.0.0.1"},
		"rpc port zero":        {Role: RoleAgent, RPCAddr: "10.0.0.1:0"},
		"rpc port too large":   {Role: RoleAgent, RPCAddr: "10.0.0.1:65536"},
		"rpc named port":       {Role: RoleAgent, RPCAddr: "10.0.0.1:http"},
		"rpc empty host":       {Role: RoleAgent, RPCAddr: ":80"},
		"rpc bad host":         {Role: RoleAgent, RPCAddr: "a_b:80"},
		"raft bad":             {Role: RoleCoordinator, RaftAddr: "x:-1"},
		"negative expect":      {Role: RoleCoordinator, Expect: -1},
		"huge expect":          {Role: RoleCoordinator, Expect: 1000},
		"agent with raft":      {Role: RoleAgent, RaftAddr: "10.0.0.1:8300"},
		"agent with expect":    {Role: RoleAgent, Expect: 3},
		"coordinator pools":    {Role: RoleCoordinator, Pools: agentTags().Pools},
		"coordinator gen":      {Role: RoleCoordinator, Generation: 1},
		"coordinator trunc":    {Role: RoleCoordinator, PoolsTruncated: true},
		"coordinator boot id":  {Role: RoleCoordinator, BootID: "0a1b2c3d"},
		"boot id short":        {Role: RoleAgent, BootID: "0a1b2c3"},
		"boot id long":         {Role: RoleAgent, BootID: "0a1b2c3d4"},
		"boot id uppercase":    {Role: RoleAgent, BootID: "0A1B2C3D"},
		"boot id not hex":      {Role: RoleAgent, BootID: "0a1b2c3g"},
		"pool name empty":      pool(func(p *PoolCapacity) { p.Name = "" }),
		"pool name separators": pool(func(p *PoolCapacity) { p.Name = "a:b" }),
		"pool name comma":      pool(func(p *PoolCapacity) { p.Name = "a,b" }),
		"pool name long":       pool(func(p *PoolCapacity) { p.Name = strings.Repeat("a", 64) }),
		"duplicate pool":       {Role: RoleAgent, Pools: []PoolCapacity{{Name: "a"}, {Name: "a"}}},
		"negative total":       pool(func(p *PoolCapacity) { p.TotalGB = -1 }),
		"NaN free":             pool(func(p *PoolCapacity) { p.FreeGB = nan }),
		"infinite provisioned": pool(func(p *PoolCapacity) { p.ProvisionedGB = math.Inf(1) }),
		"huge total":           pool(func(p *PoolCapacity) { p.TotalGB = 1e13 }),
		"negative volumes":     pool(func(p *PoolCapacity) { p.Volumes = -1 }),
		"bad total kind":       pool(func(p *PoolCapacity) { p.TotalKind = 7 }),
		"bad free kind":        pool(func(p *PoolCapacity) { p.FreeKind = 3 }),
	}
	for name, tags := range tests {
		t.Run(name, func(t *testing.T) {
			if m, err := tags.Encode(); !errors.Is(err, ErrInvalidTags) {
				t.Errorf("Encode = %v, %v; want ErrInvalidTags", m, err)
			}
		})
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	valid, err := agentTags().Encode()
	if err != nil {
		t.Fatal(err)
	}
	coord, err := coordinatorTags().Encode()
	if err != nil {
		t.Fatal(err)
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<delete>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := map[string]map[string]string{
		"nil":                    nil,
		"empty":                  {},
		"garbage":                {"hello": "world", "\x00": "\xff\xfe"},
		"serf legacy role":       {"role": "agent"},
		"no role":                with(valid, "r", "<delete>"),
		"bad role":               with(valid, "r", "x"),
		"long role":              with(valid, "r", "agent"),
		"empty role":             with(valid, "r", ""),
		"empty version":          with(valid, "v", ""),
		"bad version":            with(valid, "v", "1.0;rm -rf"),
		"bad zone":               with(valid, "z", "-zone"),
		"bad rpc":                with(valid, "a", "10.0.0.5"),
		"rpc port text":          with(valid, "a", "10.0.0.5:x"),
		"rpc port signed":        with(valid, "a", "10.0.0.5:+80"),
		"rpc port overflow":      with(valid, "a", "10.0.0.5:99999999999999999999"),
		"rpc ipv6 unbracketed":   with(valid, "a", "fd00::1:80"),
		"rpc ipv6 zone":          with(valid, "a", "[fe80::1%eth0]:80"),
		"bad raft":               with(coord, "ra", "[::1]"),
		"expect negative":        with(coord, "e", "-1"),
		"expect text":            with(coord, "e", "three"),
		"expect too large":       with(coord, "e", "256"),
		"expect empty":           with(coord, "e", ""),
		"agent with raft":        with(valid, "ra", "10.0.0.1:8300"),
		"agent with expect":      with(valid, "e", "3"),
		"coordinator with pools": with(coord, "p", "a:1:1:1:1"),
		"coordinator with gen":   with(coord, "g", "1"),
		"gen negative":           with(valid, "g", "-1"),
		"gen overflow":           with(valid, "g", "18446744073709551616"),
		"gen float":              with(valid, "g", "1.5"),
		"boot id empty":          with(valid, "b", ""),
		"boot id short":          with(valid, "b", "9f3c01a"),
		"boot id long":           with(valid, "b", "9f3c01ab0"),
		"boot id uppercase":      with(valid, "b", "9F3C01AB"),
		"boot id not hex":        with(valid, "b", "9f3c01ax"),
		"boot id spaces":         with(valid, "b", " 9f3c01a"),
		"boot id newline":        with(valid, "b", "9f3c01ab\n"),
		"coordinator with boot":  with(coord, "b", "9f3c01ab"),
		"trunc bad":              with(valid, "t", "true"),
		"trunc empty":            with(valid, "t", ""),
		"pools empty":            with(valid, "p", ""),
		"pools empty entry":      with(valid, "p", "a:1:1:1:1,"),
		"pool few fields":        with(valid, "p", "a:1:1:1"),
		"pool many fields":       with(valid, "p", "a:1:1:1:1:1"),
		"pool bad name":          with(valid, "p", "a/b:1:1:1:1"),
		"pool empty name":        with(valid, "p", ":1:1:1:1"),
		"pool duplicate":         with(valid, "p", "a:1:1:1:1,a:2:2:2:2"),
		"pool negative total":    with(valid, "p", "a:-1:1:1:1"),
		"pool NaN free":          with(valid, "p", "a:1:NaN:1:1"),
		"pool Inf free":          with(valid, "p", "a:1:Inf:1:1"),
		"pool exponent":          with(valid, "p", "a:1e3:1:1:1"),
		"pool hex":               with(valid, "p", "a:0x10:1:1:1"),
		"pool huge":              with(valid, "p", "a:99999999999999:1:1:1"),
		"pool empty number":      with(valid, "p", "a::1:1:1"),
		"pool trailing dot":      with(valid, "p", "a:1.:1:1:1"),
		"pool infinite prov":     with(valid, "p", "a:1:1:i:1"),
		"pool negative volumes":  with(valid, "p", "a:1:1:1:-1"),
		"pool fractional vols":   with(valid, "p", "a:1:1:1:1.5"),
		"pool too many volumes":  with(valid, "p", "a:1:1:1:1000000001"),
		"pool bad kind":          with(valid, "p", "a:x:1:1:1"),
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeTags(m)
			if !errors.Is(err, ErrInvalidTags) {
				t.Errorf("DecodeTags(%q) = %+v, %v; want ErrInvalidTags", m, got, err)
			}
			if !reflect.DeepEqual(got, Tags{}) {
				t.Errorf("DecodeTags returned a partial result with its error: %+v", got)
			}
		})
	}

	// Unknown keys are ignored, for rolling upgrades.
	if _, err := DecodeTags(with(valid, "future", "value")); err != nil {
		t.Errorf("unknown key rejected: %v", err)
	}
	// An agent from before boot IDs publishes none: unknown, not invalid.
	if got, err := DecodeTags(with(valid, "b", "<delete>")); err != nil || got.BootID != "" || got.Generation != 42 {
		t.Errorf("tags without a boot ID = %+v, %v", got, err)
	}
}

func TestNewBootID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewBootID()
		if len(id) != BootIDLen || !bootIDPattern.MatchString(id) {
			t.Fatalf("NewBootID() = %q", id)
		}
		if _, err := (Tags{Role: RoleAgent, BootID: id}).Encode(); err != nil {
			t.Fatalf("Encode with boot ID %q: %v", id, err)
		}
		seen[id] = true
	}
	if len(seen) < 99 { // 32 random bits: a repeat in 100 is a 1 in a million chance
		t.Errorf("NewBootID repeats: %d distinct of 100", len(seen))
	}
}

// FuzzDecodeTags feeds DecodeTags maps written as lines of key=value.
func FuzzDecodeTags(f *testing.F) {
	toText := func(m map[string]string) string {
		var b strings.Builder
		for k, v := range m {
			b.WriteString(k + "=" + v + "\n")
		}
		return b.String()
	}
	for _, tags := range []Tags{agentTags(), coordinatorTags(), {Role: RoleAgent, Pools: manyPools(30)}} {
		m, err := tags.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(toText(m))
	}
	f.Add("r=a\np=a:1.005:2:3:4,b:i:u:0:0\nt=1\n")
	f.Add("r=c\nra=[::1]:8300\ne=3\n")
	f.Add("r=a\na=host.example.:1\n")
	f.Add("r=a\ng=1\nb=0123abcd\n")
	f.Add("r=a\nb=0123ABCD\n")
	f.Fuzz(func(t *testing.T, text string) {
		m := make(map[string]string)
		for _, line := range strings.Split(text, "\n") {
			k, v, _ := strings.Cut(line, "=")
			m[k] = v
		}
		tags, err := DecodeTags(m)
		if err != nil {
			return
		}
		enc, kept, err := tags.encode()
		if errors.Is(err, ErrTagsTooLarge) {
			return // the fuzzer's map was larger than any Serf would carry
		}
		if err != nil {
			t.Fatalf("decoded tags do not encode: %+v: %v", tags, err)
		}
		if size := encodedSize(enc); size > MaxTagBytes {
			t.Fatalf("encoded size %d > %d", size, MaxTagBytes)
		}
		again, err := DecodeTags(enc)
		if err != nil {
			t.Fatalf("encoded tags do not decode: %v: %v", enc, err)
		}
		// The canonical form is stable: encoding it again changes nothing.
		if enc2, err := again.Encode(); err != nil || !maps.Equal(enc, enc2) {
			t.Fatalf("re-encoding changed the tags: %v -> %v (%v)", enc, enc2, err)
		}
		// Everything but the pools survives as is; pools are a rounded
		// prefix, with truncation flagged.
		want := tags
		want.Pools = nil
		for _, p := range tags.Pools[:kept] {
			p.TotalGB, p.FreeGB, p.ProvisionedGB = roundGB(p.TotalGB), roundGB(p.FreeGB), roundGB(p.ProvisionedGB)
			want.Pools = append(want.Pools, p)
		}
		want.PoolsTruncated = tags.PoolsTruncated || kept < len(tags.Pools)
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, want)
		}
	})
}

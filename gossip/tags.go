package gossip

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/kilnstore/kiln/internal/storage"
)

// Role says what a member of the cluster is.
type Role string

const (
	// RoleCoordinator members run Raft and the API.
	RoleCoordinator Role = "coordinator"
	// RoleAgent members run on storage hosts and publish pool capacity.
	RoleAgent Role = "agent"
)

// PoolCapacity is one pool's fast-changing capacity as carried in tags,
// in GiB. Gossip carries values rounded to 0.01 GiB; a GB value is only
// meaningful when its kind is storage.Known (it is dropped otherwise).
type PoolCapacity struct {
	Name          string
	TotalKind     storage.CapacityKind
	TotalGB       float64
	FreeKind      storage.CapacityKind
	FreeGB        float64
	ProvisionedGB float64
	Volumes       int
}

// Tags are everything a member publishes about itself over gossip.
type Tags struct {
	// Role is required.
	Role Role
	// Version is the kiln version the member runs (optional).
	Version string
	// Zone is the availability zone (optional; agents, but coordinators
	// may set it too).
	Zone string
	// RPCAddr is host:port of the member's HTTP RPC endpoint: the agent RPC,
	// or the coordinator's internal RPC (optional).
	RPCAddr string
	// RaftAddr is host:port of the Raft transport (coordinators only).
	RaftAddr string
	// Expect is bootstrap-expect (coordinators only; 0 = not bootstrapping
	// by expect).
	Expect int
	// Generation is bumped by an agent on every capacity change (agents
	// only), so that a reader can tell whether a full report it fetched over
	// RPC is at least as new as the tags.
	Generation uint64
	// BootID identifies the agent process (agents only): a random
	// BootIDLen-character lowercase hex string drawn at start (NewBootID),
	// so that a reader sees every restart, even one quick enough that Serf
	// never saw the member fail and with a generation that did not go back.
	// Empty means unknown (an agent from before boot IDs).
	BootID string
	// Pools are the agent's pools (agents only), in the agent's order of
	// importance: when they do not all fit, trailing pools are dropped.
	Pools []PoolCapacity
	// PoolsTruncated is set by Encode when not all pools fit into the tags;
	// the reader must then fetch the full capacity report over RPC.
	PoolsTruncated bool
}

// MaxTagBytes is the largest encoded tag set Serf accepts: memberlist's node
// metadata limit. The size is measured the way Serf measures it (one magic
// byte followed by the msgpack encoding of the tag map).
const MaxTagBytes = memberlist.MetaMaxSize

// ErrTagsTooLarge is returned by Encode when the tags exceed MaxTagBytes
// even with every pool dropped.
var ErrTagsTooLarge = errors.New("gossip tags too large")

// ErrInvalidTags is wrapped by every validation error of Encode and
// DecodeTags.
var ErrInvalidTags = errors.New("invalid gossip tags")

// Tag keys and values on the wire. They are short because every byte left
// over is room for another pool:
//
//	r   role: "c" (coordinator) or "a" (agent)          required
//	v   kiln version
//	z   availability zone
//	a   RPC address, host:port
//	ra  Raft address, host:port                         coordinators
//	e   bootstrap-expect, decimal                       coordinators
//	g   capacity generation, decimal                    agents
//	b   boot ID, 8 lowercase hex digits                 agents
//	p   pools, comma-separated; each pool is            agents
//	    name:total:free:provisioned:volumes, where total and free are
//	    a decimal number of GiB, "i" (infinite) or "u" (unknown)
//	t   "1" when pools were dropped to fit              agents
//
// Keys a reader does not know are ignored, so that a newer version can add
// tags without breaking older readers during a rolling upgrade.
const (
	keyRole       = "r"
	keyVersion    = "v"
	keyZone       = "z"
	keyRPCAddr    = "a"
	keyRaftAddr   = "ra"
	keyExpect     = "e"
	keyGeneration = "g"
	keyBootID     = "b"
	keyPools      = "p"
	keyTruncated  = "t"

	roleCoordinatorValue = "c"
	roleAgentValue       = "a"
	kindInfiniteValue    = "i"
	kindUnknownValue     = "u"
	truncatedValue       = "1"
)

// Bounds beyond which a value is certainly a bug or an attack. maxGB keeps
// x*100 well inside the exactly-representable integers of a float64, which
// makes rounding to 0.01 idempotent.
const (
	maxGB      = 1e12
	maxVolumes = 1_000_000_000
	maxExpect  = 255
	maxVersion = 64
	maxHost    = 253
)

var (
	versionPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*$`)
	uintPattern    = regexp.MustCompile(`^[0-9]{1,20}$`)
	bootIDPattern  = regexp.MustCompile(`^[0-9a-f]{8}$`)
	decimalPattern = regexp.MustCompile(`^[0-9]{1,16}(\.[0-9]{1,16})?$`)
	dnsLabel       = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// BootIDLen is the length of a boot ID: 32 random bits, so two processes of
// one agent share one with a chance of 1 in 4 billion, in 11 bytes of tags.
const BootIDLen = 8

// NewBootID returns a random boot ID for an agent process (Tags.BootID).
func NewBootID() string {
	var b [BootIDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	return hex.EncodeToString(b[:])
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidTags, fmt.Sprintf(format, args...))
}

// Encode returns the compact tag map to publish. When not all pools fit into
// MaxTagBytes, trailing pools are dropped and PoolsTruncated is set, so the
// result always fits. It fails with ErrInvalidTags for invalid fields and
// with ErrTagsTooLarge when even the tags without pools do not fit.
func (t Tags) Encode() (map[string]string, error) {
	m, _, err := t.encode()
	return m, err
}

// encode is Encode that also reports how many pools were kept.
func (t Tags) encode() (map[string]string, int, error) {
	if err := t.validate(); err != nil {
		return nil, 0, err
	}
	m := make(map[string]string, 10)
	switch t.Role {
	case RoleCoordinator:
		m[keyRole] = roleCoordinatorValue
	case RoleAgent:
		m[keyRole] = roleAgentValue
	}
	setIf := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	setIf(keyVersion, t.Version)
	setIf(keyZone, t.Zone)
	setIf(keyRPCAddr, t.RPCAddr)
	setIf(keyRaftAddr, t.RaftAddr)
	if t.Expect != 0 {
		m[keyExpect] = strconv.Itoa(t.Expect)
	}
	if t.Generation != 0 {
		m[keyGeneration] = strconv.FormatUint(t.Generation, 10)
	}
	setIf(keyBootID, t.BootID)

	pools := make([]string, len(t.Pools))
	for i, p := range t.Pools {
		pools[i] = encodePool(p)
	}
	// withPools sets the first n pools and the truncation flag.
	withPools := func(n int) int {
		delete(m, keyPools)
		delete(m, keyTruncated)
		if n > 0 {
			m[keyPools] = strings.Join(pools[:n], ",")
		}
		if t.PoolsTruncated || n < len(pools) {
			m[keyTruncated] = truncatedValue
		}
		return encodedSize(m)
	}
	if withPools(len(pools)) <= MaxTagBytes {
		return m, len(pools), nil
	}
	// The size grows with n, so search for the largest n that fits.
	lo, hi := 0, len(pools)-1 // the answer is in [lo, hi], or none fits
	if withPools(0) > MaxTagBytes {
		return nil, 0, fmt.Errorf("%w: %d bytes without pools, limit %d", ErrTagsTooLarge, encodedSize(m), MaxTagBytes)
	}
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if withPools(mid) <= MaxTagBytes {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	withPools(lo)
	return m, lo, nil
}

// encodedSize returns the number of bytes Serf sends for m: serf.encodeTags
// (unexported) writes a magic byte and then m encoded with a zero
// codec.MsgpackHandle, as done here.
func encodedSize(m map[string]string) int {
	var buf bytes.Buffer
	buf.WriteByte(0xff)
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(m); err != nil {
		// A map of strings always encodes; if it ever did not, Serf would
		// panic on it, so report it as too large to keep it from Serf.
		return math.MaxInt
	}
	return buf.Len()
}

func encodePool(p PoolCapacity) string {
	var b strings.Builder
	b.WriteString(p.Name)
	b.WriteByte(':')
	b.WriteString(encodeCapacity(p.TotalKind, p.TotalGB))
	b.WriteByte(':')
	b.WriteString(encodeCapacity(p.FreeKind, p.FreeGB))
	b.WriteByte(':')
	b.WriteString(formatGB(p.ProvisionedGB))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(p.Volumes))
	return b.String()
}

func encodeCapacity(k storage.CapacityKind, gb float64) string {
	switch k {
	case storage.Infinite:
		return kindInfiniteValue
	case storage.Unknown:
		return kindUnknownValue
	default:
		return formatGB(gb)
	}
}

// roundGB rounds to 0.01 GiB (10 MiB): far finer than any volume size, and
// it keeps numbers short.
func roundGB(x float64) float64 { return math.Round(x*100) / 100 }

func formatGB(x float64) string {
	return strconv.FormatFloat(roundGB(x), 'f', -1, 64)
}

// validate checks every field; Encode and DecodeTags share it.
func (t Tags) validate() error {
	switch t.Role {
	case RoleCoordinator, RoleAgent:
	case "":
		return invalid("role is missing")
	default:
		return invalid("unknown role %q", t.Role)
	}
	if t.Version != "" && (len(t.Version) > maxVersion || !versionPattern.MatchString(t.Version)) {
		return invalid("version %q must be up to %d characters of [A-Za-z0-9._+~-]", t.Version, maxVersion)
	}
	if t.Zone != "" {
		if err := storage.ValidateName("zone", t.Zone); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidTags, err)
		}
	}
	if t.RPCAddr != "" {
		if err := validateHostPort(t.RPCAddr); err != nil {
			return invalid("RPC address: %v", err)
		}
	}
	if t.RaftAddr != "" {
		if err := validateHostPort(t.RaftAddr); err != nil {
			return invalid("Raft address: %v", err)
		}
	}
	if t.Expect < 0 || t.Expect > maxExpect {
		return invalid("bootstrap-expect %d is outside 0..%d", t.Expect, maxExpect)
	}
	if t.Role == RoleAgent && (t.RaftAddr != "" || t.Expect != 0) {
		return invalid("an agent cannot carry a Raft address or bootstrap-expect")
	}
	if t.BootID != "" && !bootIDPattern.MatchString(t.BootID) {
		return invalid("boot ID %q must be %d lowercase hex digits", t.BootID, BootIDLen)
	}
	if t.Role == RoleCoordinator && (t.Generation != 0 || t.BootID != "" || len(t.Pools) > 0 || t.PoolsTruncated) {
		return invalid("a coordinator cannot carry pools, a capacity generation or a boot ID")
	}
	seen := make(map[string]bool, len(t.Pools))
	for i, p := range t.Pools {
		if err := p.validate(); err != nil {
			return fmt.Errorf("pool %d: %w", i, err)
		}
		if seen[p.Name] {
			return invalid("pool %q appears twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

func (p PoolCapacity) validate() error {
	if err := storage.ValidateName("pool name", p.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTags, err)
	}
	for _, c := range []struct {
		what string
		kind storage.CapacityKind
		gb   float64
	}{
		{"total", p.TotalKind, p.TotalGB},
		{"free", p.FreeKind, p.FreeGB},
		{"provisioned", storage.Known, p.ProvisionedGB},
	} {
		switch c.kind {
		case storage.Known, storage.Infinite, storage.Unknown:
		default:
			return invalid("pool %q: %s capacity kind %d is unknown", p.Name, c.what, c.kind)
		}
		if c.kind != storage.Known {
			continue
		}
		if math.IsNaN(c.gb) || c.gb < 0 || c.gb > maxGB {
			return invalid("pool %q: %s capacity %v GiB is outside 0..%g", p.Name, c.what, c.gb, float64(maxGB))
		}
	}
	if p.Volumes < 0 || p.Volumes > maxVolumes {
		return invalid("pool %q: volume count %d is outside 0..%d", p.Name, p.Volumes, maxVolumes)
	}
	return nil
}

// validateHostPort accepts host:port where host is an IP address or a DNS
// name and port a decimal number in 1..65535.
func validateHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if !uintPattern.MatchString(port) {
		return fmt.Errorf("port %q is not a number", port)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q is outside 1..65535", port)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if host == "" || len(host) > maxHost {
		return fmt.Errorf("host %q must be an IP address or a DNS name", host)
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if !dnsLabel.MatchString(label) {
			return fmt.Errorf("host %q must be an IP address or a DNS name", host)
		}
	}
	return nil
}

// DecodeTags parses and validates a member's tag map. Every field is
// checked; malformed input returns an error wrapping ErrInvalidTags, never a
// partial result. Unknown keys are ignored (see the key table above).
func DecodeTags(m map[string]string) (Tags, error) {
	var t Tags
	switch r, ok := m[keyRole]; {
	case !ok:
		return Tags{}, invalid("role tag %q is missing", keyRole)
	case r == roleCoordinatorValue:
		t.Role = RoleCoordinator
	case r == roleAgentValue:
		t.Role = RoleAgent
	default:
		return Tags{}, invalid("unknown role %q", r)
	}
	// Present-but-empty values are never written by Encode.
	for _, k := range []string{keyVersion, keyZone, keyRPCAddr, keyRaftAddr, keyExpect, keyGeneration, keyBootID, keyPools, keyTruncated} {
		if v, ok := m[k]; ok && v == "" {
			return Tags{}, invalid("tag %q is empty", k)
		}
	}
	t.Version = m[keyVersion]
	t.Zone = m[keyZone]
	t.RPCAddr = m[keyRPCAddr]
	t.RaftAddr = m[keyRaftAddr]
	t.BootID = m[keyBootID] // checked by validate
	if v, ok := m[keyExpect]; ok {
		n, err := parseUint(v, maxExpect)
		if err != nil {
			return Tags{}, invalid("bootstrap-expect: %v", err)
		}
		t.Expect = int(n)
	}
	if v, ok := m[keyGeneration]; ok {
		n, err := parseUint(v, math.MaxUint64)
		if err != nil {
			return Tags{}, invalid("generation: %v", err)
		}
		t.Generation = n
	}
	if v, ok := m[keyTruncated]; ok {
		if v != truncatedValue {
			return Tags{}, invalid("truncation flag %q must be %q", v, truncatedValue)
		}
		t.PoolsTruncated = true
	}
	if v, ok := m[keyPools]; ok {
		for i, s := range strings.Split(v, ",") {
			p, err := decodePool(s)
			if err != nil {
				return Tags{}, fmt.Errorf("pool %d: %w", i, err)
			}
			t.Pools = append(t.Pools, p)
		}
	}
	if err := t.validate(); err != nil {
		return Tags{}, err
	}
	return t, nil
}

func decodePool(s string) (PoolCapacity, error) {
	f := strings.Split(s, ":")
	if len(f) != 5 {
		return PoolCapacity{}, invalid("pool %q must be name:total:free:provisioned:volumes", s)
	}
	p := PoolCapacity{Name: f[0]}
	var err error
	if p.TotalKind, p.TotalGB, err = decodeCapacity(f[1]); err != nil {
		return PoolCapacity{}, invalid("pool %q: total: %v", f[0], err)
	}
	if p.FreeKind, p.FreeGB, err = decodeCapacity(f[2]); err != nil {
		return PoolCapacity{}, invalid("pool %q: free: %v", f[0], err)
	}
	if p.ProvisionedGB, err = parseGB(f[3]); err != nil {
		return PoolCapacity{}, invalid("pool %q: provisioned: %v", f[0], err)
	}
	n, err := parseUint(f[4], maxVolumes)
	if err != nil {
		return PoolCapacity{}, invalid("pool %q: volumes: %v", f[0], err)
	}
	p.Volumes = int(n)
	return p, nil
}

func decodeCapacity(s string) (storage.CapacityKind, float64, error) {
	switch s {
	case kindInfiniteValue:
		return storage.Infinite, 0, nil
	case kindUnknownValue:
		return storage.Unknown, 0, nil
	}
	gb, err := parseGB(s)
	return storage.Known, gb, err
}

// parseGB accepts plain non-negative decimals only: no sign, exponent,
// hex, NaN or Inf, which strconv.ParseFloat would all accept.
func parseGB(s string) (float64, error) {
	if !decimalPattern.MatchString(s) {
		return 0, fmt.Errorf("%q is not a non-negative decimal number", s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v > maxGB {
		return 0, fmt.Errorf("%q is outside 0..%g", s, float64(maxGB))
	}
	return v, nil
}

func parseUint(s string, max uint64) (uint64, error) {
	if !uintPattern.MatchString(s) {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("%q is outside 0..%d", s, max)
	}
	return n, nil
}

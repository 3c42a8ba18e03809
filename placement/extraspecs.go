package placement

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kilnstore/kiln/internal/storage"
)

// opKind is an operator of Cinder's extra_specs_ops.
type opKind uint8

const (
	opLiteral    opKind = iota // no operator: the whole requirement must equal the value
	opOr                       // <or> a <or> b: the value equals one of the options
	opNumAtLeast               // "=" and ">=": float(value) >= float(arg)
	opNumEq                    // "==": float(value) == float(arg)
	opNumNe                    // "!=": float(value) != float(arg)
	opNumAtMost                // "<=": float(value) <= float(arg)
	opIn                       // <in>: arg is a substring of value
	opIs                       // <is>: bool_from_string(value) is bool_from_string(arg)
	opStrEq                    // s==
	opStrNe                    // s!=
	opStrLt                    // s<
	opStrLe                    // s<=
	opStrGt                    // s>
	opStrGe                    // s>=
)

func lookupOp(w string) (opKind, bool) {
	switch w {
	case "=", ">=":
		return opNumAtLeast, true
	case "==":
		return opNumEq, true
	case "!=":
		return opNumNe, true
	case "<=":
		return opNumAtMost, true
	case "<in>":
		return opIn, true
	case "<is>":
		return opIs, true
	case "<or>":
		return opOr, true
	case "s==":
		return opStrEq, true
	case "s!=":
		return opStrNe, true
	case "s<":
		return opStrLt, true
	case "s<=":
		return opStrLe, true
	case "s>":
		return opStrGt, true
	case "s>=":
		return opStrGe, true
	}
	return opLiteral, false
}

// requirement is one extra-spec value parsed once per request.
type requirement struct {
	kind   opKind
	raw    string // the whole requirement, compared as is by opLiteral
	arg    string // first operand; only the first one counts, as in Cinder
	hasArg bool
	num    float64 // arg as a Python float, when numOK
	numOK  bool
	truth  bool     // bool_from_string(arg), for <is>
	alts   []string // <or> options
}

// parseRequirement splits req the way Python's str.split() does and picks the
// operator, as extra_specs_ops.match does.
func parseRequirement(req string) requirement {
	r := requirement{kind: opLiteral, raw: req}
	op, rest := nextWord(req)
	if op == "" {
		return r // blank requirement: compared as is
	}
	k, ok := lookupOp(op)
	if !ok {
		return r
	}
	r.kind = k
	if k == opOr {
		// Cinder pops an option, then a separator (whatever it says), then
		// an option...: the options are the words at even positions.
		for i := 0; ; i++ {
			var w string
			w, rest = nextWord(rest)
			if w == "" {
				break
			}
			if i%2 == 0 {
				r.alts = append(r.alts, w)
			}
		}
		return r
	}
	r.arg, _ = nextWord(rest)
	r.hasArg = r.arg != ""
	switch k {
	case opNumAtLeast, opNumEq, opNumNe, opNumAtMost:
		r.num, r.numOK = pyFloat(r.arg)
	case opIs:
		r.truth = pyBool(r.arg)
	}
	return r
}

// capValue is a capability value: a string, or a number kept as a number so
// that numeric operators need no formatting and parsing per pool.
type capValue struct {
	s     string
	num   float64
	isNum bool
	isInt bool // format as an integer (reserved_percentage)
}

// str is the value's string form; numbers are spelled as Python's str()
// spells them ("100.0", "1e+16", "10").
func (v capValue) str() string {
	if !v.isNum {
		return v.s
	}
	if v.isInt {
		return strconv.FormatInt(int64(v.num), 10)
	}
	return pyFloatRepr(v.num)
}

func (r *requirement) match(v capValue) bool {
	if !v.isNum {
		return r.matchString(v.s)
	}
	switch r.kind {
	case opNumAtLeast, opNumEq, opNumNe, opNumAtMost:
		return r.hasArg && r.compareNum(v.num)
	}
	// String operators see the number as Python's str() spells it.
	return r.matchString(v.str())
}

// matchString matches a string capability value.
func (r *requirement) matchString(s string) bool {
	switch r.kind {
	case opLiteral:
		return s == r.raw
	case opOr:
		return slices.Contains(r.alts, s)
	}
	if !r.hasArg {
		return false
	}
	switch r.kind {
	case opNumAtLeast, opNumEq, opNumNe, opNumAtMost:
		x, ok := pyFloat(s)
		return ok && r.compareNum(x) // !ok: Python's float() raised ValueError
	case opIn:
		return strings.Contains(s, r.arg)
	case opIs:
		return pyBool(s) == r.truth
	case opStrEq:
		return s == r.arg
	case opStrNe:
		return s != r.arg
	case opStrLt:
		return s < r.arg
	case opStrLe:
		return s <= r.arg
	case opStrGt:
		return s > r.arg
	case opStrGe:
		return s >= r.arg
	}
	return false
}

// compareNum applies a numeric operator to a value that is a number.
func (r *requirement) compareNum(x float64) bool {
	if !r.numOK {
		return false // the operand is not a number: ValueError
	}
	switch r.kind {
	case opNumAtLeast:
		return x >= r.num
	case opNumEq:
		return x == r.num
	case opNumNe:
		return x != r.num
	default:
		return x <= r.num
	}
}

// MatchOp evaluates one extra-spec requirement against a capability value
// with the semantics of Cinder's extra_specs_ops.match:
//
//   - the requirement is split on whitespace; when its first word is not an
//     operator (or it is blank) the whole requirement must equal value;
//   - "=" and ">=" are numeric >=, "==" numeric ==, "!=" numeric !=, "<="
//     numeric <=, parsed as Python's float() parses (so "inf", "nan", "1_000"
//     and surrounding spaces are accepted); a value or operand that is not a
//     number makes the match false;
//   - "s==", "s!=", "s<", "s<=", "s>", "s>=" compare strings;
//   - "<in>" is substring; "<is>" compares oslo's bool_from_string of both
//     sides ("1", "t", "true", "on", "y", "yes" in any case are true,
//     anything else false);
//   - "<or> a <or> b" matches when value equals one of the options.
//
// Only the first operand after an operator counts. MatchOp never panics.
func MatchOp(value, req string) bool {
	r := parseRequirement(req)
	return r.matchString(value)
}

// capSource says where a capability's value comes from.
type capSource uint8

const (
	srcMap  capSource = iota // Pool.Capabilities
	srcNone                  // "capabilities" alone: names no capability
	srcBackend
	srcPoolName
	srcTotal
	srcFree
	srcAllocated
	srcReserved
	srcThin
	srcThick
	srcRatio
)

// derivedSource maps the capability names Cinder's pool state reports from
// typed fields to their source; these win over Pool.Capabilities.
func derivedSource(name string) capSource {
	switch name {
	case "volume_backend_name":
		return srcBackend
	case "pool_name":
		return srcPoolName
	case "total_capacity_gb":
		return srcTotal
	case "free_capacity_gb":
		return srcFree
	case "allocated_capacity_gb", "provisioned_capacity_gb":
		return srcAllocated
	case "reserved_percentage":
		return srcReserved
	case "thin_provisioning_support":
		return srcThin
	case "thick_provisioning_support":
		return srcThick
	case "max_over_subscription_ratio":
		return srcRatio
	}
	return srcMap
}

// specReq is one extra spec that the Capabilities filter checks.
type specReq struct {
	name string // capability name, scope stripped
	src  capSource
	req  requirement
}

// compileSpecs keeps the extra specs the Capabilities filter checks, in a
// fixed order so that the first mismatch reported is deterministic: first
// the capabilities derived from Pool's fields, then those from the
// Capabilities map, each group in key order. Keys scoped
// with anything but "capabilities:" (such as "provisioning:type" or
// vendor scopes) are ignored, as in Cinder.
func compileSpecs(specs map[string]string) []specReq {
	if len(specs) == 0 {
		return nil
	}
	keys := make([]string, 0, len(specs))
	for k := range specs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]specReq, 0, len(keys))
	for _, k := range keys {
		name := k
		src := srcMap
		if i := strings.IndexByte(k, ':'); i >= 0 {
			if k[:i] != "capabilities" {
				continue
			}
			// Cinder walks nested dicts for "capabilities:a:b"; Kiln's
			// capabilities are flat, so "a:b" is the key.
			name = k[i+1:]
		} else if k == "capabilities" {
			src = srcNone
		}
		if src == srcMap {
			src = derivedSource(name)
		}
		out = append(out, specReq{name: name, src: src, req: parseRequirement(specs[k])})
	}
	// Capabilities backed by Pool's fields cost nothing to read; those in
	// the Capabilities map cost a map lookup per pool. Check the former
	// first so that a pool failing both is rejected without the lookup.
	slices.SortStableFunc(out, func(a, b specReq) int {
		return cmp.Compare(boolInt(a.src == srcMap), boolInt(b.src == srcMap))
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// capability returns the pool's value for a capability and whether the pool
// reports it.
func capability(p *Pool, src capSource, name string) (capValue, bool) {
	switch src {
	case srcMap:
		s, ok := p.Capabilities[name]
		return capValue{s: s}, ok
	case srcBackend:
		return capValue{s: p.Backend}, true
	case srcPoolName:
		n := p.Name
		if i := strings.IndexByte(n, '#'); i >= 0 {
			n = n[i+1:]
		}
		return capValue{s: n}, true
	case srcTotal:
		return gbValue(p.TotalKind, p.TotalGB), true
	case srcFree:
		return gbValue(p.FreeKind, p.FreeGB), true
	case srcAllocated:
		return capValue{num: p.AllocatedGB, isNum: true}, true
	case srcReserved:
		return capValue{num: float64(p.ReservedPercentage), isNum: true, isInt: true}, true
	case srcThin:
		return boolValue(p.ThinProvisioning), true
	case srcThick:
		return boolValue(p.ThickProvisioning), true
	case srcRatio:
		if p.OverSubscriptionAuto {
			return capValue{s: "auto"}, true
		}
		return capValue{num: p.MaxOverSubscriptionRatio, isNum: true}, true
	}
	return capValue{}, false
}

func gbValue(k storage.CapacityKind, v float64) capValue {
	if k != storage.Known {
		return capValue{s: k.String()} // Cinder reports "infinite" / "unknown"
	}
	return capValue{num: v, isNum: true}
}

func boolValue(b bool) capValue {
	if b {
		return capValue{s: "True"}
	}
	return capValue{s: "False"}
}

// matchSpecs is the Capabilities filter over compiled specs.
func matchSpecs(buf []byte, p *Pool, specs []specReq) ([]byte, bool) {
	for i := range specs {
		s := &specs[i]
		v, ok := capability(p, s.src, s.name)
		if !ok {
			return appendMissing(buf, s), false
		}
		if !s.req.match(v) {
			return appendMismatch(buf, s, v), false
		}
	}
	return buf, true
}

func appendMissing(buf []byte, s *specReq) []byte {
	buf = append(buf, "capabilities: "...)
	if s.src == srcNone {
		return append(buf, `"capabilities" names no capability`...)
	}
	buf = appendName(buf, s.name)
	return append(buf, " is not reported"...)
}

func appendMismatch(buf []byte, s *specReq, v capValue) []byte {
	buf = append(buf, "capabilities: "...)
	buf = appendName(buf, s.name)
	buf = append(buf, ' ')
	buf = appendQuoted(buf, v.str())
	buf = append(buf, " does not match "...)
	return appendQuoted(buf, s.req.raw)
}

// MatchExtraSpecs is the Capabilities filter on its own: it checks every
// extra spec with no scope or the "capabilities:" scope against the pool and
// returns the first mismatch. Other scopes (such as "provisioning:type" or
// "qos:") are ignored, and a capability the pool does not report fails.
//
// Besides Pool.Capabilities, the pool's typed fields are visible under
// Cinder's names, and win over a map entry of the same name:
// volume_backend_name, pool_name, total_capacity_gb, free_capacity_gb
// ("infinite"/"unknown" when not a number), allocated_capacity_gb and
// provisioned_capacity_gb (both AllocatedGB), reserved_percentage,
// thin_provisioning_support and thick_provisioning_support ("True"/"False"),
// and max_over_subscription_ratio ("auto" or the number). These are checked
// first, then the map-backed ones, each group in key order, so the reason
// given for a pool that fails several specs is deterministic.
func MatchExtraSpecs(p Pool, specs map[string]string) (ok bool, reason string) {
	buf, ok := matchSpecs(nil, &p, compileSpecs(specs))
	return ok, string(buf)
}

// isPySpace is Python's str.isspace() for one rune: Go's unicode.IsSpace
// plus the ASCII separators 0x1c-0x1f, which Python also splits on.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// nextWord returns the first whitespace-separated word of s and the rest,
// like one step of Python's str.split(). It returns "" when s has no words.
func nextWord(s string) (word, rest string) {
	i := 0
	for i < len(s) {
		r, n := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(s[i:])
		}
		if !isPySpace(r) {
			break
		}
		i += n
	}
	j := i
	for j < len(s) {
		r, n := rune(s[j]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(s[j:])
		}
		if isPySpace(r) {
			break
		}
		j += n
	}
	return s[i:j], s[j:]
}

func trimPySpace(s string) string {
	return strings.TrimFunc(s, isPySpace)
}

// pyBool is oslo_utils.strutils.bool_from_string(s) with strict=False and
// default=False: true for "1", "t", "true", "on", "y", "yes" in any case
// after stripping whitespace.
func pyBool(s string) bool {
	switch s { // the usual spellings, without folding
	case "True", "true", "1":
		return true
	case "False", "false", "0", "":
		return false
	}
	if s[0] <= ' ' || s[0] >= utf8.RuneSelf || s[len(s)-1] <= ' ' || s[len(s)-1] >= utf8.RuneSelf {
		s = trimPySpace(s) // rare: only then can there be space to strip
	}
	if len(s) > 4 {
		return false
	}
	// Python lowercases before comparing; no non-ASCII character lowercases
	// into one of these ASCII words, so folding ASCII letters is exact.
	var b [4]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	switch string(b[:len(s)]) {
	case "1", "t", "true", "on", "y", "yes":
		return true
	}
	return false
}

// asciiEqualFold compares s with a lowercase ASCII word, folding only ASCII
// letters.
func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// pyFloat parses s as Python's float() does for ASCII input: surrounding
// whitespace (unlike str.split, float() does not strip 0x1c-0x1f, which is
// exactly the difference between unicode.IsSpace and isPySpace), an optional sign, decimal digits with single underscores
// between digits, an optional exponent, or inf / infinity / nan in any case.
// Hexadecimal and other forms Go accepts but Python does not are rejected.
// Out-of-range values become ±Inf or 0, as in Python.
func pyFloat(s string) (float64, bool) {
	s = strings.TrimFunc(s, unicode.IsSpace)
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	body := s[i:]
	switch {
	case asciiEqualFold(body, "inf"), asciiEqualFold(body, "infinity"):
		if s[0] == '-' {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	case asciiEqualFold(body, "nan"):
		return math.NaN(), true
	}
	underscore := false
	intDigits, i, u1 := scanDigits(s, i)
	fracDigits := 0
	if i < len(s) && s[i] == '.' {
		var u2 bool
		fracDigits, i, u2 = scanDigits(s, i+1)
		u1 = u1 || u2
	}
	underscore = u1
	if intDigits == 0 && fracDigits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		var expDigits int
		var u3 bool
		expDigits, i, u3 = scanDigits(s, i)
		if expDigits == 0 {
			return 0, false
		}
		underscore = underscore || u3
	}
	if i != len(s) {
		return 0, false
	}
	if underscore {
		s = strings.ReplaceAll(s, "_", "")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return v, true
		}
		return 0, false
	}
	return v, true
}

// scanDigits scans Python's digitpart, digit (["_"] digit)*, from s[i]. It
// returns the number of digits, the index after them and whether an
// underscore was seen.
func scanDigits(s string, i int) (n, next int, underscore bool) {
	for i < len(s) {
		c := s[i]
		if '0' <= c && c <= '9' {
			n++
			i++
			continue
		}
		if c == '_' && n > 0 && i+1 < len(s) && '0' <= s[i+1] && s[i+1] <= '9' {
			underscore = true
			i++
			continue
		}
		break
	}
	return n, i, underscore
}

// pyFloatRepr spells v as Python's repr(float) does.
func pyFloatRepr(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	case math.IsNaN(v):
		return "nan"
	case v == 0:
		if math.Signbit(v) {
			return "-0.0"
		}
		return "0.0"
	}
	e := strconv.FormatFloat(v, 'e', -1, 64) // shortest digits, "d.ddde±XX"
	exp, _ := strconv.Atoi(e[strings.LastIndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	f := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsRune(f, '.') {
		f += ".0"
	}
	return f
}

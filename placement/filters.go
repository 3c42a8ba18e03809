package placement

import (
	"math"
	"strconv"
	"strings"
)

// appendAZ is AvailabilityZoneFilter's reason: the pool is in another zone
// than the one requested.
func appendAZ(buf []byte, poolAZ, az string) []byte {
	buf = append(buf, "availability zone "...)
	buf = appendQuoted(buf, poolAZ)
	buf = append(buf, " != "...)
	return appendQuoted(buf, az)
}

// appendTried is IgnoreAttemptedHostsFilter's reason.
func appendTried(buf []byte) []byte {
	return append(buf, "already tried"...)
}

// backendOf returns the "host@backend" part of a pool name, as Cinder's
// extract_host(host, 'backend') does. The affinity filters (Cinder's
// SameBackendFilter and DifferentBackendFilter) compare pools at this level.
func backendOf(name string) string {
	if i := strings.IndexByte(name, '#'); i >= 0 {
		return name[:i]
	}
	return name
}

// appendNotSame is SameBackendFilter's reason: the pool's backend is not the
// backend of any pool named in the same-backend hint.
func appendNotSame(buf []byte, backend string) []byte {
	buf = append(buf, "affinity: backend "...)
	buf = appendQuoted(buf, backend)
	return append(buf, " is not the backend of any same-backend hint"...)
}

// appendExcluded is DifferentBackendFilter's reason: the pool's backend is
// the backend of a pool named in the different-backend hint.
func appendExcluded(buf []byte, backend string) []byte {
	buf = append(buf, "affinity: backend "...)
	buf = appendQuoted(buf, backend)
	return append(buf, " is excluded by a different-backend hint"...)
}

// maxQuoted bounds a quoted value in a reason so that reasons stay short
// whatever a capability or extra spec contains.
const maxQuoted = 64

func appendQuoted(buf []byte, s string) []byte {
	if len(s) <= maxQuoted {
		return strconv.AppendQuote(buf, s)
	}
	buf = strconv.AppendQuote(buf, s[:maxQuoted])
	return append(buf, "..."...)
}

// appendName appends a capability name, quoted only when it is empty or
// holds characters that would make the reason ambiguous.
func appendName(buf []byte, name string) []byte {
	plain := name != "" && len(name) <= maxQuoted
	for i := 0; plain && i < len(name); i++ {
		c := name[i]
		plain = c > ' ' && c < 0x7f && c != '"'
	}
	if plain {
		return append(buf, name...)
	}
	return appendQuoted(buf, name)
}

// appendGB formats a capacity in GiB with at most two decimals ("5", "2.5",
// "2.33").
func appendGB(buf []byte, v float64) []byte {
	return appendTrimmed(buf, v, 0)
}

// appendRatio formats a ratio with one or two decimals ("20.0", "21.5",
// "21.46").
func appendRatio(buf []byte, v float64) []byte {
	return appendTrimmed(buf, v, 1)
}

func appendTrimmed(buf []byte, v float64, keep int) []byte {
	if v != v || v > 1e15 || v < -1e15 {
		return strconv.AppendFloat(buf, v, 'g', 6, 64)
	}
	// Integer arithmetic instead of AppendFloat(v, 'f', 2): reasons are
	// formatted for thousands of pools per decision.
	c := int64(math.Round(v * 100))
	if c < 0 {
		buf = append(buf, '-')
		c = -c
	}
	buf = strconv.AppendInt(buf, c/100, 10)
	frac := c % 100
	switch {
	case frac == 0 && keep == 0:
		return buf
	case frac == 0:
		return append(buf, '.', '0')
	case frac%10 == 0:
		return append(buf, '.', byte('0'+frac/10))
	}
	return append(buf, '.', byte('0'+frac/10), byte('0'+frac%10))
}

package placement

import (
	"errors"
	"strconv"
	"strings"
)

// ErrNoValidPool is the sentinel for "no pool can take this volume"; it is
// wrapped by *NoValidPoolError. Cinder's NoValidBackend.
var ErrNoValidPool = errors.New("no valid pool")

// maxListedRejections bounds how many pools NoValidPoolError.Error lists.
const maxListedRejections = 20

// NoValidPoolError explains why no pool passed the filters: every pool and
// the filter that rejected it.
type NoValidPoolError struct {
	// SizeGB is the size of the request that found no pool.
	SizeGB int64
	// Pools is how many pools were considered.
	Pools int
	// Rejections lists each rejected pool, in input order.
	Rejections []Rejection
}

// Error returns a short human-readable explanation, per pool, such as
// `no valid pool for 5 GiB: pool a: capacity 3 GiB free < 5 GiB requested;
// pool b: capabilities: volume_backend_name "lvm" does not match "nfs"`.
// At most 20 pools are listed, followed by "and N more".
func (e *NoValidPoolError) Error() string {
	var b strings.Builder
	b.WriteString("no valid pool for ")
	b.WriteString(strconv.FormatInt(e.SizeGB, 10))
	b.WriteString(" GiB: ")
	if e.Pools == 0 {
		b.WriteString("no pools are registered")
		return b.String()
	}
	if len(e.Rejections) == 0 {
		b.WriteString("all ")
		b.WriteString(strconv.Itoa(e.Pools))
		b.WriteString(" pools were rejected")
		return b.String()
	}
	for i, r := range e.Rejections {
		if i == maxListedRejections {
			b.WriteString("; and ")
			b.WriteString(strconv.Itoa(len(e.Rejections) - i))
			b.WriteString(" more")
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString("pool ")
		b.WriteString(r.Pool)
		b.WriteString(": ")
		b.WriteString(r.Reason)
	}
	return b.String()
}

// Unwrap returns ErrNoValidPool, so errors.Is(err, ErrNoValidPool) holds.
func (e *NoValidPoolError) Unwrap() error { return ErrNoValidPool }

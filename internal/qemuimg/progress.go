package qemuimg

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/kilnstore/kiln/internal/storage"
)

// progressWriter parses what qemu-img -p writes to stdout: one
// "    (12.34/100%)" per update, each ended by '\r', and a final '\n'. It
// reports each percentage that is higher than the last one; anything else
// on stdout is ignored.
type progressWriter struct {
	report func(pct float64)
	line   []byte
	long   bool // the current line outgrew maxProgressLine: not an update
	last   float64
	seen   bool
}

const maxProgressLine = 64

func (w *progressWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\r' && c != '\n' {
			if len(w.line) < maxProgressLine {
				w.line = append(w.line, c)
			} else {
				w.long = true
			}
			continue
		}
		if pct, ok := parseProgress(string(w.line)); ok && !w.long && (!w.seen || pct > w.last) {
			w.last, w.seen = pct, true
			w.report(pct)
		}
		w.line, w.long = w.line[:0], false
	}
	return len(p), nil
}

// parseProgress parses "(12.34/100%)" with surrounding blanks.
func parseProgress(line string) (float64, bool) {
	s := strings.TrimSpace(line)
	num, ok := strings.CutPrefix(s, "(")
	if !ok {
		return 0, false
	}
	if num, ok = strings.CutSuffix(num, "/100%)"); !ok || num == "" {
		return 0, false
	}
	for i := 0; i < len(num); i++ {
		if (num[i] < '0' || num[i] > '9') && num[i] != '.' {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
		return 0, false
	}
	return v, true
}

// byteProgress turns percentages of an image of total bytes into calls of
// fn (or, if fn is nil, of the context's storage.ProgressFunc). done
// reports the end, (total, total), unless that was the last call.
type byteProgress struct {
	fn    storage.ProgressFunc
	total int64
	last  int64
}

func newByteProgress(ctx context.Context, fn storage.ProgressFunc, total int64) *byteProgress {
	if fn == nil {
		fn = storage.Progress(ctx)
	}
	return &byteProgress{fn: fn, total: total, last: -1}
}

func (p *byteProgress) percent(pct float64) {
	n := min(int64(pct/100*float64(p.total)), p.total)
	if n > p.last {
		p.last = n
		p.fn(n, p.total)
	}
}

func (p *byteProgress) done() {
	if p.last != p.total {
		p.last = p.total
		p.fn(p.total, p.total)
	}
}

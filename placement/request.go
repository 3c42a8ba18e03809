package placement

// request is a Request prepared once per Place call (extra specs parsed, hint
// lists reduced to backend names) plus the reasons written during the call.
type request struct {
	size     int64
	az       string
	thick    bool
	specs    []specReq
	tried    []string
	triedSet map[string]struct{}
	same     []string
	diff     []string

	// The text of every distinct reason is written back to back into buf,
	// a chunk that is turned into a string (texts) whenever the next
	// reason might not fit, and reused; reasons describes each reason and a
	// rejected pool refers to one by index. Across thousands of pools most
	// reasons repeat (every NFS pool fails volume_backend_name the same
	// way), so the filters whose reason depends on one string remember the
	// reasons they wrote for recent values and reuse them.
	buf     []byte
	texts   []string
	reasons []reason
	memos   []filterMemo // one per configured filter

	// active lists the filters that can reject anything for this request,
	// in configured order: an AZ filter without a requested zone, or the
	// affinity filters without hints, pass every pool and are skipped.
	active []activeFilter

	// When the active filters are in filterKind order (as in the default
	// configuration), inOrder is set and on[k] holds the index of the
	// active filter of kind k, or -1: filterInOrder then checks them in a
	// fixed sequence instead of looping over active.
	inOrder bool
	on      [fDifferent + 1]int
}

type activeFilter struct {
	kind filterKind
	idx  int // index in Engine.filters
}

// reason is the text texts[chunk][start:end] (or buf[start:end] while chunk
// is still being written), written by the filter at index filter of
// Engine.filters.
type reason struct {
	chunk      int32
	start, end int32
	filter     uint8
}

// Reason text chunks: a reason is at most about a kilobyte (names and
// values are cut to 64 bytes before quoting), so a chunk with less room
// left than maxReasonLen is flushed before the next reason.
const (
	chunkSize    = 8 << 10
	maxReasonLen = 1 << 10
)

// begin returns where the next reason starts in buf, flushing buf to texts
// first if the reason might not fit.
func (r *request) begin() int {
	if cap(r.buf)-len(r.buf) < maxReasonLen && len(r.buf) > 0 {
		r.texts = append(r.texts, string(r.buf))
		r.buf = r.buf[:0]
	}
	return len(r.buf)
}

// finish flushes the last chunk and returns the text of every reason.
func (r *request) finish() []string {
	if len(r.buf) > 0 {
		r.texts = append(r.texts, string(r.buf))
		r.buf = r.buf[:0]
	}
	return r.texts
}

// text returns the text of reason id; after finish.
func (r *request) text(id int32) string {
	rs := r.reasons[id]
	return r.texts[rs.chunk][rs.start:rs.end]
}

// filterMemo holds what one filter remembers of the reasons it wrote.
type filterMemo struct {
	a, b  memo       // by zone or backend (b: DifferentBackend part of AffinityFilter)
	tried int32      // reason id of "already tried", or -1
	specs []specMemo // CapabilitiesFilter: one per spec
}

// specMemo remembers the reasons one extra spec produced.
type specMemo struct {
	values  memo  // mismatching capability value -> reason id
	missing int32 // reason id of "not reported", or -1
}

// memoSize is how many recent values a memo remembers; a handful covers the
// zones, backends and capability values a cluster has.
const memoSize = 4

// memo maps a few recent keys to the reason written for them.
type memo struct {
	keys [memoSize]string
	ids  [memoSize]int32
	n    int // filled entries
	next int // entry replaced next once full
}

func (m *memo) find(key string) (int32, bool) {
	for i := 0; i < m.n; i++ {
		if m.keys[i] == key {
			return m.ids[i], true
		}
	}
	return 0, false
}

func (m *memo) put(key string, id int32) {
	i := m.n
	if i < memoSize {
		m.n++
	} else {
		i = m.next
		m.next = (m.next + 1) % memoSize
	}
	m.keys[i], m.ids[i] = key, id
}

// Above this many tried pools a set beats a linear scan.
const triedSetThreshold = 16

func (e *Engine) prepare(req *Request) *request {
	r := &request{
		size:  req.SizeGB,
		az:    req.AvailabilityZone,
		thick: ThickRequested(req.ExtraSpecs),
		tried: req.Tried,
		buf:   make([]byte, 0, chunkSize),
		memos: make([]filterMemo, len(e.filters)),
	}
	for fi, f := range e.filters {
		r.memos[fi].tried = -1
		if f.kind == fCapabilities {
			r.specs = compileSpecs(req.ExtraSpecs)
			r.memos[fi].specs = make([]specMemo, len(r.specs))
			for i := range r.memos[fi].specs {
				r.memos[fi].specs[i].missing = -1
			}
		}
	}
	if len(req.Tried) > triedSetThreshold {
		r.triedSet = make(map[string]struct{}, len(req.Tried))
		for _, t := range req.Tried {
			r.triedSet[t] = struct{}{}
		}
	}
	for _, n := range req.SameBackendAs {
		r.same = append(r.same, backendOf(n))
	}
	for _, n := range req.DifferentBackendFrom {
		r.diff = append(r.diff, backendOf(n))
	}
	for fi, f := range e.filters {
		var idle bool
		switch f.kind {
		case fAZ:
			idle = r.az == ""
		case fCapabilities:
			idle = len(r.specs) == 0
		case fTried:
			idle = len(r.tried) == 0
		case fAffinity:
			idle = len(r.same) == 0 && len(r.diff) == 0
		case fSame:
			idle = len(r.same) == 0
		case fDifferent:
			idle = len(r.diff) == 0
		}
		if !idle {
			r.active = append(r.active, activeFilter{kind: f.kind, idx: fi})
		}
	}
	for k := range r.on {
		r.on[k] = -1
	}
	r.inOrder = true
	for i, f := range r.active {
		r.on[f.kind] = f.idx
		if i > 0 && f.kind < r.active[i-1].kind {
			r.inOrder = false
		}
	}
	return r
}

// add records the reason text written to buf since start and returns its id.
func (r *request) add(fi, start int) int32 {
	r.reasons = append(r.reasons, reason{chunk: int32(len(r.texts)), start: int32(start), end: int32(len(r.buf)), filter: uint8(fi)})
	return int32(len(r.reasons) - 1)
}

// filter runs the active filters on p in order. It returns -1 when p passes
// them all, otherwise the id of the reason the first failing one gives.
// When r.inOrder is set, filterInOrder does the same faster.
// Pools mostly pass, so the cheap checks are inline here and reasons are
// built out of line. All filters run on one pool before the next pool (rather
// than each filter over all pools, as Cinder does, with the same result) so
// that a pool's cache lines are loaded once.
func (r *request) filter(p *Pool) int32 {
	for _, f := range r.active {
		id := int32(-1)
		switch f.kind {
		case fAZ:
			if p.AvailabilityZone != r.az {
				id = r.rejectAZ(f.idx, p)
			}
		case fCapacity:
			if v := capacity(p, r.size, r.thick); v.code != capFits {
				start := r.begin()
				r.buf = capReason(r.buf, v, p, r.size)
				id = r.add(f.idx, start)
			}
		case fCapabilities:
			id = r.matchSpecs(f.idx, p)
		case fTried:
			id = r.checkTried(f.idx, p)
		case fAffinity:
			m := &r.memos[f.idx]
			if id = r.checkSame(f.idx, &m.a, p); id < 0 {
				id = r.checkDifferent(f.idx, &m.b, p)
			}
		case fSame:
			id = r.checkSame(f.idx, &r.memos[f.idx].a, p)
		case fDifferent:
			id = r.checkDifferent(f.idx, &r.memos[f.idx].a, p)
		}
		if id >= 0 {
			return id
		}
	}
	return -1
}

// filterInOrder is filter for active filters in filterKind order: the same
// checks as a fixed sequence of predictable branches.
func (r *request) filterInOrder(p *Pool) int32 {
	if fi := r.on[fAZ]; fi >= 0 && p.AvailabilityZone != r.az {
		return r.rejectAZ(fi, p)
	}
	if fi := r.on[fCapacity]; fi >= 0 {
		if v := capacity(p, r.size, r.thick); v.code != capFits {
			start := r.begin()
			r.buf = capReason(r.buf, v, p, r.size)
			return r.add(fi, start)
		}
	}
	if fi := r.on[fCapabilities]; fi >= 0 {
		if id := r.matchSpecs(fi, p); id >= 0 {
			return id
		}
	}
	if r.on[fTried] >= 0 || r.on[fAffinity] >= 0 || r.on[fSame] >= 0 || r.on[fDifferent] >= 0 {
		return r.filterHints(p)
	}
	return -1
}

// filterHints runs the filters driven by request hints (retries, affinity),
// which are active only when the request carries such hints.
func (r *request) filterHints(p *Pool) int32 {
	if fi := r.on[fTried]; fi >= 0 {
		if id := r.checkTried(fi, p); id >= 0 {
			return id
		}
	}
	if fi := r.on[fAffinity]; fi >= 0 {
		m := &r.memos[fi]
		if id := r.checkSame(fi, &m.a, p); id >= 0 {
			return id
		}
		if id := r.checkDifferent(fi, &m.b, p); id >= 0 {
			return id
		}
	}
	if fi := r.on[fSame]; fi >= 0 {
		if id := r.checkSame(fi, &r.memos[fi].a, p); id >= 0 {
			return id
		}
	}
	if fi := r.on[fDifferent]; fi >= 0 {
		if id := r.checkDifferent(fi, &r.memos[fi].a, p); id >= 0 {
			return id
		}
	}
	return -1
}

// rejectAZ is AvailabilityZoneFilter rejecting p, whose zone is not the one
// requested.
func (r *request) rejectAZ(fi int, p *Pool) int32 {
	m := &r.memos[fi].a
	if id, ok := m.find(p.AvailabilityZone); ok {
		return id
	}
	start := r.begin()
	r.buf = appendAZ(r.buf, p.AvailabilityZone, r.az)
	id := r.add(fi, start)
	m.put(p.AvailabilityZone, id)
	return id
}

// checkTried is IgnoreAttemptedHostsFilter: a pool already attempted for
// this request is skipped.
func (r *request) checkTried(fi int, p *Pool) int32 {
	tried := false
	if r.triedSet != nil {
		_, tried = r.triedSet[p.Name]
	} else {
		for _, t := range r.tried {
			if t == p.Name {
				tried = true
				break
			}
		}
	}
	if !tried {
		return -1
	}
	m := &r.memos[fi]
	if m.tried < 0 {
		start := r.begin()
		r.buf = appendTried(r.buf)
		m.tried = r.add(fi, start)
	}
	return m.tried
}

// checkSame is SameBackendFilter: with hints, p's backend must be the
// backend of one of the hinted pools.
func (r *request) checkSame(fi int, m *memo, p *Pool) int32 {
	if len(r.same) == 0 {
		return -1
	}
	b := backendOf(p.Name)
	for _, s := range r.same {
		if s == b {
			return -1
		}
	}
	if id, ok := m.find(b); ok {
		return id
	}
	start := r.begin()
	r.buf = appendNotSame(r.buf, b)
	id := r.add(fi, start)
	m.put(b, id)
	return id
}

// checkDifferent is DifferentBackendFilter: p's backend must not be the
// backend of any hinted pool.
func (r *request) checkDifferent(fi int, m *memo, p *Pool) int32 {
	if len(r.diff) == 0 {
		return -1
	}
	b := backendOf(p.Name)
	for _, s := range r.diff {
		if s == b {
			if id, ok := m.find(b); ok {
				return id
			}
			start := r.begin()
			r.buf = appendExcluded(r.buf, b)
			id := r.add(fi, start)
			m.put(b, id)
			return id
		}
	}
	return -1
}

// matchSpecs is the Capabilities filter: the first spec p fails gives the
// reason.
func (r *request) matchSpecs(fi int, p *Pool) int32 {
	for si := range r.specs {
		s := &r.specs[si]
		switch s.src {
		case srcMap:
			val, ok := p.Capabilities[s.name]
			if ok && s.req.matchString(val) {
				continue
			}
			return r.specReason(fi, s, &r.memos[fi].specs[si], capValue{s: val}, ok)
		case srcBackend:
			if s.req.matchString(p.Backend) {
				continue
			}
			return r.specReason(fi, s, &r.memos[fi].specs[si], capValue{s: p.Backend}, true)
		}
		v, ok := capability(p, s.src, s.name)
		if ok && s.req.match(v) {
			continue
		}
		return r.specReason(fi, s, &r.memos[fi].specs[si], v, ok)
	}
	return -1
}

// specReason returns the reason a pool fails spec s: its capability v is
// missing (!ok) or does not match.
func (r *request) specReason(fi int, s *specReq, m *specMemo, v capValue, ok bool) int32 {
	switch {
	case !ok:
		if m.missing < 0 {
			start := r.begin()
			r.buf = appendMissing(r.buf, s)
			m.missing = r.add(fi, start)
		}
		return m.missing
	case v.isNum:
		// Numbers are not memoised: they rarely repeat, and their string
		// form would have to be built to compare.
		start := r.begin()
		r.buf = appendMismatch(r.buf, s, v)
		return r.add(fi, start)
	}
	if id, hit := m.values.find(v.s); hit {
		return id
	}
	start := r.begin()
	r.buf = appendMismatch(r.buf, s, v)
	id := r.add(fi, start)
	m.values.put(v.s, id)
	return id
}

package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// populatedFSM returns an FSM holding every kind of record, at applied
// index 42.
func populatedFSM(t testing.TB) *FSM {
	t.Helper()
	f := NewFSM()
	s := f.State
	do := func(c Command) {
		t.Helper()
		entry, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(entry).Err; err != nil {
			t.Fatalf("apply %T: %v", c, err)
		}
	}
	do(RegisterAgent{Agent: "a1", Zone: "nova", RPCAddr: "127.0.0.1:1", At: t0, Pools: []storage.PoolInfo{{
		Name: "local", Backend: "local", Driver: "nfs", Protocol: "local", ThickProvisioning: true,
		MaxOverSubscriptionRatio: "20.0", Capabilities: map[string]string{"c": "d"},
	}}})
	pool := PoolName("a1", "local", "local")
	do(SetQuota{ProjectID: "p", Limits: map[string]int64{QuotaVolumes: 50}})
	do(CreateType{Type: VolumeType{ID: "33333333-3333-4333-8333-333333333333", Name: "t", ExtraSpecs: map[string]string{"k": "v"}, CreatedAt: t0}})
	for i := 1; i <= 12; i++ {
		v := newVolume(i, "p", int64(i))
		v.Metadata = map[string]string{"n": fmt.Sprint(i)}
		do(CreateVolume{Volume: v})
		if i%2 == 0 {
			do(ScheduleVolume{ID: vid(i), Pool: pool, TotalGB: 1000, FreeGB: 1000})
			do(VolumeCreated{ID: vid(i), Pool: pool, Location: "/x", At: t0})
		}
	}
	do(SetServiceState{Host: "c1", Binary: BinaryScheduler, Up: true, At: t0})
	f.applied.Store(42)
	return f
}

func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func restore(f *FSM, b []byte) error { return f.Restore(io.NopCloser(bytes.NewReader(b))) }

// dump renders everything Restore may change, the derived indexes included.
func dump(t testing.TB, f *FSM) string {
	t.Helper()
	s := f.State
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, err := json.Marshal(map[string]any{"data": s.d, "usage": s.usage, "pool_use": s.poolUse,
		"type_uses": s.typeUses, "applied": f.AppliedIndex()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// buildSnapshot frames meta and vols as a version 2 snapshot with a valid
// checksum, whatever they contain.
func buildSnapshot(index uint64, meta []byte, vols ...[]byte) []byte {
	b := headerLine(index)
	for _, p := range append([][]byte{meta}, vols...) {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func TestSnapshotFormat(t *testing.T) {
	f := populatedFSM(t)
	b := persist(t, f)
	if line, _, _ := bytes.Cut(b, []byte("\n")); string(line) != `{"version":2,"index":42}` {
		t.Fatalf("header line = %q", line)
	}
	// A coordinator that reads only version 1 decodes the header as a
	// version 1 document and reports the version.
	var v1 struct {
		Version int    `json:"version"`
		Index   uint64 `json:"index"`
		Data    data   `json:"data"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&v1); err != nil || v1.Version != 2 {
		t.Fatalf("version 1 reader: version %d, err %v", v1.Version, err)
	}
	g := NewFSM()
	if err := restore(g, b); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != 42 {
		t.Fatalf("applied index = %d", g.AppliedIndex())
	}
	if dump(t, g) != dump(t, f) {
		t.Fatalf("state differs after restore:\n%s\n%s", dump(t, g), dump(t, f))
	}
	// The same state again: maps are written in any order, but the
	// checksum and frames must still agree.
	if err := restore(NewFSM(), persist(t, f)); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreVersion1(t *testing.T) {
	f := populatedFSM(t)
	b, err := json.Marshal(map[string]any{"version": 1, "index": 42, "data": f.State.d})
	if err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := restore(g, append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	if dump(t, g) != dump(t, f) {
		t.Fatal("state differs after restoring a version 1 snapshot")
	}
	for name, bad := range map[string]string{
		"no data":     `{"version":1,"index":3}`,
		"null volume": `{"version":1,"index":3,"data":{"volumes":{"x":null}}}`,
		"null type":   `{"version":1,"index":3,"data":{"types":{"x":null}}}`,
		"truncated":   string(b[:len(b)/2]),
	} {
		if err := restore(g, []byte(bad)); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
	if dump(t, g) != dump(t, f) {
		t.Fatal("refused snapshots changed the state")
	}
}

func TestRestoreUnknownVersion(t *testing.T) {
	f := populatedFSM(t)
	b := persist(t, f)
	b = bytes.Replace(b, []byte(`"version":2`), []byte(`"version":3`), 1)
	err := restore(NewFSM(), b)
	if err == nil || !strings.Contains(err.Error(), "version 3, this coordinator reads versions 1 and 2") {
		t.Fatalf("err = %v", err)
	}
}

// victim is an FSM with state of its own, to check that failed restores
// leave it alone.
func victim(t *testing.T) (*FSM, string) {
	f := NewFSM()
	mustApply(t, f.State, CreateVolume{Volume: newVolume(500, "q", 3)})
	f.applied.Store(7)
	return f, dump(t, f)
}

func TestRestoreTruncatedSnapshot(t *testing.T) {
	b := persist(t, populatedFSM(t))
	g, want := victim(t)
	for n := range len(b) {
		if err := restore(g, b[:n]); err == nil {
			t.Fatalf("snapshot cut at %d of %d bytes restored", n, len(b))
		}
	}
	if dump(t, g) != want {
		t.Fatal("a truncated snapshot changed the state")
	}
}

func TestRestoreCorruptSnapshot(t *testing.T) {
	b := persist(t, populatedFSM(t))
	g, want := victim(t)
	c := make([]byte, len(b))
	for i := range b {
		copy(c, b)
		c[i] ^= 0xff
		if err := restore(g, c); err == nil {
			t.Fatalf("snapshot with byte %d of %d flipped restored", i, len(b))
		}
	}
	if err := restore(g, append(b[:len(b):len(b)], 0)); err == nil || !strings.Contains(err.Error(), "after the end") {
		t.Fatalf("trailing byte: %v", err)
	}
	// Well-framed, correctly summed, but wrong inside.
	meta := []byte(`{"volume_count":1}`)
	vol := appendVolume(nil, &Volume{ID: "x"})
	for name, s := range map[string][]byte{
		"no frames":       append(headerLine(1), 0, 0, 0, 0, 0),
		"bad metadata":    buildSnapshot(1, []byte("{"), vol),
		"null type":       buildSnapshot(1, []byte(`{"volume_count":1,"types":{"x":null}}`), vol),
		"null pool":       buildSnapshot(1, []byte(`{"volume_count":1,"pools":{"x":null}}`), vol),
		"null service":    buildSnapshot(1, []byte(`{"volume_count":1,"services":{"x":null}}`), vol),
		"count too high":  buildSnapshot(1, []byte(`{"volume_count":2}`), vol),
		"count too low":   buildSnapshot(1, []byte(`{"volume_count":0}`), vol),
		"duplicate":       buildSnapshot(1, []byte(`{"volume_count":2}`), vol, vol),
		"bad volume":      buildSnapshot(1, meta, []byte{vfID, 5, 'x'}),
		"bad boolean":     buildSnapshot(1, meta, append(vol, vfBootable, 1, 2)),
		"bad time":        buildSnapshot(1, meta, append(vol, vfCreatedAt, 1, 9)),
		"bad list length": buildSnapshot(1, meta, append(vol, vfTried, 2, 5, 1)),
	} {
		if err := restore(g, s); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
	if dump(t, g) != want {
		t.Fatal("a corrupt snapshot changed the state")
	}
	// The framing above is right: the same with good content restores.
	if err := restore(g, buildSnapshot(9, meta, vol)); err != nil || g.State.Volume("x") == nil || g.AppliedIndex() != 9 {
		t.Fatalf("well-formed snapshot: %v", err)
	}
}

// fill sets every field reachable from v to a value that is not zero.
func fill(t testing.TB, v reflect.Value, path string, n *int) {
	*n++
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		// An offset, and nanoseconds, to check both survive.
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, *n, time.FixedZone("", 3600))))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("%s %d é", path, *n))
	case reflect.Int, reflect.Int64:
		v.SetInt(-int64(1<<40 + *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), path+"."+v.Type().Field(i).Name, n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i), n)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), path, n)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, path+" key", n)
			fill(t, e, path+" value", n)
			v.SetMapIndex(k, e)
		}
	default:
		t.Fatalf("%s: %s is new to this test: extend fill and the volume encoding (snapshot_volume.go)", path, v.Type())
	}
}

// TestVolumeCodecCoversEveryField fails when a field is added to Volume but
// not to its snapshot encoding, which would lose the field on restore.
func TestVolumeCodecCoversEveryField(t *testing.T) {
	var v Volume
	fill(t, reflect.ValueOf(&v).Elem(), "Volume", new(int))
	got, err := decodeVolume(appendVolume(nil, &v))
	if err != nil {
		t.Fatal(err)
	}
	rv, rg := reflect.ValueOf(v), reflect.ValueOf(*got)
	for i := range rv.NumField() {
		if !reflect.DeepEqual(rv.Field(i).Interface(), rg.Field(i).Interface()) {
			t.Errorf("Volume.%s does not survive a snapshot: wrote %v, read %v; give it a field number in snapshot_volume.go",
				rv.Type().Field(i).Name, rv.Field(i), rg.Field(i))
		}
	}
}

// TestSnapshotCoversEveryRecord fails when a record or field is added to
// data but lost by a snapshot.
func TestSnapshotCoversEveryRecord(t *testing.T) {
	var d data
	fill(t, reflect.ValueOf(&d).Elem(), "data", new(int))
	vols := d.Volumes
	d.Volumes = map[string]*Volume{}
	for _, v := range vols {
		d.Volumes[v.ID] = v
	}
	var b bytes.Buffer
	if err := writeSnapshot(&b, 5, &d); err != nil {
		t.Fatal(err)
	}
	got, index, err := readSnapshot(&b)
	if err != nil || index != 5 {
		t.Fatalf("index %d, err %v", index, err)
	}
	rd, rg := reflect.ValueOf(d), reflect.ValueOf(got)
	for i := range rd.NumField() {
		if !reflect.DeepEqual(rd.Field(i).Interface(), rg.Field(i).Interface()) {
			t.Errorf("data.%s does not survive a snapshot:\nwrote %v\nread  %v", rd.Type().Field(i).Name, rd.Field(i), rg.Field(i))
		}
	}
}

// TestSnapshotCopiesEveryMap fails when a map is added to data but not
// copied by FSM.Snapshot: Persist would read it while commands change it,
// and the snapshot could hold later writes.
func TestSnapshotCopiesEveryMap(t *testing.T) {
	f := NewFSM()
	s := f.State
	fill(t, reflect.ValueOf(&s.d).Elem(), "data", new(int))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	rs, rc := reflect.ValueOf(s.d), reflect.ValueOf(snap.(*snapshot).d)
	for i := range rs.NumField() {
		name := rs.Type().Field(i).Name
		if !reflect.DeepEqual(rs.Field(i).Interface(), rc.Field(i).Interface()) {
			t.Errorf("data.%s differs in the snapshot", name)
		}
		if rs.Field(i).Kind() == reflect.Map && rs.Field(i).UnsafePointer() == rc.Field(i).UnsafePointer() {
			t.Errorf("data.%s is shared with the snapshot, not copied by FSM.Snapshot", name)
		}
	}
	for p, q := range s.d.Quotas {
		if reflect.ValueOf(q).UnsafePointer() == reflect.ValueOf(snap.(*snapshot).d.Quotas[p]).UnsafePointer() {
			t.Errorf("quotas of %s are shared with the snapshot", p)
		}
	}
}

func TestVolumeCodecEdgeCases(t *testing.T) {
	loc := time.FixedZone("", -(5*3600 + 30*60))
	for name, v := range map[string]Volume{
		"zero":         {},
		"empty":        {Metadata: map[string]string{}, Tried: []string{}, Hints: Hints{SameHost: []string{}, DifferentHost: []string{}}},
		"empty values": {ID: "x", Metadata: map[string]string{"": ""}, Tried: []string{"", ""}},
		"extremes": {ID: strings.Repeat("é", 300), SizeGB: -1 << 63, CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
			UpdatedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, loc), TaskStartedAt: time.Unix(0, 0).UTC()},
		"max size": {SizeGB: 1<<63 - 1},
	} {
		got, err := decodeVolume(appendVolume(nil, &v))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(*got, v) {
			t.Errorf("%s: wrote %+v, read %+v", name, v, *got)
		}
	}
	// Unknown fields, from a later version, are skipped.
	b := appendVolume(nil, &Volume{ID: "x", Name: "n"})
	b = appendStringField(b, 1000, "later")
	b = appendVolume(b, &Volume{Status: StatusAvailable})
	got, err := decodeVolume(b)
	if err != nil || got.ID != "x" || got.Name != "n" || got.Status != StatusAvailable {
		t.Fatalf("with an unknown field: %+v, %v", got, err)
	}
}

func FuzzRestore(f *testing.F) {
	// Small seeds: the fuzzer minimizes every input it finds interesting.
	small := NewFSM()
	v := newVolume(1, "p", 1)
	v.Metadata = map[string]string{"a": "b"}
	small.State.put(&v)
	good := persist(f, small)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":1,"index":3,"data":{"volumes":{"x":{"id":"x"}}}}`))
	f.Add([]byte(`{"version":2,"index":3}` + "\n\x00\x00\x00\x00\x00"))
	f.Add([]byte{})
	fresh := func() *FSM {
		g := NewFSM()
		g.applied.Store(7)
		return g
	}
	want := dump(f, fresh())
	f.Fuzz(func(t *testing.T, b []byte) {
		g := fresh()
		if err := restore(g, b); err != nil && dump(t, g) != want {
			t.Fatalf("failed restore (%v) changed the state", err)
		}
	})
}

// FuzzRestoreFrames reaches past the checksum: it frames and sums whatever
// the fuzzer gives.
func FuzzRestoreFrames(f *testing.F) {
	f.Add([]byte(`{"volume_count":1,"types":{"x":{"id":"x"}}}`), appendVolume(nil, &Volume{ID: "x", Tried: []string{"a"}}))
	f.Add([]byte(`{"volume_count":1,"pools":{"x":null}}`), []byte{vfID, 1, 'x', vfCreatedAt, 15, 1})
	f.Fuzz(func(t *testing.T, meta, vol []byte) {
		if len(meta) == 0 || len(vol) == 0 {
			return
		}
		g := NewFSM()
		want := dump(t, g)
		if err := restore(g, buildSnapshot(1, meta, vol)); err != nil && dump(t, g) != want {
			t.Fatalf("failed restore (%v) changed the state", err)
		}
	})
}

func FuzzDecodeVolume(f *testing.F) {
	var v Volume
	fill(f, reflect.ValueOf(&v).Elem(), "Volume", new(int))
	f.Add(appendVolume(nil, &v))
	f.Add(appendVolume(nil, &Volume{ID: "x", Metadata: map[string]string{}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte("\x16\x0f\x0100000000A00000"))
	f.Fuzz(func(t *testing.T, p []byte) {
		// The varint reader agrees with encoding/binary.
		r := fieldReader{s: string(p)}
		x, err := r.uvarint()
		if y, n := binary.Uvarint(p); (n > 0) != (err == nil) || (n > 0 && (x != y || len(r.s) != len(p)-n)) {
			t.Fatalf("uvarint: %d, %v; encoding/binary: %d, %d", x, err, y, n)
		}
		v, err := decodeVolume(p)
		if err != nil {
			return
		}
		// Encodings are compared rather than volumes: time.UnmarshalBinary
		// takes nanoseconds past 1e9, which makes a time equal to, but not
		// reflect.DeepEqual to, the one it reads back.
		b := appendVolume(nil, v)
		w, err := decodeVolume(b)
		if err != nil || !bytes.Equal(appendVolume(nil, w), b) {
			t.Fatalf("re-encoding changed the volume: %+v, %+v, %v", v, w, err)
		}
	})
}

// The benchmarks below split BenchmarkSnapshotRestore100k into its parts.

func fsm100k(b *testing.B) *FSM {
	f := NewFSM()
	s := f.State
	for i := range 100000 {
		v := newVolume(i, fmt.Sprintf("p%d", i%100), 1)
		v.Pool = "a@b#c"
		v.Status = StatusAvailable
		v.ConsumesQuota = true
		s.d.Volumes[v.ID] = &v
	}
	s.reset(s.d)
	return f
}

func BenchmarkSnapshotPersist100k(b *testing.B) {
	f := fsm100k(b)
	var out sink
	for b.Loop() {
		out.Reset()
		snap, _ := f.Snapshot()
		if err := snap.Persist(&out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.Len()), "bytes")
}

func BenchmarkSnapshotDecode100k(b *testing.B) {
	snap := persist(b, fsm100k(b))
	for b.Loop() {
		if _, _, err := readSnapshot(bytes.NewReader(snap)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshotRestoreOnly100k(b *testing.B) {
	snap := persist(b, fsm100k(b))
	for b.Loop() {
		if err := restore(NewFSM(), snap); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSnapshotIsDeterministic(t *testing.T) {
	f := populatedFSM(t)
	v := newVolume(100, "p", 1)
	v.Metadata = map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}
	f.State.put(&v)
	b := persist(t, f)
	for range 20 {
		if !bytes.Equal(persist(t, f), b) {
			t.Fatal("the same state made different snapshots")
		}
	}
}

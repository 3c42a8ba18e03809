package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/nfs"
)

// testBackend is the real state machine without Raft: Apply encodes the
// command as a log entry and applies it, exactly as the FSM does.
type testBackend struct {
	st *state.State

	mu       sync.Mutex
	caps     map[string]gossip.PoolCapacity
	services []ServiceStatus
	applied  int
	fail     error // when set, Apply fails with this infrastructure error

	// driver is a real local-directory pool standing in for every agent's
	// pool in Export/Unexport.
	driver      *nfs.Driver
	exports     []string // volume IDs exported, in order
	unexports   []string
	exportErr   error // when set, Export fails with it
	unexportErr error // when set, Unexport fails with it
}

func newTestBackend(t testing.TB) *testBackend {
	t.Helper()
	d, err := nfs.New(nfs.Config{Name: "local", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return &testBackend{st: state.New(), caps: map[string]gossip.PoolCapacity{}, driver: d}
}

// Export exports the volume from the real driver, creating its file first
// when the test made the volume available without an agent, and adds the
// agent's host name as the coordinator's agents do.
func (b *testBackend) Export(ctx context.Context, volumeID string, c storage.Connector) (storage.ConnectionInfo, error) {
	b.mu.Lock()
	fail := b.exportErr
	b.exports = append(b.exports, volumeID)
	b.mu.Unlock()
	if fail != nil {
		return storage.ConnectionInfo{}, fail
	}
	v := b.st.Volume(volumeID)
	if v == nil {
		return storage.ConnectionInfo{}, fmt.Errorf("volume %s: %w", volumeID, storage.ErrNotFound)
	}
	p := b.st.Pool(v.Pool)
	if p == nil {
		return storage.ConnectionInfo{}, fmt.Errorf("volume %s has no pool: %w", volumeID, storage.ErrNotFound)
	}
	ci, err := b.driver.ExportVolume(ctx, volumeID, c, storage.Credentials{})
	if errors.Is(err, storage.ErrNotFound) {
		if _, err = b.driver.CreateVolume(ctx, volumeID, v.SizeGB); err != nil {
			return storage.ConnectionInfo{}, err
		}
		ci, err = b.driver.ExportVolume(ctx, volumeID, c, storage.Credentials{})
	}
	if err != nil {
		return storage.ConnectionInfo{}, err
	}
	ci.Data["host"] = p.Agent
	return ci, nil
}

func (b *testBackend) Unexport(ctx context.Context, volumeID string, c storage.Connector) error {
	b.mu.Lock()
	b.unexports = append(b.unexports, volumeID)
	fail := b.unexportErr
	b.mu.Unlock()
	if fail != nil {
		return fail
	}
	return b.driver.UnexportVolume(ctx, volumeID, c)
}

func (b *testBackend) State() *state.State { return b.st }

func (b *testBackend) Apply(_ context.Context, cmd state.Command) error {
	b.mu.Lock()
	b.applied++
	fail := b.fail
	b.mu.Unlock()
	if fail != nil {
		return fail
	}
	entry, err := state.Encode(cmd)
	if err != nil {
		return err
	}
	if res := b.st.Apply(entry); res.Err != nil {
		return res.Err
	}
	return nil
}

func (b *testBackend) PoolCapacity(pool string) (gossip.PoolCapacity, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.caps[pool]
	return c, ok
}

func (b *testBackend) Services() []ServiceStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]ServiceStatus(nil), b.services...)
}

func (b *testBackend) applies() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applied
}

// Fixture names.
const (
	testURL     = "http://kiln.test:8776"
	testPool    = "agent1@nfs#local"
	testPool2   = "agent2@lvm#vg0"
	testProject = "p1"
	testToken   = "u1:p1"
)

// harness is an app with the API registered over a testBackend holding
// two registered pools (zones nova and az2).
type harness struct {
	t   testing.TB
	app *fiber.App
	b   *testBackend
}

type harnessOption func(*Options)

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	b := newTestBackend(t)
	h := &harness{t: t, b: b}
	quiet := slog.New(slog.DiscardHandler)
	o := Options{PublicURL: testURL + "/", DefaultZone: "nova", Logger: quiet}
	for _, fn := range opts {
		fn(&o)
	}
	h.app = NewApp(quiet)
	Register(h.app, b, o)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	h.mustApply(state.RegisterAgent{Agent: "agent1", Zone: "nova", RPCAddr: "127.0.0.1:1", At: at,
		Pools: []storage.PoolInfo{{
			Name: "local", Backend: "nfs", Driver: "nfs", DriverVersion: "1.2.3", Protocol: "nfs",
			ThinProvisioning: true, ReservedPercentage: 5, MaxOverSubscriptionRatio: "2.0",
			Capabilities: map[string]string{"custom_flag": "yes", "multiattach": "True", "online_extend_support": "True"},
		}}})
	h.mustApply(state.RegisterAgent{Agent: "agent2", Zone: "az2", RPCAddr: "127.0.0.1:2", At: at,
		Pools: []storage.PoolInfo{{
			Name: "vg0", Backend: "lvm", Driver: "lvm", DriverVersion: "2.0", Protocol: "iSCSI",
			ThickProvisioning: true, MaxOverSubscriptionRatio: "auto",
		}}})
	b.caps[testPool] = gossip.PoolCapacity{Name: "local", TotalKind: storage.Known, TotalGB: 100,
		FreeKind: storage.Known, FreeGB: 80, ProvisionedGB: 12, Volumes: 2}
	return h
}

func (h *harness) mustApply(cmd state.Command) {
	h.t.Helper()
	if err := h.b.Apply(context.Background(), cmd); err != nil {
		h.t.Fatalf("apply %T: %v", cmd, err)
	}
}

// response is a recorded reply.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// req describes a request; Body is sent raw when a string or []byte and as
// JSON otherwise.
type req struct {
	Method  string
	Path    string
	Body    any
	Token   string // "" = testToken; "-" = none
	Version string // OpenStack-API-Version value, "" = none
	Header  map[string]string
}

func (h *harness) do(r req) *response {
	h.t.Helper()
	var body io.Reader
	switch b := r.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		body = bytes.NewReader(raw)
	}
	hr := httptest.NewRequest(r.Method, r.Path, body)
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	switch r.Token {
	case "":
		hr.Header.Set("X-Auth-Token", testToken)
	case "-":
	default:
		hr.Header.Set("X-Auth-Token", r.Token)
	}
	if r.Version != "" {
		hr.Header.Set("OpenStack-API-Version", r.Version)
	}
	for k, v := range r.Header {
		hr.Header.Set(k, v)
	}
	resp, err := h.app.Test(hr, -1)
	if err != nil {
		h.t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	out := &response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			h.t.Fatalf("%s %s: response is not a JSON object: %v: %s", r.Method, r.Path, err, raw)
		}
	}
	return out
}

func (h *harness) get(path string) *response { return h.do(req{Method: "GET", Path: path}) }

func (h *harness) getV(path, version string) *response {
	return h.do(req{Method: "GET", Path: path, Version: version})
}

func (h *harness) post(path string, body any) *response {
	return h.do(req{Method: "POST", Path: path, Body: body})
}

func (h *harness) put(path string, body any) *response {
	return h.do(req{Method: "PUT", Path: path, Body: body})
}

func (h *harness) del(path string) *response { return h.do(req{Method: "DELETE", Path: path}) }

// wantStatus fails unless r has the status.
func wantStatus(t testing.TB, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, r.Raw)
	}
}

// wantFault checks a Cinder fault body: exactly one key, the fault name,
// holding the code and a message containing msg.
func wantFault(t testing.TB, r *response, status int, name, msg string) {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("fault content type %q", ct)
	}
	if len(r.Body) != 1 {
		t.Fatalf("fault body has %d keys, want 1: %s", len(r.Body), r.Raw)
	}
	inner, ok := r.Body[name].(map[string]any)
	if !ok {
		t.Fatalf("fault body lacks %q: %s", name, r.Raw)
	}
	if code, _ := inner["code"].(float64); int(code) != status {
		t.Fatalf("fault code %v, want %d", inner["code"], status)
	}
	m, _ := inner["message"].(string)
	if m == "" || !strings.Contains(m, msg) {
		t.Fatalf("fault message %q, want it to contain %q", m, msg)
	}
}

// snapshot serializes the whole state (the FSM's own snapshot encoding).
func (h *harness) snapshot() []byte {
	h.t.Helper()
	snap, err := (&state.FSM{State: h.b.st}).Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		h.t.Fatal(err)
	}
	return sink.Bytes()
}

type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

// unchanged runs fn and fails if the state changed or a command was
// applied.
func (h *harness) unchanged(fn func()) {
	h.t.Helper()
	before, applies := h.snapshot(), h.b.applies()
	fn()
	if after := h.snapshot(); !bytes.Equal(before, after) {
		h.t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
	}
	if n := h.b.applies(); n != applies {
		h.t.Fatalf("%d commands applied by a rejected request", n-applies)
	}
}

// refused runs fn, which the state machine must refuse: commands may be
// proposed, but the state must not change.
func (h *harness) refused(fn func()) {
	h.t.Helper()
	before := h.snapshot()
	fn()
	if after := h.snapshot(); !bytes.Equal(before, after) {
		h.t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
	}
}

// createVolume creates a volume through the API and returns its detail.
func (h *harness) createVolume(vol map[string]any) map[string]any {
	h.t.Helper()
	r := h.post("/v3/p1/volumes", map[string]any{"volume": vol})
	wantStatus(h.t, r, http.StatusAccepted)
	return r.Body["volume"].(map[string]any)
}

// makeAvailable drives a creating volume to available through the state
// machine's own commands (placement + agent success).
func (h *harness) makeAvailable(id string) {
	h.t.Helper()
	at := time.Now().UTC()
	h.mustApply(state.ScheduleVolume{ID: id, Pool: testPool, At: at,
		TotalKind: storage.Known, TotalGB: 1000, FreeKind: storage.Known, FreeGB: 1000})
	h.mustApply(state.VolumeCreated{ID: id, Pool: testPool, Location: "/x/" + id, At: at})
}

// setVolumeStatus gives a volume any status. No single command does, so it
// restores the state
// from the FSM's own snapshot, rewritten as the version 1 JSON document
// that Restore still reads (the header line, then the metadata frame with
// every record but the volumes; the volumes come from the public reader).
func (h *harness) setVolumeStatus(id, status string) {
	h.t.Helper()
	raw := h.snapshot()
	nl := bytes.IndexByte(raw, '\n')
	var header struct {
		Index uint64 `json:"index"`
	}
	if nl < 0 || json.Unmarshal(raw[:nl], &header) != nil {
		h.t.Fatalf("snapshot header: %q", raw)
	}
	n, k := binary.Uvarint(raw[nl+1:])
	var data map[string]json.RawMessage
	if k <= 0 || json.Unmarshal(raw[nl+1+k:nl+1+k+int(n)], &data) != nil {
		h.t.Fatal("snapshot metadata frame")
	}
	delete(data, "volume_count")
	vols := map[string]*state.Volume{}
	found := false
	for _, v := range h.b.st.Volumes(state.VolumeFilter{}) {
		cp := *v
		if cp.ID == id {
			cp.Status, found = status, true
		}
		vols[cp.ID] = &cp
	}
	if !found {
		h.t.Fatalf("no volume %s", id)
	}
	var err error
	if data["volumes"], err = json.Marshal(vols); err != nil {
		h.t.Fatal(err)
	}
	doc, err := json.Marshal(map[string]any{"version": 1, "index": header.Index, "data": data})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := (&state.FSM{State: h.b.st}).Restore(io.NopCloser(bytes.NewReader(doc))); err != nil {
		h.t.Fatal(err)
	}
	if got := h.b.st.Volume(id).Status; got != status {
		h.t.Fatalf("status %q after restore", got)
	}
}

// availableVolume creates a volume through the API and makes it available.
func (h *harness) availableVolume(vol map[string]any) string {
	h.t.Helper()
	id := h.createVolume(vol)["id"].(string)
	h.makeAvailable(id)
	return id
}

// createSnapshot creates a snapshot through the API and returns its view.
func (h *harness) createSnapshot(snap map[string]any) map[string]any {
	h.t.Helper()
	r := h.post("/v3/p1/snapshots", map[string]any{"snapshot": snap})
	wantStatus(h.t, r, http.StatusAccepted)
	return r.Body["snapshot"].(map[string]any)
}

// availableSnapshot snapshots a volume through the API and completes the
// snapshot through the state machine (agent success).
func (h *harness) availableSnapshot(volumeID string) string {
	h.t.Helper()
	id := h.createSnapshot(map[string]any{"volume_id": volumeID})["id"].(string)
	h.mustApply(state.SnapshotCreated{ID: id, Location: "/snap/" + id, At: now()})
	return id
}

// serve runs the harness app on a loopback listener and returns its base
// URL; the server stops when the test ends.
func (h *harness) serve() string {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.app.Listener(ln) }()
	h.t.Cleanup(func() {
		if err := h.app.Shutdown(); err != nil {
			h.t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			h.t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

var wireTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$`)

func str(v any) string { return fmt.Sprint(v) }

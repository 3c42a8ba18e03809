package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// waitTimeout bounds every wait on the cluster; generous for -race on a
// loaded machine, while "local" timing normally converges in well under 2 s.
const waitTimeout = 20 * time.Second

// testLogger sends Kiln's and Serf's logs to t.Log until the test ends
// (Serf may log from its goroutines after that). KILN_TEST_LOG=debug shows
// memberlist's chatter too.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	level := slog.LevelInfo
	if os.Getenv("KILN_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// eventLog records a node's events until its channel is closed.
type eventLog struct {
	mu     sync.Mutex
	events []timedEvent
	closed chan struct{}
}

type timedEvent struct {
	Event
	at time.Time
}

func recordEvents(ch <-chan Event) *eventLog {
	l := &eventLog{closed: make(chan struct{})}
	go func() {
		defer close(l.closed)
		for ev := range ch {
			l.mu.Lock()
			l.events = append(l.events, timedEvent{ev, time.Now()})
			l.mu.Unlock()
		}
	}()
	return l
}

// find returns the first recorded event of typ for member.
func (l *eventLog) find(typ EventType, member string) (timedEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.events {
		if ev.Type == typ && ev.Member.Name == member {
			return ev, true
		}
	}
	return timedEvent{}, false
}

type testNode struct {
	*Node
	events *eventLog
}

func startNode(t *testing.T, name string, tags Tags, mod ...func(*Config)) *testNode {
	t.Helper()
	cfg := Config{
		NodeName: name,
		BindAddr: "127.0.0.1",
		Tags:     tags,
		Timing:   TimingLocal,
		Logger:   testLogger(t),
	}
	for _, f := range mod {
		f(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := n.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", name, err)
		}
	})
	return &testNode{Node: n, events: recordEvents(n.Events())}
}

// waitFor polls cond until it returns nil or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(waitTimeout)
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", waitTimeout, what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seesMember checks that n knows member with status and tags.
func seesMember(n *testNode, member string, status MemberStatus, tags *Tags) error {
	for _, m := range n.Members() {
		if m.Name != member {
			continue
		}
		if m.Status != status {
			return fmt.Errorf("%s sees %s as %s, want %s", n.LocalName(), member, m.Status, status)
		}
		if m.TagsErr != nil {
			return fmt.Errorf("%s: %w", n.LocalName(), m.TagsErr)
		}
		if tags != nil && !reflect.DeepEqual(m.Tags, *tags) {
			return fmt.Errorf("%s sees %s with tags %+v, want %+v", n.LocalName(), member, m.Tags, *tags)
		}
		return nil
	}
	return fmt.Errorf("%s does not know %s", n.LocalName(), member)
}

func clusterTags(i int) Tags {
	return Tags{
		Role:       RoleAgent,
		Version:    "0.1.0",
		Zone:       "nova",
		RPCAddr:    fmt.Sprintf("127.0.0.1:%d", 18000+i),
		Generation: 1,
		BootID:     NewBootID(),
		Pools: []PoolCapacity{{
			Name: "local", TotalKind: storage.Known, TotalGB: 100, FreeKind: storage.Known, FreeGB: 100,
		}},
	}
}

// startCluster starts a coordinator and two agents and joins them.
func startCluster(t *testing.T) ([]*testNode, []Tags) {
	t.Helper()
	tags := []Tags{
		{Role: RoleCoordinator, Version: "0.1.0", RPCAddr: "127.0.0.1:18900", RaftAddr: "127.0.0.1:18300", Expect: 1},
		clusterTags(1),
		clusterTags(2),
	}
	nodes := []*testNode{
		startNode(t, "c1", tags[0]),
		startNode(t, "a1", tags[1]),
		startNode(t, "a2", tags[2]),
	}
	for _, n := range nodes[1:] {
		if num, err := n.Join([]string{nodes[0].Addr()}); err != nil || num != 1 {
			t.Fatalf("%s Join(%s) = %d, %v", n.LocalName(), nodes[0].Addr(), num, err)
		}
	}
	d := waitFor(t, "all members to see each other", func() error {
		for _, n := range nodes {
			for i, m := range nodes {
				if err := seesMember(n, m.LocalName(), StatusAlive, &tags[i]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	t.Logf("cluster of 3 converged %v after the joins", d)
	return nodes, tags
}

func TestClusterMembershipAndTags(t *testing.T) {
	nodes, tags := startCluster(t)
	c1, a1, a2 := nodes[0], nodes[1], nodes[2]

	for _, n := range nodes {
		if !strings.HasPrefix(n.Addr(), "127.0.0.1:") || strings.HasSuffix(n.Addr(), ":0") {
			t.Errorf("Addr() = %q, want the bound loopback port", n.Addr())
		}
		if n.AdvertiseAddr() != n.Addr() {
			t.Errorf("AdvertiseAddr() = %q, want %q", n.AdvertiseAddr(), n.Addr())
		}
		if got := len(n.Members()); got != 3 {
			t.Errorf("%s has %d members", n.LocalName(), got)
		}
		for _, m := range []*testNode{c1, a1, a2} {
			waitFor(t, "join events", func() error {
				if _, ok := n.events.find(EventJoin, m.LocalName()); !ok {
					return fmt.Errorf("%s has no join event for %s", n.LocalName(), m.LocalName())
				}
				return nil
			})
		}
	}
	members := c1.Members()
	if members[0].Name != "a1" || members[1].Name != "a2" || members[2].Name != "c1" {
		t.Errorf("Members not sorted by name: %v", members)
	}
	if m := members[2]; m.Addr != "127.0.0.1" || m.Port == 0 || m.Tags.RaftAddr != tags[0].RaftAddr {
		t.Errorf("c1 as seen by itself: %+v", m)
	}

	// A capacity change on a1 reaches the others.
	updated := tags[1]
	updated.Generation = 2
	updated.Pools = []PoolCapacity{
		{Name: "local", TotalKind: storage.Known, TotalGB: 100, FreeKind: storage.Known, FreeGB: 90, ProvisionedGB: 10, Volumes: 1},
		{Name: "fast", TotalKind: storage.Unknown, FreeKind: storage.Unknown},
	}
	start := time.Now()
	if err := a1.SetTags(updated); err != nil {
		t.Fatal(err)
	}
	setTook := time.Since(start)
	for _, n := range []*testNode{c1, a2} {
		waitFor(t, "the tag update", func() error { return seesMember(n, "a1", StatusAlive, &updated) })
	}
	propagated := time.Since(start)
	for _, n := range []*testNode{c1, a2} {
		waitFor(t, "an update event", func() error {
			ev, ok := n.events.find(EventUpdate, "a1")
			if !ok {
				return fmt.Errorf("%s has no update event for a1", n.LocalName())
			}
			if !reflect.DeepEqual(ev.Member.Tags, updated) {
				return fmt.Errorf("update event carries %+v", ev.Member.Tags)
			}
			return nil
		})
	}
	t.Logf("tag update: SetTags returned after %v, seen by both peers after %v", setTook, propagated)

	// A member publishing tags Kiln cannot decode is reported with TagsErr.
	if err := a2.serf.SetTags(map[string]string{"r": "x"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "invalid tags to be reported", func() error {
		for _, m := range c1.Members() {
			if m.Name == "a2" && m.TagsErr != nil && errors.Is(m.TagsErr, ErrInvalidTags) && reflect.DeepEqual(m.Tags, Tags{}) {
				return nil
			}
		}
		return errors.New("a2's bad tags not reported")
	})
}

func TestClusterFailure(t *testing.T) {
	nodes, _ := startCluster(t)
	c1, a1, a2 := nodes[0], nodes[1], nodes[2]

	stopped := time.Now()
	if err := a2.Shutdown(); err != nil { // no Leave: the others must detect it
		t.Fatal(err)
	}
	select {
	case <-a2.events.closed:
	case <-time.After(waitTimeout):
		t.Fatal("Events channel not closed by Shutdown")
	}
	for _, n := range []*testNode{c1, a1} {
		d := waitFor(t, "a failed event", func() error {
			if _, ok := n.events.find(EventFailed, "a2"); !ok {
				return fmt.Errorf("%s has no failed event for a2", n.LocalName())
			}
			return nil
		})
		ev, _ := n.events.find(EventFailed, "a2")
		t.Logf("%s: failure of a2 detected %v after Shutdown (wait %v)", n.LocalName(), ev.at.Sub(stopped), d)
		if ev.Member.Status != StatusFailed || ev.Member.Tags.Role != RoleAgent {
			t.Errorf("failed event member = %+v", ev.Member)
		}
		if err := seesMember(n, "a2", StatusFailed, nil); err != nil {
			t.Error(err)
		}
		if _, ok := n.events.find(EventLeave, "a2"); ok {
			t.Errorf("%s saw a leave for a crashed member", n.LocalName())
		}
	}
}

func TestClusterLeave(t *testing.T) {
	nodes, _ := startCluster(t)
	c1, a1, a2 := nodes[0], nodes[1], nodes[2]

	start := time.Now()
	if err := a1.Leave(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Leave returned after %v", time.Since(start))
	if err := a1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{c1, a2} {
		waitFor(t, "a leave event", func() error {
			if _, ok := n.events.find(EventLeave, "a1"); !ok {
				return fmt.Errorf("%s has no leave event for a1", n.LocalName())
			}
			return seesMember(n, "a1", StatusLeft, nil)
		})
		if _, ok := n.events.find(EventFailed, "a1"); ok {
			t.Errorf("%s saw a failure for a member that left", n.LocalName())
		}
	}
}

func TestSnapshotRejoin(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "serf.snapshot")
	c1 := startNode(t, "c1", Tags{Role: RoleCoordinator})
	a1 := startNode(t, "a1", clusterTags(1), func(c *Config) { c.SnapshotPath = snap })
	if _, err := a1.Join([]string{c1.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a1 to join", func() error { return seesMember(c1, "a1", StatusAlive, nil) })
	if err := a1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a1 to fail", func() error { return seesMember(c1, "a1", StatusFailed, nil) })

	// Restarted with the snapshot on its old port, as an agent with a
	// configured port would be, a1 finds the cluster without a Join.
	_, port, err := net.SplitHostPort(a1.Addr())
	if err != nil {
		t.Fatal(err)
	}
	tags := clusterTags(1) // a new boot ID
	tags.Generation = 7
	again := startNode(t, "a1", tags, func(c *Config) {
		c.SnapshotPath = snap
		c.BindPort, _ = strconv.Atoi(port)
	})
	waitFor(t, "a1 to rejoin from its snapshot", func() error {
		if err := seesMember(c1, "a1", StatusAlive, &tags); err != nil {
			return err
		}
		return seesMember(again, "c1", StatusAlive, nil)
	})
}

// TestQuickRestartShowsNewBootID restarts a member at once on its old port
// with the tags of a fresh process, the generation back at 1 as before:
// the others see the new boot ID, which is how the coordinator leader tells
// a restart that failure detection may never have noticed.
func TestQuickRestartShowsNewBootID(t *testing.T) {
	c1 := startNode(t, "c1", Tags{Role: RoleCoordinator})
	first := clusterTags(1)
	a1 := startNode(t, "a1", first)
	if _, err := a1.Join([]string{c1.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a1 to join", func() error { return seesMember(c1, "a1", StatusAlive, &first) })
	_, port, err := net.SplitHostPort(a1.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	second := clusterTags(1)
	if second.BootID == first.BootID || second.Generation != first.Generation {
		t.Fatalf("tags of the second process: %+v", second)
	}
	again := startNode(t, "a1", second, func(c *Config) { c.BindPort, _ = strconv.Atoi(port) })
	if _, err := again.Join([]string{c1.Addr()}); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, "the new boot ID", func() error { return seesMember(c1, "a1", StatusAlive, &second) })
	_, failed := c1.events.find(EventFailed, "a1")
	t.Logf("new boot ID seen %v after the restart (failure detected: %v)", d, failed)
}

func TestShutdownIdempotent(t *testing.T) {
	n := startNode(t, "solo", Tags{Role: RoleAgent})
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	select {
	case <-n.events.closed:
	case <-time.After(waitTimeout):
		t.Fatal("Events channel not closed by Shutdown")
	}
	if _, ok := n.events.find(EventJoin, "solo"); !ok {
		t.Error("no join event for the local member")
	}
	if err := n.SetTags(Tags{Role: RoleAgent}); !errors.Is(err, ErrShutdown) {
		t.Errorf("SetTags after Shutdown = %v, want ErrShutdown", err)
	}
	if _, err := n.Join([]string{"127.0.0.1:1"}); err == nil {
		t.Error("Join after Shutdown succeeded")
	}
}

func TestSetTagsValidates(t *testing.T) {
	n := startNode(t, "solo", Tags{Role: RoleAgent})
	if err := n.SetTags(Tags{Role: "bogus"}); !errors.Is(err, ErrInvalidTags) {
		t.Errorf("SetTags(invalid) = %v", err)
	}
	host := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	if err := n.SetTags(Tags{Role: RoleAgent, RPCAddr: host + ":1", Version: strings.Repeat("v", 64), Zone: strings.Repeat("z", 63), Pools: manyPools(3)}); err != nil {
		t.Errorf("SetTags with everything truncated: %v", err)
	}
}

// TestSizeGuardMatchesSerf proves that encodedSize measures exactly what
// Serf checks: a map of exactly MaxTagBytes is accepted by a real Serf and
// one byte more is refused, and the largest encodings Encode produces are
// accepted.
func TestSizeGuardMatchesSerf(t *testing.T) {
	n := startNode(t, "solo", Tags{Role: RoleAgent})
	padded := func(size int) map[string]string {
		for pad := 0; pad < 2*MaxTagBytes; pad++ {
			m := map[string]string{"r": "a", "x": strings.Repeat("y", pad)}
			if got := encodedSize(m); got == size {
				return m
			} else if got > size {
				break
			}
		}
		t.Fatalf("no padding gives %d bytes", size)
		return nil
	}
	if err := n.serf.SetTags(padded(MaxTagBytes)); err != nil {
		t.Errorf("serf refused a %d-byte encoding: %v", MaxTagBytes, err)
	}
	if err := n.serf.SetTags(padded(MaxTagBytes + 1)); err == nil {
		t.Errorf("serf accepted a %d-byte encoding", MaxTagBytes+1)
	}

	// The largest encodings: pool sets that leave the least slack.
	largest := 0
	for count := 1; count <= 40; count++ {
		for nameLen := 1; nameLen <= 63; nameLen += 7 {
			tags := Tags{Role: RoleAgent, Version: "0.1.0", Zone: "nova", RPCAddr: "127.0.0.1:18000", Generation: 1 << 40, BootID: NewBootID()}
			for i := range count {
				name := fmt.Sprintf("p%d-%s", i, strings.Repeat("n", nameLen))
				tags.Pools = append(tags.Pools, PoolCapacity{Name: name[:min(len(name), 63)], TotalKind: storage.Known, TotalGB: 12345.67, FreeKind: storage.Known, FreeGB: 1.5, Volumes: i})
			}
			m, err := tags.Encode()
			if err != nil {
				t.Fatal(err)
			}
			size := encodedSize(m)
			if size < largest-20 {
				continue // only the largest few are worth a round trip through Serf
			}
			largest = max(largest, size)
			if err := n.serf.SetTags(maps.Clone(m)); err != nil {
				t.Fatalf("serf refused our %d-byte encoding: %v", size, err)
			}
			if err := n.SetTags(tags); err != nil {
				t.Fatalf("SetTags: %v", err)
			}
		}
	}
	t.Logf("largest encoding produced: %d bytes (limit %d)", largest, MaxTagBytes)
}

func TestStartValidation(t *testing.T) {
	good := Config{NodeName: "n1", BindAddr: "127.0.0.1", Tags: Tags{Role: RoleAgent}, Timing: TimingLocal}
	tests := map[string]func(*Config){
		"bad name":               func(c *Config) { c.NodeName = "bad name" },
		"empty name":             func(c *Config) { c.NodeName = "" },
		"no bind addr":           func(c *Config) { c.BindAddr = "" },
		"hostname bind":          func(c *Config) { c.BindAddr = "localhost" },
		"bad port":               func(c *Config) { c.BindPort = 70000 },
		"bad advertise":          func(c *Config) { c.AdvertiseAddr = "example.com" },
		"advertise port, port 0": func(c *Config) { c.AdvertisePort = 7946 },
		"bad timing":             func(c *Config) { c.Timing = "wan" },
		"negative buffer":        func(c *Config) { c.EventBuffer = -1 },
		"bad tags":               func(c *Config) { c.Tags = Tags{} },
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := good
			mod(&cfg)
			if n, err := Start(cfg); err == nil {
				_ = n.Shutdown()
				t.Fatal("Start succeeded")
			}
		})
	}
	n, err := Start(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Join(nil); err == nil {
		t.Error("Join(nil) succeeded")
	}
	if _, err := n.Join([]string{"127.0.0.1"}); err == nil {
		t.Error("Join without a port succeeded")
	}
}

func TestEventsDropOldest(t *testing.T) {
	n := &Node{events: make(chan Event, 2), log: slog.New(slog.DiscardHandler)}
	for i := range 5 {
		n.push(Event{Type: EventUpdate, Member: Member{Name: fmt.Sprint(i)}})
	}
	if n.dropped != 3 {
		t.Errorf("dropped = %d, want 3", n.dropped)
	}
	for _, want := range []string{"3", "4"} {
		if ev := <-n.events; ev.Member.Name != want {
			t.Errorf("got event for %s, want %s", ev.Member.Name, want)
		}
	}
}

func TestEventTypeString(t *testing.T) {
	for typ, want := range map[EventType]string{
		EventJoin: "join", EventLeave: "leave", EventFailed: "failed", EventUpdate: "update", EventReap: "reap", 0: "EventType(0)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(typ), got, want)
		}
	}
}

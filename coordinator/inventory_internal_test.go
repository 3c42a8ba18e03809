package coordinator

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kilnstore/kiln/coordinator/state"
	"github.com/kilnstore/kiln/gossip"
	"github.com/kilnstore/kiln/internal/storage"
)

func TestRestartReason(t *testing.T) {
	base := agentIncarnation{alive: true, rpcAddr: "10.0.0.1:8780", addr: "10.0.0.1", port: 8781, generation: 7, bootID: "0a1b2c3d", joins: 1}
	with := func(f func(*agentIncarnation)) agentIncarnation {
		c := base
		f(&c)
		return c
	}
	// legacy is an agent from before boot IDs.
	legacy := with(func(c *agentIncarnation) { c.bootID = "" })
	withLegacy := func(f func(*agentIncarnation)) agentIncarnation {
		c := legacy
		f(&c)
		return c
	}
	for name, tc := range map[string]struct {
		old   agentIncarnation
		known bool
		cur   agentIncarnation
		want  string
	}{
		"first seen":         {cur: base, want: "first seen by this leader"},
		"first seen, failed": {cur: with(func(c *agentIncarnation) { c.alive = false })},
		"unchanged":          {old: base, known: true, cur: base},
		"capacity changed":   {old: base, known: true, cur: with(func(c *agentIncarnation) { c.generation = 9 })},
		"alive again":        {old: with(func(c *agentIncarnation) { c.alive = false }), known: true, cur: base, want: "alive again"},
		"now failed":         {old: base, known: true, cur: with(func(c *agentIncarnation) { c.alive = false })},
		"rejoined unseen":    {old: base, known: true, cur: with(func(c *agentIncarnation) { c.joins = 2 }), want: "rejoined"},
		"new rpc address":    {old: base, known: true, cur: with(func(c *agentIncarnation) { c.rpcAddr = "10.0.0.1:9999" }), want: "new address"},
		"new serf port":      {old: base, known: true, cur: with(func(c *agentIncarnation) { c.port = 1 }), want: "new address"},
		"new boot id":        {old: base, known: true, cur: with(func(c *agentIncarnation) { c.bootID = "ffff0000" }), want: "restarted"},
		// The quick restart the generation cannot tell: the old process had
		// not changed its capacity (still at 1), or the new one already
		// counted past the old one.
		"new boot id, gen 1 again": {old: with(func(c *agentIncarnation) { c.generation = 1 }), known: true,
			cur: with(func(c *agentIncarnation) { c.generation, c.bootID = 1, "ffff0000" }), want: "restarted"},
		"new boot id, gen ahead": {old: base, known: true, cur: with(func(c *agentIncarnation) { c.generation, c.bootID = 9, "ffff0000" }), want: "restarted"},
		"same boot id, gen back": {old: base, known: true, cur: with(func(c *agentIncarnation) { c.generation = 1 })},
		"upgraded":               {old: legacy, known: true, cur: base, want: "restarted"},
		"downgraded":             {old: base, known: true, cur: legacy, want: "restarted"},
		"legacy unchanged":       {old: legacy, known: true, cur: legacy},
		"legacy gen restarts":    {old: legacy, known: true, cur: withLegacy(func(c *agentIncarnation) { c.generation = 1 }), want: "restarted"},
		"legacy gen ahead":       {old: legacy, known: true, cur: withLegacy(func(c *agentIncarnation) { c.generation = 9 })},
		"new boot id, failed":    {old: base, known: true, cur: with(func(c *agentIncarnation) { c.alive, c.bootID = false, "ffff0000" })},
		"new boot id, rejoined":  {old: base, known: true, cur: with(func(c *agentIncarnation) { c.joins, c.bootID = 2, "ffff0000" }), want: "rejoined"},
	} {
		if got := restartReason(tc.old, tc.known, tc.cur); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

func TestInventorySchedulesEachAgentOnce(t *testing.T) {
	v := newView()
	member := func(name string, status gossip.MemberStatus, gen uint64, boot string) gossip.Member {
		return gossip.Member{Name: name, Addr: "127.0.0.1", Port: 1, Status: status,
			Tags: gossip.Tags{Role: gossip.RoleAgent, RPCAddr: "127.0.0.1:2", Generation: gen, BootID: boot}}
	}
	v.update(member("a1", gossip.StatusAlive, 3, "0000000a"))
	v.update(member("a2", gossip.StatusFailed, 3, "0000000b"))
	v.update(gossip.Member{Name: "c1", Status: gossip.StatusAlive, Tags: gossip.Tags{Role: gossip.RoleCoordinator}})
	inv := &inventory{poke: make(chan struct{}, 1), seen: map[string]agentIncarnation{}, due: map[string]string{}, running: map[string]bool{}}
	names := func(ds []dueAgent) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.agent)
		}
		return out
	}
	inv.observe(v)
	if got := names(inv.take()); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("due at the start of a term: %v", got)
	}
	// Marked again while its check runs (a quick restart: a new boot ID,
	// same address, no join): handed out after it finishes.
	v.update(member("a1", gossip.StatusAlive, 3, "1000000a"))
	inv.observe(v)
	if got := inv.take(); len(got) != 0 {
		t.Fatalf("handed out while running: %v", got)
	}
	inv.finished("a1")
	if got := names(inv.take()); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("after finishing: %v", got)
	}
	inv.finished("a1")
	inv.observe(v)
	if got := inv.take(); len(got) != 0 {
		t.Fatalf("nothing changed, yet due: %v", got)
	}
	// A capacity change is no restart.
	v.update(member("a1", gossip.StatusAlive, 4, "1000000a"))
	inv.observe(v)
	if got := inv.take(); len(got) != 0 {
		t.Fatalf("due after a capacity change: %v", got)
	}
	// a2 comes back; a1 failed and rejoined between two looks.
	v.update(member("a2", gossip.StatusAlive, 1, "1000000b"))
	v.noteJoin("a1")
	inv.observe(v)
	if got := names(inv.take()); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Fatalf("after rejoins: %v", got)
	}
	inv.finished("a1")
	inv.finished("a2")
	inv.markAlive(v, "periodic")
	if got := names(inv.take()); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Fatalf("periodic: %v", got)
	}
}

func TestDiffPool(t *testing.T) {
	st := state.New()
	do := func(c state.Command) {
		t.Helper()
		e, err := state.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.Apply(e); r.Err != nil {
			t.Fatalf("%T: %v", c, r.Err)
		}
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, agent := range []string{"a1", "a2"} {
		do(state.RegisterAgent{Agent: agent, Zone: "nova", At: t0, Pools: []storage.PoolInfo{{Name: "p", Backend: "b", ThinProvisioning: true, MaxOverSubscriptionRatio: "20"}}})
	}
	pool, other := state.PoolName("a1", "b", "p"), state.PoolName("a2", "b", "p")
	id := func(n int) string { return fmt.Sprintf("0d000000-0000-4000-8000-%012d", n) }
	volume := func(n int, pool string, created bool, at time.Time) {
		do(state.CreateVolume{Volume: state.Volume{ID: id(n), ProjectID: "p", SizeGB: 1, TypeID: state.DefaultTypeID, CreatedAt: at}})
		do(state.ScheduleVolume{ID: id(n), Pool: pool, At: at, TotalGB: 100, FreeGB: 100})
		if created {
			do(state.VolumeCreated{ID: id(n), Pool: pool, At: at})
		}
	}
	listedAt := t0.Add(time.Hour)
	volume(1, pool, true, t0)                     // held
	volume(2, pool, true, t0)                     // missing
	volume(3, pool, false, t0)                    // creating, not held yet: not missing
	volume(4, pool, true, listedAt)               // created as the list was asked for: not missing
	volume(5, other, true, t0)                    // held here too: an orphan
	volume(6, pool, false, t0.Add(2*time.Minute)) // creating, already held: not an orphan
	do(state.CreateSnapshot{Snapshot: state.Snapshot{ID: id(20), VolumeID: id(1), ProjectID: "p", CreatedAt: t0}})
	do(state.SnapshotCreated{ID: id(20), At: t0})
	do(state.CreateSnapshot{Snapshot: state.Snapshot{ID: id(21), VolumeID: id(1), ProjectID: "p", CreatedAt: t0}})
	do(state.SnapshotCreated{ID: id(21), At: t0})
	// Volume 7 was deleted (gone from Raft) while the agent listed: it was
	// placed here before, so not an orphan.
	volume(7, pool, true, t0)
	before := placedOn(st, pool)
	do(state.DeleteVolume{ID: id(7), ProjectID: "p", At: t0})
	do(state.VolumeDeleted{ID: id(7), At: t0})

	held := func(ns ...int) []storage.Volume {
		var out []storage.Volume
		for _, n := range ns {
			out = append(out, storage.Volume{ID: id(n)})
		}
		return out
	}
	vols := append(held(1, 5, 6, 7, 8, 8), storage.Volume{ID: "not-a-uuid"})
	snaps := []storage.Snapshot{{ID: id(21)}, {ID: id(22)}}
	d := diffPool(st, pool, before, vols, snaps, listedAt)
	for name, tc := range map[string]struct{ got, want []string }{
		"missing volumes":   {d.missingVolumes, []string{id(2)}},
		"missing snapshots": {d.missingSnapshots, []string{id(20)}},
		"orphan volumes":    {d.orphanVolumes, []string{id(5), id(8)}},
		"orphan snapshots":  {d.orphanSnapshots, []string{id(22)}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: %v, want %v", name, tc.got, tc.want)
		}
	}
}

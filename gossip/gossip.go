// Package gossip wraps Serf for Kiln: every storage agent and coordinator is
// a member of one Serf LAN cluster. Members publish typed Tags (agents: pool
// capacity; coordinators: Raft address and bootstrap-expect), encoded
// compactly under Serf's size limit, and membership changes reach the
// program as typed Events on a Go channel.
//
// Gossip is not yet authenticated or encrypted: the Serf keyring
// (KeyringFile/EncryptKey) will be added with the cluster security work.
package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/kilnstore/kiln/internal/logging"
	"github.com/kilnstore/kiln/internal/storage"
)

// Timing profiles for Config.Timing.
const (
	// TimingLAN is memberlist's DefaultLANConfig with Serf's defaults, for
	// production. Measured on loopback with 3 members: a dead member is
	// reported failed after 5.4-6.6 s (1 s probes, then a suspicion of
	// 4 × ProbeInterval, longer in large clusters until peers confirm), a
	// tag update is seen in 0.2-0.4 s. Failed and left members are
	// forgotten after 24 h.
	TimingLAN = "lan"
	// TimingLocal is tuned for tests and `kiln dev` on one host or a fast
	// LAN; see localTiming for the numbers.
	TimingLocal = "local"
)

// DefaultEventBuffer is the capacity of the Events channel when
// Config.EventBuffer is 0.
const DefaultEventBuffer = 256

// ErrShutdown is returned by operations on a Node after Shutdown.
var ErrShutdown = errors.New("gossip node is shut down")

// Config configures a Node.
type Config struct {
	// NodeName is the member's unique name, validated with
	// storage.ValidateName.
	NodeName string
	// BindAddr is the IP address to bind gossip to (TCP and UDP), e.g.
	// "127.0.0.1". Required: binding every interface must be a choice.
	BindAddr string
	// BindPort is the gossip port; 0 picks a free port, which Addr reports.
	BindPort int
	// AdvertiseAddr is the IP address peers should use to reach this
	// member, when it differs from BindAddr (optional). With a BindAddr of
	// 0.0.0.0 and no AdvertiseAddr, memberlist picks a private address.
	AdvertiseAddr string
	// AdvertisePort is the port peers should use (optional; defaults to the
	// bound port). It requires a fixed BindPort.
	AdvertisePort int
	// Tags are the member's initial tags.
	Tags Tags
	// Timing is TimingLAN (also for "") or TimingLocal.
	Timing string
	// Logger receives Kiln's and Serf's/memberlist's logs (nil: discard).
	Logger *slog.Logger
	// SnapshotPath is an optional Serf snapshot file, used to rejoin the
	// known members after a restart.
	SnapshotPath string
	// EventBuffer is the capacity of the Events channel (0: 256).
	EventBuffer int

	// Gossip encryption (Serf keyring file / encrypt key) is deliberately
	// absent until the cluster security work lands.
}

func (c *Config) validate() error {
	if err := storage.ValidateName("node name", c.NodeName); err != nil {
		return err
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("gossip bind address %q must be an IP address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("gossip bind port %d is outside 0..65535", c.BindPort)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("gossip advertise address %q must be an IP address", c.AdvertiseAddr)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("gossip advertise port %d is outside 0..65535", c.AdvertisePort)
	}
	// memberlist replaces the advertised port with the picked one.
	if c.AdvertisePort != 0 && c.BindPort == 0 {
		return errors.New("gossip advertise port requires a fixed bind port")
	}
	switch c.Timing {
	case "", TimingLAN, TimingLocal:
	default:
		return fmt.Errorf("gossip timing %q must be %q or %q", c.Timing, TimingLAN, TimingLocal)
	}
	if c.EventBuffer < 0 {
		return fmt.Errorf("gossip event buffer %d is negative", c.EventBuffer)
	}
	return nil
}

// localTiming tunes Serf and memberlist for tests and `kiln dev`:
//
//   - Failure detection: a member probes one peer every ProbeInterval
//     (200 ms), waits ProbeTimeout (100 ms) for the ack, then asks peers to
//     probe indirectly; an unanswered member is suspected, and declared
//     failed after SuspicionMult × max(1, log10 n) × ProbeInterval =
//     600 ms, stretched up to SuspicionMaxTimeoutMult (4×) = 2.4 s while
//     other members have not confirmed the suspicion. On loopback a dead
//     member is reported failed in about 1-2 s.
//   - Tag propagation: SetTags is gossiped every GossipInterval (50 ms) to
//     GossipNodes (3) random peers, so a small cluster sees it within
//     about 100 ms. A push/pull full-state sync every 5 s repairs anything
//     lost.
//   - A member restarted on a new address may reclaim its name 1 s after
//     it was declared dead (DeadNodeReclaimTime).
//   - Forgetting: failed members are reaped after 1 min (ReconnectTimeout)
//     and left members after 1 min (TombstoneTimeout), checked every
//     second; a failed member is re-contacted every 2 s meanwhile.
func localTiming(conf *serf.Config) {
	ml := memberlist.DefaultLocalConfig()
	ml.ProbeInterval = 200 * time.Millisecond
	ml.ProbeTimeout = 100 * time.Millisecond
	ml.SuspicionMult = 3
	ml.SuspicionMaxTimeoutMult = 4
	ml.GossipInterval = 50 * time.Millisecond
	ml.GossipNodes = 3
	ml.RetransmitMult = 3
	ml.PushPullInterval = 5 * time.Second
	// A restarted member that picked a new port (BindPort 0) may take over
	// its old name 1 s after it was declared dead, instead of being refused
	// until the dead entry is forgotten (GossipToTheDeadTime, 15 s).
	ml.DeadNodeReclaimTime = time.Second
	conf.MemberlistConfig = ml

	conf.ReapInterval = time.Second
	conf.ReconnectInterval = 2 * time.Second
	conf.ReconnectTimeout = time.Minute
	conf.TombstoneTimeout = time.Minute
	// Leave waits this long for the leave to spread before stopping;
	// ten gossip rounds.
	conf.LeavePropagateDelay = 500 * time.Millisecond
}

// Node is this process's membership in the cluster.
type Node struct {
	serf   *serf.Serf
	name   string
	addr   string
	advert string
	log    *slog.Logger

	serfCh <-chan serf.Event
	events chan Event
	stop   chan struct{} // closed by Shutdown once Serf has stopped
	done   chan struct{} // closed by run when events is closed

	mu     sync.Mutex // serializes SetTags; guards closed
	closed bool

	shutdownOnce sync.Once
	shutdownErr  error

	// Owned by run.
	dropped     int
	lastDropLog time.Time
}

// Start creates the member and starts gossiping. It does not join anyone:
// call Join with the addresses of existing members.
func Start(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tags, kept, err := cfg.Tags.encode()
	if err != nil {
		return nil, fmt.Errorf("gossip tags: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", cfg.NodeName)
	buffer := cfg.EventBuffer
	if buffer == 0 {
		buffer = DefaultEventBuffer
	}

	conf := serf.DefaultConfig()
	if cfg.Timing == TimingLocal {
		localTiming(conf)
	}
	ml := conf.MemberlistConfig
	ml.BindAddr = cfg.BindAddr
	ml.BindPort = cfg.BindPort
	ml.AdvertiseAddr = cfg.AdvertiseAddr
	ml.AdvertisePort = cfg.AdvertisePort
	if ml.AdvertisePort == 0 {
		ml.AdvertisePort = cfg.BindPort
	}
	ml.Logger = logging.NewStdLogger(logger, "memberlist")
	ml.LogOutput = nil

	serfCh := make(chan serf.Event, buffer)
	conf.NodeName = cfg.NodeName
	conf.Tags = tags
	conf.EventCh = serfCh
	conf.SnapshotPath = cfg.SnapshotPath
	conf.Logger = logging.NewStdLogger(logger, "serf")
	conf.LogOutput = nil
	// Kiln does not use network coordinates; skip their ping payloads.
	conf.DisableCoordinates = true

	n := &Node{
		name:   cfg.NodeName,
		log:    logger,
		serfCh: serfCh,
		events: make(chan Event, buffer),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	// Serf sends member events synchronously while holding its member
	// lock, so the channel must be drained from before Create returns.
	go n.run()

	s, err := serf.Create(conf)
	if err != nil {
		close(n.stop)
		<-n.done
		return nil, fmt.Errorf("start gossip on %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
	}
	n.serf = s
	// memberlist wrote the picked port back into its config when BindPort
	// was 0; Create has returned, so reading it is safe.
	n.addr = net.JoinHostPort(cfg.BindAddr, strconv.Itoa(ml.BindPort))
	local := s.Memberlist().LocalNode()
	n.advert = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	if kept < len(cfg.Tags.Pools) {
		logger.Info("not all pools fit into gossip tags; readers fetch the rest over RPC", "pools", len(cfg.Tags.Pools), "published", kept)
	}
	logger.Debug("gossip started", "addr", n.addr, "advertise", n.advert, "timing", cfg.Timing)
	return n, nil
}

// run converts Serf's events into Events until Shutdown, then closes the
// Events channel.
func (n *Node) run() {
	defer close(n.done)
	for {
		select {
		case e := <-n.serfCh:
			n.forward(e)
		case <-n.stop:
			// Serf has stopped; deliver what it queued before.
			for {
				select {
				case e := <-n.serfCh:
					n.forward(e)
				default:
					close(n.events)
					return
				}
			}
		}
	}
}

func (n *Node) forward(e serf.Event) {
	me, ok := e.(serf.MemberEvent)
	if !ok {
		return // user events and queries are not used
	}
	typ, ok := eventType(me.Type)
	if !ok {
		return
	}
	for _, sm := range me.Members {
		m := convertMember(sm)
		if m.TagsErr != nil && typ != EventReap && typ != EventLeave {
			n.log.Warn("member published invalid tags", "member", m.Name, "event", typ.String(), "err", m.TagsErr)
		}
		n.push(Event{Type: typ, Member: m})
	}
}

// push delivers ev without ever blocking Serf: when the consumer has let the
// buffer fill, the oldest event is dropped (with a rate-limited warning).
// The newest events are the ones that describe the current state; a
// consumer that falls behind should reconcile against Members().
func (n *Node) push(ev Event) {
	for {
		select {
		case n.events <- ev:
			return
		default:
		}
		select {
		case old := <-n.events:
			n.dropped++
			if time.Since(n.lastDropLog) > 10*time.Second {
				n.log.Warn("gossip event consumer is slow; dropping oldest events",
					"dropped_total", n.dropped, "dropped_event", old.Type.String(), "dropped_member", old.Member.Name)
				n.lastDropLog = time.Now()
			}
		default:
		}
	}
}

// RetryJoin joins addrs like Join, retrying every interval until at least
// one address answers or ctx ends (Consul's retry_join): nodes of a cluster
// may start in any order. It returns nil once joined, ctx.Err() otherwise.
func (n *Node) RetryJoin(ctx context.Context, addrs []string, interval time.Duration) error {
	for attempt := 1; ; attempt++ {
		num, err := n.Join(addrs)
		if err == nil {
			n.log.Info("joined cluster", "contacted", num, "attempts", attempt)
			return nil
		}
		if attempt == 1 || attempt%10 == 0 {
			n.log.Warn("join failed; retrying", "addrs", addrs, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Join contacts existing members at addrs (host:port) and joins their
// cluster. It returns how many were contacted; the error is nil if at least
// one was.
func (n *Node) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("gossip join: no addresses")
	}
	for _, a := range addrs {
		if err := validateHostPort(a); err != nil {
			return 0, fmt.Errorf("gossip join address %q: %w", a, err)
		}
	}
	// ignoreOld: Kiln uses no user events, and old ones must not replay.
	num, err := n.serf.Join(addrs, true)
	if err != nil {
		return num, fmt.Errorf("gossip join %s: %w", strings.Join(addrs, ","), err)
	}
	return num, nil
}

// Members returns every member known, including this one and members that
// failed or left but are not yet reaped, sorted by name.
func (n *Node) Members() []Member {
	sm := n.serf.Members()
	out := make([]Member, 0, len(sm))
	for _, m := range sm {
		out = append(out, convertMember(m))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// LocalName returns this member's name.
func (n *Node) LocalName() string { return n.name }

// Addr returns the bound gossip address as host:port, with the real port
// when Config.BindPort was 0.
func (n *Node) Addr() string { return n.addr }

// AdvertiseAddr returns the host:port peers use to reach this member (what
// to pass to another member's Join).
func (n *Node) AdvertiseAddr() string { return n.advert }

// SetTags encodes t (dropping trailing pools if they do not all fit, see
// Tags.Encode) and publishes it. It returns once the update has been handed
// to gossip, or after Serf's broadcast timeout.
func (n *Node) SetTags(t Tags) error {
	m, kept, err := t.encode()
	if err != nil {
		return fmt.Errorf("gossip tags: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrShutdown
	}
	if kept < len(t.Pools) {
		n.log.Debug("not all pools fit into gossip tags", "pools", len(t.Pools), "published", kept)
	}
	if err := n.serf.SetTags(m); err != nil {
		return fmt.Errorf("publish gossip tags: %w", err)
	}
	return nil
}

// Events returns the member events, including this member's own. The
// channel never blocks Serf: when a slow consumer lets it fill up
// (Config.EventBuffer), the oldest event is dropped to make room for the
// newest, with a warning logged at most every 10 s. Consumers should
// therefore treat events as triggers and reconcile with Members(). The
// channel is closed by Shutdown.
func (n *Node) Events() <-chan Event { return n.events }

// Leave announces a graceful departure and waits for it to spread; the
// other members then see EventLeave rather than EventFailed. Call Shutdown
// afterwards.
func (n *Node) Leave() error {
	if err := n.serf.Leave(); err != nil {
		return fmt.Errorf("gossip leave: %w", err)
	}
	return nil
}

// Shutdown stops gossiping without leaving (peers will see this member
// fail), then closes the Events channel. It is idempotent.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		if err := n.serf.Shutdown(); err != nil {
			n.shutdownErr = fmt.Errorf("gossip shutdown: %w", err)
		}
		close(n.stop)
		<-n.done
	})
	return n.shutdownErr
}

package ganesha

import (
	"context"
	"errors"
	"time"
)

// DefaultKeepInterval is how often a Keeper compares ganesha with the
// records when NewKeeper is given 0.
const DefaultKeepInterval = 30 * time.Second

// Retry pauses after a failed round: short at first (a ganesha that just
// took its bus name may still be starting), at most the interval.
const (
	keeperFirstRetry = 100 * time.Millisecond
	watchFirstRetry  = 200 * time.Millisecond
	watchMaxRetry    = 5 * time.Second
)

// Keeper keeps ganesha exporting what the agent's records say. ganesha
// forgets exports added over D-Bus when it restarts; the Keeper notices in
// two ways and re-adds them (Manager.Reconcile):
//
//   - at once, from the bus's NameOwnerChanged signal for org.ganesha.nfsd
//     when ganesha (re)appears on the bus, and
//   - every interval, by comparing ganesha's ShowExports with the records,
//     which also catches exports removed behind the agent's back and a
//     missed signal (the agent's bus connection broke meanwhile).
//
// Each round costs 1 + (exports) D-Bus calls when nothing is wrong.
type Keeper struct {
	m        *Manager
	want     func() []Export
	interval time.Duration
}

// NewKeeper returns a Keeper for m; want returns the exports to keep,
// usually Store.List. It is called with the Manager's lock held and must
// not call the Manager.
func NewKeeper(m *Manager, want func() []Export, interval time.Duration) *Keeper {
	if interval <= 0 {
		interval = DefaultKeepInterval
	}
	return &Keeper{m: m, want: want, interval: interval}
}

// Run reconciles until ctx is done: at start, when ganesha appears on the
// bus, every interval, and sooner after a failure. Failures are logged when
// they start, change or end, not on every round.
func (k *Keeper) Run(ctx context.Context) {
	kick := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.watch(ctx, kick)
	}()
	defer func() { <-done }()

	log := k.m.log
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastErr := ""
	retry := keeperFirstRetry
	reason := "start"
	for {
		select {
		case <-ctx.Done():
			return
		case reason = <-kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}

		repairs, err := k.m.Reconcile(ctx, k.want)
		if ctx.Err() != nil {
			return
		}
		if len(repairs) > 0 {
			ids := make([]string, len(repairs))
			for i, r := range repairs {
				ids[i] = r.VolumeID
			}
			log.Warn("ganesha lacked or differed from recorded NFS exports; repaired",
				"trigger", reason, "repaired", len(repairs), "volume_ids", ids)
		}
		next := k.interval
		switch {
		case err != nil:
			if err.Error() != lastErr {
				level := log.Error
				if errors.Is(err, ErrUnavailable) {
					level = log.Warn
				}
				level("cannot keep NFS exports", "trigger", reason, "err", err)
				lastErr = err.Error()
			}
			next = min(retry, k.interval)
			retry = min(2*retry, k.interval)
		case lastErr != "":
			log.Info("NFS exports in place again", "trigger", reason)
			lastErr = ""
			retry = keeperFirstRetry
		default:
			retry = keeperFirstRetry
		}
		reason = "interval"
		timer.Reset(next)
	}
}

// watch sends to kick whenever ganesha takes its bus name, and once its
// own bus connection is back after it broke or could not be made (a signal
// may have been missed meanwhile).
func (k *Keeper) watch(ctx context.Context, kick chan<- string) {
	log := k.m.log
	pause := watchFirstRetry
	failing := false   // the current run of failures has been logged
	reconnect := false // kick once connected
	for ctx.Err() == nil {
		changes, err := k.m.x.WatchOwner(ctx)
		if err != nil {
			if !failing {
				log.Warn("cannot watch ganesha on the bus; relying on the periodic check until it works", "err", err)
				failing = true
			}
			reconnect = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, watchMaxRetry)
			continue
		}
		if failing {
			log.Info("watching ganesha on the bus again")
		} else {
			log.Debug("watching ganesha on the bus")
		}
		if reconnect {
			send(kick, "bus reconnected")
		}
		failing, reconnect, pause = false, false, watchFirstRetry
		for c := range changes {
			if c.New != "" {
				log.Info("ganesha appeared on the bus; re-adding NFS exports", "old_owner", c.Old, "new_owner", c.New)
				send(kick, "ganesha appeared on the bus")
			} else {
				log.Warn("ganesha left the bus (stopped or crashed); its NFS exports are gone until it is back", "old_owner", c.Old)
			}
		}
		if ctx.Err() == nil {
			log.Warn("lost the bus connection watching ganesha; reconnecting")
			reconnect = true
		}
	}
}

// send delivers reason unless a kick is already pending.
func send(kick chan<- string, reason string) {
	select {
	case kick <- reason:
	default:
	}
}

package tgt

import (
	"context"
	"errors"
	"time"
)

// DefaultKeepInterval is how often a Keeper compares tgtd with the records
// when NewKeeper is given 0.
const DefaultKeepInterval = 10 * time.Second

// Keeper keeps tgtd exporting what the agent's records say: it runs
// Reconcile at start and then every interval. tgtd keeps nothing across a
// restart, so a restarted tgtd shows up as exports it lacks; the Keeper
// re-creates them and logs it. Each round costs two tgtadm calls when
// nothing is wrong.
type Keeper struct {
	m        *Manager
	want     func() []Export
	interval time.Duration
}

// NewKeeper returns a Keeper for m; want returns the exports to keep,
// usually Store.List.
func NewKeeper(m *Manager, want func() []Export, interval time.Duration) *Keeper {
	if interval <= 0 {
		interval = DefaultKeepInterval
	}
	return &Keeper{m: m, want: want, interval: interval}
}

// Run reconciles until ctx is done. Failures are logged when they start,
// change or end, not on every round.
func (k *Keeper) Run(ctx context.Context) {
	ticker := time.NewTicker(k.interval)
	defer ticker.Stop()
	lastErr := ""
	for {
		want := k.want()
		repairs, err := k.m.Reconcile(ctx, want)
		if ctx.Err() != nil {
			return
		}
		if len(repairs) > 0 {
			ids := make([]string, len(repairs))
			for i, r := range repairs {
				ids[i] = r.VolumeID
			}
			k.m.log.Warn("tgtd lacked or differed from recorded exports (restarted?); repaired",
				"repaired", len(repairs), "exports", len(want), "volume_ids", ids)
		}
		switch {
		case err != nil && err.Error() != lastErr:
			level := k.m.log.Error
			if errors.Is(err, ErrTargetUnavailable) {
				level = k.m.log.Warn
			}
			level("cannot keep iSCSI exports", "err", err, "exports", len(want))
			lastErr = err.Error()
		case err == nil && lastErr != "":
			k.m.log.Info("iSCSI exports in place again", "exports", len(want))
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

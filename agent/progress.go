package agent

import (
	"log/slog"
	"sync"
	"time"

	"github.com/kilnstore/kiln/internal/agentrpc"
)

// copyProgress records how far one volume's data copy has come, for the
// coordinator to poll (GET .../progress) and for the agent's log.
type copyProgress struct {
	log *slog.Logger

	mu      sync.Mutex
	p       agentrpc.Progress
	logged  int // the last percentage logged, in steps of 10
	started time.Time
}

func (c *copyProgress) report(done, total int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started.IsZero() {
		c.started = time.Now()
	}
	c.p = agentrpc.Progress{DoneBytes: done, TotalBytes: total, UpdatedAt: time.Now().UTC()}
	if pct := c.p.Percent(); pct/10 > c.logged/10 {
		c.logged = pct
		c.log.Info("data copy progress", "percent", pct, "done_bytes", done, "total_bytes", total, "elapsed", time.Since(c.started))
	}
}

func (c *copyProgress) get() agentrpc.Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p
}

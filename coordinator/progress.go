package coordinator

import (
	"context"
	"log/slog"
	"time"

	"github.com/kilnstore/kiln/internal/agentrpc"
)

// progressInterval is how often the leader asks an agent how far a data
// copy has come.
const progressInterval = 5 * time.Second

// progressClient is what watchCopy needs; agentrpc.Client has it, test
// doubles of AgentClient need not.
type progressClient interface {
	Progress(ctx context.Context, addr, pool, id string) (agentrpc.Progress, error)
}

// watchCopy polls the agent for the progress of volume id's data copy (a
// create from a snapshot or a volume, a revert) while it runs, and logs it
// with the volume's ID, so an operator sees a long copy move. The
// returned function stops it.
func (s *Server) watchCopy(ctx context.Context, log *slog.Logger, addr, pool, id string) (stop func()) {
	pc, ok := s.client.(progressClient)
	if !ok {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		last := -1
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, rcancel := context.WithTimeout(ctx, progressInterval)
			p, err := pc.Progress(rctx, addr, pool, id)
			rcancel()
			if err != nil || p.Percent() == last {
				continue // not started yet, finished, or the agent is busy: ask again
			}
			last = p.Percent()
			log.Info("data copy progress", "percent", last, "done_bytes", p.DoneBytes, "total_bytes", p.TotalBytes)
		}
	}()
	return func() { cancel(); <-done }
}

package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hashicorp/raft"

	"github.com/kilnstore/kiln/coordinator/state"
)

// ErrNoLeader is returned when no leader is known within the bounded wait.
var ErrNoLeader = errors.New("no raft leader available")

const (
	applyTimeout   = 10 * time.Second
	leaderWait     = 10 * time.Second
	forwardPath    = "/internal/v1/apply"
	maxForwardBody = 8 << 20
)

// forwarder sends writes to the leader: locally through raft.Apply, from a
// follower over HTTP to the leader's internal endpoint.
type forwarder struct {
	s    *Server
	http *http.Client
}

func newForwarder(s *Server) *forwarder {
	return &forwarder{s: s, http: &http.Client{Timeout: applyTimeout + 2*time.Second}}
}

// Apply proposes cmd and waits until the local replica has applied it.
func (s *Server) Apply(ctx context.Context, cmd state.Command) error {
	entry, err := state.Encode(cmd)
	if err != nil {
		return err
	}
	res, err := s.fwd.apply(ctx, entry)
	if err != nil {
		return err
	}
	if err := s.waitApplied(ctx, res.Index); err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}

func (f *forwarder) apply(ctx context.Context, entry []byte) (*state.Result, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		if f.s.raft.State() == raft.Leader {
			res, err := f.applyLocal(entry)
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
				return res, err
			}
		} else if addr := f.leaderAPI(); addr != "" {
			res, err := f.forward(ctx, addr, entry)
			if err == nil {
				return res, nil
			}
			f.s.log.Debug("forward to leader failed; retrying", "leader", addr, "err", err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w after waiting %s", ErrNoLeader, leaderWait)
		}
		// Jittered wait: an election takes a few hundred milliseconds.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a leader: %w", ctx.Err())
		case <-time.After(50*time.Millisecond + rand.N(100*time.Millisecond)):
		}
	}
}

func (f *forwarder) applyLocal(entry []byte) (*state.Result, error) {
	fut := f.s.raft.Apply(entry, applyTimeout)
	// A future raft accepted just as it shut down may never be answered
	// (seen in a leader-kill test: the dispatcher, and so Shutdown, waited
	// forever): stop waiting when the server shuts down.
	done := make(chan error, 1)
	go func() { done <- fut.Error() }()
	var err error
	select {
	case err = <-done:
	case <-f.s.ctx.Done():
		return nil, fmt.Errorf("raft apply: %w", raft.ErrRaftShutdown)
	}
	if err != nil {
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	res, ok := fut.Response().(*state.Result)
	if !ok {
		return nil, fmt.Errorf("raft apply: unexpected response %T", fut.Response())
	}
	return res, nil
}

// leaderAPI finds the leader's API address through its Serf tags.
func (f *forwarder) leaderAPI() string {
	_, id := f.s.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	for _, m := range f.s.serf.Members() {
		if m.Name == string(id) && m.TagsErr == nil && m.Tags.RPCAddr != "" {
			return m.Tags.RPCAddr
		}
	}
	return ""
}

func (f *forwarder) forward(ctx context.Context, addr string, entry []byte) (*state.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+forwardPath, bytes.NewReader(entry))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("leader %s answered %d: %s", addr, resp.StatusCode, bytes.TrimSpace(body))
	}
	var res state.Result
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("decode forwarded result: %w", err)
	}
	return &res, nil
}

// mount adds the internal apply endpoint. Only the leader applies; a
// follower answers 421 so the sender re-resolves the leader.
func (f *forwarder) mount(app *fiber.App) {
	app.Post(forwardPath, func(c *fiber.Ctx) error {
		body := c.Body()
		if len(body) == 0 || len(body) > maxForwardBody {
			return c.Status(http.StatusBadRequest).SendString("empty or oversized command")
		}
		if err := state.Validate(body); err != nil {
			return c.Status(http.StatusBadRequest).SendString(err.Error())
		}
		if f.s.raft.State() != raft.Leader {
			return c.Status(http.StatusMisdirectedRequest).SendString("not the leader")
		}
		entry := bytes.Clone(body)
		res, err := f.applyLocal(entry)
		if err != nil {
			return c.Status(http.StatusServiceUnavailable).SendString(err.Error())
		}
		return c.JSON(res)
	})
	app.Get("/internal/v1/status", func(c *fiber.Ctx) error {
		return c.JSON(f.s.Status())
	})
}

// Status is what GET /internal/v1/status reports: a coordinator's view of
// the Raft cluster, for operators' health checks and tests.
type Status struct {
	Node         string   `json:"node"`
	IsLeader     bool     `json:"is_leader"`
	Leader       string   `json:"leader"`
	RaftState    string   `json:"raft_state"`
	AppliedIndex uint64   `json:"applied_index"`
	Voters       []string `json:"voters"`
}

// Status reports this node's Raft view.
func (s *Server) Status() Status {
	_, leader := s.raft.LeaderWithID()
	st := Status{Node: s.cfg.NodeName, IsLeader: s.raft.State() == raft.Leader, Leader: string(leader),
		RaftState: s.raft.State().String(), AppliedIndex: s.fsm.AppliedIndex()}
	if servers, err := s.raftServers(); err == nil {
		for _, sv := range servers {
			st.Voters = append(st.Voters, string(sv.ID))
		}
	}
	return st
}

// waitApplied blocks until the local FSM has applied index (bounded), so a
// read after a write on a follower sees the write.
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	if s.fsm.AppliedIndex() >= index {
		return nil
	}
	deadline := time.Now().Add(applyTimeout)
	for s.fsm.AppliedIndex() < index {
		if time.Now().After(deadline) {
			return fmt.Errorf("local replica did not apply index %d within %s", index, applyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

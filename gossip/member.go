package gossip

import (
	"fmt"

	"github.com/hashicorp/serf/serf"
)

// MemberStatus is a member's state as Serf sees it.
type MemberStatus string

const (
	// StatusNone is a member Serf has heard of but not yet seen alive.
	StatusNone MemberStatus = "none"
	// StatusAlive members answer probes.
	StatusAlive MemberStatus = "alive"
	// StatusLeaving members announced a graceful leave in progress.
	StatusLeaving MemberStatus = "leaving"
	// StatusLeft members left gracefully.
	StatusLeft MemberStatus = "left"
	// StatusFailed members stopped answering probes without leaving.
	StatusFailed MemberStatus = "failed"
)

// Member is one member of the cluster with its decoded tags.
type Member struct {
	Name   string
	Addr   string // advertised IP address
	Port   uint16 // advertised gossip port
	Status MemberStatus
	Tags   Tags
	// TagsErr is non-nil when the member's tags failed to decode; Tags is
	// then the zero value. Such a member is reported rather than hidden so
	// that an operator can see a misconfigured or incompatible node.
	TagsErr error
}

// EventType is the kind of a membership event.
type EventType int

const (
	// EventJoin: a member joined (or came back after failing).
	EventJoin EventType = iota + 1
	// EventLeave: a member left gracefully.
	EventLeave
	// EventFailed: a member stopped answering probes.
	EventFailed
	// EventUpdate: a member changed its tags.
	EventUpdate
	// EventReap: a failed or left member was forgotten after the reconnect
	// or tombstone timeout.
	EventReap
)

// String returns "join", "leave", "failed", "update" or "reap".
func (e EventType) String() string {
	switch e {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventUpdate:
		return "update"
	case EventReap:
		return "reap"
	default:
		return fmt.Sprintf("EventType(%d)", int(e))
	}
}

// Event is a change in membership concerning one member.
type Event struct {
	Type   EventType
	Member Member
}

func eventType(t serf.EventType) (EventType, bool) {
	switch t {
	case serf.EventMemberJoin:
		return EventJoin, true
	case serf.EventMemberLeave:
		return EventLeave, true
	case serf.EventMemberFailed:
		return EventFailed, true
	case serf.EventMemberUpdate:
		return EventUpdate, true
	case serf.EventMemberReap:
		return EventReap, true
	default:
		return 0, false
	}
}

func memberStatus(s serf.MemberStatus) MemberStatus {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	default:
		return StatusNone
	}
}

func convertMember(m serf.Member) Member {
	out := Member{
		Name:   m.Name,
		Port:   m.Port,
		Status: memberStatus(m.Status),
	}
	if m.Addr != nil {
		out.Addr = m.Addr.String()
	}
	t, err := DecodeTags(m.Tags)
	if err != nil {
		out.TagsErr = fmt.Errorf("member %q: %w", m.Name, err)
	} else {
		out.Tags = t
	}
	return out
}

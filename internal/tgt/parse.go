package tgt

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Target is one iSCSI target as tgtd reports it.
type Target struct {
	TID  int
	Name string // the target's iSCSI name
	// State is "ready" or "offline".
	State string
	// Sessions are the logged-in initiators (tgt's "I_T nexus").
	Sessions []Session
	// LUNs include LUN 0, the controller tgtd adds to every target.
	LUNs []LogicalUnit
	// Accounts are the incoming CHAP users bound to the target; with any,
	// an initiator must authenticate as one of them.
	Accounts []string
	// OutgoingAccount is the mutual-CHAP user, "" if none.
	OutgoingAccount string
	// ACL lists the initiator names and addresses allowed to log in, OR'ed;
	// "ALL" allows every initiator, an empty ACL none.
	ACL []string
}

// Session is one initiator logged in to a target.
type Session struct {
	Nexus     uint64
	Initiator string
	Alias     string   // "none" if the initiator sent none
	Addresses []string // one IP address per connection
}

// LogicalUnit is one LUN of a target.
type LogicalUnit struct {
	Number           int
	Type             string // "disk", "controller", ...
	BackingStoreType string // "rdwr", "aio", "null" (LUN 0), ...
	BackingStorePath string // "None" for LUN 0
}

// LUN returns the logical unit numbered n.
func (t Target) LUN(n int) (LogicalUnit, bool) {
	for _, l := range t.LUNs {
		if l.Number == n {
			return l, true
		}
	}
	return LogicalUnit{}, false
}

// The sections of a target in `tgtadm --mode target --op show`.
const (
	sectionSystem  = "System information:"
	sectionNexus   = "I_T nexus information:"
	sectionLUN     = "LUN information:"
	sectionAccount = "Account information:"
	sectionACL     = "ACL information:"
)

// parseTargets parses the output of `tgtadm --lld iscsi --mode target --op
// show` (tgt 1.0.x):
//
//	Target 1: iqn.2010-10.org.openstack:volume-...
//	    System information:
//	        Driver: iscsi
//	        State: ready
//	    I_T nexus information:
//	        I_T nexus: 4
//	            Initiator: iqn.1993-08.org.debian:01:abcdef alias: none
//	            Connection: 0
//	                IP Address: 127.0.0.1
//	    LUN information:
//	        LUN: 1
//	            Type: disk
//	            Backing store type: rdwr
//	            Backing store path: /dev/vg/volume-...
//	    Account information:
//	        user1
//	        out1 (outgoing)
//	    ACL information:
//	        iqn.1993-08.org.debian:01:abcdef
//
// Structure comes from indentation (4 spaces a level), not from the text of
// entries, so an account or ACL entry that reads like a header cannot change
// the structure. Lines it does not know are ignored; a target header it
// cannot read, or a number that is not one, is an error.
func parseTargets(out string) ([]Target, error) {
	var (
		targets []Target
		cur     *Target
		section string
		lun     *LogicalUnit
		sess    *Session
	)
	flush := func() {
		if cur != nil {
			targets = append(targets, *cur)
		}
	}
	seen := map[int]bool{}
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, " \t\r")
		text := strings.TrimLeft(line, " ")
		if text == "" {
			continue
		}
		indent := len(line) - len(text)
		if indent == 0 {
			rest, ok := strings.CutPrefix(text, "Target ")
			num, name, ok2 := strings.Cut(rest, ": ")
			tid, err := strconv.Atoi(num)
			if !ok || !ok2 || err != nil || tid < 1 || name == "" {
				return nil, fmt.Errorf("tgt: target list line %d: want \"Target N: name\", got %q", n+1, text)
			}
			if seen[tid] {
				return nil, fmt.Errorf("tgt: target list line %d: target %d listed twice", n+1, tid)
			}
			seen[tid] = true
			flush()
			cur = &Target{TID: tid, Name: name}
			section, lun, sess = "", nil, nil
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("tgt: target list line %d: %q before the first target", n+1, text)
		}
		if indent == 4 {
			section, lun, sess = text, nil, nil
			continue
		}
		key, value, _ := strings.Cut(text, ": ")
		switch section {
		case sectionSystem:
			if indent == 8 && key == "State" {
				cur.State = value
			}
		case sectionNexus:
			switch {
			case indent == 8 && key == "I_T nexus":
				id, err := strconv.ParseUint(value, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("tgt: target list line %d: bad I_T nexus %q", n+1, value)
				}
				cur.Sessions = append(cur.Sessions, Session{Nexus: id})
				sess = &cur.Sessions[len(cur.Sessions)-1]
			case indent == 12 && sess != nil && key == "Initiator":
				sess.Initiator, sess.Alias, _ = strings.Cut(value, " alias: ")
			case indent == 16 && sess != nil && key == "IP Address":
				sess.Addresses = append(sess.Addresses, value)
			}
		case sectionLUN:
			switch {
			case indent == 8 && key == "LUN":
				num, err := strconv.Atoi(value)
				if err != nil || num < 0 {
					return nil, fmt.Errorf("tgt: target list line %d: bad LUN %q", n+1, value)
				}
				cur.LUNs = append(cur.LUNs, LogicalUnit{Number: num})
				lun = &cur.LUNs[len(cur.LUNs)-1]
			case indent == 12 && lun != nil:
				switch key {
				case "Type":
					lun.Type = value
				case "Backing store type":
					lun.BackingStoreType = value
				case "Backing store path":
					lun.BackingStorePath = value
				}
			}
		case sectionAccount:
			if indent == 8 {
				if user, ok := strings.CutSuffix(text, " (outgoing)"); ok {
					cur.OutgoingAccount = user
				} else {
					cur.Accounts = append(cur.Accounts, text)
				}
			}
		case sectionACL:
			if indent == 8 {
				cur.ACL = append(cur.ACL, text)
			}
		}
	}
	flush()
	return targets, nil
}

// parsePortals parses `tgtadm --lld iscsi --mode portal --op show`:
//
//	Portal: 127.0.0.1:3260,1
//	Portal: [::]:3260,1
func parsePortals(out string) ([]netip.AddrPort, error) {
	var portals []netip.AddrPort
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		rest, ok := strings.CutPrefix(line, "Portal: ")
		if i := strings.LastIndexByte(rest, ','); ok && i >= 0 {
			rest = rest[:i]
		}
		ap, err := netip.ParseAddrPort(rest)
		if !ok || err != nil {
			return nil, fmt.Errorf("tgt: portal list line %d: want \"Portal: ip:port,tpgt\", got %q", n+1, line)
		}
		portals = append(portals, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return portals, nil
}

// parseAccounts parses `tgtadm --lld iscsi --mode account --op show`:
//
//	Account list:
//	    user1
//	    user2
func parseAccounts(out string) []string {
	var users []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, " \t\r")
		text := strings.TrimLeft(line, " ")
		if text == "" || len(line) == len(text) { // the "Account list:" header
			continue
		}
		users = append(users, text)
	}
	return users
}

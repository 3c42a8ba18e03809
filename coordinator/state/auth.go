package state

import (
	"regexp"
	"time"
)

// CmdSetProviderAuth records the CHAP credentials of a volume.
const CmdSetProviderAuth CommandType = 56

// SetProviderAuth gives a volume the CHAP credentials its iSCSI exports
// require (Cinder's provider_auth, "CHAP <username> <secret>"). The leader
// generates them at the first export; the first recorded value wins, so
// two coordinators racing to generate them agree on one.
type SetProviderAuth struct {
	ID   string    `json:"id"`
	Auth string    `json:"auth"`
	At   time.Time `json:"at"`
}

// CommandType implements Command.
func (SetProviderAuth) CommandType() CommandType { return CmdSetProviderAuth }

// providerAuthPattern is what Kiln generates: CHAP, a username and a
// secret of characters every initiator accepts (secrets 12-16 bytes, the
// range Microsoft's initiator and tgt accept).
var providerAuthPattern = regexp.MustCompile(`^CHAP [A-Za-z0-9]{8,64} [A-Za-z0-9]{12,16}$`)

// ValidProviderAuth reports whether s is a provider_auth Kiln accepts.
func ValidProviderAuth(s string) bool { return providerAuthPattern.MatchString(s) }

func (s *State) applySetProviderAuth(c *SetProviderAuth) *Error {
	if !ValidProviderAuth(c.Auth) {
		return errorf(KindInvalid, "Invalid provider_auth for volume %s.", c.ID)
	}
	v, err := s.ownVolume(c.ID, "")
	if err != nil {
		return err
	}
	if v.ProviderAuth != "" {
		return nil // the first value wins; the proposer re-reads it
	}
	nv := cloneVolume(v)
	nv.ProviderAuth = c.Auth
	touch(nv, c.At)
	s.put(nv)
	return nil
}

package state

import (
	"errors"
	"fmt"
)

// ErrorKind classifies a refused command so the API edge can map it to a
// status code in one place.
type ErrorKind uint8

const (
	// KindInvalid: the request conflicts with the rules (Cinder's Invalid*, 400).
	KindInvalid ErrorKind = iota + 1
	// KindNotFound: a referenced record does not exist (404).
	KindNotFound
	// KindOverQuota: a quota would be exceeded (413).
	KindOverQuota
	// KindConflict: the record exists already (409).
	KindConflict
	// KindNoCapacity: the chosen pool no longer fits (placement retries).
	KindNoCapacity
)

// Sentinels matched with errors.Is against an *Error of the same kind.
var (
	ErrInvalid    = &Error{Kind: KindInvalid}
	ErrNotFound   = &Error{Kind: KindNotFound}
	ErrOverQuota  = &Error{Kind: KindOverQuota}
	ErrConflict   = &Error{Kind: KindConflict}
	ErrNoCapacity = &Error{Kind: KindNoCapacity}
)

// Error is a command refused by the state machine. It travels inside Raft
// results and over leader forwarding, so it is plain data.
type Error struct {
	Kind ErrorKind `json:"kind"`
	// Class is Cinder's exception class when clients see it (e.g.
	// "VolumeLimitExceeded"); empty otherwise.
	Class string `json:"class,omitempty"`
	Msg   string `json:"message"`
}

func (e *Error) Error() string {
	if e.Class != "" {
		return e.Class + ": " + e.Msg
	}
	return e.Msg
}

// Is matches on kind, so errors.Is(err, state.ErrNotFound) works.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Kind == e.Kind
	}
	return false
}

func errorf(kind ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func quotaErr(class, format string, args ...any) *Error {
	return &Error{Kind: KindOverQuota, Class: class, Msg: fmt.Sprintf(format, args...)}
}

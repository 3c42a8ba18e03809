package api

import (
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// POST .../{id}/action: the body is one JSON object whose only key names
// the action and whose value is its argument. Cinder's wsgi layer reads the
// key (action_peek_json), looks the action up among the controller's and
// its extensions' actions, checks the action's microversion and only then
// validates the argument.

// action is one action a resource's action route knows.
type action struct {
	// since is the microversion the action appeared in (zero: always).
	// Below it Cinder answers a bare 404, as for a method that does not
	// exist at that version.
	since apiVersion
	// run performs the action; nil means Cinder has the action but Kiln
	// does not serve it yet (501).
	run func(s *server, c *fiber.Ctx, arg any) error
}

func noSuchAction(name string) error {
	return badRequest("There is no such action: %s. Verify the request body and Content-Type header and try again.", name)
}

func notImplementedAction(name string) error {
	return &apiError{Status: http.StatusNotImplemented,
		Msg: fmt.Sprintf("The %s action is not implemented by Kiln yet.", name)}
}

// actionBody reads an action body as action_peek_json does: invalid JSON or
// an object without exactly one key is a malformed body (400). Other JSON
// values fail in Cinder on len() or keys(), which its dispatcher turns
// into a 404 (a value of length 1) or a malformed body (any other length).
func actionBody(c *fiber.Ctx) (string, any, error) {
	if len(c.Body()) == 0 {
		// No body means no content type, for which Cinder has no peek
		// function: a KeyError on None.
		return "", nil, noSuchAction("None")
	}
	body, err := decodeBody(c)
	if err != nil {
		return "", nil, err
	}
	lengthOne := false
	switch b := body.(type) {
	case object:
		if len(b) == 1 {
			for name, arg := range b {
				return name, arg, nil
			}
		}
	case string:
		lengthOne = utf8.RuneCountInString(b) == 1
	case []any:
		lengthOne = len(b) == 1
	default:
		// Numbers, booleans and null have no len().
		lengthOne = true
	}
	if lengthOne {
		return "", nil, notFound(msgNotFound)
	}
	return "", nil, badRequest(msgMalformedBody)
}

// dispatchAction runs the action a body names. find checks that the
// resource exists and is the caller's; an action Kiln does not serve
// answers 501 once the resource is known to exist.
func (s *server) dispatchAction(c *fiber.Ctx, actions map[string]action, find func(c *fiber.Ctx) error) error {
	name, arg, err := actionBody(c)
	if err != nil {
		return err
	}
	a, ok := actions[name]
	if !ok {
		return noSuchAction(name)
	}
	if !info(c).Version.atLeast(a.since) {
		return notFound(msgNotFound)
	}
	if a.run == nil {
		if err := find(c); err != nil {
			return err
		}
		return notImplementedAction(name)
	}
	return a.run(s, c, arg)
}

// actionObject checks that an action's argument is an object and has only
// the allowed keys (the action schemas' additionalProperties: false).
func actionObject(name string, arg any, allowed ...string) (object, error) {
	obj, ok := arg.(object)
	if !ok {
		return nil, typeError(name, arg, "object")
	}
	if err := rejectExtra(name, obj, allowed...); err != nil {
		return nil, err
	}
	return obj, nil
}

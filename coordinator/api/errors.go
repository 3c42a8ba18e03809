package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// apiError is a request the API refuses itself, before any command is
// proposed: a status code and the message Cinder would give.
type apiError struct {
	Status int
	Msg    string
}

func (e *apiError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &apiError{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &apiError{Status: http.StatusNotFound, Msg: fmt.Sprintf(format, args...)}
}

// invalidInput is Cinder's InvalidInput (400) with its message prefix.
func invalidInput(format string, args ...any) error {
	return badRequest("Invalid input received: "+format, args...)
}

// unavailableError is an Apply failure that is not a refusal by the state
// machine: no leader, a timeout, a forwarding failure (503).
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// fault is the rendered form of an error: Cinder's
// {"<name>": {"code": N, "message": "..."}} body plus headers.
type fault struct {
	Status     int
	Msg        string
	RetryAfter string
}

// Messages of webob's default exceptions, which Cinder returns for errors
// raised without an explanation.
const (
	msgNotFound      = "The resource could not be found."
	msgBadMethod     = "The method is not allowed for this resource."
	msgTooLarge      = "Request is too large."
	msgUnavailable   = "Service is unavailable at this time."
	msgInternal      = "The server has either erred or is incapable of performing the requested operation."
	msgUnauthorized  = "The request you have made requires authentication."
	msgMalformedBody = "Malformed request body"
)

// faultFor maps any error a handler returns to the status and message a
// client sees. It is the only place where errors become status codes.
func faultFor(err error) fault {
	var (
		ae *apiError
		se *state.Error
		ue *unavailableError
		fe *fiber.Error
	)
	switch {
	case errors.As(err, &ae):
		return fault{Status: ae.Status, Msg: ae.Msg}
	case errors.As(err, &se):
		switch se.Kind {
		case state.KindInvalid:
			return fault{Status: http.StatusBadRequest, Msg: se.Error()}
		case state.KindNotFound:
			return fault{Status: http.StatusNotFound, Msg: se.Error()}
		case state.KindOverQuota:
			// Cinder's QuotaError family: safe message "<Class>: <text>"
			// and Retry-After: 0.
			return fault{Status: http.StatusRequestEntityTooLarge, Msg: se.Error(), RetryAfter: "0"}
		case state.KindConflict:
			return fault{Status: http.StatusConflict, Msg: se.Error()}
		default:
			// KindNoCapacity belongs to placement and never answers an
			// API command; treat anything unexpected as transient.
			return fault{Status: http.StatusServiceUnavailable, Msg: msgUnavailable}
		}
	case errors.As(err, &ue):
		return fault{Status: http.StatusServiceUnavailable, Msg: msgUnavailable}
	case errors.As(err, &fe):
		switch fe.Code {
		case http.StatusNotFound:
			return fault{Status: fe.Code, Msg: msgNotFound}
		case http.StatusMethodNotAllowed:
			return fault{Status: fe.Code, Msg: msgBadMethod}
		case http.StatusRequestEntityTooLarge:
			return fault{Status: fe.Code, Msg: msgTooLarge}
		default:
			return fault{Status: fe.Code, Msg: fe.Message}
		}
	default:
		return fault{Status: http.StatusInternalServerError, Msg: msgInternal}
	}
}

// faultName is Cinder's fault body key for a status (wsgi.Fault).
func faultName(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "badRequest"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "itemNotFound"
	case http.StatusMethodNotAllowed:
		return "badMethod"
	case http.StatusConflict:
		return "conflictingRequest"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return "overLimit"
	case http.StatusUnsupportedMediaType:
		return "badMediaType"
	case http.StatusNotImplemented:
		return "notImplemented"
	case http.StatusServiceUnavailable:
		return "serviceUnavailable"
	default:
		return "computeFault"
	}
}

// writeFault renders err as a Cinder fault body. Headers already set on the
// response (request ID, microversion) are kept.
func writeFault(c *fiber.Ctx, err error) error {
	f := faultFor(err)
	inner := fiber.Map{"code": f.Status, "message": f.Msg}
	if f.RetryAfter != "" {
		c.Set("Retry-After", f.RetryAfter)
		inner["retryAfter"] = f.RetryAfter
	}
	return c.Status(f.Status).JSON(fiber.Map{faultName(f.Status): inner})
}

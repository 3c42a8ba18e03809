package api

import (
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// Snapshot actions (cinder/api/contrib/snapshot_actions.py, admin_actions.py
// SnapshotAdminController, snapshot_unmanage.py; schemas
// snapshot_actions.py and admin_actions.py reset_status_snapshot).

var snapshotActions = map[string]action{
	"os-reset_status":           {run: (*server).resetSnapshotStatus},
	"os-update_snapshot_status": {run: (*server).updateSnapshotStatus},
	"os-force_delete":           {run: (*server).forceDeleteSnapshot},
	"os-unmanage":               {},
}

// snapshotAction is POST snapshots/{id}/action.
func (s *server) snapshotAction(c *fiber.Ctx) error {
	return s.dispatchAction(c, snapshotActions, func(c *fiber.Ctx) error {
		_, _, err := s.findSnapshot(c)
		return err
	})
}

// cinderSnapshotStatuses is Cinder's SnapshotStatus.ALL, which the
// snapshot_status format checks (the state machine refuses "deleted").
var cinderSnapshotStatuses = []string{"error", "available", "creating", "deleting", "deleted",
	"updating", "error_deleting", "unmanaging", "backing-up", "restoring"}

// pyTuple renders strings as a Python tuple's str().
func pyTuple(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = pyString(s)
	}
	return "(" + strings.Join(quoted, ", ") + ")"
}

// actionStatus reads the required string "status" of a status action.
func actionStatus(obj object) (string, error) {
	raw, ok := obj["status"]
	if !ok {
		return "", requiredProperty("status")
	}
	status, _, err := stringField("status", raw, false, 0, 0)
	return status, err
}

// resetSnapshotStatus is os-reset_status {"status": ...} (admin, 202): any
// valid status, case-insensitively.
func (s *server) resetSnapshotStatus(c *fiber.Ctx, arg any) error {
	obj, err := actionObject("os-reset_status", arg, "status")
	if err != nil {
		return err
	}
	status, err := actionStatus(obj)
	if err != nil {
		return err
	}
	status = strings.ToLower(status)
	if !slices.Contains(cinderSnapshotStatuses, status) {
		return badRequest("Snapshot status: %s is invalid, valid statuses are: %s.", pyStr(obj["status"]), pyTuple(cinderSnapshotStatuses))
	}
	_, sn, err := s.findSnapshot(c)
	if err != nil {
		return err
	}
	if err := s.apply(c, state.SetSnapshotStatus{ID: sn.ID, Mode: state.SnapStatusReset, Status: status, At: now()}); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

var progressInt = regexp.MustCompile(`^[+-]?[0-9]+$`)

// snapshotProgress is the "progress" format: "N%" with N in 0..100.
// Values Python finds false (null, "", 0, false, [], {}) set nothing;
// other non-strings, which make Cinder fail with a 500, are a 400 here.
func snapshotProgress(v any) (string, error) {
	switch t := v.(type) {
	case nil:
		return "", nil
	case bool:
		if !t {
			return "", nil
		}
	case string:
		if t == "" {
			return "", nil
		}
		last, size := utf8.DecodeLastRuneInString(t)
		num := strings.TrimSpace(t[:len(t)-size])
		if !progressInt.MatchString(num) {
			break
		}
		n, _ := new(big.Int).SetString(strings.TrimPrefix(num, "+"), 10)
		if n.Sign() < 0 || n.Cmp(big.NewInt(100)) > 0 || last != '%' {
			return "", invalidInput("progress must be an integer percentage between 0 and 100")
		}
		return t, nil
	case []any:
		if len(t) == 0 {
			return "", nil
		}
	case object:
		if len(t) == 0 {
			return "", nil
		}
	default:
		if n, ok := jsonInteger(v); ok && n.Sign() == 0 {
			return "", nil
		}
	}
	return "", invalidInput("progress must be an integer percentage")
}

// updateSnapshotStatus is os-update_snapshot_status {"status", "progress"}
// (202): only Cinder's transitions from creating and deleting.
func (s *server) updateSnapshotStatus(c *fiber.Ctx, arg any) error {
	obj, err := actionObject("os-update_snapshot_status", arg, "status", "progress")
	if err != nil {
		return err
	}
	status, err := actionStatus(obj)
	if err != nil {
		return err
	}
	progress, err := snapshotProgress(obj["progress"])
	if err != nil {
		return err
	}
	_, sn, err := s.findSnapshot(c)
	if err != nil {
		return err
	}
	cmd := state.SetSnapshotStatus{ID: sn.ID, Mode: state.SnapStatusUpdate, Status: status, Progress: progress, At: now()}
	if err := s.apply(c, cmd); err != nil {
		return err
	}
	return emptyResponse(c, http.StatusAccepted)
}

// forceDeleteSnapshot is os-force_delete (202): delete whatever the status.
// Its argument is not read ({}, null and "" are all sent).
func (s *server) forceDeleteSnapshot(c *fiber.Ctx, _ any) error {
	return s.removeSnapshot(c, true)
}

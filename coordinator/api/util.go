package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/kilnstore/kiln/coordinator/state"
)

// newUUID returns a random (version 4) UUID in canonical lowercase form.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ panics
		// itself rather than returning an error).
		panic("api: crypto/rand: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// isUUID reports whether s is UUID-like as oslo's is_uuid_like accepts it:
// 32 hex digits, optionally with the usual dashes, any case.
func isUUID(s string) bool {
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return false
	}
	if len(s) != 32 && (len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// now is the timestamp a handler puts into a command: UTC, microseconds
// (what Cinder's database keeps and what the wire format shows).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// wireTime is Cinder's timestamp format: no zone suffix (gophercloud fails
// to parse one).
const wireTime = "2006-01-02T15:04:05.000000"

// formatTime renders t for the wire; the zero time is null.
func formatTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(wireTime)
}

// nullable renders "" as null.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// apply proposes cmd. A refusal by the state machine comes back as the
// *state.Error; any other failure is infrastructure (503).
func (s *server) apply(c *fiber.Ctx, cmd state.Command) error {
	err := s.b.Apply(c.UserContext(), cmd)
	if err == nil {
		attrs := []any{"request_id", info(c).ID, "command", fmt.Sprintf("%T", cmd)}
		switch v := cmd.(type) {
		case state.CreateVolume:
			attrs = append(attrs, "volume_id", v.Volume.ID, "project", v.Volume.ProjectID, "size_gb", v.Volume.SizeGB)
		case state.UpdateVolume:
			attrs = append(attrs, "volume_id", v.ID)
		case state.DeleteVolume:
			attrs = append(attrs, "volume_id", v.ID, "force", v.Force, "cascade", v.Cascade)
		case state.ExtendVolume:
			attrs = append(attrs, "volume_id", v.ID, "new_size_gb", v.NewSizeGB)
		case state.RevertVolume:
			attrs = append(attrs, "volume_id", v.ID, "snapshot_id", v.SnapshotID)
		case state.CreateSnapshot:
			attrs = append(attrs, "snapshot_id", v.Snapshot.ID, "volume_id", v.Snapshot.VolumeID, "project", v.Snapshot.ProjectID)
		case state.UpdateSnapshot:
			attrs = append(attrs, "snapshot_id", v.ID)
		case state.DeleteSnapshot:
			attrs = append(attrs, "snapshot_id", v.ID, "force", v.Force)
		case state.SetSnapshotStatus:
			attrs = append(attrs, "snapshot_id", v.ID, "mode", v.Mode, "status", v.Status)
		case state.ResetVolumeStatus:
			attrs = append(attrs, "volume_id", v.ID, "status", v.Status, "attach_status", v.AttachStatus, "migration_status", v.MigrationStatus)
		case state.CreateAttachment:
			attrs = append(attrs, "attachment_id", v.Attachment.ID, "volume_id", v.Attachment.VolumeID, "connector", v.Attachment.Connector != nil)
		case state.UpdateAttachment:
			attrs = append(attrs, "attachment_id", v.ID)
		case state.CompleteAttachment:
			attrs = append(attrs, "attachment_id", v.ID)
		case state.DeleteAttachment:
			attrs = append(attrs, "attachment_id", v.ID)
		case state.AttachVolume:
			attrs = append(attrs, "volume_id", v.ID, "attachment_id", v.AttachmentID, "mode", v.Mode)
		case state.DetachVolume:
			attrs = append(attrs, "volume_id", v.ID, "attachment_id", v.AttachmentID)
		case state.CreateQoSSpecs:
			attrs = append(attrs, "qos_specs_id", v.Specs.ID, "name", v.Specs.Name)
		case state.DeleteQoSSpecs:
			attrs = append(attrs, "qos_specs_id", v.ID, "force", v.Force)
		case state.AssociateQoSSpecs:
			attrs = append(attrs, "qos_specs_id", v.ID, "type_id", v.TypeID)
		case state.DisassociateQoSSpecs:
			attrs = append(attrs, "qos_specs_id", v.ID, "type_id", v.TypeID)
		}
		s.log.Info("command applied", attrs...)
		return nil
	}
	var se *state.Error
	if errors.As(err, &se) {
		s.log.Debug("command refused", "request_id", info(c).ID, "command", fmt.Sprintf("%T", cmd), "err", se)
		return se
	}
	return &unavailableError{err: fmt.Errorf("apply %T: %w", cmd, err)}
}

// boolStrings are oslo's is_valid_boolstr values.
var boolStrings = map[string]bool{
	"true": true, "yes": true, "y": true, "1": true, "t": true, "on": true,
	"false": false, "no": false, "n": false, "0": false, "f": false, "off": false,
}

// parseBool is oslo's bool_from_string(strict=True).
func parseBool(s string) (bool, bool) {
	v, ok := boolStrings[strings.ToLower(strings.TrimSpace(s))]
	return v, ok
}

// boolParam is Cinder's utils.get_bool_param: absent is false, anything
// but a boolean string is a 400.
func boolParam(c *fiber.Ctx, name string) (bool, error) {
	raw, ok := queryValue(c, name)
	if !ok {
		return false, nil
	}
	v, valid := parseBool(raw)
	if !valid {
		return false, badRequest("Value '%s' for '%s' is not a boolean.", raw, name)
	}
	return v, nil
}

// queryValue returns the last value of a query parameter and whether it
// is present at all.
func queryValue(c *fiber.Ctx, name string) (string, bool) {
	args := c.Context().QueryArgs()
	if !args.Has(name) {
		return "", false
	}
	return string(args.Peek(name)), true
}

// queryKeys lists the query parameter names in order, once each.
func queryKeys(c *fiber.Ctx) []string {
	var keys []string
	seen := map[string]bool{}
	c.Context().QueryArgs().VisitAll(func(k, _ []byte) {
		if !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, string(k))
		}
	})
	return keys
}

// emptyResponse answers with status and no body (Cinder's
// webob.Response(status_int=...)); Fiber's SendStatus would add the
// status text as a body.
func emptyResponse(c *fiber.Ctx, status int) error {
	c.Status(status)
	return nil
}

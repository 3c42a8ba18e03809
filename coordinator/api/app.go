// Package api serves the OpenStack Block Storage (Cinder) v3 REST API over
// Kiln's replicated state, so that existing Cinder clients (cinderclient,
// gophercloud, Terraform) work unmodified.
//
// Handlers validate the request, build one state.Command (choosing IDs and
// timestamps, since commands are deterministic), propose it through
// Backend.Apply and answer from Backend.State(). A rejected request never
// reaches Apply, so it changes nothing. Errors become Cinder fault bodies in
// one place (faultFor).
//
// Deliberate differences from Cinder, kept small and documented:
//   - A request without X-Auth-Token gets 401 (Cinder's noauth answers the
//     legacy v1 auth handshake with 204 instead).
//   - The versions document at /v3/ needs no token.
//   - A volume or snapshot that failed carries the reason in an extra
//     detail key "kiln:error" (Cinder exposes it through the messages API
//     only).
//   - Creating a volume from an image or backup is refused with 400 until
//     those sources exist (snapshots and volumes are served). A volume
//     created from a snapshot or volume is made on the source's pool, in
//     any type the request names (Cinder refuses a type whose backend
//     differs).
//   - Volume and snapshot actions Cinder has but Kiln does not serve yet
//     (os-retype, os-unmanage, os-migrate_volume, ...) answer 501
//     notImplemented once the resource is found. Like Cinder, an unknown
//     action is a 400 and an action above the request's microversion a 404.
//   - Volume os-reset_status to in-use is refused (400) for a volume
//     without attachments, as in Cinder.
//   - The attach actions (os-attach, os-detach, os-reserve, ...) and the
//     attachments API answer the state machine's refusals synchronously
//     (Cinder's manager refuses some of them after a 202). Connector bodies
//     accept any keys; the known ones (host, ip, initiator, multipath,
//     platform, os_type, enforce_multipath) must have their type.
//   - os-update_readonly_flag is kept as a volume field (Cinder's admin
//     metadata "readonly"); it is not shown in the volume's metadata.
//   - volume_image_metadata is shown in a volume's detail view when the
//     volume has image metadata (Cinder adds it to every volume of a list
//     once any volume has some).
//   - QoS spec values must be strings or numbers (Cinder stores str() of
//     any JSON value).
//   - os-update_snapshot_status with a progress that is neither a string
//     nor false-like is a 400 (Cinder fails with a 500).
//   - GET limits reports unlimited (-1) maxima as 2147483647 and counts
//     usage as in_use + reserved (Cinder commits quota before it answers a
//     create; Kiln keeps it reserved while the volume is creating).
//   - DELETE volumes/{id}?force=... below microversion 3.23 is a 400 (Cinder
//     silently ignores the parameter there).
//   - Every noauth caller is an admin, yet projects stay isolated (another
//     project's volume is a 404 unless a list asks for all_tenants), and
//     unknown list filters get the non-admin treatment: 400 from 3.31,
//     ignored before (Cinder lets admins pass any filter and then matches
//     nothing).
package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// BodyLimit is the largest request body accepted (Cinder's
// osapi_max_request_body_size default is 112 KiB; Kiln allows 1 MiB).
const BodyLimit = 1 << 20

// Defaults applied to zero Options fields.
const (
	DefaultMaxLimit = 1000
	DefaultZone     = "nova"
)

// Options configures the routes mounted by Register.
type Options struct {
	// PublicURL is the base URL clients reach the API at (for example
	// http://127.0.0.1:8776), used in links and the versions document.
	// Empty means the scheme and host of each request.
	PublicURL string
	// DefaultZone is the availability zone of volumes that name none; it is
	// always a valid zone. Default "nova".
	DefaultZone string
	// Logger receives handler logs; default slog.Default().
	Logger *slog.Logger
	// MaxLimit is Cinder's osapi_max_limit: the largest page a list
	// returns. Default 1000.
	MaxLimit int
}

// Locals keys.
const localRequest = "kiln.request"

// reqInfo is what the middleware learned about a request: its ID, the
// caller (from the auth middleware) and the negotiated microversion.
type reqInfo struct {
	ID      string
	User    string
	Project string
	Version apiVersion
}

// info returns the request's reqInfo (never nil).
func info(c *fiber.Ctx) *reqInfo {
	if ri, ok := c.Locals(localRequest).(*reqInfo); ok {
		return ri
	}
	ri := &reqInfo{ID: "req-" + newUUID(), Version: minVersion}
	c.Locals(localRequest, ri)
	return ri
}

// NewApp returns a Fiber app configured for the API: Cinder fault bodies for
// every error (unknown routes 404, wrong methods 405, oversized bodies 413),
// a 1 MiB body limit, no startup banner, and a middleware that sets
// X-Openstack-Request-Id on every response and writes a Debug access log.
func NewApp(log *slog.Logger) *fiber.App {
	if log == nil {
		log = slog.Default()
	}
	app := fiber.New(fiber.Config{
		BodyLimit:             BodyLimit,
		DisableStartupMessage: true,
		// Values from the request outlive handlers inside commands and
		// logs; copying them is cheaper than chasing a reused buffer.
		Immutable:     true,
		CaseSensitive: true,
		UnescapePath:  true,
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			// Errors raised before the middleware ran (body too large).
			c.Set(headerRequestID, info(c).ID)
			return writeFault(c, err)
		},
	})
	app.Use(requestMiddleware(log))
	return app
}

const headerRequestID = "X-Openstack-Request-Id"

// requestMiddleware assigns the request ID, renders errors of the rest of
// the chain as Cinder faults (so the status is final here) and logs the
// request.
func requestMiddleware(log *slog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		ri := info(c)
		c.Set(headerRequestID, ri.ID)
		if err := nextRecovering(c); err != nil {
			var pe *panicError
			switch {
			case errors.As(err, &pe):
				log.Error("api handler panicked", "request_id", ri.ID, "method", c.Method(), "path", c.Path(),
					"panic", pe.value, "stack", string(pe.stack))
			case faultFor(err).Status >= http.StatusInternalServerError:
				log.Warn("api request failed", "request_id", ri.ID, "method", c.Method(), "path", c.Path(), "err", err)
			}
			if werr := writeFault(c, err); werr != nil {
				return werr
			}
		}
		log.Debug("api request", "method", c.Method(), "path", c.Path(),
			"status", c.Response().StatusCode(), "duration", time.Since(start),
			"request_id", ri.ID, "project", ri.Project)
		return nil
	}
}

// panicError is a handler panic turned into a 500, so that one bad
// request cannot take the coordinator down.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

func nextRecovering(c *fiber.Ctx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return c.Next()
}

// server holds what handlers need.
type server struct {
	app  *fiber.App
	b    Backend
	opts Options
	log  *slog.Logger
}

// Register mounts every Cinder v3 route on app, under both
// /v3/{project_id}/... and /v3/... (project from the token, Cinder 3.67).
// It installs no catch-all: unknown paths fall through to Fiber's 404/405,
// which the app's error handler renders as Cinder faults, so routes the
// coordinator mounts elsewhere (/internal/) are never shadowed.
func Register(app *fiber.App, b Backend, opts Options) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = DefaultMaxLimit
	}
	if opts.DefaultZone == "" {
		opts.DefaultZone = DefaultZone
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	s := &server{app: app, b: b, opts: opts, log: opts.Logger}

	app.Get("/", s.versionsRoot)
	app.Use("/v3", s.authenticate, s.microversion)
	app.Get("/v3", s.versionsV3)
	s.routes()
}

// routes lists every API route. Literal segments come before parameters
// that could swallow them (volumes/detail before volumes/:id).
func (s *server) routes() {
	s.handle(fiber.MethodGet, "/volumes", s.listVolumes)
	s.handle(fiber.MethodGet, "/volumes/detail", s.listVolumesDetail)
	s.handle(fiber.MethodGet, "/volumes/summary", s.showVolumeSummary)
	s.handle(fiber.MethodPost, "/volumes", s.createVolume)
	s.handle(fiber.MethodGet, "/volumes/:id", s.showVolume)
	s.handle(fiber.MethodPut, "/volumes/:id", s.updateVolume)
	s.handle(fiber.MethodDelete, "/volumes/:id", s.deleteVolume)
	s.handle(fiber.MethodPost, "/volumes/:id/action", s.volumeAction)
	s.metadataRoutes("/volumes", volumeMetadata)

	s.handle(fiber.MethodGet, "/snapshots", s.listSnapshots)
	s.handle(fiber.MethodGet, "/snapshots/detail", s.listSnapshotsDetail)
	s.handle(fiber.MethodPost, "/snapshots", s.createSnapshot)
	s.handle(fiber.MethodGet, "/snapshots/:id", s.showSnapshot)
	s.handle(fiber.MethodPut, "/snapshots/:id", s.updateSnapshot)
	s.handle(fiber.MethodDelete, "/snapshots/:id", s.deleteSnapshot)
	s.handle(fiber.MethodPost, "/snapshots/:id/action", s.snapshotAction)
	s.metadataRoutes("/snapshots", snapshotMetadata)

	s.handle(fiber.MethodGet, "/attachments", s.listAttachments)
	s.handle(fiber.MethodGet, "/attachments/detail", s.listAttachmentsDetail)
	s.handle(fiber.MethodPost, "/attachments", s.createAttachment)
	s.handle(fiber.MethodGet, "/attachments/:id", s.showAttachment)
	s.handle(fiber.MethodPut, "/attachments/:id", s.updateAttachment)
	s.handle(fiber.MethodDelete, "/attachments/:id", s.deleteAttachment)
	s.handle(fiber.MethodPost, "/attachments/:id/action", s.attachmentAction)

	s.handle(fiber.MethodGet, "/types", s.listTypes)
	s.handle(fiber.MethodPost, "/types", s.createType)
	s.handle(fiber.MethodGet, "/types/default", s.showDefaultType)
	s.handle(fiber.MethodGet, "/types/:id", s.showType)
	s.handle(fiber.MethodPut, "/types/:id", s.updateType)
	s.handle(fiber.MethodDelete, "/types/:id", s.deleteType)
	s.handle(fiber.MethodGet, "/types/:id/extra_specs", s.listExtraSpecs)
	s.handle(fiber.MethodPost, "/types/:id/extra_specs", s.createExtraSpecs)
	s.handle(fiber.MethodGet, "/types/:id/extra_specs/:key", s.showExtraSpec)
	s.handle(fiber.MethodPut, "/types/:id/extra_specs/:key", s.updateExtraSpec)
	s.handle(fiber.MethodDelete, "/types/:id/extra_specs/:key", s.deleteExtraSpec)

	s.handle(fiber.MethodGet, "/qos-specs", s.listQoS)
	s.handle(fiber.MethodPost, "/qos-specs", s.createQoS)
	s.handle(fiber.MethodGet, "/qos-specs/:id", s.showQoS)
	s.handle(fiber.MethodPut, "/qos-specs/:id", s.updateQoS)
	s.handle(fiber.MethodDelete, "/qos-specs/:id", s.deleteQoS)
	s.handle(fiber.MethodPut, "/qos-specs/:id/delete_keys", s.deleteQoSKeys)
	s.handle(fiber.MethodGet, "/qos-specs/:id/associate", s.associateQoS)
	s.handle(fiber.MethodGet, "/qos-specs/:id/disassociate", s.disassociateQoS)
	s.handle(fiber.MethodGet, "/qos-specs/:id/disassociate_all", s.disassociateAllQoS)
	s.handle(fiber.MethodGet, "/qos-specs/:id/associations", s.qosAssociations)

	s.handle(fiber.MethodGet, "/os-quota-sets/:target", s.showQuota)
	s.handle(fiber.MethodGet, "/os-quota-sets/:target/defaults", s.showQuotaDefaults)
	s.handle(fiber.MethodPut, "/os-quota-sets/:target", s.updateQuota)
	s.handle(fiber.MethodDelete, "/os-quota-sets/:target", s.deleteQuota)
	s.handle(fiber.MethodGet, "/limits", s.showLimits)

	s.handle(fiber.MethodGet, "/scheduler-stats/get_pools", s.getPools)
	s.handle(fiber.MethodGet, "/os-services", s.listServices)
}

// handle mounts h under both URL forms. The project-scoped form first
// checks that the URL's project is the caller's, as Cinder does.
func (s *server) handle(method, path string, h fiber.Handler) {
	s.app.Add(method, "/v3/:project_id"+path, checkProject, h)
	s.app.Add(method, "/v3"+path, h)
}

// checkProject refuses a URL naming another project than the token's
// (Cinder wsgi: "Malformed request url", 400).
func checkProject(c *fiber.Ctx) error {
	if c.Params("project_id") != info(c).Project {
		return badRequest("Malformed request url")
	}
	return c.Next()
}

// authenticate is the noauth strategy: X-Auth-Token "user:project"
// (project defaults to user). It is the only place that knows about
// tokens, so a real strategy can replace it.
func (s *server) authenticate(c *fiber.Ctx) error {
	if isVersionsPath(c.Path()) || !underV3(c.Path()) {
		return c.Next()
	}
	token := strings.TrimSpace(c.Get("X-Auth-Token"))
	user, project, _ := strings.Cut(token, ":")
	if project == "" {
		project = user
	}
	if user == "" {
		return &apiError{Status: http.StatusUnauthorized, Msg: msgUnauthorized}
	}
	ri := info(c)
	ri.User, ri.Project = user, project
	return c.Next()
}

func isVersionsPath(p string) bool { return p == "/v3" || p == "/v3/" }

// underV3 tells whether p is in the API tree (Fiber's Use("/v3") also
// matches /v3foo).
func underV3(p string) bool { return p == "/v3" || strings.HasPrefix(p, "/v3/") }

// microversion negotiates the request's microversion, stores it in the
// request info and echoes it (OpenStack-API-Version + Vary).
func (s *server) microversion(c *fiber.Ctx) error {
	if !underV3(c.Path()) {
		return c.Next()
	}
	v, err := negotiateVersion(c.Get("OpenStack-API-Version"), c.Get("X-OpenStack-Volume-API-Version"))
	if err != nil {
		return err
	}
	info(c).Version = v
	c.Set("OpenStack-API-Version", "volume "+v.String())
	c.Set(fiber.HeaderVary, "OpenStack-API-Version")
	return c.Next()
}

// baseURL is the public base URL without a trailing slash.
func (s *server) baseURL(c *fiber.Ctx) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	return c.BaseURL()
}

func (s *server) versionsDoc(c *fiber.Ctx) fiber.Map {
	return fiber.Map{"versions": []fiber.Map{{
		"id":          "v3.0",
		"status":      "CURRENT",
		"version":     maxVersion.String(),
		"min_version": minVersion.String(),
		"updated":     versionsUpdated,
		"links": []fiber.Map{
			{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
			{"rel": "self", "href": s.baseURL(c) + "/v3/"},
		},
		"media-types": []fiber.Map{
			{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"},
		},
	}}}
}

// versionsRoot answers GET / with 300 Multiple Choices, as Cinder does.
func (s *server) versionsRoot(c *fiber.Ctx) error {
	return c.Status(http.StatusMultipleChoices).JSON(s.versionsDoc(c))
}

// versionsV3 answers GET /v3/ with the same document and 200.
func (s *server) versionsV3(c *fiber.Ctx) error {
	return c.JSON(s.versionsDoc(c))
}

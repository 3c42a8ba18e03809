// Package agentrpc is the wire format of the agent's HTTP RPC endpoint and
// the client the coordinator uses to call it. Requests are JSON, idempotent
// by volume or snapshot ID, and carry X-Request-Id so both sides log the
// same ID.
//
//	GET    /v1/pools                               -> Report
//	GET    /v1/pools/{pool}/volumes                -> VolumeList
//	PUT    /v1/pools/{pool}/volumes/{id}           CreateRequest -> VolumeResponse
//	DELETE /v1/pools/{pool}/volumes/{id}           -> 204
//	POST   /v1/pools/{pool}/volumes/{id}/extend    ExtendRequest -> 204
//	POST   /v1/pools/{pool}/volumes/{id}/revert    RevertRequest -> 204
//	GET    /v1/pools/{pool}/volumes/{id}/progress  -> Progress (404: no copy running)
//	POST   /v1/pools/{pool}/volumes/{id}/export    ConnectorRequest -> ConnectionResponse
//	POST   /v1/pools/{pool}/volumes/{id}/unexport  ConnectorRequest -> 204
//	GET    /v1/pools/{pool}/snapshots              -> SnapshotList
//	PUT    /v1/pools/{pool}/snapshots/{id}         SnapshotRequest -> SnapshotResponse
//	DELETE /v1/pools/{pool}/snapshots/{id}         -> 204
//
// A create with snapshot_id or source_volume_id copies that source, which
// must be on the same pool. Request bodies are decoded strictly (unknown
// fields are refused) and bounded to MaxRequestBytes.
//
// Errors are {"error":{"code":..., "message":...}} with an HTTP status; a
// status response from the agent is definite: the operation did not happen.
// A mutating operation the agent has started runs to its end even if the
// caller stops waiting, so a retry after a timeout finds it done.
package agentrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
)

// RequestIDHeader carries the request ID between coordinator and agent.
const RequestIDHeader = "X-Request-Id"

// MaxRequestBytes bounds a request body.
const MaxRequestBytes = 1 << 16

// CapabilityOnlineExtend is the pool capability (in storage.PoolInfo's
// Capabilities, value "True" or "False") that says an attached (in-use)
// volume can be extended, as Cinder drivers report online_extend_support.
const CapabilityOnlineExtend = "online_extend_support"

// PoolReport is one pool's facts and capacity.
type PoolReport struct {
	Info  storage.PoolInfo  `json:"info"`
	Stats storage.PoolStats `json:"stats"`
	// StatsError is set when the pool could not be measured.
	StatsError string `json:"stats_error,omitempty"`
}

// Report is an agent's full description of itself.
type Report struct {
	Agent string       `json:"agent"`
	Zone  string       `json:"zone"`
	Pools []PoolReport `json:"pools"`
}

// CreateRequest asks for a volume of SizeGB: blank, or holding the data of
// snapshot SnapshotID or of volume SourceVolumeID (at most one source; it
// must be on the same pool, and SizeGB at least its size).
type CreateRequest struct {
	SizeGB         int64  `json:"size_gb"`
	SnapshotID     string `json:"snapshot_id,omitempty"`
	SourceVolumeID string `json:"source_volume_id,omitempty"`
}

// Progress is how far a volume's running data copy (a create from a
// snapshot or a volume, a revert) has come.
type Progress struct {
	DoneBytes  int64     `json:"done_bytes"`
	TotalBytes int64     `json:"total_bytes"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Percent is DoneBytes as a share of TotalBytes, 0-100.
func (p Progress) Percent() int {
	if p.TotalBytes <= 0 {
		return 0
	}
	return int(min(100, p.DoneBytes*100/p.TotalBytes))
}

// VolumeResponse returns a volume.
type VolumeResponse struct {
	Volume storage.Volume `json:"volume"`
}

// VolumeList lists volumes held by a pool.
type VolumeList struct {
	Volumes []storage.Volume `json:"volumes"`
}

// ExtendRequest grows a volume to NewSizeGB (never shrinks it).
type ExtendRequest struct {
	NewSizeGB int64 `json:"new_size_gb"`
}

// RevertRequest restores a volume to the data of its snapshot SnapshotID.
type RevertRequest struct {
	SnapshotID string `json:"snapshot_id"`
}

// ConnectorRequest names the host an export is for. Export requires the
// connector; for unexport it may be omitted, meaning every export of the
// volume (Cinder's terminate_connection without a connector).
type ConnectorRequest struct {
	Connector *storage.Connector `json:"connector,omitempty"`
	// Auth is the volume's CHAP credentials (export only; iSCSI pools).
	Auth *storage.Credentials `json:"auth,omitempty"`
}

// ConnectionResponse returns Cinder's connection_info for an export. For a
// pool that is only reachable on the agent's host (driver_volume_type
// "local"), data carries "host": the agent's name.
type ConnectionResponse struct {
	ConnectionInfo storage.ConnectionInfo `json:"connection_info"`
}

// SnapshotRequest asks for a snapshot of volume VolumeID.
type SnapshotRequest struct {
	VolumeID string `json:"volume_id"`
}

// SnapshotResponse returns a snapshot.
type SnapshotResponse struct {
	Snapshot storage.Snapshot `json:"snapshot"`
}

// SnapshotList lists snapshots held by a pool.
type SnapshotList struct {
	Snapshots []storage.Snapshot `json:"snapshots"`
}

// Error codes.
const (
	// CodeInvalid: a malformed request (bad ID, size, body; shrinking; a
	// snapshot of another volume). HTTP 400.
	CodeInvalid = "invalid"
	// CodeNotFound: the pool, or the volume or snapshot the path names, does
	// not exist. HTTP 404.
	CodeNotFound = "not_found"
	// CodeSourceNotFound: the snapshot or volume the operation reads from (a
	// create's source, a snapshot's volume) does not exist on the pool.
	// HTTP 404.
	CodeSourceNotFound = "source_not_found"
	// CodeExists: the ID exists with other properties. HTTP 409.
	CodeExists = "exists"
	// CodeNoSpace: the pool cannot hold it. HTTP 507.
	CodeNoSpace = "no_space"
	// CodeInternal: anything else. HTTP 500.
	CodeInternal = "internal"
)

// ErrSourceNotFound is what CodeSourceNotFound maps to; it wraps
// storage.ErrNotFound, so callers that only ask "not found?" still match.
var ErrSourceNotFound = fmt.Errorf("source %w", storage.ErrNotFound)

// ErrorBody is the error envelope.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Error is a definite failure reported by an agent.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("agent: %s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// Unwrap maps the code back to the storage sentinel.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeInvalid:
		return storage.ErrInvalid
	case CodeSourceNotFound:
		return ErrSourceNotFound
	case CodeNotFound:
		return storage.ErrNotFound
	case CodeExists:
		return storage.ErrExists
	case CodeNoSpace:
		return storage.ErrNoSpace
	}
	return nil
}

// IsDefinite reports whether err is an answer from the agent (the operation
// did not happen) rather than a transport failure (it may have happened).
func IsDefinite(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// CodeFor maps a driver error to a wire code and HTTP status.
func CodeFor(err error) (string, int) {
	switch {
	case errors.Is(err, storage.ErrInvalid):
		return CodeInvalid, http.StatusBadRequest
	case errors.Is(err, ErrSourceNotFound):
		return CodeSourceNotFound, http.StatusNotFound
	case errors.Is(err, storage.ErrNotFound):
		return CodeNotFound, http.StatusNotFound
	case errors.Is(err, storage.ErrExists):
		return CodeExists, http.StatusConflict
	case errors.Is(err, storage.ErrNoSpace):
		return CodeNoSpace, http.StatusInsufficientStorage
	}
	return CodeInternal, http.StatusInternalServerError
}

// Client calls agents.
type Client struct {
	HTTP *http.Client
}

// NewClient returns a client whose calls time out after timeout.
func NewClient(timeout time.Duration) *Client {
	return &Client{HTTP: &http.Client{Timeout: timeout}}
}

type ctxKey struct{}

// WithRequestID attaches a request ID that calls will send.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// RequestID returns the request ID attached to ctx, if any.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

func (c *Client) do(ctx context.Context, method, addr, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	// path is already escaped (volumePath); keep it as sent, so an ID is
	// never re-escaped or split into path segments.
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	u := url.URL{Scheme: "http", Host: addr, Path: unescaped, RawPath: path}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if id := RequestID(ctx); id != "" {
		req.Header.Set(RequestIDHeader, id)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.String(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, u.String(), err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			eb.Error.Code, eb.Error.Message = CodeInternal, string(bytes.TrimSpace(data))
		}
		return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, u.String(), err)
		}
	}
	return nil
}

// Report fetches the agent's pools.
func (c *Client) Report(ctx context.Context, addr string) (Report, error) {
	var r Report
	err := c.do(ctx, http.MethodGet, addr, "/v1/pools", nil, &r)
	return r, err
}

func volumePath(pool, id string) string {
	return "/v1/pools/" + url.PathEscape(pool) + "/volumes/" + url.PathEscape(id)
}

func snapshotPath(pool, id string) string {
	return "/v1/pools/" + url.PathEscape(pool) + "/snapshots/" + url.PathEscape(id)
}

// CreateVolume creates (idempotently) a blank volume on a pool.
func (c *Client) CreateVolume(ctx context.Context, addr, pool, id string, sizeGB int64) (storage.Volume, error) {
	return c.CreateVolumeFrom(ctx, addr, pool, id, sizeGB, "", "")
}

// CreateVolumeFrom creates (idempotently) volume id of sizeGB on a pool:
// a copy of snapshot snapshotID or of volume sourceVolumeID on the same
// pool, or blank when both are empty. A missing source is ErrSourceNotFound.
func (c *Client) CreateVolumeFrom(ctx context.Context, addr, pool, id string, sizeGB int64, snapshotID, sourceVolumeID string) (storage.Volume, error) {
	var r VolumeResponse
	req := CreateRequest{SizeGB: sizeGB, SnapshotID: snapshotID, SourceVolumeID: sourceVolumeID}
	err := c.do(ctx, http.MethodPut, addr, volumePath(pool, id), req, &r)
	return r.Volume, err
}

// DeleteVolume deletes (idempotently) a volume from a pool.
func (c *Client) DeleteVolume(ctx context.Context, addr, pool, id string) error {
	return c.do(ctx, http.MethodDelete, addr, volumePath(pool, id), nil, nil)
}

// ListVolumes lists the volumes a pool holds.
func (c *Client) ListVolumes(ctx context.Context, addr, pool string) ([]storage.Volume, error) {
	var r VolumeList
	err := c.do(ctx, http.MethodGet, addr, "/v1/pools/"+url.PathEscape(pool)+"/volumes", nil, &r)
	return r.Volumes, err
}

// ExtendVolume grows (idempotently) a volume to newSizeGB; a smaller size
// than the volume's is storage.ErrInvalid.
func (c *Client) ExtendVolume(ctx context.Context, addr, pool, id string, newSizeGB int64) error {
	return c.do(ctx, http.MethodPost, addr, volumePath(pool, id)+"/extend", ExtendRequest{NewSizeGB: newSizeGB}, nil)
}

// Progress reports the running data copy of volume id; an error wrapping
// storage.ErrNotFound when none is running.
func (c *Client) Progress(ctx context.Context, addr, pool, id string) (Progress, error) {
	var p Progress
	err := c.do(ctx, http.MethodGet, addr, volumePath(pool, id)+"/progress", nil, &p)
	return p, err
}

// RevertToSnapshot restores volume id to the data of its snapshot
// snapshotID; the volume keeps its size.
func (c *Client) RevertToSnapshot(ctx context.Context, addr, pool, id, snapshotID string) error {
	return c.do(ctx, http.MethodPost, addr, volumePath(pool, id)+"/revert", RevertRequest{SnapshotID: snapshotID}, nil)
}

// ExportVolume exports (idempotently) a volume for connector and returns
// its connection_info.
func (c *Client) ExportVolume(ctx context.Context, addr, pool, id string, connector storage.Connector, auth storage.Credentials) (storage.ConnectionInfo, error) {
	var r ConnectionResponse
	req := ConnectorRequest{Connector: &connector}
	if auth != (storage.Credentials{}) {
		req.Auth = &auth
	}
	err := c.do(ctx, http.MethodPost, addr, volumePath(pool, id)+"/export", req, &r)
	return r.ConnectionInfo, err
}

// UnexportVolume removes (idempotently) a volume's export for connector; a
// zero connector removes every export of the volume.
func (c *Client) UnexportVolume(ctx context.Context, addr, pool, id string, connector storage.Connector) error {
	req := ConnectorRequest{}
	if connector != (storage.Connector{}) {
		req.Connector = &connector
	}
	return c.do(ctx, http.MethodPost, addr, volumePath(pool, id)+"/unexport", req, nil)
}

// CreateSnapshot creates (idempotently) snapshot snapshotID of volume
// volumeID on a pool. A missing volume is ErrSourceNotFound; the snapshot ID
// taken by a snapshot of another volume is storage.ErrExists.
func (c *Client) CreateSnapshot(ctx context.Context, addr, pool, snapshotID, volumeID string) (storage.Snapshot, error) {
	var r SnapshotResponse
	err := c.do(ctx, http.MethodPut, addr, snapshotPath(pool, snapshotID), SnapshotRequest{VolumeID: volumeID}, &r)
	return r.Snapshot, err
}

// DeleteSnapshot deletes (idempotently) a snapshot from a pool.
func (c *Client) DeleteSnapshot(ctx context.Context, addr, pool, snapshotID string) error {
	return c.do(ctx, http.MethodDelete, addr, snapshotPath(pool, snapshotID), nil, nil)
}

// ListSnapshots lists the snapshots a pool holds.
func (c *Client) ListSnapshots(ctx context.Context, addr, pool string) ([]storage.Snapshot, error) {
	var r SnapshotList
	err := c.do(ctx, http.MethodGet, addr, "/v1/pools/"+url.PathEscape(pool)+"/snapshots", nil, &r)
	return r.Snapshots, err
}

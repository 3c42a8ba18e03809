// Package agentrpc is the wire format of the agent's HTTP RPC endpoint and
// the client the coordinator uses to call it. Requests are JSON, idempotent
// by volume ID, and carry X-Request-Id so both sides log the same ID.
//
//	GET    /v1/pools                          -> Report
//	GET    /v1/pools/{pool}/volumes           -> VolumeList
//	PUT    /v1/pools/{pool}/volumes/{id}      CreateRequest -> VolumeResponse
//	DELETE /v1/pools/{pool}/volumes/{id}      -> 204
//
// Errors are {"error":{"code":..., "message":...}} with an HTTP status; a
// status response from the agent is definite: the operation did not happen.
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

// CreateRequest asks for a blank volume.
type CreateRequest struct {
	SizeGB int64 `json:"size_gb"`
}

// VolumeResponse returns a volume.
type VolumeResponse struct {
	Volume storage.Volume `json:"volume"`
}

// VolumeList lists volumes held by a pool.
type VolumeList struct {
	Volumes []storage.Volume `json:"volumes"`
}

// Error codes.
const (
	CodeInvalid  = "invalid"
	CodeNotFound = "not_found"
	CodeExists   = "exists"
	CodeNoSpace  = "no_space"
	CodeInternal = "internal"
)

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
	u := url.URL{Scheme: "http", Host: addr, Path: path}
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

// CreateVolume creates (idempotently) a blank volume on a pool.
func (c *Client) CreateVolume(ctx context.Context, addr, pool, id string, sizeGB int64) (storage.Volume, error) {
	var r VolumeResponse
	err := c.do(ctx, http.MethodPut, addr, "/v1/pools/"+url.PathEscape(pool)+"/volumes/"+url.PathEscape(id), CreateRequest{SizeGB: sizeGB}, &r)
	return r.Volume, err
}

// DeleteVolume deletes (idempotently) a volume from a pool.
func (c *Client) DeleteVolume(ctx context.Context, addr, pool, id string) error {
	return c.do(ctx, http.MethodDelete, addr, "/v1/pools/"+url.PathEscape(pool)+"/volumes/"+url.PathEscape(id), nil, nil)
}

// ListVolumes lists the volumes a pool holds.
func (c *Client) ListVolumes(ctx context.Context, addr, pool string) ([]storage.Volume, error) {
	var r VolumeList
	err := c.do(ctx, http.MethodGet, addr, "/v1/pools/"+url.PathEscape(pool)+"/volumes", nil, &r)
	return r.Volumes, err
}

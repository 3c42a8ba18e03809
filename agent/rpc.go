package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/kilnstore/kiln/internal/agentrpc"
	"github.com/kilnstore/kiln/internal/storage"
)

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pools", a.handleReport)
	mux.HandleFunc("GET /v1/pools/{pool}/volumes", a.handleList)
	mux.HandleFunc("PUT /v1/pools/{pool}/volumes/{id}", a.handleCreate)
	mux.HandleFunc("DELETE /v1/pools/{pool}/volumes/{id}", a.handleDelete)
	mux.HandleFunc("POST /v1/pools/{pool}/volumes/{id}/extend", a.handleExtend)
	mux.HandleFunc("POST /v1/pools/{pool}/volumes/{id}/revert", a.handleRevert)
	mux.HandleFunc("GET /v1/pools/{pool}/volumes/{id}/progress", a.handleProgress)
	mux.HandleFunc("POST /v1/pools/{pool}/volumes/{id}/export", a.handleExport)
	mux.HandleFunc("POST /v1/pools/{pool}/volumes/{id}/unexport", a.handleUnexport)
	mux.HandleFunc("GET /v1/pools/{pool}/snapshots", a.handleListSnapshots)
	mux.HandleFunc("PUT /v1/pools/{pool}/snapshots/{id}", a.handleCreateSnapshot)
	mux.HandleFunc("DELETE /v1/pools/{pool}/snapshots/{id}", a.handleDeleteSnapshot)
	return mux
}

func (a *Agent) reqLog(r *http.Request) *slog.Logger {
	l := a.log.With("method", r.Method, "path", r.URL.Path)
	if id := r.Header.Get(agentrpc.RequestIDHeader); id != "" {
		l = l.With("request_id", id)
	}
	return l
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code, status := agentrpc.CodeFor(err)
	var body agentrpc.ErrorBody
	body.Error.Code, body.Error.Message = code, err.Error()
	writeJSON(w, status, body)
}

// decodeBody decodes the request body into v strictly: one JSON object of
// at most agentrpc.MaxRequestBytes, no unknown fields, nothing after it.
// Every failure wraps storage.ErrInvalid.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, agentrpc.MaxRequestBytes))
	if err != nil {
		return fmt.Errorf("%w: request body: %w", storage.ErrInvalid, err)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("%w: request body must be a JSON object", storage.ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %w", storage.ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: request body: data after the JSON object", storage.ErrInvalid)
	}
	return nil
}

// pool resolves the {pool} path value.
func (a *Agent) pool(r *http.Request) (string, Driver, error) {
	name := r.PathValue("pool")
	d, ok := a.pools[name]
	if !ok {
		return "", nil, errors.Join(storage.ErrNotFound, errors.New("pool "+name+" is not served by this agent"))
	}
	return name, d, nil
}

func (a *Agent) handleReport(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Report(r.Context()))
}

func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) {
	_, d, err := a.pool(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	vols, err := d.ListVolumes(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	if vols == nil {
		vols = []storage.Volume{}
	}
	writeJSON(w, http.StatusOK, agentrpc.VolumeList{Volumes: vols})
}

func (a *Agent) handleProgress(w http.ResponseWriter, r *http.Request) {
	if _, _, err := a.pool(r); err != nil {
		writeErr(w, err)
		return
	}
	id := r.PathValue("id")
	if err := storage.ValidateID(id); err != nil {
		writeErr(w, err)
		return
	}
	p, ok := a.copies.Load(id)
	if !ok {
		writeErr(w, fmt.Errorf("no data copy of volume %s is running: %w", id, storage.ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, p.(*copyProgress).get())
}

func (a *Agent) handleListSnapshots(w http.ResponseWriter, r *http.Request) {
	_, d, err := a.pool(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	snaps, err := d.ListSnapshots(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	if snaps == nil {
		snaps = []storage.Snapshot{}
	}
	writeJSON(w, http.StatusOK, agentrpc.SnapshotList{Snapshots: snaps})
}

// Kinds of object an operation touches; the kind and the ID make the lock
// key, so a volume and a snapshot never share a lock.
const (
	kindVolume   = "volume"
	kindSnapshot = "snapshot"
)

// call is one mutating RPC on the object named by {id} (of a given kind),
// plus any other object it reads (the source of a copy, the volume of a
// snapshot).
type call struct {
	a       *Agent
	w       http.ResponseWriter
	r       *http.Request
	d       Driver
	id      string
	what    string
	log     *slog.Logger
	keys    []string
	changes bool // the pool's capacity may change: re-publish after
	copies  bool // the operation may copy data: track its progress
}

// op resolves {pool} and {id}, validates the ID, decodes the body into body
// (unless nil) and hands over to fn, which validates the rest and calls
// c.run. An error fn returns is logged and answered.
func (a *Agent) op(w http.ResponseWriter, r *http.Request, what, kind string, body any, fn func(c *call) error) {
	pool, d, err := a.pool(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	id := r.PathValue("id")
	if err := storage.ValidateID(id); err != nil {
		writeErr(w, err)
		return
	}
	c := &call{
		a: a, w: w, r: r, d: d, id: id, what: what,
		log:  a.reqLog(r).With(kind+"_id", id, "pool", pool),
		keys: []string{kind + "/" + id}, changes: true,
	}
	if body != nil {
		err = decodeBody(w, r, body)
	}
	if err == nil {
		err = fn(c)
	}
	if err != nil {
		c.log.Warn(what+" failed", "err", err)
		writeErr(w, err)
	}
}

// also adds an object of kind the call reads, named by the request field
// field: its ID is validated, its lock is taken with the call's own, and it
// is logged under the field's name.
func (c *call) also(field, kind, id string) error {
	if err := storage.ValidateID(id); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	c.keys = append(c.keys, kind+"/"+id)
	c.log = c.log.With(field, id)
	return nil
}

// run executes f under the locks of every object the call touches. f's
// context is not cancelled when the caller goes away, only when the agent
// stops: an operation that started runs to its end (a long copy is not
// thrown away by a client timeout), and the caller's retry, queued behind
// it on the same lock, then finds it done.
func (c *call) run(f func(ctx context.Context) error) error {
	unlock, _ := c.a.locks.LockAll(context.Background(), c.keys...) // fails only with the context
	defer unlock()
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.r.Context()))
	defer cancel()
	stop := context.AfterFunc(c.a.ctx, cancel)
	defer stop()

	if c.copies {
		p := &copyProgress{log: c.log}
		c.a.copies.Store(c.id, p)
		defer c.a.copies.Delete(c.id)
		ctx = storage.WithProgress(ctx, p.report)
	}
	start := time.Now()
	if err := f(ctx); err != nil {
		return err
	}
	if c.changes {
		c.a.poke()
	}
	c.log.Info(c.what+" done", "took", time.Since(start))
	return nil
}

// sourceMissing marks a not-found error of an operation whose only possibly
// missing object is the one it reads from.
func sourceMissing(err error) error {
	if errors.Is(err, storage.ErrNotFound) && !errors.Is(err, agentrpc.ErrSourceNotFound) {
		return fmt.Errorf("%w: %w", agentrpc.ErrSourceNotFound, err)
	}
	return err
}

func (a *Agent) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req agentrpc.CreateRequest
	a.op(w, r, "create volume", kindVolume, &req, func(c *call) error {
		if err := storage.ValidateSize(req.SizeGB); err != nil {
			return err
		}
		switch {
		case req.SnapshotID != "" && req.SourceVolumeID != "":
			return fmt.Errorf("%w: snapshot_id and source_volume_id are exclusive", storage.ErrInvalid)
		case req.SnapshotID != "":
			if err := c.also("snapshot_id", kindSnapshot, req.SnapshotID); err != nil {
				return err
			}
		case req.SourceVolumeID != "":
			if req.SourceVolumeID == c.id {
				return fmt.Errorf("%w: source_volume_id: a volume cannot be its own source", storage.ErrInvalid)
			}
			if err := c.also("source_volume_id", kindVolume, req.SourceVolumeID); err != nil {
				return err
			}
		}
		c.copies = req.SnapshotID != "" || req.SourceVolumeID != ""
		return c.run(func(ctx context.Context) error {
			var vol storage.Volume
			var err error
			switch {
			case req.SnapshotID != "":
				vol, err = c.d.CreateVolumeFromSnapshot(ctx, c.id, req.SnapshotID, req.SizeGB)
				err = sourceMissing(err)
			case req.SourceVolumeID != "":
				vol, err = c.d.CloneVolume(ctx, c.id, req.SourceVolumeID, req.SizeGB)
				err = sourceMissing(err)
			default:
				vol, err = c.d.CreateVolume(ctx, c.id, req.SizeGB)
			}
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, agentrpc.VolumeResponse{Volume: vol})
			return nil
		})
	})
}

func (a *Agent) handleDelete(w http.ResponseWriter, r *http.Request) {
	a.op(w, r, "delete volume", kindVolume, nil, func(c *call) error {
		return c.run(func(ctx context.Context) error {
			if err := c.d.DeleteVolume(ctx, c.id); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	})
}

func (a *Agent) handleExtend(w http.ResponseWriter, r *http.Request) {
	var req agentrpc.ExtendRequest
	a.op(w, r, "extend volume", kindVolume, &req, func(c *call) error {
		if err := storage.ValidateSize(req.NewSizeGB); err != nil {
			return fmt.Errorf("new_size_gb: %w", err)
		}
		c.log = c.log.With("new_size_gb", req.NewSizeGB)
		return c.run(func(ctx context.Context) error {
			if err := c.d.ExtendVolume(ctx, c.id, req.NewSizeGB); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	})
}

func (a *Agent) handleRevert(w http.ResponseWriter, r *http.Request) {
	var req agentrpc.RevertRequest
	a.op(w, r, "revert volume", kindVolume, &req, func(c *call) error {
		if err := c.also("snapshot_id", kindSnapshot, req.SnapshotID); err != nil {
			return err
		}
		c.copies = true
		return c.run(func(ctx context.Context) error {
			if err := c.d.RevertToSnapshot(ctx, c.id, req.SnapshotID); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	})
}

func (a *Agent) handleExport(w http.ResponseWriter, r *http.Request) {
	var req agentrpc.ConnectorRequest
	a.op(w, r, "export volume", kindVolume, &req, func(c *call) error {
		if req.Connector == nil {
			return fmt.Errorf("%w: connector is required", storage.ErrInvalid)
		}
		c.log = c.log.With("connector_host", req.Connector.Host)
		c.changes = false
		return c.run(func(ctx context.Context) error {
			var auth storage.Credentials
			if req.Auth != nil {
				auth = *req.Auth
			}
			ci, err := c.d.ExportVolume(ctx, c.id, *req.Connector, auth)
			if err != nil {
				return err
			}
			// Tell the consumer where the export lives: for a "local"
			// volume, a host other than this agent cannot open device_path.
			data := maps.Clone(ci.Data)
			if data == nil {
				data = map[string]any{}
			}
			if _, ok := data["host"]; !ok && ci.DriverVolumeType == "local" {
				data["host"] = c.a.cfg.Name
			}
			ci.Data = data
			writeJSON(w, http.StatusOK, agentrpc.ConnectionResponse{ConnectionInfo: ci})
			return nil
		})
	})
}

func (a *Agent) handleUnexport(w http.ResponseWriter, r *http.Request) {
	var req agentrpc.ConnectorRequest
	a.op(w, r, "unexport volume", kindVolume, &req, func(c *call) error {
		var conn storage.Connector // zero: every export of the volume
		if req.Connector != nil {
			conn = *req.Connector
		}
		c.log = c.log.With("connector_host", conn.Host)
		c.changes = false
		return c.run(func(ctx context.Context) error {
			if err := c.d.UnexportVolume(ctx, c.id, conn); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	})
}

func (a *Agent) handleCreateSnapshot(w http.ResponseWriter, r *http.Request) {
	var req agentrpc.SnapshotRequest
	a.op(w, r, "create snapshot", kindSnapshot, &req, func(c *call) error {
		if err := c.also("volume_id", kindVolume, req.VolumeID); err != nil {
			return err
		}
		return c.run(func(ctx context.Context) error {
			snap, err := c.d.CreateSnapshot(ctx, c.id, req.VolumeID)
			if err != nil {
				return sourceMissing(err)
			}
			writeJSON(w, http.StatusOK, agentrpc.SnapshotResponse{Snapshot: snap})
			return nil
		})
	})
}

func (a *Agent) handleDeleteSnapshot(w http.ResponseWriter, r *http.Request) {
	a.op(w, r, "delete snapshot", kindSnapshot, nil, func(c *call) error {
		return c.run(func(ctx context.Context) error {
			if err := c.d.DeleteSnapshot(ctx, c.id); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	})
}

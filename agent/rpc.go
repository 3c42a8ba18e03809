package agent

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
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

// volumeOp resolves {pool} and {id}, validates the ID and runs op under the
// volume's lock; op writes the success response.
func (a *Agent) volumeOp(w http.ResponseWriter, r *http.Request, what string,
	op func(log *slog.Logger, d Driver, id string) error) {
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
	log := a.reqLog(r).With("volume_id", id, "pool", pool)
	unlock := a.locks.lock(id)
	defer unlock()
	start := time.Now()
	if err := op(log, d, id); err != nil {
		log.Warn(what+" failed", "err", err)
		writeErr(w, err)
		return
	}
	a.poke()
	log.Info(what+" done", "took", time.Since(start))
}

func (a *Agent) handleCreate(w http.ResponseWriter, r *http.Request) {
	a.volumeOp(w, r, "create volume", func(log *slog.Logger, d Driver, id string) error {
		var req agentrpc.CreateRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return errors.Join(storage.ErrInvalid, err)
		}
		if err := storage.ValidateSize(req.SizeGB); err != nil {
			return err
		}
		vol, err := d.CreateVolume(r.Context(), id, req.SizeGB)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, agentrpc.VolumeResponse{Volume: vol})
		return nil
	})
}

func (a *Agent) handleDelete(w http.ResponseWriter, r *http.Request) {
	a.volumeOp(w, r, "delete volume", func(log *slog.Logger, d Driver, id string) error {
		if err := d.DeleteVolume(r.Context(), id); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

package tgt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/kilnstore/kiln/internal/atomicfile"
)

const storeVersion = 1

// storeFile is the on-disk form of a Store.
type storeFile struct {
	Version int      `json:"version"`
	Exports []Export `json:"exports"`
}

// Store is the agent's own record of its exports, the source Reconcile
// re-creates them from. It is one JSON file, mode 0600 because it holds the
// CHAP secrets, rewritten atomically (temp file, fsync, rename, fsync of the
// directory) on every change. Safe for concurrent use within one process;
// one process owns the file.
type Store struct {
	path string

	mu      sync.Mutex
	exports map[string]Export // by volume ID
}

// OpenStore loads the records at path; a missing file is an empty store
// (created on the first Put). A file that cannot be read or holds an invalid
// record is an error: dropping records would drop exports.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, exports: map[string]Export{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tgt: read export records: %w", err)
	}
	// The file holds secrets: take back permissions someone widened.
	if mode, err := atomicfile.Restrict(path, 0o600); err != nil {
		return nil, fmt.Errorf("tgt: export records %s are mode %v: %w", path, mode, err)
	}
	var f storeFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tgt: export records %s: %w", path, err)
	}
	if f.Version != storeVersion {
		return nil, fmt.Errorf("tgt: export records %s: version %d, want %d", path, f.Version, storeVersion)
	}
	for _, e := range f.Exports {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("tgt: export records %s: %w", path, err)
		}
		if _, dup := s.exports[e.VolumeID]; dup {
			return nil, fmt.Errorf("tgt: export records %s: volume %s recorded twice", path, e.VolumeID)
		}
		s.exports[e.VolumeID] = e.normalized()
	}
	return s, nil
}

// Put records e (replacing the record of the same volume) and makes it
// durable before returning.
func (s *Store) Put(e Export) error {
	if err := e.Validate(); err != nil {
		return err
	}
	e = e.normalized()
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(s.exports)
	next[e.VolumeID] = e
	return s.replace(next)
}

// Delete forgets volumeID's record; a missing record is success.
func (s *Store) Delete(volumeID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.exports[volumeID]; !ok {
		return nil
	}
	next := maps.Clone(s.exports)
	delete(next, volumeID)
	return s.replace(next)
}

// Get returns volumeID's record.
func (s *Store) Get(volumeID string) (Export, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.exports[volumeID]
	return e.clone(), ok
}

// List returns every record, sorted by volume ID.
func (s *Store) List() []Export {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedExports(s.exports)
}

func sortedExports(m map[string]Export) []Export {
	out := make([]Export, 0, len(m))
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[id].clone())
	}
	return out
}

// replace writes next and makes it the store's content once the file holds
// it (also if making the rename durable then fails).
func (s *Store) replace(next map[string]Export) error {
	data, err := json.MarshalIndent(storeFile{Version: storeVersion, Exports: sortedExports(next)}, "", "  ")
	if err != nil {
		return fmt.Errorf("tgt: encode export records: %w", err)
	}
	renamed, err := atomicfile.WriteFile(s.path, append(data, '\n'), 0o600)
	if renamed {
		s.exports = next
	}
	if err != nil {
		return fmt.Errorf("tgt: write export records: %w", err)
	}
	return nil
}

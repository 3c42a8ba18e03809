package ganesha

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
	"github.com/kilnstore/kiln/internal/storage"
)

const storeVersion = 1

// Default Export_Id range a Store allocates from. Exports written by hand
// into ganesha.conf usually take small IDs (1, 77, 100); Kiln's start at
// 1000 so that they do not collide.
const (
	DefaultFirstExportID = 1000
	DefaultLastExportID  = MaxExportID
)

// IDRange is the range of Export_Ids a Store allocates, inclusive. Keep it
// clear of the IDs of exports configured in ganesha.conf.
type IDRange struct {
	First, Last uint16
}

func (r IDRange) withDefaults() (IDRange, error) {
	if r == (IDRange{}) {
		r = IDRange{First: DefaultFirstExportID, Last: DefaultLastExportID}
	}
	if validateExportID(r.First) != nil || validateExportID(r.Last) != nil || r.First > r.Last {
		return r, fmt.Errorf("%w: ganesha: export ID range %d..%d is not within %d..%d",
			storage.ErrInvalid, r.First, r.Last, MinExportID, MaxExportID)
	}
	return r, nil
}

// storeFile is the on-disk form of a Store.
type storeFile struct {
	Version int `json:"version"`
	// NextExportID is where the next allocation starts looking, so that a
	// freed ID is reused as late as possible: NFS clients may still hold
	// file handles that carry it.
	NextExportID uint16   `json:"next_export_id"`
	Exports      []Export `json:"exports"`
}

// Store is the agent's own record of its exports, the source the Keeper
// re-adds them from after ganesha restarts, and the allocator of their
// Export_Ids. It is one JSON file, mode 0600, rewritten atomically (temp
// file, fsync, rename, fsync of the directory) on every change. Safe for
// concurrent use within one process; one process owns the file.
type Store struct {
	path string
	ids  IDRange

	mu      sync.Mutex
	exports map[string]Export // by volume ID
	next    uint16
}

// OpenStore loads the records at path and allocates new Export_Ids from
// ids (the zero IDRange means DefaultFirstExportID..DefaultLastExportID). A
// missing file is an empty store (created on the first Put). A file that
// cannot be read or holds an invalid record is an error: dropping records
// would drop exports. Records outside ids stay valid.
func OpenStore(path string, ids IDRange) (*Store, error) {
	ids, err := ids.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, ids: ids, exports: map[string]Export{}, next: ids.First}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ganesha: read export records: %w", err)
	}
	if mode, err := atomicfile.Restrict(path, 0o600); err != nil {
		return nil, fmt.Errorf("ganesha: export records %s are mode %v: %w", path, mode, err)
	}
	var f storeFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("ganesha: export records %s: %w", path, err)
	}
	if f.Version != storeVersion {
		return nil, fmt.Errorf("ganesha: export records %s: version %d, want %d", path, f.Version, storeVersion)
	}
	byID := map[uint16]string{}
	for _, e := range f.Exports {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("ganesha: export records %s: %w", path, err)
		}
		if _, dup := s.exports[e.VolumeID]; dup {
			return nil, fmt.Errorf("ganesha: export records %s: volume %s recorded twice", path, e.VolumeID)
		}
		if other, dup := byID[e.ExportID]; dup {
			return nil, fmt.Errorf("ganesha: export records %s: export ID %d recorded for volumes %s and %s", path, e.ExportID, other, e.VolumeID)
		}
		byID[e.ExportID] = e.VolumeID
		s.exports[e.VolumeID] = e.normalized()
	}
	if f.NextExportID >= ids.First && f.NextExportID <= ids.Last {
		s.next = f.NextExportID
	}
	return s, nil
}

// Put records e, replacing the record of the same volume, and makes it
// durable before returning the record as stored. An e.ExportID of 0 keeps
// the volume's recorded ID or, for a new volume, allocates the next free
// one (storage.ErrNoSpace when the range is used up). An explicit ID
// recorded for another volume is storage.ErrExists.
func (s *Store) Put(e Export) (Export, error) {
	check := e
	if check.ExportID == 0 {
		check.ExportID = MinExportID // validated once allocated
	}
	if err := check.Validate(); err != nil {
		return Export{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.next
	if e.ExportID == 0 {
		if old, ok := s.exports[e.VolumeID]; ok {
			e.ExportID = old.ExportID
		} else {
			id, ok := s.freeID()
			if !ok {
				return Export{}, fmt.Errorf("ganesha: record export of volume %s: %w: all export IDs %d..%d are in use",
					e.VolumeID, storage.ErrNoSpace, s.ids.First, s.ids.Last)
			}
			e.ExportID = id
			next = id + 1
			if id == s.ids.Last {
				next = s.ids.First
			}
		}
	}
	if err := e.Validate(); err != nil {
		return Export{}, err
	}
	e = e.normalized()
	for _, other := range s.exports {
		if other.ExportID == e.ExportID && other.VolumeID != e.VolumeID {
			return Export{}, fmt.Errorf("ganesha: record export of volume %s: %w: export ID %d is recorded for volume %s",
				e.VolumeID, storage.ErrExists, e.ExportID, other.VolumeID)
		}
	}
	exports := maps.Clone(s.exports)
	exports[e.VolumeID] = e
	if err := s.replace(exports, next); err != nil {
		return Export{}, err
	}
	return e.clone(), nil
}

// freeID returns the first ID from s.next on (wrapping around) that no
// record uses.
func (s *Store) freeID() (uint16, bool) {
	used := make(map[uint16]bool, len(s.exports))
	for _, e := range s.exports {
		used[e.ExportID] = true
	}
	n := int(s.ids.Last) - int(s.ids.First) + 1
	id := s.next
	for range n {
		if !used[id] {
			return id, true
		}
		if id == s.ids.Last {
			id = s.ids.First
		} else {
			id++
		}
	}
	return 0, false
}

// Delete forgets volumeID's record; a missing record is success.
func (s *Store) Delete(volumeID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.exports[volumeID]; !ok {
		return nil
	}
	exports := maps.Clone(s.exports)
	delete(exports, volumeID)
	return s.replace(exports, s.next)
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

// replace writes the records and makes them the store's content once the
// file holds them (also if making the rename durable then fails).
func (s *Store) replace(exports map[string]Export, next uint16) error {
	data, err := json.MarshalIndent(storeFile{Version: storeVersion, NextExportID: next, Exports: sortedExports(exports)}, "", "  ")
	if err != nil {
		return fmt.Errorf("ganesha: encode export records: %w", err)
	}
	renamed, err := atomicfile.WriteFile(s.path, append(data, '\n'), 0o600)
	if renamed {
		s.exports, s.next = exports, next
	}
	if err != nil {
		return fmt.Errorf("ganesha: write export records: %w", err)
	}
	return nil
}

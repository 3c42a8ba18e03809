package state

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Snapshot format.
//
// A snapshot starts with a header, one line of JSON:
//
//	{"version":2,"index":1234}
//
// so that any coordinator can read the version and refuse a snapshot it does
// not understand with a clear error; a coordinator that reads only version 1
// decodes the line as a version 1 document and reports "version 2".
// (Version 1 was one JSON document {"version":1,"index":N,"data":{...}};
// Restore still reads it.)
//
// In version 2 the header line is followed by frames, each an unsigned
// varint length and that many bytes:
//
//	frame 0        snapshotMeta as JSON: every record but the volumes, and
//	               how many volumes follow
//	frames 1..n    one volume each, in ID order, encoded by appendVolume
//	               (snapshot_volume.go)
//
// then an empty frame (a zero length) and the CRC-32C (Castagnoli,
// big-endian) of the header line and every byte since, up to and including
// that zero. Nothing follows. The same state always makes the same bytes.
//
// Volumes are streamed one at a time, so neither side holds more than one
// encoded volume, and they have a compact hand-written encoding because they
// are the bulk of a snapshot; the other records are few and keep the JSON
// encoding the API and version 1 use.
const snapshotVersion = 2

// snapshotVersionJSON is the previous format, still read by Restore.
const snapshotVersionJSON = 1

// maxFrame bounds one frame (the metadata frame is the largest).
const maxFrame = 1 << 30

const snapshotBufSize = 64 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// snapshotHeader is the header line. Data is set only in version 1.
type snapshotHeader struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
	Data    *data  `json:"data,omitempty"`
}

// headerLine is the header line of a version 2 snapshot. Its checksum
// covers the line as written here: a reader re-encodes the header it read,
// so that a corrupt header fails the checksum.
func headerLine(index uint64) []byte {
	b, _ := json.Marshal(snapshotHeader{Version: snapshotVersion, Index: index}) // cannot fail
	return append(b, '\n')
}

// snapshotMeta is the first frame of a version 2 snapshot: data without its
// volumes. Embedding data, rather than listing its fields, carries records
// added to data later without a change here.
type snapshotMeta struct {
	VolumeCount int `json:"volume_count"`
	data
}

// writeSnapshot writes d as a version 2 snapshot taken at index.
func writeSnapshot(w io.Writer, index uint64, d *data) error {
	fw := &frameWriter{w: bufio.NewWriterSize(w, snapshotBufSize)}
	if err := fw.raw(headerLine(index)); err != nil {
		return err
	}
	m := snapshotMeta{VolumeCount: len(d.Volumes), data: *d}
	m.Volumes = nil
	meta, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if err := fw.frame(meta); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	// In ID order, so that the same state always makes the same snapshot.
	vols := slices.SortedFunc(maps.Values(d.Volumes), func(a, b *Volume) int { return strings.Compare(a.ID, b.ID) })
	for _, v := range vols {
		fw.buf = appendVolume(fw.buf[:0], v)
		if err := fw.frame(fw.buf); err != nil {
			return fmt.Errorf("volume %s: %w", v.ID, err)
		}
	}
	if err := fw.raw([]byte{0}); err != nil {
		return err
	}
	if _, err := fw.w.Write(binary.BigEndian.AppendUint32(nil, fw.crc)); err != nil {
		return err
	}
	return fw.w.Flush()
}

type frameWriter struct {
	w   *bufio.Writer
	buf []byte // scratch for one volume
	crc uint32
	n   [binary.MaxVarintLen64]byte
}

func (fw *frameWriter) frame(p []byte) error {
	if len(p) == 0 || len(p) > maxFrame {
		return fmt.Errorf("record of %d bytes", len(p))
	}
	if err := fw.raw(binary.AppendUvarint(fw.n[:0], uint64(len(p)))); err != nil {
		return err
	}
	return fw.raw(p)
}

func (fw *frameWriter) raw(p []byte) error {
	fw.crc = crc32.Update(fw.crc, crcTable, p)
	_, err := fw.w.Write(p)
	return err
}

// readSnapshot reads a snapshot of any supported version and returns the
// state and the applied index, or an error if the snapshot is of another
// version, truncated or corrupt. It never returns partial state.
func readSnapshot(r io.Reader) (data, uint64, error) {
	br := bufio.NewReaderSize(r, snapshotBufSize)
	dec := json.NewDecoder(br)
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return data{}, 0, fmt.Errorf("header: %w", err)
	}
	switch h.Version {
	case snapshotVersion:
		if h.Data != nil {
			return data{}, 0, errors.New("header: version 2 header with data")
		}
		// The JSON decoder reads ahead: the rest of the header line and
		// the start of the frames are in its buffer.
		body := bufio.NewReaderSize(io.MultiReader(dec.Buffered(), br), snapshotBufSize)
		if c, err := body.ReadByte(); err != nil || c != '\n' {
			return data{}, 0, errors.New("header: not followed by a newline")
		}
		d, err := readFrames(body, crc32.Update(0, crcTable, headerLine(h.Index)))
		if err != nil {
			return data{}, 0, err
		}
		return d, h.Index, nil
	case snapshotVersionJSON:
		if h.Data == nil {
			return data{}, 0, errors.New("version 1 snapshot without data")
		}
		if err := checkRecords(h.Data); err != nil {
			return data{}, 0, err
		}
		return *h.Data, h.Index, nil
	default:
		return data{}, 0, fmt.Errorf("version %d, this coordinator reads versions %d and %d",
			h.Version, snapshotVersionJSON, snapshotVersion)
	}
}

// readFrames reads the frames of a version 2 snapshot, the checksum (crc is
// that of the header line), and checks that nothing follows.
func readFrames(r *bufio.Reader, crc uint32) (data, error) {
	fr := &frameReader{r: r, crc: crc}
	p, err := fr.next()
	if err == nil && p == nil {
		err = errors.New("missing")
	}
	if err != nil {
		return data{}, fmt.Errorf("metadata: %w", err)
	}
	var meta snapshotMeta
	if err := json.Unmarshal(p, &meta); err != nil {
		return data{}, fmt.Errorf("metadata: %w", err)
	}
	if meta.Volumes != nil {
		return data{}, errors.New("metadata: volumes in the metadata frame")
	}
	if err := checkRecords(&meta.data); err != nil {
		return data{}, fmt.Errorf("metadata: %w", err)
	}
	// The volumes are collected in a slice and the map is made once the
	// checksum has been verified: a count read from the snapshot is not
	// trusted for an allocation before that.
	var vols []*Volume
	for {
		p, err := fr.next()
		if err != nil {
			return data{}, fmt.Errorf("volume %d: %w", len(vols), err)
		}
		if p == nil {
			break
		}
		v, err := decodeVolume(p)
		if err != nil {
			return data{}, fmt.Errorf("volume %d: %w", len(vols), err)
		}
		vols = append(vols, v)
	}
	if err := fr.end(); err != nil {
		return data{}, err
	}
	if len(vols) != meta.VolumeCount {
		return data{}, fmt.Errorf("%d volumes, metadata says %d", len(vols), meta.VolumeCount)
	}
	d := meta.data
	d.Volumes = make(map[string]*Volume, len(vols))
	for _, v := range vols {
		if _, dup := d.Volumes[v.ID]; dup {
			return data{}, fmt.Errorf("volume %q appears twice", v.ID)
		}
		d.Volumes[v.ID] = v
	}
	return d, nil
}

type frameReader struct {
	r   *bufio.Reader
	buf []byte
	crc uint32
	n   [binary.MaxVarintLen64]byte
}

// next returns the next frame, valid until the following call, or nil at
// the empty frame that ends them.
func (fr *frameReader) next() ([]byte, error) {
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		return nil, unexpectedEOF(err)
	}
	fr.crc = crc32.Update(fr.crc, crcTable, binary.AppendUvarint(fr.n[:0], n))
	if n == 0 {
		return nil, nil
	}
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	// Grow the buffer with the data actually read, not with the length
	// read: a corrupt length fails at the end of the snapshot.
	buf := fr.buf[:0]
	for len(buf) < int(n) {
		start := len(buf)
		end := min(int(n), start+1<<20)
		buf = slices.Grow(buf, end-start)[:end]
		if _, err := io.ReadFull(fr.r, buf[start:]); err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	fr.buf = buf
	fr.crc = crc32.Update(fr.crc, crcTable, buf)
	return buf, nil
}

// end reads the checksum that follows the empty frame, compares it, and
// checks that the snapshot ends there.
func (fr *frameReader) end() error {
	var sum [4]byte
	if _, err := io.ReadFull(fr.r, sum[:]); err != nil {
		return fmt.Errorf("checksum: %w", unexpectedEOF(err))
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != fr.crc {
		return fmt.Errorf("checksum mismatch: snapshot says %08x, content is %08x", got, fr.crc)
	}
	if _, err := fr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return err
		}
		return errors.New("data after the end of the snapshot")
	}
	return nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// checkRecords refuses null records (in any map of pointers in data), which
// no command creates and which the derived indexes and readers do not
// expect.
func checkRecords(d *data) error {
	rv := reflect.ValueOf(d).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		if f.Kind() != reflect.Map || f.Type().Elem().Kind() != reflect.Pointer {
			continue
		}
		for it := f.MapRange(); it.Next(); {
			if it.Value().IsNil() {
				return fmt.Errorf("%s: %q is null", rv.Type().Field(i).Tag.Get("json"), it.Key())
			}
		}
	}
	return nil
}

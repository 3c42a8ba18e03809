package state

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Snapshot format.
//
// A snapshot starts with a header: one line of JSON,
//
//	{"version":2,"index":1234}\n
//
// so that any version of the coordinator can read the version and refuse a
// snapshot it does not understand with a clear error. (Version 1 was a single
// JSON document {"version":1,"index":N,"data":{...}}; Restore still reads it.)
//
// In version 2 the header is followed by a stream of frames, each an
// unsigned varint length and that many bytes of msgpack:
//
//	frame 0        snapshotMeta: everything but the volumes, and their count
//	frames 1..n    one Volume each
//
// then a zero length, the CRC-32C (Castagnoli, big-endian) of every byte of
// the stream after the header line up to and including that zero, and the
// end of the snapshot. Records are msgpack maps keyed by the fields' JSON
// names, so a field added to a record does not change the format: an older
// reader skips it, a newer one leaves it zero.
const snapshotVersion = 2

// snapshotVersionJSON is the previous format, still read by Restore.
const snapshotVersionJSON = 1

// maxFrame bounds one frame (the metadata frame is the largest).
const maxFrame = 1 << 30

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// snapshotHandle encodes snapshot records. Records are not shared between
// goroutines during a snapshot, and the handle's configuration is fixed, so
// one handle serves every encoder and decoder.
var snapshotHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.WriteExt = true // str and bin types from the current msgpack spec
	// time.Time through MarshalBinary, which keeps the zone offset as the
	// JSON encoding of version 1 did (the msgpack timestamp is UTC only).
	h.TimeNotBuiltin = true
	return h
}()

// snapshotHeader is the JSON header line. Data is set only by version 1.
type snapshotHeader struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
	Data    *data  `json:"data,omitempty"`
}

// snapshotMeta is the first frame of a version 2 snapshot.
type snapshotMeta struct {
	Volumes  int                         `codec:"volumes"` // number of volume frames that follow
	Types    map[string]*VolumeType      `codec:"types"`
	Quotas   map[string]map[string]int64 `codec:"quotas"`
	Defaults map[string]int64            `codec:"quota_defaults"`
	Pools    map[string]*Pool            `codec:"pools"`
	Services map[string]*Service         `codec:"services"`
}

// writeSnapshot writes d as a version 2 snapshot taken at index.
func writeSnapshot(w io.Writer, index uint64, d *data) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := json.NewEncoder(bw).Encode(snapshotHeader{Version: snapshotVersion, Index: index}); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	fw := &frameWriter{w: bw}
	fw.enc = codec.NewEncoderBytes(&fw.buf, snapshotHandle)
	meta := snapshotMeta{Volumes: len(d.Volumes), Types: d.Types, Quotas: d.Quotas,
		Defaults: d.Defaults, Pools: d.Pools, Services: d.Services}
	if err := fw.write(&meta); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for id, v := range d.Volumes {
		if err := fw.write(v); err != nil {
			return fmt.Errorf("volume %s: %w", id, err)
		}
	}
	if err := fw.end(); err != nil {
		return err
	}
	return bw.Flush()
}

type frameWriter struct {
	w   *bufio.Writer
	enc *codec.Encoder
	buf []byte
	crc uint32
	n   [binary.MaxVarintLen64]byte
}

func (fw *frameWriter) write(v any) error {
	fw.buf = fw.buf[:0]
	fw.enc.ResetBytes(&fw.buf)
	if err := fw.enc.Encode(v); err != nil {
		return err
	}
	if len(fw.buf) == 0 || len(fw.buf) > maxFrame {
		return fmt.Errorf("encoded record of %d bytes", len(fw.buf))
	}
	if err := fw.raw(binary.AppendUvarint(fw.n[:0], uint64(len(fw.buf)))); err != nil {
		return err
	}
	return fw.raw(fw.buf)
}

// end writes the end marker and the checksum.
func (fw *frameWriter) end() error {
	if err := fw.raw([]byte{0}); err != nil {
		return err
	}
	_, err := fw.w.Write(binary.BigEndian.AppendUint32(fw.n[:0], fw.crc))
	return err
}

func (fw *frameWriter) raw(p []byte) error {
	fw.crc = crc32.Update(fw.crc, crcTable, p)
	_, err := fw.w.Write(p)
	return err
}

// readSnapshot reads a snapshot of any supported version. It returns the
// state and the applied index, or an error if the snapshot is of another
// version, truncated or corrupt. It never returns partial state.
func readSnapshot(r io.Reader) (data, uint64, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	dec := json.NewDecoder(br)
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return data{}, 0, fmt.Errorf("header: %w", err)
	}
	switch h.Version {
	case snapshotVersionJSON:
		if h.Data == nil {
			return data{}, 0, errors.New("version 1 snapshot without data")
		}
		if err := checkRecords(h.Data); err != nil {
			return data{}, 0, err
		}
		return *h.Data, h.Index, nil
	case snapshotVersion:
		if h.Data != nil {
			return data{}, 0, errors.New("version 2 header carries data")
		}
		// The JSON decoder reads ahead: the body starts in its buffer.
		body := bufio.NewReaderSize(io.MultiReader(dec.Buffered(), br), 256<<10)
		if c, err := body.ReadByte(); err != nil || c != '\n' {
			return data{}, 0, errors.New("header not followed by a newline")
		}
		d, err := readBody(body)
		if err != nil {
			return data{}, 0, err
		}
		return d, h.Index, nil
	default:
		return data{}, 0, fmt.Errorf("version %d, this coordinator reads versions %d and %d",
			h.Version, snapshotVersionJSON, snapshotVersion)
	}
}

// readBody reads the frames of a version 2 snapshot, checks the checksum and
// that nothing follows it.
func readBody(r *bufio.Reader) (data, error) {
	fr := &frameReader{r: r}
	dec := codec.NewDecoderBytes(nil, snapshotHandle)
	p, err := fr.next()
	if err == nil && p == nil {
		err = errors.New("missing metadata")
	}
	if err != nil {
		return data{}, fmt.Errorf("metadata: %w", err)
	}
	var meta snapshotMeta
	dec.ResetBytes(p)
	if err := dec.Decode(&meta); err != nil {
		return data{}, fmt.Errorf("metadata: %w", err)
	}
	if meta.Volumes < 0 {
		return data{}, fmt.Errorf("metadata: %d volumes", meta.Volumes)
	}
	// Volumes are collected in a slice first: the count is not trusted
	// for an allocation before the checksum has been verified.
	var vols []*Volume
	for {
		p, err := fr.next()
		if err != nil {
			return data{}, fmt.Errorf("volume %d: %w", len(vols), err)
		}
		if p == nil {
			break
		}
		v := new(Volume)
		dec.ResetBytes(p)
		if err := dec.Decode(v); err != nil {
			return data{}, fmt.Errorf("volume %d: %w", len(vols), err)
		}
		vols = append(vols, v)
	}
	if err := fr.verify(); err != nil {
		return data{}, err
	}
	if len(vols) != meta.Volumes {
		return data{}, fmt.Errorf("%d volumes, metadata says %d", len(vols), meta.Volumes)
	}
	d := data{Volumes: make(map[string]*Volume, len(vols)), Types: meta.Types, Quotas: meta.Quotas,
		Defaults: meta.Defaults, Pools: meta.Pools, Services: meta.Services}
	for _, v := range vols {
		if _, dup := d.Volumes[v.ID]; dup {
			return data{}, fmt.Errorf("volume %s appears twice", v.ID)
		}
		d.Volumes[v.ID] = v
	}
	if err := checkRecords(&d); err != nil {
		return data{}, err
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
// the end marker.
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
	// Grow with the data actually read, not with the length read.
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

// verify reads the checksum that follows the end marker and checks that the
// snapshot ends there.
func (fr *frameReader) verify() error {
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

// checkRecords refuses a state holding nil records, which no command
// creates and which the derived indexes cannot account for.
func checkRecords(d *data) error {
	for id, v := range d.Volumes {
		if v == nil {
			return fmt.Errorf("volume %q is null", id)
		}
	}
	for id, t := range d.Types {
		if t == nil {
			return fmt.Errorf("volume type %q is null", id)
		}
	}
	for name, p := range d.Pools {
		if p == nil {
			return fmt.Errorf("pool %q is null", name)
		}
	}
	for key, s := range d.Services {
		if s == nil {
			return fmt.Errorf("service %q is null", key)
		}
	}
	return nil
}

package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Volume records are the bulk of a snapshot, so they have their own compact
// encoding rather than msgpack (which spends most of a snapshot's time in
// reflection). A record is a sequence of fields, each
//
//	uvarint field number, uvarint length, that many bytes of value
//
// A reader skips fields it does not know and leaves fields that are absent
// at their zero value, so adding a field to Volume does not change the
// snapshot version: give it a new number below (never reuse or renumber
// one) and encode it in appendVolume and decodeVolume.
// TestVolumeCodecCoversEveryField fails until that is done.
//
// Values: strings as their bytes; integers as zigzag varints; booleans as
// one byte; times as time.Time.MarshalBinary (which keeps the zone offset);
// string lists as a uvarint count then each string as uvarint length and
// bytes; string maps likewise, in key order, key then value. Zero strings,
// integers, booleans and times are left out; lists and maps are written
// when non-nil, so nil and empty stay distinct.
const (
	vfID = iota + 1
	vfProjectID
	vfUserID
	vfName
	vfDescription
	vfSizeGB
	vfStatus
	vfAttachStatus
	vfTypeID
	vfAZ
	vfMetadata
	vfBootable
	vfMultiattach
	vfHintsSameHost
	vfHintsDifferentHost
	vfPool
	vfTried
	vfProviderLocation
	vfConsumesQuota
	vfErrorMessage
	vfCreatedAt
	vfUpdatedAt
	vfTaskStartedAt
	vfSnapshotID
	vfSourceVolID
	vfPreviousStatus
	vfExtendToGB
	vfRevertSnapshotID
	vfMigrationStatus
	vfReadOnly
	vfImageMetadata
	vfProviderAuth
)

// appendVolume appends the encoding of v to b.
func appendVolume(b []byte, v *Volume) []byte {
	b = appendStringField(b, vfID, v.ID)
	b = appendStringField(b, vfProjectID, v.ProjectID)
	b = appendStringField(b, vfUserID, v.UserID)
	b = appendStringField(b, vfName, v.Name)
	b = appendStringField(b, vfDescription, v.Description)
	b = appendIntField(b, vfSizeGB, v.SizeGB)
	b = appendStringField(b, vfStatus, v.Status)
	b = appendStringField(b, vfAttachStatus, v.AttachStatus)
	b = appendStringField(b, vfTypeID, v.TypeID)
	b = appendStringField(b, vfAZ, v.AZ)
	b = appendMapField(b, vfMetadata, v.Metadata)
	b = appendBoolField(b, vfBootable, v.Bootable)
	b = appendBoolField(b, vfMultiattach, v.Multiattach)
	b = appendListField(b, vfHintsSameHost, v.Hints.SameHost)
	b = appendListField(b, vfHintsDifferentHost, v.Hints.DifferentHost)
	b = appendStringField(b, vfPool, v.Pool)
	b = appendListField(b, vfTried, v.Tried)
	b = appendStringField(b, vfProviderLocation, v.ProviderLocation)
	b = appendStringField(b, vfProviderAuth, v.ProviderAuth)
	b = appendBoolField(b, vfConsumesQuota, v.ConsumesQuota)
	b = appendStringField(b, vfErrorMessage, v.ErrorMessage)
	b = appendTimeField(b, vfCreatedAt, v.CreatedAt)
	b = appendTimeField(b, vfUpdatedAt, v.UpdatedAt)
	b = appendTimeField(b, vfTaskStartedAt, v.TaskStartedAt)
	b = appendStringField(b, vfSnapshotID, v.SnapshotID)
	b = appendStringField(b, vfSourceVolID, v.SourceVolID)
	b = appendStringField(b, vfPreviousStatus, v.PreviousStatus)
	b = appendIntField(b, vfExtendToGB, v.ExtendToGB)
	b = appendStringField(b, vfRevertSnapshotID, v.RevertSnapshotID)
	b = appendStringField(b, vfMigrationStatus, v.MigrationStatus)
	b = appendBoolField(b, vfReadOnly, v.ReadOnly)
	b = appendMapField(b, vfImageMetadata, v.ImageMetadata)
	return b
}

// decodeVolume decodes a record written by appendVolume. The strings of the
// volume share one allocation, a copy of p.
func decodeVolume(p []byte) (*Volume, error) {
	v := new(Volume)
	r := fieldReader{s: string(p)}
	for r.more() {
		num, val, err := r.field()
		if err != nil {
			return nil, err
		}
		switch num {
		case vfID:
			v.ID = val.s
		case vfProjectID:
			v.ProjectID = val.s
		case vfUserID:
			v.UserID = val.s
		case vfName:
			v.Name = val.s
		case vfDescription:
			v.Description = val.s
		case vfSizeGB:
			v.SizeGB, err = val.int()
		case vfStatus:
			v.Status = val.s
		case vfAttachStatus:
			v.AttachStatus = val.s
		case vfTypeID:
			v.TypeID = val.s
		case vfAZ:
			v.AZ = val.s
		case vfMetadata:
			v.Metadata, err = val.stringMap()
		case vfBootable:
			v.Bootable, err = val.bool()
		case vfMultiattach:
			v.Multiattach, err = val.bool()
		case vfHintsSameHost:
			v.Hints.SameHost, err = val.list()
		case vfHintsDifferentHost:
			v.Hints.DifferentHost, err = val.list()
		case vfPool:
			v.Pool = val.s
		case vfTried:
			v.Tried, err = val.list()
		case vfProviderLocation:
			v.ProviderLocation = val.s
		case vfProviderAuth:
			v.ProviderAuth = val.s
		case vfConsumesQuota:
			v.ConsumesQuota, err = val.bool()
		case vfErrorMessage:
			v.ErrorMessage = val.s
		case vfCreatedAt:
			v.CreatedAt, err = val.time()
		case vfUpdatedAt:
			v.UpdatedAt, err = val.time()
		case vfTaskStartedAt:
			v.TaskStartedAt, err = val.time()
		case vfSnapshotID:
			v.SnapshotID = val.s
		case vfSourceVolID:
			v.SourceVolID = val.s
		case vfPreviousStatus:
			v.PreviousStatus = val.s
		case vfExtendToGB:
			v.ExtendToGB, err = val.int()
		case vfRevertSnapshotID:
			v.RevertSnapshotID = val.s
		case vfMigrationStatus:
			v.MigrationStatus = val.s
		case vfReadOnly:
			v.ReadOnly, err = val.bool()
		case vfImageMetadata:
			v.ImageMetadata, err = val.stringMap()
		}
		if err != nil {
			return nil, fmt.Errorf("field %d: %w", num, err)
		}
	}
	return v, nil
}

func appendHead(b []byte, num, n int) []byte {
	b = binary.AppendUvarint(b, uint64(num))
	return binary.AppendUvarint(b, uint64(n))
}

func appendStringField(b []byte, num int, s string) []byte {
	if s == "" {
		return b
	}
	return append(appendHead(b, num, len(s)), s...)
}

func appendIntField(b []byte, num int, i int64) []byte {
	if i == 0 {
		return b
	}
	var buf [binary.MaxVarintLen64]byte
	x := binary.AppendVarint(buf[:0], i)
	return append(appendHead(b, num, len(x)), x...)
}

func appendBoolField(b []byte, num int, x bool) []byte {
	if !x {
		return b
	}
	return append(appendHead(b, num, 1), 1)
}

func appendTimeField(b []byte, num int, t time.Time) []byte {
	if t == (time.Time{}) {
		return b
	}
	var buf [16]byte
	x, err := t.AppendBinary(buf[:0])
	if err != nil {
		// Only a zone offset that is not a whole number of minutes; the
		// time itself is kept, in UTC.
		x, _ = t.UTC().AppendBinary(buf[:0])
	}
	return append(appendHead(b, num, len(x)), x...)
}

func appendListField(b []byte, num int, l []string) []byte {
	if l == nil {
		return b
	}
	n := uvarintLen(uint64(len(l)))
	for _, s := range l {
		n += uvarintLen(uint64(len(s))) + len(s)
	}
	b = binary.AppendUvarint(appendHead(b, num, n), uint64(len(l)))
	for _, s := range l {
		b = append(binary.AppendUvarint(b, uint64(len(s))), s...)
	}
	return b
}

// appendMapField writes the entries in key order, so that the same volume
// always has the same encoding.
func appendMapField(b []byte, num int, m map[string]string) []byte {
	if m == nil {
		return b
	}
	var arr [16]string
	keys := arr[:0]
	n := uvarintLen(uint64(len(m)))
	for k, v := range m {
		keys = append(keys, k)
		n += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(appendHead(b, num, n), uint64(len(m)))
	for _, k := range keys {
		b = append(binary.AppendUvarint(b, uint64(len(k))), k...)
		b = append(binary.AppendUvarint(b, uint64(len(m[k]))), m[k]...)
	}
	return b
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

var errShort = errors.New("value runs past the end of the record")

// fieldReader reads fields from a record held in a string, so that the
// strings it returns share the record's allocation.
type fieldReader struct{ s string }

func (r *fieldReader) more() bool { return r.s != "" }

func (r *fieldReader) uvarint() (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if i == len(r.s) {
			return 0, errShort
		}
		c := r.s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			r.s = r.s[i+1:]
			return x | uint64(c)<<(7*i), nil
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, errors.New("varint overflows 64 bits")
}

// bytes returns the next n bytes.
func (r *fieldReader) bytes(n uint64) (string, error) {
	if n > uint64(len(r.s)) {
		return "", errShort
	}
	s := r.s[:n]
	r.s = r.s[n:]
	return s, nil
}

func (r *fieldReader) str() (string, error) {
	n, err := r.uvarint()
	if err != nil {
		return "", err
	}
	return r.bytes(n)
}

// field returns the next field's number and value.
func (r *fieldReader) field() (uint64, fieldReader, error) {
	num, err := r.uvarint()
	if err != nil {
		return 0, fieldReader{}, err
	}
	s, err := r.str()
	return num, fieldReader{s: s}, err
}

func (r fieldReader) int() (int64, error) {
	u, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if r.s != "" {
		return 0, errors.New("integer with trailing bytes")
	}
	return int64(u>>1) ^ -int64(u&1), nil
}

func (r fieldReader) bool() (bool, error) {
	if len(r.s) != 1 || r.s[0] > 1 {
		return false, errors.New("invalid boolean")
	}
	return r.s[0] == 1, nil
}

func (r fieldReader) time() (time.Time, error) {
	var t time.Time
	err := t.UnmarshalBinary([]byte(r.s))
	return t, err
}

// count reads a list or map length, which cannot exceed the bytes left
// (every element takes at least one).
func (r *fieldReader) count() (int, error) {
	n, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(r.s)) {
		return 0, errShort
	}
	return int(n), nil
}

func (r fieldReader) list() ([]string, error) {
	n, err := r.count()
	if err != nil {
		return nil, err
	}
	l := make([]string, n)
	for i := range l {
		if l[i], err = r.str(); err != nil {
			return nil, err
		}
	}
	if r.s != "" {
		return nil, errors.New("list with trailing bytes")
	}
	return l, nil
}

func (r fieldReader) stringMap() (map[string]string, error) {
	n, err := r.count()
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, n)
	for range n {
		k, err := r.str()
		if err != nil {
			return nil, err
		}
		v, err := r.str()
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	if r.s != "" {
		return nil, errors.New("map with trailing bytes")
	}
	return m, nil
}

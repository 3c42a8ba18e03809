package nfs

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// header builds a qcow2 header: version, virtual size and an optional
// backing file name stored at offset 72 (as qemu-img writes version 2).
func header(version uint32, size uint64, backing string) []byte {
	b := make([]byte, 72, 72+len(backing))
	copy(b, qcow2Magic)
	binary.BigEndian.PutUint32(b[4:], version)
	if backing != "" {
		binary.BigEndian.PutUint64(b[8:], 72)
		binary.BigEndian.PutUint32(b[16:], uint32(len(backing)))
	}
	binary.BigEndian.PutUint32(b[20:], 16)
	binary.BigEndian.PutUint64(b[24:], size)
	return append(b, backing...)
}

func TestParseQCOW2Header(t *testing.T) {
	good := header(3, 1<<30, "volume-x")
	h, err := parseQCOW2Header(bytes.NewReader(good), "img")
	if err != nil || h.size != 1<<30 || h.backing != "volume-x" {
		t.Fatalf("good header = %+v, %v", h, err)
	}
	if h, err := parseQCOW2Header(bytes.NewReader(header(2, 512, "")), "img"); err != nil || h.size != 512 || h.backing != "" {
		t.Fatalf("version 2 without backing = %+v, %v", h, err)
	}
	bad := map[string][]byte{
		"short":          good[:20],
		"raw":            bytes.Repeat([]byte{0}, 72),
		"version 4":      header(4, 512, ""),
		"size not 512":   header(3, 1000, ""),
		"size too large": header(3, 1<<62, ""),
		"name cut short": header(3, 512, "volume-x")[:75],
	}
	long := header(3, 512, strings.Repeat("a", 1024))
	bad["name too long"] = long
	far := header(3, 512, "x")
	binary.BigEndian.PutUint64(far[8:], 1<<40)
	bad["name far away"] = far
	zero := header(3, 512, "x")
	binary.BigEndian.PutUint32(zero[16:], 0)
	bad["empty name"] = zero
	for name, b := range bad {
		if h, err := parseQCOW2Header(bytes.NewReader(b), "img"); err == nil {
			t.Errorf("%s: parsed as %+v", name, h)
		}
	}
}

func FuzzParseQCOW2Header(f *testing.F) {
	f.Add(header(3, 1<<30, "volume-x"))
	f.Add(header(2, 512, ""))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseQCOW2Header(bytes.NewReader(b), "img")
		if err != nil {
			return
		}
		if h.size < 0 || h.size > maxVolumeBytes || h.size%512 != 0 || len(h.backing) > maxBackingName {
			t.Fatalf("accepted %+v", h)
		}
	})
}

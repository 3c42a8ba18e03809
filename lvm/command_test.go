package lvm

import (
	"errors"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// Real output of lvm 2.03.16 (lvs/vgs --reportformat json --units b --nosuffix).
const realLVs = `  {
      "report": [
          {
              "lv": [
                  {"lv_name":"kiln-pool", "lv_size":"1019215872", "lv_attr":"twi-aotz--", "origin":"", "pool_lv":"", "data_percent":"12.50", "lv_path":"", "lv_tags":""},
                  {"lv_name":"volume-00000000-0000-4000-8000-000000000001", "lv_size":"1073741824", "lv_attr":"Vwi-aotz--", "origin":"", "pool_lv":"kiln-pool", "data_percent":"3.05", "lv_path":"/dev/kiln/volume-00000000-0000-4000-8000-000000000001", "lv_tags":""},
                  {"lv_name":"_snapshot-00000000-0000-4000-8000-000000000002", "lv_size":"1073741824", "lv_attr":"Vwi---tz-k", "origin":"volume-00000000-0000-4000-8000-000000000001", "pool_lv":"kiln-pool", "data_percent":"", "lv_path":"/dev/kiln/_snapshot-00000000-0000-4000-8000-000000000002", "lv_tags":"kiln-origin-00000000-0000-4000-8000-000000000001,other"}
              ]
          }
      ]
  }
`

const realVGs = `  {
      "report": [
          {
              "vg": [
                  {"vg_name":"kilnt", "vg_size":"2143289344", "vg_free":"1933574144", "vg_extent_size":"4194304"}
              ]
          }
      ]
  }
`

func TestParseRealReports(t *testing.T) {
	lvs, err := parseLVs([]byte(realLVs))
	if err != nil {
		t.Fatal(err)
	}
	if len(lvs) != 3 || lvs[0].DataPercent != 12.5 || lvs[1].PoolLV != "kiln-pool" || lvs[1].SizeBytes != 1<<30 {
		t.Fatalf("parsed %+v", lvs)
	}
	if got := snapshotOrigin(lvs[2]); got != "00000000-0000-4000-8000-000000000001" {
		t.Fatalf("snapshot origin = %q", got)
	}
	vgs, err := parseVGs([]byte(realVGs))
	if err != nil {
		t.Fatal(err)
	}
	if len(vgs) != 1 || vgs[0].FreeBytes != 1933574144 || vgs[0].ExtentSize != 4<<20 {
		t.Fatalf("parsed %+v", vgs)
	}
}

func TestParseRejectsMalformedReports(t *testing.T) {
	for name, in := range map[string]string{
		"not json":         `WARNING: something`,
		"negative size":    `{"report":[{"lv":[{"lv_name":"a","lv_size":"-1"}]}]}`,
		"size with suffix": `{"report":[{"lv":[{"lv_name":"a","lv_size":"1.00g"}]}]}`,
		"no name":          `{"report":[{"lv":[{"lv_size":"1"}]}]}`,
		"bad percent":      `{"report":[{"lv":[{"lv_name":"a","lv_size":"1","data_percent":"150"}]}]}`,
		"wrong shape":      `{"report":[{"lv":"x"}]}`,
	} {
		if _, err := parseLVs([]byte(in)); err == nil {
			t.Errorf("lvs %s: no error", name)
		}
	}
	for name, in := range map[string]string{
		"free > size": `{"report":[{"vg":[{"vg_name":"a","vg_size":"1","vg_free":"2","vg_extent_size":"1"}]}]}`,
		"zero extent": `{"report":[{"vg":[{"vg_name":"a","vg_size":"1","vg_free":"1","vg_extent_size":"0"}]}]}`,
		"missing":     `{"report":[{"vg":[{"vg_name":"a"}]}]}`,
	} {
		if _, err := parseVGs([]byte(in)); err == nil {
			t.Errorf("vgs %s: no error", name)
		}
	}
}

func TestClassifyStderr(t *testing.T) {
	for stderr, want := range map[string]error{
		`  Failed to find logical volume "kilnt/volume-zz"`:                                 ErrLVNotFound,
		`  Volume group "nosuchvg" not found` + "\n  Cannot process volume group nosuchvg":  ErrVGNotFound,
		`  Logical Volume "volume-b" already exists in volume group "kilnt"`:                ErrLVExists,
		`  Volume group "kilnt" has insufficient free space (461 extents): 25600 required.`: ErrInsufficientSpace,
		`  Can't create snapshot without using device-mapper kernel driver.`:                ErrNoDeviceMapper,
		`  Something else went wrong`:                                                       nil,
	} {
		if got := classify(stderr); got != want {
			t.Errorf("classify(%q) = %v, want %v", stderr, got, want)
		}
	}
	if !errors.Is(ErrInsufficientSpace, storage.ErrNoSpace) || !errors.Is(ErrLVNotFound, storage.ErrNotFound) || !errors.Is(ErrLVExists, storage.ErrExists) {
		t.Fatal("sentinels do not wrap the storage errors")
	}
}

func FuzzParseLVs(f *testing.F) {
	f.Add([]byte(realLVs))
	f.Add([]byte(`{"report":[{"lv":[{"lv_name":"a","lv_size":"1"}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := parseLVs(b)
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.Name == "" || r.SizeBytes < 0 || r.DataPercent < 0 || r.DataPercent > 100 {
				t.Fatalf("accepted an invalid row %+v", r)
			}
		}
	})
}

func FuzzParseVGs(f *testing.F) {
	f.Add([]byte(realVGs))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := parseVGs(b)
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.Name == "" || r.ExtentSize <= 0 || r.FreeBytes > r.SizeBytes || r.FreeBytes < 0 {
				t.Fatalf("accepted an invalid row %+v", r)
			}
		}
	})
}

package placement

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"
)

func TestZZDiff(t *testing.T) {
	b, err := os.ReadFile("/tmp/diff/vec.json")
	if err != nil {
		t.Skip(err)
	}
	var v struct {
		Match [][3]any
		Float [][3]any
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, m := range v.Match {
		got := MatchOp(m[0].(string), m[1].(string))
		if got != m[2].(bool) {
			bad++
			if bad < 20 {
				t.Errorf("MatchOp(%q, %q) = %v, python %v", m[0], m[1], got, m[2])
			}
		}
	}
	for _, f := range v.Float {
		got, ok := pyFloat(f[0].(string))
		if ok != f[1].(bool) || (ok && pyFloatRepr(got) != f[2].(string)) {
			bad++
			if bad < 40 {
				t.Errorf("pyFloat(%q) = %v %v (%s), python %v %v", f[0], got, ok, strconv.FormatFloat(got, 'g', -1, 64), f[1], f[2])
			}
		}
	}
	t.Logf("%d match, %d float vectors, %d bad", len(v.Match), len(v.Float), bad)
}

package placement

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNoValidPoolErrorMessage(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	pools := []Pool{
		free("a", 3),
		with(free("b", 100), func(p *Pool) { p.Backend = "lvm" }),
	}
	_, err := e.Place(Request{SizeGB: 5, ExtraSpecs: map[string]string{"volume_backend_name": "nfs"}}, pools, nil)
	if !errors.Is(err, ErrNoValidPool) {
		t.Fatalf("err = %v, want ErrNoValidPool", err)
	}
	var nv *NoValidPoolError
	if !errors.As(err, &nv) {
		t.Fatalf("err is %T, want *NoValidPoolError", err)
	}
	want := `no valid pool for 5 GiB: pool a: capacity 3 GiB free < 5 GiB requested; ` +
		`pool b: capabilities: volume_backend_name "lvm" does not match "nfs"`
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
	if nv.Pools != 2 || nv.SizeGB != 5 || len(nv.Rejections) != 2 || nv.Rejections[1].Filter != CapabilitiesFilter {
		t.Errorf("fields = %+v", nv)
	}
	// Still an ErrNoValidPool when wrapped by a caller.
	if !errors.Is(fmt.Errorf("create volume: %w", err), ErrNoValidPool) {
		t.Error("wrapped error lost ErrNoValidPool")
	}
}

func TestNoValidPoolErrorCases(t *testing.T) {
	rej := func(n int) []Rejection {
		var out []Rejection
		for i := range n {
			out = append(out, Rejection{Pool: fmt.Sprintf("p%d", i), Filter: CapacityFilter, Reason: "r"})
		}
		return out
	}
	tests := []struct {
		name string
		err  NoValidPoolError
		want string
	}{
		{"no pools", NoValidPoolError{SizeGB: 5}, "no valid pool for 5 GiB: no pools are registered"},
		{"pools but no rejections recorded", NoValidPoolError{SizeGB: 1, Pools: 3}, "no valid pool for 1 GiB: all 3 pools were rejected"},
		{"one", NoValidPoolError{SizeGB: 2, Pools: 1, Rejections: rej(1)}, "no valid pool for 2 GiB: pool pX: r"},
		{"twenty listed in full", NoValidPoolError{SizeGB: 2, Pools: 20, Rejections: rej(20)},
			"no valid pool for 2 GiB: " + strings.TrimSuffix(strings.Repeat("pool pX: r; ", 20), "; ")},
		{"capped at twenty", NoValidPoolError{SizeGB: 2, Pools: 25, Rejections: rej(25)},
			"no valid pool for 2 GiB: " + strings.TrimSuffix(strings.Repeat("pool pX: r; ", 20), "; ") + "; and 5 more"},
	}
	for _, tc := range tests {
		got := tc.err.Error()
		// Pool numbers are checked separately; compare the shape.
		norm := got
		for i := 24; i >= 0; i-- {
			norm = strings.ReplaceAll(norm, fmt.Sprintf("pool p%d:", i), "pool pX:")
		}
		if norm != tc.want {
			t.Errorf("%s: Error() = %q, want %q", tc.name, got, tc.want)
		}
		if !errors.Is(&tc.err, ErrNoValidPool) {
			t.Errorf("%s: errors.Is(ErrNoValidPool) is false", tc.name)
		}
	}
	long := NoValidPoolError{SizeGB: 2, Pools: 10000, Rejections: rej(10000)}
	msg := long.Error()
	if !strings.HasSuffix(msg, "; and 9980 more") || !strings.Contains(msg, "pool p19: r") || strings.Contains(msg, "pool p20:") {
		t.Errorf("capped message = %q", msg)
	}
	if len(msg) > 1000 {
		t.Errorf("message is %d bytes", len(msg))
	}
}

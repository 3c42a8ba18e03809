package nfs

import "testing"

func TestTempOf(t *testing.T) {
	const id = "0123abcd-0000-4000-8000-0123456789ab"
	tests := []struct {
		name   string
		prefix string
		want   string
		ok     bool
	}{
		{".volume-" + id + ".tmp-123", volumePrefix, id, true},
		{".volume-" + id + ".tmp-", volumePrefix, id, true},
		{".snapshot-" + id + ".tmp-9", snapshotPrefix, id, true},
		{".volume-" + id, "", "", false},
		{".volume-" + id + ".bak", "", "", false},
		{".snapshot-" + id + ".meta", "", "", false},
		{"volume-" + id + ".tmp-1", "", "", false},
		{"snapshot-" + id + ".tmp-1", "", "", false},
		{".volume-0123ABCD-0000-4000-8000-0123456789ab.tmp-1", "", "", false},
		{".volume-x.tmp-1", "", "", false},
		{".volume-", "", "", false},
		{".clone-" + id + ".tmp-1", "", "", false},
	}
	for _, tc := range tests {
		prefix, got, ok := tempOf(tc.name)
		if ok != tc.ok || (ok && (got != tc.want || prefix != tc.prefix)) {
			t.Errorf("tempOf(%q) = %q, %q, %v; want %q, %q, %v", tc.name, prefix, got, ok, tc.prefix, tc.want, tc.ok)
		}
	}
}

func TestMetaOf(t *testing.T) {
	const id = "0123abcd-0000-4000-8000-0123456789ab"
	for name, want := range map[string]bool{
		"snapshot-" + id + ".meta":      true,
		"snapshot-" + id:                false,
		".snapshot-" + id + ".meta":     false,
		"volume-" + id + ".meta":        false,
		"snapshot-" + id + ".meta.bak":  false,
		"snapshot-" + id[:35] + ".meta": false,
	} {
		got, ok := metaOf(name)
		if ok != want || (ok && got != id) {
			t.Errorf("metaOf(%q) = %q, %v; want ok=%v", name, got, ok, want)
		}
	}
}

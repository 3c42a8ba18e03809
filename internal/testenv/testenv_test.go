package testenv

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMissingCommands(t *testing.T) {
	if got := MissingCommands("sh", "kiln-no-such-command", "ls", "kiln-none-either"); !slices.Equal(got, []string{"kiln-no-such-command", "kiln-none-either"}) {
		t.Errorf("MissingCommands = %v", got)
	}
}

func TestScript(t *testing.T) {
	p, err := Script("tgtd.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil || !strings.HasSuffix(p, filepath.Join("scripts", "tgtd.sh")) {
		t.Errorf("Script = %q (%v)", p, err)
	}
	if _, err := Script("kiln-no-such-script.sh"); err == nil {
		t.Error("Script of a missing script succeeded")
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	for range 4 {
		<-done
	}
	if n := len(b.String()); n != 400 {
		t.Errorf("%d bytes written, want 400", n)
	}
}

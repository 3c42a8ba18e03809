package nfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnstore/kiln/internal/storage"
	"github.com/kilnstore/kiln/internal/testenv"
)

func TestShareConfigValidation(t *testing.T) {
	long := "host:/" + strings.Repeat("a", maxShareLen)
	checkValidation(t, "share", validateShare, []validationCase{
		{"10.0.0.5:/export", true},
		{"10.0.2.100:/kiln-guest-share", true},
		{"nfs.example.com:/srv/kiln/pool_1", true},
		{"nfs-1:/a.b+c-d_e", true},
		{"[fd00::5]:/export", true},
		{"[2001:db8::1]:/", true},
		{"host:/", true},
		{"", false},
		{"/export", false},
		{"host", false},
		{"host:", false},
		{"host:export", false},
		{":/export", false},
		{"-o:/export", false},
		{"-oremount", false},
		{"host-:/export", false},
		{"ho_st:/export", false},
		{"a..b:/export", false},
		{"host:/a b", false},
		{"host:/a\tb", false},
		{"host:/a\nb", false},
		{"a b:/export", false},
		{"x,y:/export", false},
		{"host:/x,y", false},
		{"host:/a;rm -rf /", false},
		{"host:/;rm", false},
		{"host:/$(reboot)", false},
		{"$(reboot):/x", false},
		{"host:/`id`", false},
		{"host:/a'b", false},
		{`host:/a"b`, false},
		{`host:/a\b`, false},
		{"host:/a:b", false},
		{"host:/a=b", false},
		{"host:/a/../b", false},
		{"host:/..", false},
		{"host:/a/./b", false},
		{"host:/a/", false},
		{"host://a", false},
		{"[fd00::5:/x", false},
		{"[fd00::5]/x", false},
		{"[10.0.0.1]:/x", false},
		{"[::ffff:10.0.0.1]:/x", false},
		{"[fe80::1%eth0]:/x", false},
		{"[host]:/x", false},
		{"fd00::5:/x", false},
		{"999.1.1.1:/x", false},
		{"10.1:/x", false},
		{"host]:/x", false},
		{long, false},
	})
}

type validationCase struct {
	in string
	ok bool
}

// checkValidation checks that validate accepts the ok cases and refuses
// the others with storage.ErrInvalid.
func checkValidation(t *testing.T, what string, validate func(string) error, cases []validationCase) {
	t.Helper()
	for _, tc := range cases {
		err := validate(tc.in)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s %q: %v", what, tc.in, err)
		case !tc.ok && err == nil:
			t.Errorf("%s %q accepted", what, tc.in)
		case !tc.ok && !errors.Is(err, storage.ErrInvalid):
			t.Errorf("%s %q: error %v does not wrap storage.ErrInvalid", what, tc.in, err)
		}
	}
}

func TestMountOptionsValidation(t *testing.T) {
	checkValidation(t, "options", validateMountOptions, []validationCase{
		{"", true},
		{"vers=4.1", true},
		{"vers=4.1,proto=tcp,port=2049", true},
		{"hard,timeo=600,retrans=2,noresvport", true},
		{"sec=krb5:krb5i", true},
		{"clientaddr=10.0.0.5,nfsvers=3,mountport=20048", true},
		{"lookupcache=positive,local_lock=none", true},
		{"-o", false},
		{"-oremount", false},
		{"a b", false},
		{"vers=4.1 ,port=1", false},
		{"vers=4.1,", false},
		{",vers=4.1", false},
		{"vers=4.1,,port=1", false},
		{"vers=", false},
		{"=4.1", false},
		{"_x", false},
		{"rw;rm -rf /", false},
		{"$(reboot)", false},
		{"x=$(reboot)", false},
		{"x=`id`", false},
		{"x='a'", false},
		{`context="system_u:object_r:nfs_t:s0"`, false},
		{"a\tb", false},
		{"a\nb", false},
		{"x=a=b", false},
		{"x=a,b=c d", false},
		{strings.Repeat("a", maxOptionsLen+1), false},
	})
}

func TestNewMounterValidatesWithoutSideEffects(t *testing.T) {
	base := filepath.Join(t.TempDir(), "not", "yet")
	good := ShareConfig{Share: "10.0.0.5:/export", MountOptions: "vers=4.1", MountPointBase: base}

	m, err := NewMounter(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Dir() != MountPoint(base, good.Share) || len(filepath.Base(m.Dir())) != 32 {
		t.Errorf("Dir() = %q, want MountPoint(%q, %q)", m.Dir(), base, good.Share)
	}
	if _, err := os.Stat(filepath.Dir(base)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NewMounter created something under the base's parent: %v", err)
	}
	if m.binary != DefaultMountBinary || m.timeout != DefaultMountTimeout || m.mountinfo != "/proc/self/mountinfo" {
		t.Errorf("defaults: binary %q, timeout %v, mountinfo %q", m.binary, m.timeout, m.mountinfo)
	}
	if !slices.Contains(m.env, "LC_ALL=C") {
		t.Errorf("mount's environment has no LC_ALL=C: %v", m.env)
	}

	d, err := NewMounter(ShareConfig{Share: "10.0.0.5:/export"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(d.Dir()) != DefaultMountPointBase {
		t.Errorf("default Dir() = %q, want it under %s", d.Dir(), DefaultMountPointBase)
	}

	for name, edit := range map[string]func(*ShareConfig){
		"bad share":         func(c *ShareConfig) { c.Share = "host:/a b" },
		"no share":          func(c *ShareConfig) { c.Share = "" },
		"bad options":       func(c *ShareConfig) { c.MountOptions = "vers=4.1;reboot" },
		"relative base":     func(c *ShareConfig) { c.MountPointBase = "var/lib/kiln/mnt" },
		"base with newline": func(c *ShareConfig) { c.MountPointBase = "/var/lib/kiln\n/mnt" },
		"relative binary":   func(c *ShareConfig) { c.MountBinary = "./mount" },
		"option as binary":  func(c *ShareConfig) { c.MountBinary = "-V" },
		"negative timeout":  func(c *ShareConfig) { c.Timeout = -time.Second },
	} {
		cfg := good
		edit(&cfg)
		if _, err := NewMounter(cfg, nil); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: NewMounter(%+v) = %v, want storage.ErrInvalid", name, cfg, err)
		}
	}
	for _, bin := range []string{"mount", "/usr/bin/mount", "kiln-mount"} {
		cfg := good
		cfg.MountBinary = bin
		if _, err := NewMounter(cfg, nil); err != nil {
			t.Errorf("binary %q: %v", bin, err)
		}
	}

	// Every problem is reported at once.
	_, err = NewMounter(ShareConfig{Share: "x,y:/e", MountOptions: "a b", MountPointBase: "rel", Timeout: -1}, nil)
	for _, want := range []string{`"x,y:/e"`, `"a b"`, `"rel"`, "timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// TestMountPointMatchesCinder checks the names against MD5 sums computed
// with md5sum(1) (printf %s SHARE | md5sum), the digest os-brick's
// RemoteFsClient._get_hash_str takes.
func TestMountPointMatchesCinder(t *testing.T) {
	for _, tc := range []struct{ base, share, want string }{
		// os-brick's docstring example share.
		{"/var/lib/nova/mnt", "172.18.194.100:/var/nfs", "/var/lib/nova/mnt/df0808229363aad55c27da50c38d6328"},
		{"/var/lib/kiln/mnt", "10.0.2.100:/kiln-guest-share", "/var/lib/kiln/mnt/6b228019b7494710a19d83d6e4a1d41c"},
		{"/var/lib/kiln/mnt/", "[fd00::5]:/export", "/var/lib/kiln/mnt/ae252ef44fc0ce3ec76e0ec7ec193664"},
	} {
		if got := MountPoint(tc.base, tc.share); got != tc.want {
			t.Errorf("MountPoint(%q, %q) = %q, want %q", tc.base, tc.share, got, tc.want)
		}
	}
}

// mountinfoEscape escapes as the kernel does in mountinfo (seq_escape with
// " \t\n\\").
func mountinfoEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

const sampleMountinfo = `21 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
22 21 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
23 21 0:21 / /tmp rw,nosuid,nodev shared:3 master:7 propagate_from:2 - tmpfs tmpfs rw,size=524288k
24 21 0:22 / /mnt/with\040space\011tab rw,relatime - nfs4 10.0.2.100:/ex\040port rw,vers=4.1,rsize=1048576,addr=10.0.2.100
25 21 0:23 / /mnt/v3 rw,relatime shared:9 - nfs [fd00::5]:/export rw,vers=3,addr=fd00::5
26 21 0:24 /sub /mnt/back\134slash\012nl rw - ext4 /dev/vdb\040x rw
27 21 0:25 / /mnt/no-source rw - tmpfs  rw
`

func TestParseMountinfo(t *testing.T) {
	got, err := parseMountinfo(strings.NewReader(sampleMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{"/", "ext4", "/dev/vda"},
		{"/proc", "proc", "proc"},
		{"/tmp", "tmpfs", "tmpfs"},
		{"/mnt/with space\ttab", "nfs4", "10.0.2.100:/ex port"},
		{"/mnt/v3", "nfs", "[fd00::5]:/export"},
		{"/mnt/back\\slash\nnl", "ext4", "/dev/vdb x"},
		{"/mnt/no-source", "tmpfs", ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseMountinfo:\n got %q\nwant %q", got, want)
	}

	// Octal escapes out of a byte's range, or cut short, are kept as they are.
	if got := unescapeMountinfo(`a\400b\12\0`); got != `a\400b\12\0` {
		t.Errorf("unescapeMountinfo kept %q", got)
	}

	for _, bad := range []string{
		"21 1 254:1 / / rw,relatime shared:1 ext4 /dev/vda rw\n", // no separator
		"21 1 254:1 / / rw - ext4\n",                             // no source
		"garbage\n",
	} {
		if _, err := parseMountinfo(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMountinfo(%q) accepted it", bad)
		}
	}
}

func TestParseRealMountinfo(t *testing.T) {
	entries, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	root := slices.IndexFunc(entries, func(e mountEntry) bool { return e.mountPoint == "/" })
	if root < 0 {
		t.Fatalf("no / in /proc/self/mountinfo: %q", entries)
	}
}

func FuzzMountinfoRoundTrip(f *testing.F) {
	f.Add("/mnt/a b", "10.0.0.5:/x y", "nfs4", "shared:1 master:2")
	f.Add("/", "\\040", "ext4", "")
	f.Add("/-", "-", "nfs", "-x")
	f.Fuzz(func(t *testing.T, mountPoint, source, fsType, optional string) {
		if mountPoint == "" || strings.ContainsAny(fsType, " \t\n\\") || fsType == "" || fsType == "-" ||
			strings.ContainsAny(optional, "\t\n\\") || slices.Contains(strings.Split(optional, " "), "-") ||
			strings.Contains(optional, "  ") || strings.HasPrefix(optional, " ") || strings.HasSuffix(optional, " ") {
			return // not a line the kernel writes: nothing to round-trip
		}
		if optional != "" {
			optional = " " + optional
		}
		line := fmt.Sprintf("30 21 0:40 / %s rw,relatime%s - %s %s rw\n",
			mountinfoEscape(mountPoint), optional, fsType, mountinfoEscape(source))
		got, err := parseMountinfo(strings.NewReader(line))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		want := mountEntry{mountPoint, fsType, source}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("%q: got %q, want %q", line, got, want)
		}
	})
}

func FuzzValidateShare(f *testing.F) {
	for _, s := range []string{"10.0.0.5:/export", "[fd00::5]:/x", "h:/", "-o:/x", "a b:/c", "h:/a,b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, share string) {
		if validateShare(share) != nil {
			return
		}
		if strings.HasPrefix(share, "-") || strings.ContainsAny(share, " \t\n\\,;'\"`$=") ||
			!strings.Contains(share, ":/") || strings.Contains(share, "/../") || strings.HasSuffix(share, "/..") {
			t.Fatalf("accepted unsafe share %q", share)
		}
	})
}

// fakeMount is a mount program written for one test: it records each
// call's arguments, its locale and its stdin, then does what the test
// asked.
type fakeMount struct {
	path      string
	calls     string // one line per call
	argv      string // the last call's arguments, one per line
	env       string
	stdin     string
	mountinfo string // the Mounter's mountinfo file
}

// newFakeMount writes the fake. action is sh run after the recording, with
// $share and $dir set and $mountinfo the mountinfo file; it ends the call
// (exit N).
func newFakeMount(t *testing.T, action string) *fakeMount {
	t.Helper()
	dir := t.TempDir()
	f := &fakeMount{
		path:      filepath.Join(dir, "mount"),
		calls:     filepath.Join(dir, "calls"),
		argv:      filepath.Join(dir, "argv"),
		env:       filepath.Join(dir, "env"),
		stdin:     filepath.Join(dir, "stdin"),
		mountinfo: filepath.Join(dir, "mountinfo"),
	}
	if err := os.WriteFile(f.mountinfo, []byte(sampleMountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
echo call >>'%s'
: >'%s'
for a in "$@"; do printf '%%s\n' "$a" >>'%s'; done
printf 'LC_ALL=%%s\n' "${LC_ALL-unset}" >'%s'
readlink /proc/self/fd/0 >'%s'
mountinfo='%s'
eval "dir=\${$#} share=\${$(($# - 1))}"
%s
`, f.calls, f.argv, f.argv, f.env, f.stdin, f.mountinfo, action)
	if err := os.WriteFile(f.path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// succeed is a fake mount's action that mounts: it adds the share to the
// mountinfo file as the kernel would show it.
const succeed = `esc=$(printf '%s' "$dir" | sed 's/\\/\\134/g; s/ /\\040/g')
printf '40 21 0:50 / %s rw,relatime shared:30 - nfs4 %s rw,vers=4.1\n' "$esc" "$share" >>"$mountinfo"
exit 0`

func (f *fakeMount) callCount(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(f.calls)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

func (f *fakeMount) read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// newFakeMounter returns a Mounter for share that runs f and reads f's
// mountinfo, with its base in a directory whose name has a space (mountinfo
// escapes it), and the log it writes.
func newFakeMounter(t *testing.T, f *fakeMount, share, options string) (*Mounter, *testenv.SyncBuffer) {
	t.Helper()
	var logs testenv.SyncBuffer
	m, err := NewMounter(ShareConfig{
		Share:          share,
		MountOptions:   options,
		MountPointBase: filepath.Join(t.TempDir(), "kiln mnt"),
		MountBinary:    f.path,
		Timeout:        20 * time.Second,
	}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	m.mountinfo = f.mountinfo
	return m, &logs
}

func TestMounterEnsureMountsOnceAndChecks(t *testing.T) {
	t.Setenv("LC_ALL", "de_DE.UTF-8")
	f := newFakeMount(t, succeed)
	share := "10.0.2.100:/kiln-guest-share"
	m, logs := newFakeMounter(t, f, share, "vers=4.1,proto=tcp,port=2049")
	ctx := context.Background()

	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	wantArgv := "-t\nnfs\n-o\nvers=4.1,proto=tcp,port=2049\n" + share + "\n" + m.Dir() + "\n"
	if got := f.read(t, f.argv); got != wantArgv {
		t.Errorf("mount argv:\n%s\nwant:\n%s", got, wantArgv)
	}
	if got := f.read(t, f.env); got != "LC_ALL=C\n" {
		t.Errorf("mount's locale: %q", got)
	}
	if got := f.read(t, f.stdin); got != "/dev/null\n" {
		t.Errorf("mount's stdin is %q, want /dev/null", got)
	}
	st, err := os.Stat(m.Dir())
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o750 {
		t.Errorf("mount point: %v, %v", st, err)
	}
	if m.Dir() != MountPoint(filepath.Dir(m.Dir()), share) || !strings.Contains(m.Dir(), "kiln mnt/") {
		t.Errorf("Dir() = %q", m.Dir())
	}

	// Mounted now: later calls only read mountinfo.
	for range 3 {
		if err := m.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.callCount(t); n != 1 {
		t.Errorf("mount ran %d times, want once", n)
	}
	for _, want := range []string{"component=nfs-mount", "share=" + share, `mount_point="` + m.Dir() + `"`, `msg="mounted NFS share"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

func TestMounterEnsureWithoutOptionsPassesNoO(t *testing.T) {
	f := newFakeMount(t, succeed)
	m, _ := newFakeMounter(t, f, "nfs.example.com:/", "")
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := f.read(t, f.argv), "-t\nnfs\nnfs.example.com:/\n"+m.Dir()+"\n"; got != want {
		t.Errorf("mount argv:\n%s\nwant:\n%s", got, want)
	}
}

func TestMounterEnsureAlreadyMountedRunsNothing(t *testing.T) {
	for _, fstype := range []string{"nfs", "nfs4"} {
		t.Run(fstype, func(t *testing.T) {
			f := newFakeMount(t, "exit 99")
			share := "[fd00::5]:/export"
			m, _ := newFakeMounter(t, f, share, "vers=3")
			line := fmt.Sprintf("41 21 0:51 / %s rw shared:5 master:1 - %s %s rw,addr=fd00::5\n",
				mountinfoEscape(m.Dir()), fstype, share)
			appendFile(t, f.mountinfo, line)
			if err := m.Ensure(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := f.callCount(t); n != 0 {
				t.Errorf("mount ran %d times for a mounted share", n)
			}
			if _, err := os.Stat(filepath.Dir(m.Dir())); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the fast path created the base: %v", err)
			}
		})
	}
}

func TestMounterEnsureFindsMountUnderSymlinkedBase(t *testing.T) {
	f := newFakeMount(t, "exit 99")
	real := filepath.Join(t.TempDir(), "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	share := "10.0.0.5:/export"
	m, err := NewMounter(ShareConfig{Share: share, MountPointBase: link, MountBinary: f.path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.mountinfo = f.mountinfo
	appendFile(t, f.mountinfo, fmt.Sprintf("41 21 0:51 / %s rw - nfs4 %s rw\n", MountPoint(real, share), share))
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.callCount(t); n != 0 {
		t.Errorf("mount ran %d times", n)
	}
}

func TestMounterEnsureRefusesSomethingElseMounted(t *testing.T) {
	share := "10.0.0.5:/export"
	for _, tc := range []struct {
		name  string
		lines []string // %s is the mount point
		other string   // what the error must name
	}{
		{"tmpfs", []string{"41 21 0:51 / %s rw - tmpfs tmpfs rw"}, "tmpfs (type tmpfs)"},
		{"other share", []string{"41 21 0:51 / %s rw - nfs4 10.0.0.6:/export rw"}, "10.0.0.6:/export (type nfs4)"},
		{"same source, not nfs", []string{"41 21 0:51 / %s rw - fuse.sshfs 10.0.0.5:/export rw"}, "10.0.0.5:/export (type fuse.sshfs)"},
		{"tmpfs over the share", []string{
			"41 21 0:51 / %s rw - nfs4 10.0.0.5:/export rw",
			"42 41 0:52 / %s rw - tmpfs scratch rw",
		}, "scratch (type tmpfs)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeMount(t, succeed)
			m, _ := newFakeMounter(t, f, share, "")
			for _, l := range tc.lines {
				appendFile(t, f.mountinfo, fmt.Sprintf(l, mountinfoEscape(m.Dir()))+"\n")
			}
			err := m.Ensure(context.Background())
			if !errors.Is(err, ErrMountFailed) || !errors.Is(err, ErrMountPointInUse) {
				t.Fatalf("Ensure = %v, want ErrMountFailed and ErrMountPointInUse", err)
			}
			for _, want := range []string{share, m.Dir(), tc.other} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if n := f.callCount(t); n != 0 {
				t.Errorf("mount ran %d times over another mount", n)
			}
		})
	}

	// The share on top of something else is the share.
	f := newFakeMount(t, "exit 99")
	m, _ := newFakeMounter(t, f, share, "")
	appendFile(t, f.mountinfo, fmt.Sprintf("41 21 0:51 / %[1]s rw - tmpfs tmpfs rw\n42 41 0:52 / %[1]s rw - nfs %[2]s rw\n",
		mountinfoEscape(m.Dir()), share))
	if err := m.Ensure(context.Background()); err != nil {
		t.Errorf("share mounted over tmpfs: %v", err)
	}
}

func TestMounterEnsureMapsMountFailures(t *testing.T) {
	share := "10.0.2.100:/kiln-guest-share"
	for _, tc := range []struct {
		name   string
		code   int
		stderr string
		hint   string // "" = no hint
	}{
		{"access denied", 32, "mount.nfs: access denied by server while mounting " + share, "client list"},
		{"no export", 32, "mount.nfs: mounting " + share + " failed, reason given by server: No such file or directory", "does not exist"},
		{"refused", 32, "mount.nfs: Connection refused", "nothing listens"},
		{"timeout", 32, "mount.nfs: Connection timed out", "does not answer"},
		{"version", 32, "mount.nfs: Protocol not supported", "vers="},
		{"no mount.nfs", 32, "mount: /var/lib/kiln/mnt/x: bad option; for several filesystems (e.g. nfs, cifs) you might need a /sbin/mount.<type> helper program.", "install nfs-common"},
		{"no nfs in kernel", 32, "mount: /var/lib/kiln/mnt/x: unknown filesystem type 'nfs4'. No such device", "modprobe nfs"},
		{"no /etc/protocols", 32, "mount.nfs: Failed to find 'tcp' protocol", "/etc/protocols (netbase)"},
		{"not root", 1, "mount: only root can use \"--types\" option", "needs root"},
		{"unknown", 3, "mount.nfs: something new went wrong", ""},
		{"silent", 32, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := filepath.Join(t.TempDir(), "stderr")
			if err := os.WriteFile(msg, []byte(tc.stderr+"\n\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			f := newFakeMount(t, fmt.Sprintf("cat '%s' >&2\nexit %d", msg, tc.code))
			m, _ := newFakeMounter(t, f, share, "vers=4.1")
			err := m.Ensure(context.Background())
			if !errors.Is(err, ErrMountFailed) {
				t.Fatalf("Ensure = %v, want ErrMountFailed", err)
			}
			var me *MountError
			if !errors.As(err, &me) {
				t.Fatalf("Ensure = %T %v, want a *MountError", err, err)
			}
			if me.ExitCode != tc.code || me.Output != tc.stderr || me.Share != share || me.MountPoint != m.Dir() {
				t.Errorf("MountError = %+v", me)
			}
			if tc.hint == "" && me.Hint != "" || !strings.Contains(me.Hint, tc.hint) {
				t.Errorf("hint %q, want one with %q", me.Hint, tc.hint)
			}
			text := err.Error()
			for _, want := range []string{share, m.Dir(), fmt.Sprintf("exited %d", tc.code), tc.stderr, tc.hint} {
				if !strings.Contains(text, want) {
					t.Errorf("error %q lacks %q", text, want)
				}
			}
			if strings.Contains(text, "\n") {
				t.Errorf("error %q has a newline", text)
			}
			if n := f.callCount(t); n != 1 {
				t.Errorf("mount ran %d times", n)
			}
		})
	}
}

func TestMounterEnsureMountSucceedsButNothingMounted(t *testing.T) {
	f := newFakeMount(t, "exit 0")
	m, _ := newFakeMounter(t, f, "10.0.0.5:/export", "")
	err := m.Ensure(context.Background())
	if !errors.Is(err, ErrMountFailed) || !strings.Contains(err.Error(), "shows nothing mounted") ||
		!strings.Contains(err.Error(), m.Dir()) {
		t.Fatalf("Ensure = %v, want ErrMountFailed saying nothing is mounted on %s", err, m.Dir())
	}

	// A mount that puts something else there is no success either.
	f = newFakeMount(t, `printf '40 21 0:50 / %s rw - nfs4 10.0.0.9:/else rw\n' "$dir" >>"$mountinfo"; exit 0`)
	m, err = NewMounter(ShareConfig{Share: "10.0.0.5:/export", MountPointBase: t.TempDir(), MountBinary: f.path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.mountinfo = f.mountinfo
	if err := m.Ensure(context.Background()); !errors.Is(err, ErrMountPointInUse) || !strings.Contains(err.Error(), "10.0.0.9:/else") {
		t.Fatalf("Ensure = %v, want ErrMountPointInUse naming 10.0.0.9:/else", err)
	}
}

func TestMounterEnsureAcceptsMountByAnother(t *testing.T) {
	// The share appears while mount runs, which then fails: someone else
	// mounted it first.
	f := newFakeMount(t, strings.Replace(succeed, "exit 0", "echo 'mount.nfs: '$dir' is busy or already mounted' >&2; exit 32", 1))
	m, logs := newFakeMounter(t, f, "10.0.0.5:/export", "")
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure = %v, want nil: the share is mounted", err)
	}
	if !strings.Contains(logs.String(), "mounted by someone else") || !strings.Contains(logs.String(), "already mounted") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestMounterEnsureTimesOut(t *testing.T) {
	f := newFakeMount(t, "exec sleep 60")
	m, _ := newFakeMounter(t, f, "10.0.0.5:/export", "")
	m.timeout = 300 * time.Millisecond
	start := time.Now()
	err := m.Ensure(context.Background())
	var me *MountError
	if !errors.As(err, &me) || !errors.Is(err, ErrMountFailed) || me.ExitCode != -1 ||
		!strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Fatalf("Ensure = %v, want a MountError for a killed mount", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Ensure took %v with a 300ms timeout", d)
	}
}

func TestMounterEnsureStopsWhenCallerCancels(t *testing.T) {
	f := newFakeMount(t, "exec sleep 60")
	m, _ := newFakeMounter(t, f, "10.0.0.5:/export", "")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := m.Ensure(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrMountFailed) {
		t.Fatalf("Ensure = %v, want the context's error, not ErrMountFailed", err)
	}

	// A caller waiting for another's Ensure gives up with its context.
	m.sem <- struct{}{}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := m.Ensure(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ensure while another runs = %v, want context.DeadlineExceeded", err)
	}
	<-m.sem
}

func TestMounterEnsureBoundsOutput(t *testing.T) {
	f := newFakeMount(t, "head -c 1048576 /dev/zero | tr '\\0' x >&2\nexit 32")
	m, _ := newFakeMounter(t, f, "10.0.0.5:/export", "")
	err := m.Ensure(context.Background())
	var me *MountError
	if !errors.As(err, &me) {
		t.Fatalf("Ensure = %v", err)
	}
	if len(me.Output) > maxMountError+3 || !strings.HasSuffix(me.Output, "...") || len(err.Error()) > maxMountError+1024 {
		t.Errorf("output of %d bytes, error of %d bytes", len(me.Output), len(err.Error()))
	}
}

func TestMounterEnsureMissingMountProgram(t *testing.T) {
	m, err := NewMounter(ShareConfig{Share: "10.0.0.5:/export", MountPointBase: t.TempDir(),
		MountBinary: filepath.Join(t.TempDir(), "no-such-mount")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.mountinfo = newFakeMount(t, "").mountinfo
	err = m.Ensure(context.Background())
	var me *MountError
	if !errors.As(err, &me) || me.ExitCode != -1 || !strings.Contains(err.Error(), "no-such-mount") ||
		!strings.Contains(err.Error(), "nfs-common") {
		t.Fatalf("Ensure = %v", err)
	}
}

func TestMounterEnsureMountPointNotADirectory(t *testing.T) {
	f := newFakeMount(t, succeed)
	m, _ := newFakeMounter(t, f, "10.0.0.5:/export", "")
	if err := os.MkdirAll(filepath.Dir(m.Dir()), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.Dir(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := m.Ensure(context.Background())
	if !errors.Is(err, ErrMountFailed) || !strings.Contains(err.Error(), "create the mount point") {
		t.Fatalf("Ensure = %v", err)
	}
	if n := f.callCount(t); n != 0 {
		t.Errorf("mount ran %d times", n)
	}
}

func TestMounterEnsureSerializesConcurrentCalls(t *testing.T) {
	f := newFakeMount(t, "sleep 0.3\n"+succeed)
	m, _ := newFakeMounter(t, f, "10.0.0.5:/export", "vers=4.2")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.Ensure(context.Background())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Ensure %d: %v", i, err)
		}
	}
	if n := f.callCount(t); n != 1 {
		t.Errorf("mount ran %d times for 8 concurrent Ensure calls, want once", n)
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

#!/usr/bin/env bash
# Self-test of the guest harness: boots the guest a few times through
# run.sh and checks what comes back.
#   1. storage: LVM on /dev/vdb (thin pool, thin LV, thick LV, thick
#      snapshot, lvconvert --merge), dd write/read-back, then tgtd on
#      127.0.0.1:3260 exporting the thick LV, iscsiadm login and dd
#      write/read-back through the new /dev/sdX; plus a static Go test
#      binary (CGO_ENABLED=0 go test -c). Wants rc 0 and its output.
#   2. a run that exits 3 gives rc 3 (and its output is streamed).
#   3. a guest kernel panic is reported as a harness failure (rc 125).
#   4. a hung guest is killed at KILN_GUEST_TIMEOUT (rc 124).
# Ends with the line 'selftest: N passed, N failed'; exits 1 on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-guest-selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# check NAME WANT_RC WANT_STDOUT_LINE DIR [VAR=VALUE...]: runs run.sh on DIR
# (with the given environment), echoing its output, and checks the exit
# code and that its stdout holds the line WANT_STDOUT_LINE (when not empty).
check() {
	local name=$1 want=$2 line=$3 dir=$4 rc=0 t0=$SECONDS
	shift 4
	echo "=== selftest: $name"
	env "$@" bash "$here/run.sh" "$dir" | tee "$work/$name.out" || rc=$?
	local why=
	[ "$rc" -eq "$want" ] || why="exit code $rc, want $want"
	if [ -z "$why" ] && [ -n "$line" ] && ! grep -qxF -- "$line" "$work/$name.out"; then
		why="no line '$line' in its output"
	fi
	if [ -z "$why" ]; then
		echo "--- PASS: $name (rc $rc, $((SECONDS - t0)) s)"
		passed=$((passed + 1))
	else
		echo "--- FAIL: $name: $why"
		failed=$((failed + 1))
	fi
}

# 1. storage
mkdir -p "$work/storage" "$work/gotest"
cat >"$work/gotest/go.mod" <<'GO'
module guestselftest

go 1.21
GO
cat >"$work/gotest/guest_test.go" <<'GO'
package guestselftest

import (
	"os"
	"testing"
)

func TestInGuest(t *testing.T) {
	if os.Getenv("KILN_GUEST") != "1" {
		t.Fatal("KILN_GUEST not set")
	}
	if os.Getenv("LVM_SYSTEM_DIR") == "" {
		t.Fatal("LVM_SYSTEM_DIR not set")
	}
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		t.Fatal(err)
	}
}
GO
gobin=$(command -v go || echo /usr/local/go/bin/go)
(cd "$work/gotest" && GOWORK=off GOFLAGS='' GOTOOLCHAIN=local CGO_ENABLED=0 \
	"$gobin" test -c -o "$work/storage/guest.test" .)

cat >"$work/storage/run" <<'RUN'
set -eu
vg=kilnself
step() { echo "--- $*"; }
fail() { echo "SELFTEST FAILED: $*"; exit 1; }
t0=$(date +%s)

step "go test binary"
./guest.test -test.v

step "LVM on /dev/vdb"
pvcreate -q -y /dev/vdb
vgcreate -q $vg /dev/vdb
lvcreate -q -y --type thin-pool -L 256M -n pool $vg
lvcreate -q -y -V 1G --thin -n thin $vg/pool
lvcreate -q -y -L 128M -n thick $vg
head -c 4M /dev/urandom >/tmp/a
head -c 4M /dev/urandom >/tmp/b
head -c 4M /dev/urandom >/tmp/c

step "thin LV: write, read back"
dd if=/tmp/a of=/dev/$vg/thin bs=1M oflag=direct conv=fsync status=none
dd if=/dev/$vg/thin of=/tmp/got bs=1M count=4 iflag=direct status=none
cmp /tmp/a /tmp/got || fail "thin LV read-back differs"

step "thick LV + thick snapshot + merge"
dd if=/tmp/a of=/dev/$vg/thick bs=1M oflag=direct conv=fsync status=none
lvcreate -q -y -s -L 64M -n snap $vg/thick
dd if=/tmp/b of=/dev/$vg/thick bs=1M oflag=direct conv=fsync status=none
dd if=/dev/$vg/snap of=/tmp/got bs=1M count=4 iflag=direct status=none
cmp /tmp/a /tmp/got || fail "snapshot does not hold the old data"
lvconvert -q --merge $vg/snap
lvs --noheadings -o lv_name $vg | grep -qw snap && fail "snapshot still there after merge"
dd if=/dev/$vg/thick of=/tmp/got bs=1M count=4 iflag=direct status=none
cmp /tmp/a /tmp/got || fail "merge did not restore the old data"
lvs -a $vg

step "iSCSI: tgtd on 127.0.0.1:3260 exporting the thick LV"
iqn=iqn.2026-11.io.kiln:selftest
tgtd --iscsi portal=127.0.0.1:3260
i=0
until tgtadm --lld iscsi --mode sys --op show >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "tgtd did not start"; sleep 0.1
done
tgtadm --lld iscsi --mode target --op new --tid 1 --targetname $iqn
tgtadm --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 --backing-store /dev/$vg/thick
tgtadm --lld iscsi --mode target --op bind --tid 1 --initiator-address ALL
ss -ltn | grep -q '127.0.0.1:3260' || fail "tgtd is not listening on 127.0.0.1:3260"
ss -ltnH | awk '{print $4}' | grep -v '^127\.' | grep . && fail "something listens outside 127.0.0.0/8"

step "iSCSI: iscsid, discovery, login"
iscsid
iscsiadm -m discovery -t st -p 127.0.0.1
iscsiadm -m node -T $iqn -p 127.0.0.1 --login
dev=
i=0
while [ -z "$dev" ]; do
	dev=$(iscsiadm -m session -P 3 2>/dev/null | sed -n 's/.*Attached scsi disk \([a-z]*\).*/\1/p' | head -n 1)
	if [ -z "$dev" ] || [ ! -b "/dev/$dev" ]; then
		dev=
		i=$((i + 1)); [ $i -lt 150 ] || fail "no SCSI disk after login"; sleep 0.2
	fi
done
echo "logged in: /dev/$dev ($(cat /sys/block/$dev/size) sectors)"
[ "$(cat /sys/block/$dev/size)" -eq $((128 * 2048)) ] || fail "/dev/$dev has the wrong size"

step "iSCSI: write, read back (through iSCSI and through the LV)"
dd if=/dev/$dev of=/tmp/got bs=1M count=4 iflag=direct status=none
cmp /tmp/a /tmp/got || fail "iSCSI disk does not show the LV's data"
dd if=/tmp/c of=/dev/$dev bs=1M oflag=direct conv=fsync status=none
dd if=/dev/$dev of=/tmp/got bs=1M count=4 iflag=direct status=none
cmp /tmp/c /tmp/got || fail "iSCSI read-back differs"
dd if=/dev/$vg/thick of=/tmp/got bs=1M count=4 iflag=direct status=none
cmp /tmp/c /tmp/got || fail "LV does not show what was written through iSCSI"
iscsiadm -m node -T $iqn -p 127.0.0.1 --logout
tgtadm --lld iscsi --mode target --op delete --force --tid 1

step "nfs modules load"
modprobe nfs
modprobe nfsv4
command -v mount.nfs >/dev/null || fail "no mount.nfs"

echo "storage checks took $(( $(date +%s) - t0 )) s"
echo "SELFTEST OK"
RUN
check storage 0 "SELFTEST OK" "$work/storage"

# 2. a failing run's exit code comes back
mkdir -p "$work/exit3"
printf 'echo "about to exit 3"\necho "on stderr" >&2\nexit 3\n' >"$work/exit3/run"
check exit3 3 "about to exit 3" "$work/exit3"

# 3. a guest kernel panic is a harness failure, not a result
mkdir -p "$work/panic"
printf 'echo "panicking"\necho c >/proc/sysrq-trigger\nsleep 60\n' >"$work/panic/run"
check panic 125 "" "$work/panic"

# 4. a hung guest is killed at the timeout
mkdir -p "$work/hang"
printf 'echo "hanging"\nsleep 600\n' >"$work/hang/run"
check hang 124 "" "$work/hang" KILN_GUEST_TIMEOUT=30

echo "selftest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

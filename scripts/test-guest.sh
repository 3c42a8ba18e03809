#!/usr/bin/env bash
# Runs the tests that need a kernel with device-mapper, an iSCSI initiator
# or an NFS client inside a qemu guest with Debian's kernel (scripts/guest/),
# in one boot: the LVM driver's TestDM*/TestEndToEnd (thin pools,
# snapshots, data copies, merges, a real LV exported through tgtd and
# logged in to with open-iscsi) and the NFS driver's TestGuest* (the
# Mounter mounting a remote share with the kernel's NFS client). Part of
# `make test`; the guest image is built once and cached
# (scripts/guest/README.md).
#
# The share is served by a real nfs-ganesha on the host, NFSv4 on
# 127.0.0.1 only (scripts/ganesha.sh), exported to 127.0.0.1 without root
# squash. The guest reaches it as 10.0.2.100:2049 through qemu user
# networking: a guestfwd runs `nc 127.0.0.1 PORT` per connection, so what
# ganesha sees comes from 127.0.0.1. The host puts a file in the share for
# the guest to read, and checks the file the guest writes after it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
dir=$(mktemp -d /tmp/kiln-guest-tests.XXXXXX)
nfsdir=$(mktemp -d /tmp/kiln-guest-nfs.XXXXXX)
cleanup() {
	local rc=$?
	if [ "$rc" -ne 0 ] && [ -s "$nfsdir/ganesha/ganesha.log" ]; then
		echo "test-guest.sh: failed ($rc); ganesha's log ends:" >&2
		tail -n 20 "$nfsdir/ganesha/ganesha.log" >&2
	fi
	bash scripts/ganesha.sh stop "$nfsdir/ganesha" || true
	rm -rf "$dir" "$nfsdir"
}
trap cleanup EXIT

# The guestfwd's per-connection forwarder (the NFS client reconnects).
if ! command -v nc >/dev/null 2>&1; then
	[ "$(id -u)" -eq 0 ] || { echo "test-guest.sh: need root to install netcat-openbsd" >&2; exit 1; }
	apt-get -o DPkg::Lock::Timeout=300 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends netcat-openbsd >/dev/null
fi

# Static test binaries: the guest has no Go toolchain and no host libraries.
CGO_ENABLED=0 go test -c -o "$dir/lvm.test" ./lvm
CGO_ENABLED=0 go test -c -o "$dir/nfs.test" ./nfs

# ganesha on a free loopback port (ganesha.sh refuses 2049 and anything
# outside 127/8, and checks it listens on exactly this address).
port=""
for p in $(seq 38049 38099); do
	if [ -z "$(ss -Hltn "sport = :$p")" ]; then
		port=$p
		break
	fi
done
[ -n "$port" ] || { echo "test-guest.sh: no free port in 38049-38099 for ganesha" >&2; exit 1; }
bus=$(bash scripts/ganesha.sh start "$nfsdir/ganesha" "127.0.0.1:$port")
mkdir "$nfsdir/export"
cat >"$nfsdir/export.conf" <<EOF
EXPORT {
	Export_Id = 1;
	Path = "$nfsdir/export";
	Pseudo = "/kiln-guest-share";
	Access_Type = None;
	Squash = No_Root_Squash;
	Protocols = 4;
	Transports = TCP;
	SecType = sys;
	FSAL {
		Name = VFS;
	}
	CLIENT {
		Clients = 127.0.0.1;
		Access_Type = RW;
		Protocols = 4;
	}
}
EOF
reply=$(dbus-send --bus="$bus" --print-reply --dest=org.ganesha.nfsd /org/ganesha/nfsd/ExportMgr \
	org.ganesha.nfsd.exportmgr.AddExport string:"$nfsdir/export.conf" string:'EXPORT(Export_Id=1)')
case $reply in
*"1 exports added"*) ;;
*) echo "test-guest.sh: ganesha did not add the export: $reply (log: $nfsdir/ganesha/ganesha.log)" >&2; exit 1 ;;
esac
# Random data, sizes not a multiple of a page: one file for the guest to
# read, one (shipped with the test binaries) for it to write to the share.
head -c $((8 * 1024 * 1024 + 4321)) /dev/urandom >"$nfsdir/export/host-data.bin"
head -c $((5 * 1024 * 1024 + 12345)) /dev/urandom >"$dir/guest-data.bin"
cat >"$dir/nfs.env" <<EOF
export KILN_TEST_NFS_SHARE=10.0.2.100:/kiln-guest-share
export KILN_TEST_NFS_OPTIONS=vers=4.1,proto=tcp,port=2049
export KILN_TEST_NFS_READ_FILE=host-data.bin
export KILN_TEST_NFS_READ_SHA256=$(sha256sum "$nfsdir/export/host-data.bin" | cut -d' ' -f1)
export KILN_TEST_NFS_WRITE_FILE=guest-data.bin
export KILN_TEST_NFS_WRITE_SOURCE=/tests/guest-data.bin
EOF

cat >"$dir/run" <<'RUN'
set -u
export KILN_GUEST=1
rc=0
# Every case that needs device-mapper, plus the end-to-end API test, which
# exports a real LV through tgtd and logs in with open-iscsi here. The
# data disk is the tests' PV (lvmtest, one VG at a time): no loop device
# and no file system in between.
KILN_TEST_PV="$KILN_GUEST_DATA_DEV" ./lvm.test -test.v -test.timeout 20m -test.run 'TestDM|TestEndToEnd' || rc=1
# The Mounter against the share the host serves through the guestfwd
# (nfs.env). Runs even if the LVM tests failed: a boot is expensive.
# mount.nfs resolves proto=tcp through /etc/netconfig and /etc/protocols;
# the minbase image lacks the latter (netbase, present on any real host).
[ -e /etc/protocols ] || printf 'ip\t0\tIP\ntcp\t6\tTCP\nudp\t17\tUDP\n' >/etc/protocols
(. ./nfs.env && exec ./nfs.test -test.v -test.timeout 10m -test.run '^TestGuest') || rc=1
exit $rc
RUN
start=$(date +%s)
KILN_GUEST_DATA_GB=${KILN_GUEST_DATA_GB:-16} KILN_GUEST_NET=1 \
	KILN_GUEST_NETDEV_EXTRA="guestfwd=tcp:10.0.2.100:2049-cmd:nc 127.0.0.1 $port" \
	bash scripts/guest/run.sh "$dir"
echo "== guest tests passed in $(( $(date +%s) - start ))s (boot included)"

# What the guest wrote reached the server intact, as root (no squash).
written=$nfsdir/export/guest-data.bin
if ! cmp "$written" "$dir/guest-data.bin"; then
	echo "test-guest.sh: $written on the host differs from what the guest wrote" >&2
	exit 1
fi
owner=$(stat -c %u:%g "$written")
[ "$owner" = 0:0 ] || { echo "test-guest.sh: $written is owned by $owner, want 0:0 (root, no squash)" >&2; exit 1; }
echo "== host: $(stat -c %s "$written") bytes the guest wrote over NFS match"

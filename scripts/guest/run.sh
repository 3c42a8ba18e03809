#!/usr/bin/env bash
# Usage: bash scripts/guest/run.sh DIR
#
# Boots a Debian bookworm guest (Debian's cloud kernel: device-mapper,
# dm-thin, dm-snapshot, iSCSI initiator, NFS client) under qemu/TCG, makes
# DIR's contents available as /tests, runs `sh /tests/run` there as root
# (cwd /tests), streams what it writes (stdout+stderr) to this script's
# stdout and exits with its exit code. Harness messages go to stderr. If the
# guest panics, hangs or ends without a result, exits non-zero (124 on
# timeout, 125 otherwise) and prints the tail of the guest's console log.
# See scripts/guest/README.md for the environment `run` gets and the knobs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { echo "kiln-guest: $*" >&2; }
die() {
	say "$*"
	exit 125
}

[ $# -eq 1 ] || die "usage: $0 DIR   (DIR holds executables and a sh script 'run')"
dir=$1
[ -d "$dir" ] || die "$dir: not a directory"
[ -f "$dir/run" ] || die "$dir/run: no such file"

timeout_s=${KILN_GUEST_TIMEOUT:-900}
mem=${KILN_GUEST_MEM:-1024}
data_gb=${KILN_GUEST_DATA_GB:-4}
cpus=${KILN_GUEST_CPUS:-2}
net=${KILN_GUEST_NET:-0}
netdev_extra=${KILN_GUEST_NETDEV_EXTRA:-}
for v in timeout_s mem data_gb cpus; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive integer"
done

# User networking may only ever touch the loopback range on the host:
# every hostfwd must bind a 127.x address and every guestfwd must connect
# to one (a cmd: forward only as "nc 127.x.x.x PORT").
if [ "$net" = 1 ] && [ -n "$netdev_extra" ]; then
	IFS=, read -ra opts <<<"$netdev_extra"
	ip4='[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' lo4='127\.[0-9]+\.[0-9]+\.[0-9]+' port='[0-9]+'
	for o in "${opts[@]}"; do
		[[ $o =~ ^hostfwd=(tcp|udp):$lo4:$port-($ip4)?:$port$ ]] && continue
		[[ $o =~ ^guestfwd=tcp:$ip4:$port-tcp:$lo4:$port$ ]] && continue
		[[ $o =~ ^guestfwd=tcp:$ip4:$port-cmd:nc\ $lo4\ $port$ ]] && continue
		die "KILN_GUEST_NETDEV_EXTRA: '$o' not allowed; only hostfwd=tcp:127.x.x.x:HOSTPORT-:GUESTPORT, guestfwd=tcp:10.0.2.x:PORT-tcp:127.x.x.x:PORT and guestfwd=tcp:10.0.2.x:PORT-cmd:nc 127.x.x.x PORT"
	done
fi

image=$(bash "$here/build.sh")
[ -f "$image/ok" ] || die "build.sh returned no image"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-guest.XXXXXX")
qpid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# DIR as a plain tar on a disk of its own (the guest extracts /dev/vdc).
tar -cf "$work/tests.tar" --owner=0 --group=0 -C "$dir" .
truncate -s "${data_gb}G" "$work/data.img"

append="console=ttyS0 root=/dev/vda rw panic=-1 loglevel=5"
netargs=(-nic none)
if [ "$net" = 1 ]; then
	append+=" kiln.net=1"
	# shellcheck disable=SC2054 # the commas are qemu's
	netargs=(-netdev "user,id=n0,restrict=on,ipv6=off${netdev_extra:+,$netdev_extra}"
		-device virtio-net-pci,netdev=n0,romfile=)
fi
if [[ ${CI:-} =~ ^[A-Za-z0-9_.-]+$ ]]; then
	append+=" kiln.ci=$CI"
fi

# Serial ports: ttyS0 = kernel console (log file), ttyS1 = the run script's
# output (qemu's stdout = ours), ttyS2 = the result line (file).
# The root disk is copy-on-write (snapshot=on): the cached image is never
# written. isa-debug-exit makes qemu exit with (value<<1)|1.
start=$SECONDS
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
	-nodefaults -display none -no-user-config -no-reboot \
	-machine pc,accel=tcg -cpu max -smp "$cpus" -m "$mem" \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$append" \
	-drive "if=none,id=root,file=$image/root.img,format=raw,snapshot=on,cache=unsafe" \
	-device virtio-blk-pci,drive=root,serial=kiln-root \
	-drive "if=none,id=data,file=$work/data.img,format=raw,cache=unsafe" \
	-device virtio-blk-pci,drive=data,serial=kiln-data \
	-drive "if=none,id=tests,file=$work/tests.tar,format=raw,readonly=on" \
	-device virtio-blk-pci,drive=tests,serial=kiln-tests \
	-serial "file:$work/console.log" -serial stdio -serial "file:$work/result" \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	"${netargs[@]}" </dev/null &
qpid=$!
wait "$qpid"
qrc=$?
qpid=
set -e
elapsed=$((SECONDS - start))

console_tail() {
	say "---- guest console (last 60 lines) ----"
	tail -n 60 "$work/console.log" >&2 || true
	say "---- end of guest console ----"
}
if [ -n "${KILN_GUEST_CONSOLE:-}" ]; then
	cp "$work/console.log" "$KILN_GUEST_CONSOLE" || say "cannot copy the console log to $KILN_GUEST_CONSOLE"
fi

result=$(tr -d '\r' <"$work/result" 2>/dev/null | grep -a -m1 -E '^KILN-(RESULT|ERROR)' || true)
case $result in
"KILN-RESULT rc="*)
	rc=${result#KILN-RESULT rc=}
	[[ $rc =~ ^[0-9]+$ ]] || die "garbled result line: $result"
	if [ $((qrc & 1)) -ne 1 ] || [ $((qrc >> 1)) -ne $((rc & 127)) ]; then
		say "note: qemu exited $qrc (isa-debug-exit not used?); the result line says rc=$rc"
	fi
	say "guest run exited $rc after ${elapsed} s"
	exit "$rc"
	;;
"KILN-ERROR "*)
	console_tail
	die "guest setup failed: ${result#KILN-ERROR }"
	;;
esac
console_tail
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
	say "guest timed out after ${timeout_s} s (KILN_GUEST_TIMEOUT); qemu killed"
	exit 124
fi
die "guest ended without a result (qemu exit status $qrc after ${elapsed} s): kernel panic, power-off or crash; see the console above"

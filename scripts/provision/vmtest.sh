#!/usr/bin/env bash
# Usage: sudo scripts/provision/vmtest.sh
#
# Runs the provisioning scripts for real, without Vagrant: boots two Debian
# 12 VMs under qemu, linked only to each other (a qemu socket network over
# 127.0.0.1; no other network), and runs in them exactly what the
# Vagrantfile runs:
#
#   ctl1  (192.168.56.11)  common.sh + coordinator.sh (bootstrap_expect 1),
#                          then compute.sh and smoke.sh on the same VM
#   stor1 (192.168.56.21)  common.sh + storage.sh ... auto, on a 20 GB
#                          virtio disk with serial kiln-lvm
#
# It checks that a second run of each script changes and restarts nothing,
# that tgtd listens on 192.168.56.21:3260 only, that storage.sh refuses a
# disk holding a file system, and that smoke.sh passes (volume on the LVM
# thin pool, attachment, iSCSI login with CHAP, 1 MiB written and read back,
# cleanup). Exits 0 when all of that held.
#
# Needs root, bin/kiln (make build) and Debian's package mirror for the
# first run: the guest image (debootstrap bookworm with every package the
# scripts install, so the guests need no network; apt-get is therefore not
# exercised) is cached in $KILN_VMTEST_CACHE (default /var/cache/kiln/vmtest).
# Takes about 5 minutes under TCG once the image is cached (building it: a
# few more). Knobs: KILN_VMTEST_ACCEL (tcg, or kvm where nested KVM works),
# KILN_VMTEST_TIMEOUT (seconds, default 1800), KILN_VMTEST_KEEP=1 keeps the
# work directory (console logs, disks).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -eq 0 ] || usage
need_root
repo=$(cd "$here/../.." && pwd)
[ -f "$repo/bin/kiln" ] || die "$repo/bin/kiln is missing: run 'make build' first"
cache=${KILN_VMTEST_CACHE:-/var/cache/kiln/vmtest}
accel=${KILN_VMTEST_ACCEL:-tcg}
case $accel in tcg) cpu=max ;; kvm) cpu=host ;; *) die "KILN_VMTEST_ACCEL must be tcg or kvm" ;; esac
timeout_s=${KILN_VMTEST_TIMEOUT:-1800}
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "KILN_VMTEST_TIMEOUT must be a number of seconds"
mirror=${KILN_VMTEST_MIRROR:-http://deb.debian.org/debian}
ctl_ip=192.168.56.11
stor_ip=192.168.56.21

apt_ensure qemu-system-x86 qemu-utils debootstrap e2fsprogs python3

# ------------------------------------------------------------ guest image

# What common.sh, storage.sh and compute.sh install, plus what the harness
# and a systemd boot need. debootstrap does not resolve virtual packages:
# python3-cffi-backend provides python3-cryptography's cffi API.
packages=systemd,systemd-sysv,udev,dbus,kmod,iproute2,hostname,passwd,procps,util-linux,e2fsprogs
packages+=,linux-image-cloud-amd64,initramfs-tools,ca-certificates,curl
packages+=,lvm2,thin-provisioning-tools,tgt,open-iscsi,python3-cffi-backend,python3-cinderclient

# The guest-side harness: a static address from kiln.ip= on the kernel
# command line (the test network has no DHCP), and a runner that executes
# /vmtest/run-<hostname>.sh at boot with its output on the second serial
# port, then powers off.
# shellcheck disable=SC2016 # expanded in the guest
guest_net='#!/bin/sh
for w in $(cat /proc/cmdline); do
	case $w in kiln.ip=*) addr=${w#kiln.ip=} ;; esac
done
ip link set lo up
for i in $(seq 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
ip link set eth0 up
ip addr add "$addr/24" dev eth0'
guest_net_unit='[Unit]
Description=kiln vmtest: static test network address
After=systemd-udev-trigger.service
Before=network.target network-online.target
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kiln-vmtest-net

[Install]
WantedBy=network-online.target multi-user.target'
# shellcheck disable=SC2016 # expanded in the guest
guest_run='#!/bin/bash
h=$(hostname)
exec >/dev/ttyS1 2>&1
bash "/vmtest/run-$h.sh"
echo "KILN-VMTEST-RC=$?"
sync
systemctl poweroff'
guest_run_unit='[Unit]
Description=kiln vmtest: run the test script
After=network-online.target kiln-vmtest-net.service
Wants=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/kiln-vmtest-run

[Install]
WantedBy=multi-user.target'

key=$(printf '%s\n' "$packages" "$mirror" "$guest_net" "$guest_net_unit" "$guest_run" "$guest_run_unit" |
	sha256sum | cut -c1-16)
image=$cache/$key

# umount_under DIR: lazily unmounts whatever debootstrap left mounted there.
umount_under() {
	awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

build_image() {
	local tmp root
	mkdir -p "$cache/debs"
	tmp=$(mktemp -d "$cache/.build.XXXXXX")
	root=$tmp/root
	say "building the guest image in $tmp (debootstrap bookworm; log $tmp/debootstrap.log)"
	if ! debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$packages" \
		bookworm "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
		umount_under "$tmp"
		tail -n 20 "$tmp/debootstrap.log" >&2
		die "debootstrap failed (log kept in $tmp)"
	fi
	umount_under "$tmp"
	printf '%s\n' "$guest_net" >"$root/usr/local/sbin/kiln-vmtest-net"
	printf '%s\n' "$guest_run" >"$root/usr/local/sbin/kiln-vmtest-run"
	chmod 0755 "$root/usr/local/sbin/kiln-vmtest-net" "$root/usr/local/sbin/kiln-vmtest-run"
	printf '%s\n' "$guest_net_unit" >"$root/etc/systemd/system/kiln-vmtest-net.service"
	printf '%s\n' "$guest_run_unit" >"$root/etc/systemd/system/kiln-vmtest-run.service"
	mkdir -p "$root/etc/systemd/system/network-online.target.wants" "$root/etc/systemd/system/multi-user.target.wants"
	ln -sf /etc/systemd/system/kiln-vmtest-net.service "$root/etc/systemd/system/network-online.target.wants/"
	ln -sf /etc/systemd/system/kiln-vmtest-net.service "$root/etc/systemd/system/multi-user.target.wants/"
	ln -sf /etc/systemd/system/kiln-vmtest-run.service "$root/etc/systemd/system/multi-user.target.wants/"
	echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
	: >"$root/etc/machine-id" # a new one per boot
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/*
	cp "$root"/boot/vmlinuz-* "$tmp/vmlinuz"
	cp "$root"/boot/initrd.img-* "$tmp/initrd.img"
	rm -rf "$image"
	mv "$tmp" "$image"
}
[ -f "$image/vmlinuz" ] || build_image

# ------------------------------------------------------------ the run

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-vmtest.XXXXXX")
pids=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ "${KILN_VMTEST_KEEP:-0}" = 1 ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# The test scripts the guests run (from /vmtest).
mkdir -p "$work/vmtest"
cat >"$work/vmtest/run-ctl1.sh" <<EOF
set -euo pipefail
# Tell stor1 that we are done, however this ends.
trap 'rc=\$?; echo "rc=\$rc" >/dev/tcp/$stor_ip/9999 || true' EXIT
P=/vagrant/scripts/provision
echo "== common.sh + coordinator.sh"
bash \$P/common.sh
bash \$P/coordinator.sh ctl1 $ctl_ip
pid=\$(systemctl show -p MainPID --value kiln-coordinator)
echo "== rerun: must change and restart nothing"
out=\$( { bash \$P/common.sh; bash \$P/coordinator.sh ctl1 $ctl_ip; } 2>&1)
echo "\$out"
if grep -E 'wrote|installed|restarting' <<<"\$out"; then echo "FAIL: the rerun changed something"; exit 1; fi
[ "\$(systemctl show -p MainPID --value kiln-coordinator)" = "\$pid" ] || { echo "FAIL: the coordinator restarted"; exit 1; }
stat -c '%a %U:%G %n' /etc/kiln /etc/kiln/kiln.toml /var/lib/kiln/coordinator
echo "== compute.sh"
bash \$P/compute.sh cmp1 $ctl_ip $ctl_ip 2>&1 | head -n 6
. /etc/kiln/openrc
echo "== waiting for stor1's pool"
for i in \$(seq 900); do
	cinder get-pools 2>/dev/null | grep -q 'stor1@lvm#lvm-thin' && break
	sleep 1
done
cinder get-pools --detail
cinder service-list
echo "== smoke.sh"
bash \$P/smoke.sh
EOF
cat >"$work/vmtest/run-stor1.sh" <<EOF
set -euo pipefail
P=/vagrant/scripts/provision
portals() { tgtadm --lld iscsi --mode portal --op show | sed -n 's/^Portal: \(.*\),[0-9]*\$/\1/p' | sort | paste -sd' ' -; }
echo "== before: tgtd portals \$(portals)"
lsblk
echo "== common.sh + storage.sh"
bash \$P/common.sh
bash \$P/storage.sh stor1 $stor_ip auto $ctl_ip
pids="\$(systemctl show -p MainPID --value tgt) \$(systemctl show -p MainPID --value kiln-agent)"
echo "== rerun: must change and restart nothing"
out=\$( { bash \$P/common.sh; bash \$P/storage.sh stor1 $stor_ip auto $ctl_ip; bash \$P/storage.sh stor1 $stor_ip /dev/vdb $ctl_ip; } 2>&1)
echo "\$out"
if grep -E 'wrote|installed|restarting|initialising|creating' <<<"\$out"; then echo "FAIL: the rerun changed something"; exit 1; fi
[ "\$(systemctl show -p MainPID --value tgt) \$(systemctl show -p MainPID --value kiln-agent)" = "\$pids" ] || { echo "FAIL: tgt or the agent restarted"; exit 1; }
[ "\$(portals)" = "$stor_ip:3260" ] || { echo "FAIL: tgtd portals: \$(portals)"; exit 1; }
echo "tgtd portals: \$(portals)"
echo "== a disk with a file system is refused"
truncate -s 64M /tmp/fs.img
mkfs.ext4 -q /tmp/fs.img
l=\$(losetup -f --show /tmp/fs.img)
if KILN_VG=other bash \$P/storage.sh stor1 $stor_ip "\$l" $ctl_ip; then echo "FAIL: accepted \$l"; exit 1; fi
losetup -d "\$l"
wipefs "\$(readlink -f /dev/disk/by-id/virtio-kiln-lvm)" || echo "(wipefs cannot list the PV in use)"
echo "== waiting for ctl1"
python3 - <<'PY'
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("$stor_ip", 9999))
s.listen(1)
s.settimeout($timeout_s)
c, _ = s.accept()
print("ctl1 says:", c.recv(100).decode().strip())
PY
lvs kiln
tgtadm --lld iscsi --mode target --op show
journalctl -u kiln-agent --no-pager | grep -vi chap | tail -n 20
EOF

# The VMs' root file system: the cached system plus /vagrant (the scripts
# and bin/kiln, as the Vagrant synced folder has them) and /vmtest. One image,
# a copy-on-write overlay per VM.
say "preparing the root file system"
cp -a "$image/root" "$work/root"
mkdir -p "$work/root/vagrant/bin" "$work/root/vagrant/scripts"
cp -a "$here" "$work/root/vagrant/scripts/provision"
cp "$repo/bin/kiln" "$work/root/vagrant/bin/kiln"
cp -a "$work/vmtest" "$work/root/vmtest"
truncate -s 3G "$work/root.img"
mkfs.ext4 -q -F -d "$work/root" "$work/root.img"
rm -rf "$work/root"
for vm in ctl1 stor1; do
	qemu-img create -q -f qcow2 -b "$work/root.img" -F raw "$work/$vm.qcow2"
done
truncate -s 20G "$work/stor1-lvm.img"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
boot() {
	local vm=$1 ip=$2 mac=$3 net=$4
	shift 4
	qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp 1 -m 1536 \
		-nodefaults -no-user-config -display none -no-reboot \
		-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
		-append "console=ttyS0 root=/dev/vda rw net.ifnames=0 systemd.hostname=$vm kiln.ip=$ip" \
		-drive "if=none,id=root,file=$work/$vm.qcow2,format=qcow2" -device virtio-blk-pci,drive=root \
		"$@" \
		-netdev "socket,id=n0,$net" -device "virtio-net-pci,netdev=n0,mac=$mac" \
		-serial "file:$work/$vm.console" -serial "file:$work/$vm.out" \
		</dev/null >"$work/$vm.qemu" 2>&1 &
	pids+=($!)
}
say "booting ctl1 and stor1 ($accel; socket network on 127.0.0.1:$port; logs in $work)"
boot ctl1 "$ctl_ip" 52:54:00:00:56:11 "listen=127.0.0.1:$port"
ctl_pid=${pids[0]}
sleep 2
boot stor1 "$stor_ip" 52:54:00:00:56:21 "connect=127.0.0.1:$port" \
	-drive "if=none,id=lvm,file=$work/stor1-lvm.img,format=raw" \
	-device virtio-blk-pci,drive=lvm,serial=kiln-lvm
stor_pid=${pids[1]}

# ctl1 powers off when its script ends; stor1 a little later, once ctl1
# told it so (or it is stopped).
start=$SECONDS
while kill -0 "$ctl_pid" 2>/dev/null; do
	[ $((SECONDS - start)) -lt "$timeout_s" ] || break
	sleep 5
done
for _ in $(seq 60); do
	kill -0 "$stor_pid" 2>/dev/null || break
	sleep 2
done

rc=0
for vm in stor1 ctl1; do
	echo "---------------------------------------------------------------- $vm" >&2
	tr -d '\r' <"$work/$vm.out" >&2 || true
	got=$(tr -d '\r' <"$work/$vm.out" 2>/dev/null | sed -n 's/^KILN-VMTEST-RC=//p' | tail -n 1)
	if [ "$got" != 0 ]; then
		say "$vm: ${got:+exit $got}${got:-no result (timeout or crash)}; console tail:"
		tail -n 30 "$work/$vm.console" >&2 || true
		rc=1
	fi
done
if [ "$rc" = 0 ] && tr -d '\r' <"$work/ctl1.out" | grep -qx 'smoke.sh: PASS'; then
	say "PASS: provisioning, idempotent reruns, tgtd portal, disk refusal and the iSCSI smoke test (in $((SECONDS - start)) s)"
else
	say "FAIL"
	exit 1
fi

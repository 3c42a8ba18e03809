#!/usr/bin/env bash
# Usage: sudo scripts/provision/storage.sh NAME IP DISK JOIN...
#
# Makes this host a Kiln storage host with an LVM thin pool exported over
# iSCSI (docs/backends/lvm.md): installs lvm2, thin-provisioning-tools and
# tgt; puts DISK into the volume group `kiln`; makes tgtd listen on IP:3260
# only; writes /etc/kiln/kiln.toml with an [agent] section, [agent.iscsi]
# and one pool "lvm-thin"; enables and starts kiln-agent.service.
#
#   NAME   unique agent name (the host part of pool names NAME@lvm#lvm-thin)
#   IP     this host's address on the cluster network (must be configured)
#   DISK   an unused block device for the volume group, e.g. /dev/sdb,
#          /dev/vdb, /dev/disk/by-id/...; or "auto": the disk whose serial
#          contains kiln-lvm, else the disk already in the volume group, else
#          the only whole disk without partitions or signatures
#   JOIN   coordinator Serf addresses, IP or IP:PORT (port 8779)
#
# DISK is only ever initialised when it is empty (wipefs and blkid find no
# signature): a disk holding a file system, a partition table, RAID or any
# other signature, or a PV of another volume group, is refused. A disk that
# is already a PV of `kiln` is used as it is.
#
# Environment: KILN_VG (volume group, default kiln), KILN_ZONE (default nova),
# KILN_LOG_LEVEL (default info).
#
# Run scripts/provision/common.sh first. Idempotent: tgtd and the agent are
# restarted only when their configuration changes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -ge 4 ] || usage
name=$1
ip=$2
disk=$3
shift 3
need_root
valid_name "$name" NAME
valid_ipv4 "$ip" IP
vg=${KILN_VG:-kiln}
valid_name "$vg" KILN_VG
zone=${KILN_ZONE:-nova}
valid_name "$zone" KILN_ZONE
log_level=${KILN_LOG_LEVEL:-info}
case $log_level in debug | info | warn | error) ;; *) die "KILN_LOG_LEVEL must be debug, info, warn or error" ;; esac
join=()
for j in "$@"; do
	join+=("$(with_port "$j" "$KILN_SERF_PORT")")
done
portal="$ip:$KILN_ISCSI_PORT"
require_common
if systemctl is-enabled --quiet kiln-coordinator.service 2>/dev/null; then
	die "kiln-coordinator is enabled on this host: this layout runs coordinators and agents on separate hosts"
fi
has_local_ipv4 "$ip" || die "IP $ip is not configured on this host (ip -4 addr)"

# ---------------------------------------------------------------- tgtd

# Written before tgt is installed, so that its first start already binds
# only the portal. A tgtd that cannot bind its portal silently listens on
# 0.0.0.0:3260 instead (the agent then refuses to export), so the unit waits
# for the address first.
put_file "$KILN_LIBEXEC/wait-for-address" 0755 root:root <<'EOF'
#!/bin/sh
# Usage: wait-for-address IP [SECONDS]: waits until IP is configured on an
# interface (for tgt.service, see /etc/systemd/system/tgt.service.d/).
# Installed by kiln scripts/provision/storage.sh.
ip=$1
n=${2:-60}
while [ "$n" -gt 0 ]; do
	if ip -4 -o addr show | awk '{print $4}' | cut -d/ -f1 | grep -qxF "$ip"; then
		exit 0
	fi
	n=$((n - 1))
	sleep 1
done
echo "wait-for-address: $ip is not configured on any interface" >&2
exit 1
EOF
# Debian's tgt.service runs `ExecStart=/usr/sbin/tgtd -f` (Type=notify);
# the empty ExecStart= clears it before the replacement.
put_file /etc/systemd/system/tgt.service.d/kiln-portal.conf 0644 root:root <<EOF
# Written by kiln scripts/provision/storage.sh: tgtd listens on the storage
# network address only ([agent.iscsi] portals in /etc/kiln/kiln.toml).
[Unit]
After=network-online.target
Wants=network-online.target

[Service]
ExecStartPre=$KILN_LIBEXEC/wait-for-address $ip 120
ExecStart=
ExecStart=/usr/sbin/tgtd -f --iscsi portal=$portal
RestartSec=5s
EOF
tgt_dropin_changed=$CHANGED

apt_ensure lvm2 thin-provisioning-tools tgt
# lvm warns about every inherited descriptor (a provisioner's, say).
export LVM_SUPPRESS_FD_WARNINGS=1

# tgt_portals: the portals tgtd listens on, "ip:port" space-separated.
tgt_portals() {
	tgtadm --lld iscsi --mode portal --op show 2>/dev/null |
		sed -n 's/^Portal: \(.*\),[0-9]*$/\1/p' | sort -u | paste -sd' ' -
}
if [ "$tgt_dropin_changed" = 1 ]; then
	systemctl daemon-reload
fi
systemctl enable --quiet tgt.service
if [ "$(tgt_portals)" != "$portal" ]; then
	say "restarting tgt to listen on $portal only (now: $(tgt_portals || true))"
	systemctl restart tgt.service
	got=$(tgt_portals || true)
	[ "$got" = "$portal" ] || die "tgtd listens on '${got:-nothing}', not $portal (journalctl -u tgt)"
fi

# ---------------------------------------------------------------- LVM

# sigs DEV: the signatures on DEV (file systems, partition tables, RAID,
# LVM...), as found by wipefs (listing only, nothing is erased) and blkid's
# low-level probe, space-separated, sorted, unique. Fails when DEV cannot be
# read or probed: an unreadable disk is never taken for an empty one.
sigs() {
	local w b
	dd if="$1" of=/dev/null bs=4096 count=1 status=none 2>/dev/null || return 1
	w=$(wipefs --noheadings --output TYPE "$1" 2>/dev/null) || return 1
	b=$(
		blkid -p -o value -s TYPE "$1" 2>/dev/null || true
		blkid -p -o value -s PTTYPE "$1" 2>/dev/null || true
	)
	printf '%s\n%s\n' "$w" "$b" | awk 'NF' | sort -u | paste -sd' ' -
}

# pv_vg DEV: the volume group of PV DEV ("" for a PV without one).
pv_vg() {
	pvs --noheadings -o vg_name "$1" 2>/dev/null | tr -d '[:space:]'
}

# pick_disk: resolves DISK=auto (see the usage above).
pick_disk() {
	local d dev type ro size s candidates=()
	for d in /dev/disk/by-id/*kiln-lvm*; do
		case $d in *-part[0-9]*) continue ;; esac
		[ -b "$d" ] && {
			readlink -f "$d"
			return 0
		}
	done
	d=$(pvs --noheadings -o pv_name --select "vg_name=$vg" 2>/dev/null | awk 'NF { print $1; exit }')
	if [ -n "$d" ]; then
		echo "$d"
		return 0
	fi
	while read -r dev type ro size; do
		if [ "$type" != disk ] || [ "$ro" != 0 ] || [ "${size:-0}" -eq 0 ]; then
			continue
		fi
		# Partitions, or anything stacked on it.
		[ "$(lsblk -nro NAME "$dev" | wc -l)" -eq 1 ] || continue
		s=$(sigs "$dev") || continue
		[ -z "$s" ] || continue
		candidates+=("$dev")
	done < <(lsblk -dnpbo NAME,TYPE,RO,SIZE)
	case ${#candidates[@]} in
	1) echo "${candidates[0]}" ;;
	0) die "DISK=auto: no empty disk found (lsblk); give the device explicitly" ;;
	*) die "DISK=auto: several empty disks (${candidates[*]}); give the device explicitly" ;;
	esac
}

if [ "$disk" = auto ]; then
	disk=$(pick_disk)
	say "DISK=auto: using $disk"
fi
dev=$(readlink -f "$disk")
[ -b "$dev" ] || die "DISK $disk is not a block device"
case $(lsblk -dno TYPE "$dev") in
disk | part | loop) ;;
*) die "DISK $disk ($dev) is a $(lsblk -dno TYPE "$dev"), not a disk or partition" ;;
esac
if lsblk -nro TYPE "$dev" | tail -n +2 | grep -qx part; then
	die "DISK $disk ($dev) has partitions: refusing to use it for LVM"
fi
if findmnt -rn --source "$dev" >/dev/null 2>&1; then
	die "DISK $disk ($dev) is mounted: refusing to use it for LVM"
fi
if pvs "$dev" >/dev/null 2>&1; then
	# Already a PV (a rerun, or prepared by hand): never re-initialised.
	have=$(pv_vg "$dev")
	if [ -z "$have" ]; then
		if vgs "$vg" >/dev/null 2>&1; then
			die "volume group $vg already exists on other disks; $dev is a PV outside it (vgextend $vg $dev if you mean to add it)"
		fi
		say "creating volume group $vg on PV $dev"
		vgcreate "$vg" "$dev" </dev/null >/dev/null
	elif [ "$have" != "$vg" ]; then
		die "DISK $disk ($dev) is a PV of volume group '$have', not '$vg': refusing to touch it"
	fi
else
	found=$(sigs "$dev") || die "cannot read or probe DISK $disk ($dev) (wipefs -n $dev)"
	case $found in
	"") ;;
	LVM2_member) die "DISK $disk ($dev) carries an LVM signature that lvm does not list (pvs $dev): check the lvm device filter" ;;
	*) die "DISK $disk ($dev) holds '$found': refusing to use it for LVM. If nothing on it is needed, erase it yourself (wipefs -a $dev) and rerun" ;;
	esac
	if vgs "$vg" >/dev/null 2>&1; then
		die "volume group $vg already exists on other disks; DISK $disk ($dev) is not part of it"
	fi
	say "initialising $dev for LVM (pvcreate, vgcreate $vg)"
	pvcreate "$dev" </dev/null >/dev/null
	vgcreate "$vg" "$dev" </dev/null >/dev/null
fi
vgs --noheadings -o vg_name,pv_count,vg_size,vg_free --units g "$vg" | sed "s/^ */$PROG: volume group: /" >&2

# ---------------------------------------------------------------- agent

[ ${#join[@]} -gt 0 ] || die "give at least one coordinator to JOIN"
put_file "$KILN_CONFIG" 0640 root:kiln <<EOF
# Written by kiln scripts/provision/storage.sh; rerunning it rewrites this
# file. Keys: docs/configuration.md, docs/backends/lvm.md.
log_level = "$log_level"

[agent]
name      = "$name"
zone      = "$zone"
data_dir  = "/var/lib/kiln/agent"
rpc_addr  = "$ip:$KILN_AGENT_RPC_PORT"
serf_addr = "$ip:$KILN_AGENT_SERF_PORT"
join      = $(toml_list "${join[@]}")
timing    = "lan"

[agent.iscsi]
portals = ["$portal"]

[[agent.pools]]
name                        = "lvm-thin"
driver                      = "lvm"
backend                     = "lvm"
volume_group                = "$vg"
lvm_type                    = "thin"
max_over_subscription_ratio = "20.0"
EOF
restart=$CHANGED

put_file /etc/systemd/system/kiln-agent.service.d/kiln-tgt.conf 0644 root:root <<'EOF'
# Written by kiln scripts/provision/storage.sh: the agent exports through the
# local tgtd (and re-creates its exports when tgtd restarts).
[Unit]
After=tgt.service lvm2-monitor.service
Wants=tgt.service
EOF
if [ "$CHANGED" = 1 ]; then
	systemctl daemon-reload
	restart=1
fi

ensure_unit_started kiln-agent.service "$restart"
wait_tcp "$ip" "$KILN_AGENT_RPC_PORT" 60 "kiln-agent (journalctl -u kiln-agent)"
say "ok: agent $name, pool $name@lvm#lvm-thin on VG $vg ($dev), iSCSI portal $portal, joined ${join[*]}"
say "check from any host: cinder get-pools --detail; cinder service-list"

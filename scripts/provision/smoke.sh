#!/usr/bin/env bash
# Usage: sudo scripts/provision/smoke.sh
#
# End-to-end smoke test of a Kiln cluster from a compute host set up by
# compute.sh, as Nova + os-brick would do it but with the cinder CLI and
# iscsiadm: creates a 1 GiB volume, waits until it is available, creates an
# attachment with this host's connector (initiator, ip, host), logs in to
# the target with the CHAP credentials from connection_info, writes 1 MiB of
# random data through the iSCSI disk and reads it back, completes the
# attachment (volume in-use), logs out, deletes the attachment and the
# volume. Whatever it created is removed again on failure too (set
# KILN_SMOKE_KEEP=1 to keep the volume for a look).
#
# Settings: /etc/kiln/openrc (written by compute.sh) unless CINDER_ENDPOINT
# is already set; KILN_SMOKE_IP overrides the connector's ip (default: this
# host's source address towards the API); KILN_SMOKE_TIMEOUT (seconds per
# wait, default 180). The CHAP secret is never printed (iscsiadm takes it as
# an argument, as os-brick does). Exits 0 when every step passed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -eq 0 ] || usage
need_root
if [ -z "${CINDER_ENDPOINT:-}" ]; then
	[ -r /etc/kiln/openrc ] || die "no CINDER_ENDPOINT and no /etc/kiln/openrc: run scripts/provision/compute.sh first"
	# shellcheck source=/dev/null
	. /etc/kiln/openrc
fi
export OS_VOLUME_API_VERSION=${OS_VOLUME_API_VERSION:-3.54}
for cmd in cinder iscsiadm python3; do
	command -v "$cmd" >/dev/null || die "$cmd not found: run scripts/provision/compute.sh first"
done
timeout_s=${KILN_SMOKE_TIMEOUT:-180}
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "KILN_SMOKE_TIMEOUT must be a positive number of seconds"

initiator=$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi 2>/dev/null | head -n 1)
[ -n "$initiator" ] || die "no InitiatorName in /etc/iscsi/initiatorname.iscsi"
api_host=$(sed -E 's|^[a-z]+://([^/:]+).*|\1|' <<<"$CINDER_ENDPOINT")
conn_ip=${KILN_SMOKE_IP:-$(ip -4 route get "$api_host" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1)}
[ -n "$conn_ip" ] || die "cannot tell this host's address towards $api_host: set KILN_SMOKE_IP"
conn_host=$(hostname)

# cinder_get KEY...: reads the tables the cinder CLI prints (one or more
# "| Property | Value |" tables) on stdin and prints the value of each KEY on
# a line of its own ("" when absent). A KEY "data.X" is X inside the
# connection_info "data" dict (printed as a Python dict or JSON).
cinder_get() {
	python3 -c '
import ast, json, sys
rows = {}
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.startswith("|"):
        continue
    parts = line.split("|")
    key, val = parts[1].strip(), "|".join(parts[2:-1]).strip()
    if not key or (key in ("Property", "Field") and val == "Value"):
        continue
    rows[key] = val
data = {}
if rows.get("data"):
    try:
        data = json.loads(rows["data"])
    except ValueError:
        data = ast.literal_eval(rows["data"])
for k in sys.argv[1:]:
    v = data.get(k[5:], "") if k.startswith("data.") else rows.get(k, "")
    print("" if v is None else str(v).replace("\n", " "))
' "$@"
}

# wait_status VOLUME STATUS: polls cinder show until the volume has STATUS;
# dies at an error status or after the timeout.
wait_status() {
	local v=$1 want=$2 st="" i
	for ((i = 0; i < timeout_s; i++)); do
		# A failed call (a leader election, say) is retried.
		st=$(cinder show "$v" | cinder_get status) || st="?"
		case $st in
		"$want") return 0 ;;
		error*)
			say "volume $v: $(cinder show "$v" | cinder_get status kiln:error | paste -sd' ' -)"
			die "volume $v went to $st"
			;;
		esac
		sleep 1
	done
	die "volume $v is still '$st' after ${timeout_s}s (wanted $want)"
}

vol="" att="" iqn="" portal="" node=0 session=0 tmp=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT
	if [ "$session" = 1 ]; then
		iscsiadm -m node -T "$iqn" -p "$portal" --logout >/dev/null 2>&1 || true
	fi
	if [ "$node" = 1 ]; then
		iscsiadm -m node -T "$iqn" -p "$portal" -o delete >/dev/null 2>&1 || true
	fi
	if [ -n "$att" ]; then
		cinder attachment-delete "$att" >/dev/null 2>&1 || true
	fi
	if [ -n "$vol" ]; then
		if [ "${KILN_SMOKE_KEEP:-0}" = 1 ]; then
			say "kept volume $vol (KILN_SMOKE_KEEP=1)"
		else
			sleep 2
			cinder delete "$vol" >/dev/null 2>&1 || say "could not delete volume $vol; delete it by hand"
		fi
	fi
	[ -z "$tmp" ] || rm -f "$tmp"
	if [ "$rc" -eq 0 ]; then
		say "PASS"
	else
		say "FAIL (exit $rc)"
	fi
	exit "$rc"
}
trap cleanup EXIT

say "API $CINDER_ENDPOINT (microversion $OS_VOLUME_API_VERSION), connector host=$conn_host ip=$conn_ip initiator=$initiator"

# 1. A volume.
name="kiln-smoke-$conn_host-$(date +%Y%m%d%H%M%S)"
vol=$(cinder create --name "$name" 1 | cinder_get id)
[[ $vol =~ ^[0-9a-f-]{36}$ ]] || die "cinder create printed no volume id"
say "created volume $vol ($name)"
wait_status "$vol" available
say "volume $vol is available on $(cinder show "$vol" | cinder_get os-vol-host-attr:host)"

# 2. An attachment with this host's connector: the agent exports the LV
# through tgtd, with an ACL for our initiator and per-volume CHAP. The
# output holds the CHAP secret: kept in variables, never printed.
out=$(cinder attachment-create "$vol" --connect True --initiator "$initiator" \
	--ip "$conn_ip" --host "$conn_host" --mode rw)
{
	read -r att
	read -r dvt
	read -r portal
	read -r iqn
	read -r lun
	read -r auth_method
	read -r chap_user
	read -r chap_pass
} < <(cinder_get id driver_volume_type data.target_portal data.target_iqn data.target_lun \
	data.auth_method data.auth_username data.auth_password <<<"$out")
unset out
[[ $att =~ ^[0-9a-f-]{36}$ ]] || die "cinder attachment-create printed no attachment id"
say "attachment $att: $dvt, portal $portal, target $iqn, lun $lun, auth ${auth_method:-none} (credentials not shown)"
[ "$dvt" = iscsi ] || die "connection_info driver_volume_type is '$dvt', want iscsi (is the volume on an LVM pool with [agent.iscsi]?)"
if [ -z "$portal" ] || [ -z "$iqn" ] || ! [[ $lun =~ ^[0-9]+$ ]]; then
	die "connection_info lacks target_portal/target_iqn/target_lun"
fi
if [ "$auth_method" != CHAP ] || [ -z "$chap_user" ] || [ -z "$chap_pass" ]; then
	die "connection_info has no CHAP credentials"
fi

# 3. iSCSI login with those credentials.
iscsiadm -m node -T "$iqn" -p "$portal" -o new >/dev/null
node=1
iscsiadm -m node -T "$iqn" -p "$portal" -o update -n node.session.auth.authmethod -v CHAP
iscsiadm -m node -T "$iqn" -p "$portal" -o update -n node.session.auth.username -v "$chap_user"
iscsiadm -m node -T "$iqn" -p "$portal" -o update -n node.session.auth.password -v "$chap_pass"
unset chap_user chap_pass
iscsiadm -m node -T "$iqn" -p "$portal" --login >/dev/null
session=1
say "logged in to $iqn at $portal"
disk="/dev/disk/by-path/ip-$portal-iscsi-$iqn-lun-$lun"
for ((i = 0; i < 30; i++)); do
	[ -b "$disk" ] && break
	udevadm settle --timeout=2 2>/dev/null || sleep 1
done
[ -b "$disk" ] || die "no $disk after the login"
dev=$(readlink -f "$disk")
size=$(blockdev --getsize64 "$dev")
[ "$size" -ge 1073741824 ] || die "$dev has $size bytes, want at least 1 GiB"
say "disk $dev ($size bytes)"
cinder attachment-complete "$att" >/dev/null
wait_status "$vol" in-use
say "attachment completed, volume in-use"

# 4. 1 MiB through the target and back, bypassing the page cache.
tmp=$(mktemp)
head -c 1048576 /dev/urandom >"$tmp"
dd if="$tmp" of="$dev" bs=1M count=1 oflag=direct conv=fsync status=none
blockdev --flushbufs "$dev"
if ! dd if="$dev" bs=1M count=1 iflag=direct status=none | cmp -s - "$tmp"; then
	die "the 1 MiB read back from $dev differs from what was written"
fi
say "wrote and read back 1 MiB (sha256 $(sha256sum <"$tmp" | cut -c1-16)...)"

# 5. Detach and clean up, each step checked.
iscsiadm -m node -T "$iqn" -p "$portal" --logout >/dev/null
session=0
iscsiadm -m node -T "$iqn" -p "$portal" -o delete
node=0
say "logged out"
cinder attachment-delete "$att" >/dev/null
att=""
wait_status "$vol" available
say "attachment deleted, volume available"
if [ "${KILN_SMOKE_KEEP:-0}" = 1 ]; then
	exit 0
fi
cinder delete "$vol" >/dev/null
for ((i = 0; i < timeout_s; i++)); do
	if ! st=$(cinder show "$vol" 2>/dev/null | cinder_get status); then
		break
	fi
	[ -n "$st" ] || break
	case $st in error*) die "volume $vol went to $st while deleting" ;; esac
	sleep 1
done
[ "$i" -lt "$timeout_s" ] || die "volume $vol still exists after ${timeout_s}s"
vol=""
say "volume deleted"

#!/usr/bin/env bash
# Starts and stops a userspace iSCSI target daemon (tgtd, Debian package tgt)
# bound to one loopback portal, for tests and local clusters.
#
#   scripts/tgtd.sh start DIR PORTAL CTLNUM   e.g. start /tmp/t 127.0.0.1:3261 32610
#   scripts/tgtd.sh stop DIR CTLNUM
#   scripts/tgtd.sh deps                      tgt plus the userspace initiators
#                                             the tests use (libiscsi-bin, qemu-io)
#
# start runs `tgtd -f --iscsi portal=PORTAL -C CTLNUM -t 2` in the background
# (log DIR/tgtd.log, pid DIR/tgtd.pid), waits until the control socket
# /run/tgtd/socket.CTLNUM answers, then checks the portal: a tgtd that cannot
# bind its portal keeps running on 0.0.0.0:3260 and [::]:3260 instead, so
# start fails (and stops it) unless the portal list is exactly PORTAL.
# Starting an instance that is already running is a no-op.
#
# stop deletes every target (forced: sessions are dropped), asks tgtd to exit
# (it ignores SIGTERM and SIGINT), and SIGKILLs it by PID if it is still
# alive. Stopping a stopped instance is a no-op.
#
# Only 127.0.0.0/8 portals are accepted, and CTLNUM must not be 0 so that a
# system tgtd on the default socket is never touched. Installs what is
# missing with apt-get (needs root). Idempotent.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"


usage() { usage_lines 2,9; }


need_tgt() {
	if ! command -v tgtd >/dev/null 2>&1 || ! command -v tgtadm >/dev/null 2>&1; then
		echo tgt
	fi
}

deps() {
	local need=()
	[ -z "$(need_tgt)" ] || need+=(tgt)
	command -v iscsi-ls >/dev/null 2>&1 || need+=(libiscsi-bin)
	command -v qemu-io >/dev/null 2>&1 || need+=(qemu-utils)
	# qemu-io's iscsi driver is a loadable module in this package.
	installed qemu-block-extra || need+=(qemu-block-extra)
	apt_install "${need[@]}"
}

# alive PID: the process exists, is tgtd, and is not a zombie (stopped
# daemons linger as zombies here until their parent reaps them).
alive() {
	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = tgtd ] && running "$1"
}

# running PID: the process exists and is not a zombie, whatever it runs.
# A child just started with & is still bash until it has exec'd tgtd.
running() {
	local pid=$1 state
	[ -r "/proc/$pid/stat" ] || return 1
	state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

check_ctl() {
	if ! [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] || [ "$1" -gt 32767 ]; then
		die "CTLNUM must be 1..32767 (0 is the system's default socket; tgtd refuses more), got '$1'"
	fi
}

answers() {
	tgtadm -C "$1" --op show --mode system >/dev/null 2>&1
}

# portals CTLNUM: the portals tgtd listens on, one "ip:port" a line, sorted.
portals() {
	tgtadm -C "$1" --lld iscsi --mode portal --op show | sed -n 's/^Portal: \(.*\),[0-9]*$/\1/p' | sort -u
}

stop() {
	local dir=$1 ctl=$2 pid="" tid
	check_ctl "$ctl"
	[ -f "$dir/tgtd.pid" ] && pid=$(cat "$dir/tgtd.pid")
	if [ -n "$pid" ] && alive "$pid"; then
		# tgtd refuses to exit while it has targets.
		for tid in $(tgtadm -C "$ctl" --lld iscsi --mode target --op show 2>/dev/null |
			sed -n 's/^Target \([0-9]*\): .*/\1/p'); do
			tgtadm -C "$ctl" --lld iscsi --mode target --op delete --force --tid "$tid" >/dev/null 2>&1 || true
		done
		tgtadm -C "$ctl" --op delete --mode system >/dev/null 2>&1 || true
		for _ in $(seq 60); do
			alive "$pid" || break
			sleep 0.05
		done
		if alive "$pid"; then
			kill -KILL "$pid" 2>/dev/null || true
			for _ in $(seq 100); do
				alive "$pid" || break
				sleep 0.05
			done
		fi
		alive "$pid" && die "tgtd (pid $pid) does not exit"
	fi
	rm -f "$dir/tgtd.pid"
	# tgtd leaves its control socket behind; it is ours (CTLNUM is not 0).
	if ! answers "$ctl"; then
		rm -f "/run/tgtd/socket.$ctl" "/run/tgtd/socket.$ctl.lock"
	fi
}

start() {
	local dir=$1 portal=$2 ctl=$3 pid="" got
	check_ctl "$ctl"
	[[ $portal =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:[1-9][0-9]{0,4}$ ]] ||
		die "PORTAL must be a 127.0.0.0/8 address with a port, e.g. 127.0.0.1:3261, got '$portal'"
	[ -z "$(need_tgt)" ] || apt_install tgt
	mkdir -p "$dir"
	[ -f "$dir/tgtd.pid" ] && pid=$(cat "$dir/tgtd.pid")
	if [ -n "$pid" ] && alive "$pid" && answers "$ctl"; then
		got=$(portals "$ctl")
		[ "$got" = "$portal" ] || die "tgtd (pid $pid) is running on portal(s) '$got', not $portal"
		echo "$pid"
		return 0
	fi
	if answers "$ctl"; then
		die "control socket $ctl is already served by another tgtd"
	fi
	echo "== $(date -Is) tgtd -f --iscsi portal=$portal -C $ctl -t 2" >>"$dir/tgtd.log"
	tgtd -f --iscsi "portal=$portal" -C "$ctl" -t 2 </dev/null >>"$dir/tgtd.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/tgtd.pid"
	for _ in $(seq 200); do
		if ! running "$pid"; then
			tail -n 20 "$dir/tgtd.log" >&2
			rm -f "$dir/tgtd.pid"
			die "tgtd exited during start (log: $dir/tgtd.log)"
		fi
		answers "$ctl" && break
		sleep 0.05
	done
	if ! answers "$ctl"; then
		stop "$dir" "$ctl"
		die "tgtd (pid $pid) does not answer on control socket $ctl after 10s"
	fi
	got=$(portals "$ctl")
	if [ "$got" != "$portal" ]; then
		stop "$dir" "$ctl"
		die "tgtd could not bind portal $portal and listens on '${got//$'\n'/ }' instead; stopped it (log: $dir/tgtd.log)"
	fi
	echo "$pid"
}

[ $# -ge 1 ] || usage
case $1 in
start)
	[ $# -eq 4 ] || usage
	start "$2" "$3" "$4"
	;;
stop)
	[ $# -eq 3 ] || usage
	stop "$2" "$3"
	;;
deps)
	[ $# -eq 1 ] || usage
	deps
	;;
*) usage ;;
esac

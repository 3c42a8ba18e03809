#!/usr/bin/env bash
# Starts and stops a userspace NFS server (nfs-ganesha, FSAL VFS) serving
# NFSv4 on one loopback address, with a private D-Bus system bus, for tests
# and local clusters.
#
#   scripts/ganesha.sh start DIR ADDR:PORT   e.g. start /tmp/g 127.0.0.1:32049
#   scripts/ganesha.sh stop DIR
#   scripts/ganesha.sh deps                  nfs-ganesha, its VFS FSAL, dbus,
#                                            libnfs-utils (nfs-cat, nfs-ls, nfs-cp)
#
# start runs a dbus-daemon on DIR/bus (policy: root may own and call
# org.ganesha.nfsd) and `ganesha.nfsd -F -L DIR/ganesha.log -f
# DIR/ganesha.conf -p DIR/ganesha.pid` with DBUS_SYSTEM_BUS_ADDRESS pointing
# at it, NFSv4 over TCP only (no rpcbind), graceless, recovery state under
# DIR. It waits until ganesha owns its bus name, then checks with ss that it
# listens on exactly ADDR:PORT (without Bind_addr ganesha listens on *:PORT)
# and fails (and stops it) otherwise. It prints the bus address for the
# agent's ganesha bus setting. Starting an instance that runs is a no-op.
#
# stop SIGTERMs ganesha (it takes 1-2 s to exit), SIGKILLs it after 5 s,
# then stops the bus. Stopping a stopped instance is a no-op.
#
# Only 127.0.0.0/8 addresses are accepted and PORT must not be 2049, so
# that a system NFS server is never touched. Installs what is missing with
# apt-get (needs root). Idempotent.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"


usage() { usage_lines 2,10; }

vfs_fsal() {
	compgen -G '/usr/lib/*/ganesha/libfsalvfs.so*' >/dev/null || compgen -G '/usr/lib64/ganesha/libfsalvfs.so*' >/dev/null
}

deps() {
	local need=()
	command -v ganesha.nfsd >/dev/null 2>&1 || need+=(nfs-ganesha)
	vfs_fsal || need+=(nfs-ganesha-vfs)
	command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
	command -v nfs-cat >/dev/null 2>&1 || need+=(libnfs-utils)
	command -v ss >/dev/null 2>&1 || need+=(iproute2)
	apt_install "${need[@]}"
	if [ -n "$APT_KEPT_SERVICES_OFF" ] && [ -d /run/systemd/system ]; then
		echo "ganesha.sh: nfs-ganesha.service and rpcbind were installed but not started;" \
			"'systemctl disable nfs-ganesha rpcbind' keeps them off at boot" >&2
	fi
}

# alive PID COMM: the process exists, is COMM, and is not a zombie.
alive() {
	local pid=$1 comm=$2 state
	[ -r "/proc/$pid/stat" ] || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
	state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

pidof_file() {
	if [ -f "$1" ]; then cat "$1"; fi
}

owns_name() {
	dbus-send --bus="unix:path=$1/bus" --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus.NameHasOwner string:org.ganesha.nfsd 2>/dev/null | grep -q 'boolean true'
}

# listeners PID: the local addresses of PID's listening TCP and UDP sockets.
listeners() {
	ss -Hlntup 2>/dev/null | grep "pid=$1," | awk '{print $1 " " $5}' | sort -u
}

stop_pid() {
	local pid=$1 comm=$2 sig=$3 wait=$4
	alive "$pid" "$comm" || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	for _ in $(seq "$wait"); do
		alive "$pid" "$comm" || return 0
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		alive "$pid" "$comm" || return 0
		sleep 0.05
	done
	die "$comm (pid $pid) does not exit"
}

stop() {
	local dir=$1
	stop_pid "$(pidof_file "$dir/ganesha.pid")" ganesha.nfsd TERM 100
	stop_pid "$(pidof_file "$dir/dbus.pid")" dbus-daemon TERM 20
	rm -f "$dir/ganesha.pid" "$dir/dbus.pid" "$dir/bus"
}

start() {
	local dir=$1 listen=$2 addr port pid got
	[[ $listen =~ ^(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}):([1-9][0-9]{0,4})$ ]] ||
		die "ADDR:PORT must be a 127.0.0.0/8 address with a port, e.g. 127.0.0.1:32049, got '$listen'"
	addr=${BASH_REMATCH[1]}
	port=${BASH_REMATCH[2]}
	{ [ "$port" -ne 2049 ] && [ "$port" -le 65535 ]; } || die "PORT must be 1..65535 and not 2049, got $port"
	deps
	mkdir -p "$dir/recovery"
	dir=$(cd "$dir" && pwd)
	pid=$(pidof_file "$dir/ganesha.pid")
	if [ -n "$pid" ] && alive "$pid" ganesha.nfsd && owns_name "$dir"; then
		echo "unix:path=$dir/bus"
		return 0
	fi
	stop "$dir"

	cat >"$dir/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
  </policy>
  <policy user="root">
    <allow own="org.ganesha.nfsd"/>
    <allow send_destination="org.ganesha.nfsd"/>
  </policy>
</busconfig>
EOF
	cat >"$dir/ganesha.conf" <<EOF
NFS_CORE_PARAM {
	Protocols = 4;
	Enable_UDP = false;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	NFS_Port = $port;
	Bind_addr = $addr;
}
NFSv4 {
	Graceless = true;
	RecoveryRoot = "$dir/recovery";
}
NFS_KRB5 {
	Active_krb5 = false;
}
EOF
	dbus-daemon --config-file="$dir/bus.conf" --fork --print-pid >"$dir/dbus.pid" 2>>"$dir/dbus-daemon.log" ||
		die "dbus-daemon did not start (log: $dir/dbus-daemon.log)"
	for _ in $(seq 100); do
		[ -S "$dir/bus" ] && break
		sleep 0.05
	done
	[ -S "$dir/bus" ] || die "dbus-daemon did not create $dir/bus"

	echo "== $(date -Is) ganesha.nfsd on $addr:$port, bus unix:path=$dir/bus" >>"$dir/ganesha.out"
	DBUS_SYSTEM_BUS_ADDRESS="unix:path=$dir/bus" setsid ganesha.nfsd -F -L "$dir/ganesha.log" -f "$dir/ganesha.conf" \
		-p "$dir/ganesha.pid" </dev/null >>"$dir/ganesha.out" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/ganesha.pid"
	for _ in $(seq 300); do
		if ! alive "$pid" ganesha.nfsd; then
			tail -n 20 "$dir/ganesha.log" >&2 || true
			stop "$dir"
			die "ganesha exited during start (log: $dir/ganesha.log)"
		fi
		owns_name "$dir" && [ -n "$(listeners "$pid")" ] && break
		sleep 0.05
	done
	if ! owns_name "$dir"; then
		stop "$dir"
		die "ganesha (pid $pid) did not take org.ganesha.nfsd on unix:path=$dir/bus within 15s (log: $dir/ganesha.log)"
	fi
	got=$(listeners "$pid")
	if [ "$got" != "tcp [::ffff:$addr]:$port" ] && [ "$got" != "tcp $addr:$port" ]; then
		stop "$dir"
		die "ganesha listens on '${got//$'\n'/, }', not only tcp $addr:$port; stopped it (log: $dir/ganesha.log)"
	fi
	echo "unix:path=$dir/bus"
}

[ $# -ge 1 ] || usage
case $1 in
start)
	[ $# -eq 3 ] || usage
	start "$2" "$3"
	;;
stop)
	[ $# -eq 2 ] || usage
	stop "$2"
	;;
deps)
	[ $# -eq 1 ] || usage
	deps
	;;
*) usage ;;
esac

#!/usr/bin/env bash
# Starts and stops a single-node Ceph cluster (Debian's ceph 16.2 pacific)
# on 127.0.0.1 with every file under one directory, for tests and local
# clusters: one mon, one mgr, one OSD (memstore), cephx on, one rbd pool.
#
#   scripts/ceph.sh start DIR MON_PORT_V2 MON_PORT_V1 [POOL]
#                                     e.g. start /tmp/c 33300 36789 kiln
#   scripts/ceph.sh stop DIR
#   scripts/ceph.sh deps              ceph-mon, ceph-mgr, ceph-osd, ceph-common
#   KILN_CEPH_OBJECTSTORE=bluestore   (start) an OSD that survives SIGKILL
#
# start makes a cluster in DIR (missing or empty) and prints what a client
# needs, one key=value a line:
#   conf=DIR/ceph.conf   mon_host=[v2:127.0.0.1:P2,v1:127.0.0.1:P1]
#   fsid=UUID            pool=POOL (default kiln)
#   user=kiln            keyring=DIR/ceph.client.kiln.keyring
#   admin_keyring=DIR/ceph.client.admin.keyring
#   objectstore=memstore|bluestore
# Daemons: mon.a, mgr.x, osd.0; PID files DIR/run/NAME.pid, admin sockets
# DIR/run/ceph-NAME.asok, logs DIR/log/ceph-NAME.log (stdout/stderr in
# DIR/log/NAME.out), cluster log DIR/log/ceph.cluster.log.
# client.kiln has the caps Cinder's RBD user has: mon 'profile rbd',
# osd 'profile rbd pool=POOL', mgr 'profile rbd pool=POOL'. start returns
# once client.kiln can create and remove an image in POOL and `ceph df`
# reports capacity (the mgr has the OSD's statistics), then checks with ss
# that the daemons listen on 127.0.0.1 only and fails (and stops them)
# otherwise. On a DIR whose cluster runs, start is a no-op that prints the
# same; on a DIR whose cluster was stopped (or some of whose daemons were
# killed) it starts the missing daemons on the data they left.
#
# stop SIGTERMs the daemons by PID file (DIR/run/*.pid) and SIGKILLs those
# still alive after 5 s (the OSD: 15 s); zombies count as exited. Stopping
# a stopped cluster is a no-op. A clean stop keeps the OSD's data.
#
# The OSD's store: memstore (the default) keeps objects in memory and
# writes them to DIR/osd only when the OSD stops cleanly. A SIGKILLed
# memstore OSD comes back with what it had at its last clean stop: after
# none, with no PGs at all, and the pool's I/O then hangs for good. For
# crash tests use KILN_CEPH_OBJECTSTORE=bluestore (a sparse 2 GiB file,
# DIR/osd/block; as fast to start), which survives SIGKILL. The store is
# chosen when DIR's cluster is made; later starts keep it.
#
# The mon ports must be 1024..65535 and not 3300/6789 (a real cluster's),
# nor in 6800..7300, where the mgr and the OSD bind their own ports.
# Installs what is missing with apt-get (needs root). Idempotent.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# The daemons and the commands below use DIR's files only: a CEPH_KEYRING
# or CEPH_ARGS left in the environment would override the daemons' own
# keyrings and break their login.
unset CEPH_ARGS CEPH_KEYRING CEPH_CONF

STORE=${KILN_CEPH_OBJECTSTORE:-memstore}
case $STORE in
memstore | bluestore) ;;
*) echo "ceph.sh: KILN_CEPH_OBJECTSTORE must be memstore or bluestore, got '$STORE'" >&2 && exit 2 ;;
esac

# Seconds any one ceph, rbd or ceph-* command may take.
CMD_TIMEOUT=${KILN_CEPH_TIMEOUT:-30}
# Seconds start waits for the cluster to serve I/O and report capacity.
READY_TIMEOUT=${KILN_CEPH_READY_TIMEOUT:-60}


usage() { usage_lines 2,10; }

deps() {
	local need=()
	command -v ceph-mon >/dev/null 2>&1 || need+=(ceph-mon)
	command -v ceph-mgr >/dev/null 2>&1 || need+=(ceph-mgr)
	command -v ceph-osd >/dev/null 2>&1 || need+=(ceph-osd)
	# ceph, rbd, ceph-authtool, monmaptool.
	{ command -v ceph && command -v rbd && command -v ceph-authtool && command -v monmaptool; } >/dev/null 2>&1 ||
		need+=(ceph-common)
	command -v ss >/dev/null 2>&1 || need+=(iproute2)
	command -v uuidgen >/dev/null 2>&1 || need+=(uuid-runtime)
	apt_install "${need[@]}"
}

# running PID: the process exists and is not a zombie, whatever it runs.
# A child just started with & is still bash until it has exec'd.
running() {
	local state
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# alive PID NAME: PID runs the ceph daemon NAME (mon, mgr or osd).
alive() {
	[ -n "$1" ] && running "$1" && [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$(command -v "ceph-$2")" ]
}

pid_of() {
	local f=$DIR/run/$1.pid
	if [ -f "$f" ]; then cat "$f"; fi
}

# The mgr modules the mgr does not import: all but the always-on ones.
MGR_DISABLED="alerts cephadm dashboard diskprediction_local influx insights iostat k8sevents localpool"
MGR_DISABLED+=" mds_autoscaler mirroring nfs osd_perf_query osd_support prometheus restful rook selftest"
MGR_DISABLED+=" snap_schedule stats telegraf test_orchestrator zabbix"

# Daemons by PID file name and binary: mon.a (ceph-mon), mgr.x, osd.0.
DAEMONS="osd.0 mgr.x mon.a"

# stop_pids NAME... TICKS: SIGTERM, then SIGKILL after TICKS x 50 ms.
stop_pids() {
	local ticks=${*: -1} d pid pids=() names=()
	set -- "${@:1:$#-1}"
	for d in "$@"; do
		pid=$(pid_of "$d")
		if alive "$pid" "${d%%.*}"; then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
			names+=("$d")
		fi
	done
	local i left
	for _ in $(seq "$ticks"); do
		left=0
		for i in "${!pids[@]}"; do
			alive "${pids[$i]}" "${names[$i]%%.*}" && left=1
		done
		[ "$left" -eq 1 ] || break
		sleep 0.05
	done
	for i in "${!pids[@]}"; do
		if alive "${pids[$i]}" "${names[$i]%%.*}"; then
			echo "ceph.sh: ${names[$i]} (pid ${pids[$i]}) ignored SIGTERM for $((ticks / 20))s; SIGKILL" >&2
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
	done
	for i in "${!pids[@]}"; do
		for _ in $(seq 100); do
			alive "${pids[$i]}" "${names[$i]%%.*}" || break
			sleep 0.05
		done
		alive "${pids[$i]}" "${names[$i]%%.*}" && die "${names[$i]} (pid ${pids[$i]}) does not exit"
	done
	for d in "$@"; do
		rm -f "$DIR/run/$d.pid"
	done
}

stop() {
	DIR=$1
	[ -d "$DIR" ] || return 0
	DIR=$(cd "$DIR" && pwd)
	# The OSD first: it tells the mon it is going down (osd fast shutdown =
	# false) and writes its memstore out; without a mon it would wait.
	stop_pids osd.0 300
	stop_pids mgr.x mon.a 100
}

check_port() {
	if ! [[ $2 =~ ^[1-9][0-9]{3,4}$ ]] || [ "$2" -lt 1024 ] || [ "$2" -gt 65535 ]; then
		die "$1 must be a port in 1024..65535, got '$2'"
	fi
	if [ "$2" -eq 3300 ] || [ "$2" -eq 6789 ]; then
		die "$1 must not be $2, a real cluster's mon port: pick another, e.g. 33300 and 36789"
	fi
	if [ "$2" -ge 6800 ] && [ "$2" -le 7300 ]; then
		die "$1 must not be in 6800..7300, where mgrs and OSDs bind: got $2"
	fi
}

# ceph ARGS...: the ceph CLI as client.admin, with a timeout.
ceph_() {
	timeout "$CMD_TIMEOUT" ceph --conf "$DIR/ceph.conf" --name client.admin \
		--keyring "$DIR/ceph.client.admin.keyring" "$@"
}

# rbd_ ID ARGS...: the rbd CLI as client.ID, with a timeout.
rbd_() {
	local id=$1
	shift
	timeout "$CMD_TIMEOUT" rbd --conf "$DIR/ceph.conf" --id "$id" \
		--keyring "$DIR/ceph.client.$id.keyring" "$@"
}

store_conf() {
	case $STORE in
	memstore)
		printf '%s\n' "osd objectstore = memstore" "memstore device bytes = 2147483648"
		;;
	bluestore)
		printf '%s\n' "osd objectstore = bluestore" "bluestore block create = true" \
			"bluestore block size = 2147483648" "bluestore fsck on mkfs = false" "bdev aio poll ms = 10" \
			"bluestore cache size = 67108864"
		;;
	esac
}

write_conf() {
	local fsid=$1 monhost=$2
	cat >"$DIR/ceph.conf" <<EOF
# Made by scripts/ceph.sh: a single-node test cluster on 127.0.0.1.
[global]
fsid = $fsid
mon host = $monhost
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $DIR/run
crash dir = $DIR/crash
# One copy of everything, on one OSD.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
# The defaults make a start take 10-15 s.
paxos propose interval = 0.01
paxos min wait = 0.01
mgr stats period = 1
mgr tick period = 1
mon mgr digest period = 1

[client]
# So that a client finds its key from --id alone.
keyring = $DIR/\$cluster.\$name.keyring

[mon]
mon data = $DIR/mon
keyring = $DIR/mon/keyring
mon cluster log file = $DIR/log/\$cluster.\$channel.log
mgr initial modules = rbd_support
admin socket = $DIR/run/\$cluster-\$name.asok
pid file = $DIR/run/\$type.\$id.pid
log file = $DIR/log/\$cluster-\$name.log

[mgr]
# Importing every module takes the mgr 6 s. The always-on ones (balancer,
# crash, devicehealth, orchestrator, pg_autoscaler, progress, rbd_support,
# status, telemetry, volumes) must be imported, or the cluster reports
# HEALTH_ERR (MGR_MODULE_ERROR); rbd_support serves the rbd CLI's task,
# trash purge and perf commands.
mgr disabled modules = $MGR_DISABLED
mgr data = $DIR/mgr
keyring = $DIR/mgr/keyring
admin socket = $DIR/run/\$cluster-\$name.asok
pid file = $DIR/run/\$type.\$id.pid
log file = $DIR/log/\$cluster-\$name.log

[osd]
osd data = $DIR/osd
keyring = $DIR/osd/keyring
$(store_conf)
# Without it a stopping OSD skips writing its memstore out, and loses it.
osd fast shutdown = false
osd memory target = 939524096
osd op num shards = 1
osd op num threads per shard = 2
admin socket = $DIR/run/\$cluster-\$name.asok
pid file = $DIR/run/\$type.\$id.pid
log file = $DIR/log/\$cluster-\$name.log
EOF
}

# keyring FILE NAME CAPS...: a new keyring FILE with a key for NAME.
keyring() {
	local file=$1 name=$2
	shift 2
	timeout "$CMD_TIMEOUT" ceph-authtool --create-keyring "$file" --gen-key -n "$name" "$@" >/dev/null
}

# launch NAME ARGS: runs ceph-TYPE -f ARGS in the background in its own
# session, its PID in DIR/run/NAME.pid, its output in DIR/log/NAME.out.
launch() {
	local name=$1 type=${1%%.*} pid
	shift
	echo "== $(date -Is) ceph-$type -f $*" >>"$DIR/log/$name.out"
	LAUNCHED=1
	setsid "ceph-$type" -f -c "$DIR/ceph.conf" "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
	pid=$!
	echo "$pid" >"$DIR/run/$name.pid"
}

# started NAME: the daemon launched as NAME is alive (or still exec'ing).
started() {
	local pid
	pid=$(pid_of "$1")
	running "$pid" || {
		tail -n 20 "$DIR/log/$1.out" "$DIR/log/ceph-$1.log" >&2 2>/dev/null || true
		stop "$DIR"
		die "$1 exited during start (logs: $DIR/log/ceph-$1.log, $DIR/log/$1.out)"
	}
}

LAUNCHED=""

stopped_on_failure() {
	if [ "$1" -ne 0 ] && [ -n "$LAUNCHED" ]; then
		LAUNCHED=""
		stop "$DIR" || true
	fi
}

fail() {
	local d
	for d in $DAEMONS; do
		echo "--- $DIR/log/ceph-$d.log (tail)" >&2
		tail -n 8 "$DIR/log/ceph-$d.log" 2>/dev/null | cut -c1-300 >&2 || true
	done
	stop "$DIR"
	die "$* (logs: $DIR/log)"
}

# init POOL P2 P1: makes the cluster's files and starts its daemons.
init() {
	local pool=$1 p2=$2 p1=$3 fsid osduuid monhost t0
	t0=$(date +%s%N)
	fsid=$(uuidgen)
	osduuid=$(uuidgen)
	monhost="[v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]"
	ports_free "$p2" "$p1"
	mkdir -p "$DIR/run" "$DIR/log" "$DIR/crash" "$DIR/mgr" "$DIR/osd"
	write_conf "$fsid" "$monhost"

	# Every key goes into the mon's keyring: ceph-mon --mkfs puts them, and
	# their caps, into the cluster's auth database, so none needs a
	# command later.
	local k=$DIR/keys
	mkdir -p "$k"
	keyring "$k/mon" mon. --cap mon 'allow *'
	keyring "$DIR/ceph.client.admin.keyring" client.admin --cap mon 'allow *' --cap osd 'allow *' \
		--cap mds 'allow *' --cap mgr 'allow *'
	keyring "$DIR/mgr/keyring" mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *'
	keyring "$DIR/osd/keyring" osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
	keyring "$DIR/ceph.client.kiln.keyring" client.kiln --cap mon 'profile rbd' \
		--cap osd "profile rbd pool=$pool" --cap mgr "profile rbd pool=$pool"
	local f
	for f in "$DIR/ceph.client.admin.keyring" "$DIR/mgr/keyring" "$DIR/osd/keyring" "$DIR/ceph.client.kiln.keyring"; do
		timeout "$CMD_TIMEOUT" ceph-authtool "$k/mon" --import-keyring "$f" >/dev/null
	done
	chmod 600 "$DIR"/*.keyring "$DIR/mgr/keyring" "$DIR/osd/keyring"
	timeout "$CMD_TIMEOUT" monmaptool --create --fsid "$fsid" --addv a "$monhost" "$k/monmap" >/dev/null

	# ceph-mon --mkfs does nothing, silently, in a directory that is not
	# empty; DIR/mon does not exist yet.
	timeout "$CMD_TIMEOUT" ceph-mon --mkfs -i a -c "$DIR/ceph.conf" --monmap "$k/monmap" \
		--keyring "$k/mon" >>"$DIR/log/mon.a.out" 2>&1 &
	local mkmon=$!
	timeout "$CMD_TIMEOUT" ceph-osd --mkfs -i 0 -c "$DIR/ceph.conf" --osd-uuid "$osduuid" \
		--no-mon-config >>"$DIR/log/osd.0.out" 2>&1 &
	local mkosd=$!
	wait "$mkmon" || fail "ceph-mon --mkfs failed ($(tail -n 3 "$DIR/log/mon.a.out"))"
	wait "$mkosd" || fail "ceph-osd --mkfs failed ($(tail -n 3 "$DIR/log/osd.0.out"))"
	if ! [ -f "$DIR/mon/keyring" ] || ! [ -d "$DIR/mon/store.db" ]; then
		fail "ceph-mon --mkfs made no store in $DIR/mon"
	fi
	rm -rf "$k"

	ports_free "$p2" "$p1"
	launch mon.a -i a
	mon_listening "$p2" "$p1"
	# Before the mgr starts: device health monitoring would make a pool
	# (device_health_metrics) as soon as the OSD is up. ceph.conf cannot
	# set it; the module is always on and cannot be left unimported.
	ceph_ config set mgr mgr/devicehealth/enable_monitoring false --force >/dev/null ||
		fail "the mon does not answer"
	launch mgr.x -i x
	ceph_ osd new "$osduuid" 0 >/dev/null || fail "ceph osd new $osduuid 0 failed"
	# The OSD boots while the pool is made.
	launch osd.0 -i 0
	ceph_ osd pool create "$pool" 8 8 replicated >/dev/null 2>&1 || fail "ceph osd pool create $pool failed"
	ceph_ osd pool application enable "$pool" rbd >/dev/null 2>&1 || fail "ceph osd pool application enable $pool rbd failed"
	osd_active
	# Blocks until the pool's PGs are active.
	timeout "$READY_TIMEOUT" rbd --conf "$DIR/ceph.conf" --name client.admin \
		--keyring "$DIR/ceph.client.admin.keyring" pool init "$pool" ||
		fail "rbd pool init $pool failed or timed out after ${READY_TIMEOUT}s"
	printf 'fsid=%s\nmon_host=%s\npool=%s\nmon_port_v2=%s\nmon_port_v1=%s\nobjectstore=%s\n' \
		"$fsid" "$monhost" "$pool" "$p2" "$p1" "$STORE" >"$DIR/cluster.env"
	echo "ceph.sh: made the cluster in $((($(date +%s%N) - t0) / 1000000)) ms" >&2
}

# osd_active: waits until osd.0 is active: it has seen itself up in an
# osdmap, so a client that connects now gets a map with its address. One
# that got an older map (the OSD down, or up at the address of a killed
# instance) would wait objecter_timeout (10 s) before asking for a new one.
osd_active() {
	local deadline=$((SECONDS + READY_TIMEOUT)) d
	while [ $SECONDS -lt $deadline ]; do
		for d in $DAEMONS; do
			started "$d"
		done
		timeout 5 ceph --admin-daemon "$DIR/run/ceph-osd.0.asok" status 2>/dev/null | grep -q '"state": "active"' &&
			return 0
		sleep 0.1
	done
	fail "osd.0 is not active after ${READY_TIMEOUT}s"
}

# mgr_active: waits until the mon's mgrmap has mgr.x's current process
# (its address nonce is its PID) as the available active mgr. After a mgr
# restart the mon still answers ceph df from the old one's figures.
mgr_active() {
	local deadline=$((SECONDS + READY_TIMEOUT)) d pid
	pid=$(pid_of mgr.x)
	while [ $SECONDS -lt $deadline ]; do
		for d in $DAEMONS; do
			started "$d"
		done
		if ceph_ mgr dump --format json 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)
ok = m.get("available") and any(a.get("nonce") == int(sys.argv[1]) for a in m["active_addrs"]["addrvec"])
sys.exit(0 if ok else 1)' "$pid"; then
			return 0
		fi
		sleep 0.2
	done
	fail "mgr.x (pid $pid) is not the active mgr after ${READY_TIMEOUT}s"
}

# ready: waits until client.kiln can create and remove an image and ceph df
# reports capacity.
ready() {
	local deadline=$((SECONDS + READY_TIMEOUT)) img total="" wrote="" d n=0
	while [ $SECONDS -lt $deadline ]; do
		n=$((n + 1))
		img="kiln-start-check-$$-$n"
		for d in $DAEMONS; do
			started "$d"
		done
		if [ -z "$wrote" ]; then
			if rbd_ kiln create --size 1M "$POOL/$img" >/dev/null 2>&1; then
				rbd_ kiln rm --no-progress "$POOL/$img" >/dev/null 2>&1 || fail "client.kiln could create $POOL/$img but not remove it"
				wrote=1
			fi
		fi
		if [ -n "$wrote" ]; then
			total=$(ceph_ df --format json 2>/dev/null | sed -n 's/.*"total_bytes":\([0-9]*\).*/\1/p')
			[ -n "$total" ] && [ "$total" -gt 0 ] && return 0
		fi
		sleep 0.1
	done
	if [ -z "$wrote" ]; then
		fail "client.kiln could not create an image in $POOL within ${READY_TIMEOUT}s"
	fi
	fail "ceph df reports no capacity after ${READY_TIMEOUT}s (is the mgr up?)"
}

# ports_free P...: dies if something listens on one of the TCP ports: a
# mon that cannot bind its port retries every 5 s, and clients would reach
# whatever holds it (another test's cluster) instead.
ports_free() {
	local p got
	for p in "$@"; do
		got=$(ss -Hltnp "sport = :$p" 2>/dev/null)
		[ -z "$got" ] || die "port $p is in use: $(echo "$got" | awk '{print $4, $6}' | head -n 1)"
	done
}

# mon_listening P2 P1: waits until mon.a listens on both ports.
mon_listening() {
	local pid got
	pid=$(pid_of mon.a)
	for _ in $(seq 200); do
		started mon.a
		got=$(ss -Hltnp 2>/dev/null | grep "pid=$pid," | awk '{print $4}' | sort | tr '\n' ' ' || true)
		if [[ " $got" == *" 127.0.0.1:$1 "* ]] && [[ " $got" == *" 127.0.0.1:$2 "* ]]; then
			return 0
		fi
		sleep 0.05
	done
	fail "mon.a (pid $pid) does not listen on 127.0.0.1:$1 and 127.0.0.1:$2 after 10s (it listens on: ${got:-nothing})"
}

# check_listeners: every listening socket of the daemons is on 127.0.0.1.
check_listeners() {
	local d pid bad="" got
	for d in $DAEMONS; do
		pid=$(pid_of "$d")
		got=$(ss -Hlntup 2>/dev/null | grep "pid=$pid," | awk '{print $1 " " $5}' | sort -u || true)
		[ -n "$got" ] || fail "$d (pid $pid) listens on nothing"
		while read -r proto addr; do
			case $addr in
			127.0.0.1:*) ;;
			*) bad+="$d $proto $addr; " ;;
			esac
		done <<<"$got"
	done
	[ -z "$bad" ] || fail "daemons listen beyond 127.0.0.1: ${bad%; }; stopped them"
}

report() {
	echo "conf=$DIR/ceph.conf"
	grep -E '^(fsid|mon_host|pool)=' "$DIR/cluster.env"
	echo "user=kiln"
	echo "keyring=$DIR/ceph.client.kiln.keyring"
	echo "admin_keyring=$DIR/ceph.client.admin.keyring"
	grep -E '^objectstore=' "$DIR/cluster.env"
}

start() {
	DIR=$1
	local p2=$2 p1=$3 d pid all=1 want
	POOL=${4:-kiln}
	check_port MON_PORT_V2 "$p2"
	check_port MON_PORT_V1 "$p1"
	[ "$p2" -ne "$p1" ] || die "MON_PORT_V2 and MON_PORT_V1 must differ"
	[[ $POOL =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$ ]] || die "POOL must be [A-Za-z0-9_][A-Za-z0-9_.-]*, got '$POOL'"
	deps
	mkdir -p "$DIR"
	DIR=$(cd "$DIR" && pwd)
	# Unix socket paths have room for 107 bytes; a daemon whose admin
	# socket does not fit runs without one.
	[ ${#DIR} -le 80 ] || die "DIR must be at most 80 bytes long (admin sockets go in DIR/run), got ${#DIR}: $DIR"
	# A start that fails after launching a daemon stops the cluster.
	trap 'stopped_on_failure $?' EXIT
	if [ ! -f "$DIR/cluster.env" ]; then
		[ -z "$(ls -A "$DIR")" ] ||
			die "$DIR is not empty and holds no cluster made by ceph.sh (a failed start?): remove it or use an empty directory"
		init "$POOL" "$p2" "$p1"
	else
		want=$(printf 'pool=%s\nmon_port_v2=%s\nmon_port_v1=%s' "$POOL" "$p2" "$p1")
		[ "$(grep -E '^(pool|mon_port_v2|mon_port_v1)=' "$DIR/cluster.env")" = "$want" ] ||
			die "$DIR holds a cluster with $(grep -E '^(pool|mon_port)' "$DIR/cluster.env" | tr '\n' ' ')- not pool=$POOL mon ports $p2/$p1"
		STORE=$(sed -n 's/^objectstore=//p' "$DIR/cluster.env")
		for d in $DAEMONS; do
			alive "$(pid_of "$d")" "${d%%.*}" || all=""
		done
		if [ -n "$all" ]; then
			report
			return 0
		fi
		# Restart what is not running, the mon first.
		if ! alive "$(pid_of mon.a)" mon; then
			ports_free "$p2" "$p1"
			launch mon.a -i a
			mon_listening "$p2" "$p1"
		fi
		for d in mgr.x osd.0; do
			pid=$(pid_of "$d")
			alive "$pid" "${d%%.*}" && continue
			launch "$d" -i "${d#*.}"
		done
		osd_active
	fi
	mgr_active
	ready
	check_listeners
	report
}

[ $# -ge 1 ] || usage
case $1 in
start)
	[ $# -eq 4 ] || [ $# -eq 5 ] || usage
	start "$2" "$3" "$4" "${5:-}"
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

# shellcheck shell=bash
# shellcheck disable=SC2034 # the constants are used by the scripts sourcing this
# Helpers shared by the provisioning scripts in this directory; sourced, not
# run. Everything here is idempotent: a helper that writes a file or installs
# a package does nothing when the result is already there.

# The default ports (docs/configuration.md).
KILN_API_PORT=8776
KILN_RAFT_PORT=8778
KILN_SERF_PORT=8779
KILN_AGENT_RPC_PORT=8780
KILN_AGENT_SERF_PORT=8781
KILN_ISCSI_PORT=3260

KILN_CONFIG=/etc/kiln/kiln.toml
KILN_BIN_INSTALLED=/usr/local/bin/kiln
KILN_LIBEXEC=/usr/local/libexec/kiln

PROG=$(basename "$0")
say() { echo "$PROG: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# usage: prints the script's header comment (its usage) and exits 2.
usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
	exit 2
}

need_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (sudo $0 ...)"
}

# valid_name NAME WHAT: 1-63 characters of [A-Za-z0-9_.-], the rule Kiln
# applies to agent, pool and zone names (docs/configuration.md).
valid_name() {
	[[ $1 =~ ^[A-Za-z0-9_.-]{1,63}$ ]] || die "$2 '$1' must be 1-63 characters of [A-Za-z0-9_.-]"
}

# valid_ipv4 IP WHAT
valid_ipv4() {
	local ip=$1 o
	local -a octets
	[[ $ip =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "$2 '$ip' is not an IPv4 address"
	IFS=. read -r -a octets <<<"$ip"
	for o in "${octets[@]}"; do
		[ "$((10#$o))" -le 255 ] || die "$2 '$ip' is not an IPv4 address"
	done
}

# with_port ADDR PORT: ADDR if it has a port, else ADDR:PORT. ADDR is an IPv4
# address or a host name, optionally with :port.
with_port() {
	local addr=$1 port=$2
	if [[ $addr =~ ^[A-Za-z0-9_.-]+:[0-9]{1,5}$ ]]; then
		echo "$addr"
	elif [[ $addr =~ ^[A-Za-z0-9_.-]+$ ]]; then
		echo "$addr:$port"
	else
		die "address '$addr' must be HOST or HOST:PORT"
	fi
}

# toml_list ITEM...: a TOML array of strings (the items are checked
# addresses: no quotes or backslashes to escape).
toml_list() {
	local out="" i
	for i in "$@"; do
		[[ $i =~ ^[A-Za-z0-9_.:-]+$ ]] || die "cannot put '$i' in a TOML list"
		out+="${out:+, }\"$i\""
	done
	echo "[$out]"
}

# has_local_ipv4 IP: IP is configured on an interface of this host.
has_local_ipv4() {
	ip -4 -o addr show | awk '{print $4}' | cut -d/ -f1 | grep -qxF "$1"
}

pkg_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# apt_ensure PKG...: installs the packages that are not installed yet. Runs
# apt-get update (once per script run) only when something is missing, so a
# re-run on a provisioned host needs no network.
APT_UPDATED=0
apt_ensure() {
	local p missing=()
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# A fresh VM may still be running apt (unattended-upgrades): wait for
	# the lock instead of failing.
	if [ "$APT_UPDATED" -eq 0 ]; then
		apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed"
		APT_UPDATED=1
	fi
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# put_file PATH MODE OWNER:GROUP < CONTENT: writes PATH atomically when its
# content, mode or owner differ. Sets CHANGED=1 when it wrote, else CHANGED=0.
CHANGED=0
put_file() {
	local path=$1 mode=$2 owner=$3 tmp
	CHANGED=0
	mkdir -p "$(dirname "$path")"
	tmp=$(mktemp "$path.XXXXXX")
	cat >"$tmp"
	if [ -f "$path" ] && cmp -s "$tmp" "$path" &&
		[ "$(stat -c '%a %U:%G' "$path")" = "${mode#0} $owner" ]; then
		rm -f "$tmp"
		return 0
	fi
	chmod "$mode" "$tmp"
	chown "$owner" "$tmp"
	mv -f "$tmp" "$path"
	CHANGED=1
	say "wrote $path"
}

# ensure_unit_started UNIT RESTART: enables UNIT and starts it; restarts it
# when RESTART is 1 (its configuration changed) and it was running.
ensure_unit_started() {
	local unit=$1 restart=$2
	systemctl enable --quiet "$unit"
	if [ "$restart" = 1 ] && systemctl is-active --quiet "$unit"; then
		say "restarting $unit"
		systemctl restart "$unit"
	else
		systemctl start "$unit"
	fi
}

# wait_tcp HOST PORT SECONDS WHAT: waits until HOST:PORT accepts a TCP
# connection, or dies after SECONDS.
wait_tcp() {
	local host=$1 port=$2 secs=$3 what=$4 i
	for ((i = 0; i < secs; i++)); do
		# shellcheck disable=SC2016 # expanded by the inner bash
		if timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
			return 0
		fi
		sleep 1
	done
	die "$what does not listen on $host:$port after ${secs}s"
}

# require_common: the scripts after common.sh need what it installs.
require_common() {
	if [ ! -x "$KILN_BIN_INSTALLED" ] || [ ! -f /etc/systemd/system/kiln-coordinator.service ] ||
		[ ! -f /etc/systemd/system/kiln-agent.service ]; then
		die "kiln is not installed here: run scripts/provision/common.sh first"
	fi
}

# Shared by scripts/tgtd.sh, scripts/ganesha.sh and scripts/ceph.sh, which
# source it: messages prefixed with the script's name, and a package install
# that starts no service.

SCRIPT_NAME=$(basename "$0")

die() {
	echo "$SCRIPT_NAME: $*" >&2
	exit 1
}

# usage FIRST,LAST prints the script's header comment lines FIRST..LAST
# (its synopsis) and exits 2.
usage_lines() {
	sed -n "$1p" "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# apt_install PKG... installs the packages (needs root). Their postinst
# scripts would start services (ceph.target, nfs-ganesha, rpcbind, tgt)
# listening on every address on a host with an init system, so unless the
# host already has a policy-rc.d, one that refuses every start is in place
# during the install; APT_KEPT_SERVICES_OFF=1 says it was. Other test
# packages may run apt-get at the same time: it waits for the lock.
APT_KEPT_SERVICES_OFF=""
apt_install() {
	[ $# -gt 0 ] || return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "need root to install: $*"
	fi
	echo "$SCRIPT_NAME: installing $*" >&2
	export DEBIAN_FRONTEND=noninteractive
	local policy=/usr/sbin/policy-rc.d added=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		added=1
	fi
	local rc=0
	{ apt-get -o DPkg::Lock::Timeout=300 update -qq &&
		apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >/dev/null; } || rc=$?
	[ -z "$added" ] || rm -f "$policy"
	[ "$rc" -eq 0 ] || die "apt-get install $* failed ($rc)"
	APT_KEPT_SERVICES_OFF=$added
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

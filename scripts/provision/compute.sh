#!/usr/bin/env bash
# Usage: sudo scripts/provision/compute.sh NAME IP API...
#
# Makes this host a client of the cluster, standing in for a Nova compute
# host: installs open-iscsi and python3-cinderclient, sets a known iSCSI
# initiator name, writes /etc/kiln/openrc (the cinder CLI's settings for
# Kiln's noauth mode; /etc/profile.d/kiln-cinder.sh loads it in login
# shells) and prints how to attach a volume by hand; smoke.sh does it all.
#
#   NAME   this host's name, used in the initiator name
#   IP     this host's address on the cluster network (the connector's ip)
#   API    coordinator API addresses, IP or IP:PORT (port 8776); the first
#          is the endpoint (any coordinator serves the whole API)
#
# Environment: KILN_PROJECT (project and user ID, default demo),
# KILN_INITIATOR (default iqn.1993-08.org.debian:01:kiln-NAME).
# Idempotent.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -ge 3 ] || usage
name=$1
ip=$2
shift 2
need_root
valid_name "$name" NAME
valid_ipv4 "$ip" IP
apis=()
for a in "$@"; do
	apis+=("$(with_port "$a" "$KILN_API_PORT")")
done
project=${KILN_PROJECT:-demo}
[[ $project =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "KILN_PROJECT '$project' must be 1-64 characters of [A-Za-z0-9_-]"
initiator=${KILN_INITIATOR:-iqn.1993-08.org.debian:01:kiln-$name}
[[ $initiator =~ ^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+(:[A-Za-z0-9_.:-]+)?$ ]] ||
	die "KILN_INITIATOR '$initiator' is not an iSCSI qualified name (iqn.YYYY-MM.domain:name)"
has_local_ipv4 "$ip" || die "IP $ip is not configured on this host (ip -4 addr)"

apt_ensure open-iscsi python3-cinderclient curl ca-certificates

# The initiator name the connectors carry: the target's ACL admits exactly
# the initiators a volume is attached to.
put_file /etc/iscsi/initiatorname.iscsi 0600 root:root <<EOF
## Written by kiln scripts/provision/compute.sh (KILN_INITIATOR).
InitiatorName=$initiator
EOF
if [ "$CHANGED" = 1 ]; then
	# iscsid reads the name when it starts (it is socket-activated).
	systemctl try-restart iscsid.service
fi

[ -d /etc/kiln ] || install -d -m 0755 /etc/kiln
put_file /etc/kiln/openrc 0644 root:root <<EOF
# Written by kiln scripts/provision/compute.sh. The cinder CLI against Kiln
# in noauth mode: the token is "user:project", no password. Other
# coordinators: ${apis[*]}
export OS_AUTH_TYPE=noauth
export OS_USER_ID=$project
export OS_PROJECT_ID=$project
export CINDER_ENDPOINT=http://${apis[0]}/v3/$project
# 3.27+ for the attachments API, 3.54 for its mode.
export OS_VOLUME_API_VERSION=3.54
EOF
put_file /etc/profile.d/kiln-cinder.sh 0644 root:root <<'EOF'
# Written by kiln scripts/provision/compute.sh: the cinder CLI talks to Kiln.
[ -r /etc/kiln/openrc ] && . /etc/kiln/openrc
EOF

if curl -fsS -o /dev/null --max-time 5 "http://${apis[0]}/"; then
	say "the Kiln API answers at http://${apis[0]}/"
else
	say "warning: the Kiln API does not answer at http://${apis[0]}/ yet (are the coordinators up?)"
fi

cat >&2 <<EOF
$PROG: ok: initiator $initiator, cinder CLI set up in /etc/kiln/openrc.

End-to-end smoke test (volume, attachment, iSCSI login with CHAP, 1 MiB
written and read back, cleanup):

    sudo $here/smoke.sh

By hand (as root; . /etc/kiln/openrc first):

    cinder create --name try 1
    cinder show try                      # wait for status available
    cinder attachment-create try --connect True --initiator $initiator \\
        --ip $ip --host $(hostname) --mode rw
    # The second table is connection_info: target_portal, target_iqn,
    # target_lun and, in data, auth_username / auth_password (CHAP). Then:
    iscsiadm -m node -T IQN -p PORTAL -o new
    iscsiadm -m node -T IQN -p PORTAL -o update -n node.session.auth.authmethod -v CHAP
    iscsiadm -m node -T IQN -p PORTAL -o update -n node.session.auth.username -v USER
    iscsiadm -m node -T IQN -p PORTAL -o update -n node.session.auth.password -v PASSWORD
    iscsiadm -m node -T IQN -p PORTAL --login
    ls -l /dev/disk/by-path/ip-PORTAL-iscsi-IQN-lun-LUN
    cinder attachment-complete ATTACHMENT_ID      # volume in-use
    # ... use the disk, then:
    iscsiadm -m node -T IQN -p PORTAL --logout
    iscsiadm -m node -T IQN -p PORTAL -o delete
    cinder attachment-delete ATTACHMENT_ID
    cinder delete try
EOF

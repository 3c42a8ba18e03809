#!/usr/bin/env bash
# Usage: sudo scripts/provision/coordinator.sh NAME IP [JOIN...]
#
# Makes this host a Kiln coordinator: writes /etc/kiln/kiln.toml with a
# [coordinator] section (Raft, Serf and the Cinder API on IP, ports
# 8778/8779/8776) and enables and starts kiln-coordinator.service.
#
#   NAME   unique coordinator name (Raft server ID, Serf node name)
#   IP     this host's address on the cluster network (must be configured)
#   JOIN   the other coordinators' Serf addresses, IP or IP:PORT (port 8779)
#
# bootstrap_expect is the number of coordinators: 1 + the JOIN addresses
# that are not this node's own (1, 3 or 5). Override with
# KILN_BOOTSTRAP_EXPECT. KILN_LOG_LEVEL sets log_level (default info).
#
# Run scripts/provision/common.sh first. Idempotent: the service is restarted
# only when the file changes. Run it on every coordinator with the same
# member list; the cluster forms by itself once bootstrap_expect of them see
# each other.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -ge 2 ] || usage
name=$1
ip=$2
shift 2
need_root
valid_name "$name" NAME
valid_ipv4 "$ip" IP
require_common

self_serf="$ip:$KILN_SERF_PORT"
join=()
for j in "$@"; do
	addr=$(with_port "$j" "$KILN_SERF_PORT")
	[ "$addr" = "$self_serf" ] && continue
	case " ${join[*]} " in *" $addr "*) continue ;; esac
	join+=("$addr")
done
expect=${KILN_BOOTSTRAP_EXPECT:-$((1 + ${#join[@]}))}
case $expect in
1 | 3 | 5) ;;
*) die "bootstrap_expect would be $expect: a cluster has 1, 3 or 5 coordinators (give the other coordinators as JOIN, or set KILN_BOOTSTRAP_EXPECT)" ;;
esac
log_level=${KILN_LOG_LEVEL:-info}
case $log_level in debug | info | warn | error) ;; *) die "KILN_LOG_LEVEL must be debug, info, warn or error" ;; esac

# A host is a coordinator or an agent in this layout (one kiln.toml).
if systemctl is-enabled --quiet kiln-agent.service 2>/dev/null; then
	die "kiln-agent is enabled on this host: this layout runs coordinators and agents on separate hosts"
fi
has_local_ipv4 "$ip" || die "IP $ip is not configured on this host (ip -4 addr)"

put_file "$KILN_CONFIG" 0640 root:kiln <<EOF
# Written by kiln scripts/provision/coordinator.sh; rerunning it rewrites this
# file. Keys: docs/configuration.md.
log_level = "$log_level"

[coordinator]
name             = "$name"
data_dir         = "/var/lib/kiln/coordinator"
raft_addr        = "$ip:$KILN_RAFT_PORT"
serf_addr        = "$ip:$KILN_SERF_PORT"
api_addr         = "$ip:$KILN_API_PORT"
public_url       = "http://$ip:$KILN_API_PORT"
join             = $(toml_list "${join[@]}")
bootstrap_expect = $expect
timing           = "lan"
EOF
restart=$CHANGED

ensure_unit_started kiln-coordinator.service "$restart"
wait_tcp "$ip" "$KILN_API_PORT" 60 "kiln-coordinator (journalctl -u kiln-coordinator)"
say "ok: coordinator $name, API http://$ip:$KILN_API_PORT/v3/, bootstrap_expect=$expect, join=${join[*]:-none}"
if [ "$expect" -gt 1 ]; then
	say "the cluster forms (elects a leader) once $expect coordinators see each other"
fi

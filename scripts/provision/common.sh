#!/usr/bin/env bash
# Usage: sudo scripts/provision/common.sh
#
# Prepares any Kiln node (Debian 12): base packages, the kiln binary in
# /usr/local/bin, the system user `kiln`, /etc/kiln and /var/lib/kiln, and
# the systemd units kiln-coordinator.service and kiln-agent.service (neither
# enabled here: coordinator.sh and storage.sh enable the one the node runs).
#
# The binary is bin/kiln of this checkout (/vagrant/bin/kiln in the Vagrant
# VMs), or $KILN_BIN. Build it on the host first with `make build`
# (CGO_ENABLED=0 gives a static binary that runs on any Linux of the same
# architecture). When the binary changes, running Kiln services are
# restarted. Idempotent; safe to rerun.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -eq 0 ] || usage
need_root

repo=$(cd "$here/../.." && pwd)
src=${KILN_BIN:-$repo/bin/kiln}

# Check the binary before touching anything.
[ -f "$src" ] || die "$src is missing: run 'make build' first (on the host, in the repository; for Vagrant then 'vagrant rsync' or 'vagrant provision' again)"
if ! out=$("$src" version 2>&1); then
	die "$src does not run on this $(uname -m) host: ${out:-no output}. Build a static Linux binary for it: CGO_ENABLED=0 GOOS=linux GOARCH=amd64 make build (arm64 VMs: GOARCH=arm64)"
fi

apt_ensure ca-certificates curl iproute2 util-linux procps

# The binary: replaced atomically (a running kiln keeps its old inode).
binary_changed=0
if ! cmp -s "$src" "$KILN_BIN_INSTALLED"; then
	tmp=$(mktemp /usr/local/bin/.kiln.XXXXXX)
	install -m 0755 -o root -g root "$src" "$tmp"
	mv -f "$tmp" "$KILN_BIN_INSTALLED"
	binary_changed=1
	say "installed $KILN_BIN_INSTALLED ($out)"
fi

# The user the coordinator runs as. The agent runs as root: it calls lvm and
# tgtadm.
if ! getent group kiln >/dev/null; then
	groupadd --system kiln
fi
if ! getent passwd kiln >/dev/null; then
	useradd --system --gid kiln --home-dir /var/lib/kiln --no-create-home \
		--shell /usr/sbin/nologin --comment "Kiln block storage" kiln
fi
install -d -m 0750 -o root -g kiln /etc/kiln
install -d -m 0755 -o root -g root /var/lib/kiln
install -d -m 0750 -o kiln -g kiln /var/lib/kiln/coordinator
install -d -m 0700 -o root -g root /var/lib/kiln/agent

units_changed=0
put_file /etc/systemd/system/kiln-coordinator.service 0644 root:root <<'EOF'
# Installed by kiln scripts/provision/common.sh; see docs/operations.md.
[Unit]
Description=Kiln coordinator (Raft state, Cinder v3 API, placement)
Documentation=https://github.com/kilnstore/kiln/blob/main/docs/operations.md
After=network-online.target
Wants=network-online.target

[Service]
User=kiln
Group=kiln
ExecStart=/usr/local/bin/kiln coordinator --config /etc/kiln/kiln.toml
Restart=on-failure
# Slower than the start limit (5 starts in 10 s), so it keeps trying while
# its address or its peers are not there yet.
RestartSec=5s
KillSignal=SIGTERM
TimeoutStopSec=30s
LimitNOFILE=65536
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes
ProtectSystem=full

[Install]
WantedBy=multi-user.target
EOF
[ "$CHANGED" = 0 ] || units_changed=1

put_file /etc/systemd/system/kiln-agent.service 0644 root:root <<'EOF'
# Installed by kiln scripts/provision/common.sh; see docs/operations.md.
# Runs as root: the LVM driver calls lvm and tgtadm. storage.sh adds a
# drop-in ordering it after tgt.service.
[Unit]
Description=Kiln storage agent (volume drivers, capacity gossip)
Documentation=https://github.com/kilnstore/kiln/blob/main/docs/operations.md
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/kiln agent --config /etc/kiln/kiln.toml
Restart=on-failure
RestartSec=5s
KillSignal=SIGTERM
TimeoutStopSec=30s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
[ "$CHANGED" = 0 ] || units_changed=1

if [ "$units_changed" = 1 ]; then
	systemctl daemon-reload
fi
if [ "$binary_changed" = 1 ] || [ "$units_changed" = 1 ]; then
	# Only the ones that run: the role scripts start them the first time.
	systemctl try-restart kiln-coordinator.service kiln-agent.service
fi
say "ok: $("$KILN_BIN_INSTALLED" version)"

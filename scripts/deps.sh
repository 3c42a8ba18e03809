#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12. Idempotent; safe to rerun.
# Go modules, python3-cinderclient (the real `cinder` CLI used by the client
# tests), lvm2 (the LVM driver's tests on loop devices), tgt + libiscsi-bin +
# qemu-utils/qemu-block-extra (a real iSCSI target and userspace initiators).
# The qemu guest's own packages are installed by scripts/guest/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		export PATH=$PATH:/usr/local/go/bin
	else
		echo "deps: Go is required (https://go.dev/dl/); not found" >&2
		exit 1
	fi
fi
need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v make >/dev/null 2>&1 || need+=(make)
# The real cinder CLI, driven against kiln dev by internal/cli's tests.
command -v cinder >/dev/null 2>&1 || need+=(python3-cinderclient)
command -v lvm >/dev/null 2>&1 || need+=(lvm2)
command -v losetup >/dev/null 2>&1 || need+=(util-linux)
command -v tgtd >/dev/null 2>&1 || need+=(tgt)
command -v iscsi-ls >/dev/null 2>&1 || need+=(libiscsi-bin)
command -v qemu-io >/dev/null 2>&1 || need+=(qemu-utils)
dpkg -s qemu-block-extra >/dev/null 2>&1 || need+=(qemu-block-extra)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: need root to install: ${need[*]}" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# nfs-ganesha, its VFS FSAL, dbus-daemon and libnfs-utils (the NFS export
# tests run a private bus and a real ganesha.nfsd on loopback).
if [ "$(id -u)" -eq 0 ]; then
	bash scripts/ganesha.sh deps
	bash scripts/ceph.sh deps
fi
go mod download

#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12. Idempotent; safe to rerun.
# Today: Go modules and python3-cinderclient (the real `cinder` CLI used by
# the client tests); later issues add lvm2, tgt, nfs-ganesha and Ceph here.
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
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: need root to install: ${need[*]}" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
go mod download

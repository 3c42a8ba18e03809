#!/usr/bin/env bash
# Runs the tests that need a kernel with device-mapper and an iSCSI
# initiator (thin pools, snapshots, data copies, merges, a real LV exported
# through tgtd and logged in to with open-iscsi) inside a qemu guest with
# Debian's kernel (scripts/guest/). Part of `make test`; the guest image is
# built once and cached (scripts/guest/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
dir=$(mktemp -d /tmp/kiln-guest-tests.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# Static test binaries: the guest has no Go toolchain and no host libraries.
CGO_ENABLED=0 go test -c -o "$dir/lvm.test" ./lvm
cat >"$dir/run" <<'RUN'
set -eu
export KILN_GUEST=1
# The data disk is the tests' PV (lvmtest, one VG at a time): no loop
# device and no file system in between.
export KILN_TEST_PV="$KILN_GUEST_DATA_DEV"
# Every case that needs device-mapper, plus the end-to-end API test, which
# exports a real LV through tgtd and logs in with open-iscsi here.
./lvm.test -test.v -test.timeout 20m -test.run 'TestDM|TestEndToEnd'
RUN
start=$(date +%s)
KILN_GUEST_DATA_GB=${KILN_GUEST_DATA_GB:-16} bash scripts/guest/run.sh "$dir"
echo "== guest tests passed in $(( $(date +%s) - start ))s (boot included)"

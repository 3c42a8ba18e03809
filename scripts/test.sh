#!/usr/bin/env bash
# The project's test command (make test, .ci/run): installs dependencies,
# lints, runs every test with the race detector, then short fuzz runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
start=$(date +%s)
bash scripts/deps.sh
bash scripts/lint.sh
echo "== go test -race ./..."
# TestDM* need device-mapper and TestGuest* the kernel's NFS client, which
# this kernel lacks: they run in the qemu guest below instead, so they are
# left out here (a skip under CI=true is a failure).
go test -race -count=1 -timeout 20m -skip '^(TestDM|TestGuest)' ./...
echo "== tests that need device-mapper or an NFS client, in a qemu guest"
bash scripts/test-guest.sh
echo "== fuzz (short runs of every fuzz target)"
# An execution count, not a duration: a duration can end while the fuzzer
# is between workers, which Go reports as a spurious "context deadline
# exceeded" failure.
FUZZTIME=${FUZZTIME:-20000x}
go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "-- $pkg $target"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
	done
done
echo "== all tests passed in $(( $(date +%s) - start ))s"

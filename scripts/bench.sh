#!/usr/bin/env bash
# Benchmarks; each prints its figure and its ratio to the anchor it stands
# for (docs/performance.md). Never run as part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
go test -run '^$' -bench 'Place10k' -benchmem -count 5 ./placement/
go test -run '^$' -bench 'SnapshotRestore100k' -benchtime 3x ./coordinator/state/
go test -run '^$' -bench 'CreateAccept' -benchtime 2000x ./coordinator/

#!/usr/bin/env bash
# Benchmarks; each prints its figure and its ratio to the anchor it stands
# for (docs/performance.md). Never run as part of the test suite. Run on an
# otherwise idle machine: the cluster benchmarks share the CPUs and the disk
# with everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
# Target 1: one placement decision over 10,000 pools.
go test -run '^$' -bench 'Place(Best)?10k' -benchmem -count 5 ./placement/
# Target 6 (part): Raft snapshot + restore of 100,000 volumes.
go test -run '^$' -bench 'SnapshotRestore100k' -benchtime 3x ./coordinator/state/
# Target 2: creates accepted by 3 coordinators from 64 clients (with real and
# with stubbed agents).
go test -run '^$' -bench 'CreateAccept' -benchtime 5000x ./coordinator/
# Target 3: create -> available against the raw driver operation.
go test -run '^$' -bench 'CreateToAvailable' -benchtime 300x ./coordinator/
# Target 4: an agent's capacity change visible on the leader.
go test -run '^$' -bench 'CapacityFreshness' -benchtime 30x ./coordinator/
# Target 5 (leader part): writes accepted again after the leader is killed;
# every iteration starts a cluster.
go test -run '^$' -bench 'Failover' -benchtime 3x ./coordinator/

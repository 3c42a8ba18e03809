// Package rbd is Kiln's Ceph RBD driver: one pool of the agent is one Ceph
// pool, reached as one cephx user through the rbd and ceph command-line
// tools (ceph-common), the way Cinder's RBD driver reaches it through
// librbd.
//
//	volume-<id>                      an image (format 2, the cluster's default features)
//	volume-<id>@snapshot-<sid>       a snapshot, protected so that volumes can be cloned from it
//	volume-<src>@clone-<id>          the temporary snapshot a volume clone is taken from
//
// Create, extend (online) and delete are rbd create/resize/rm; a volume from
// a snapshot is a copy-on-write clone, flattened when
// Config.FlattenFromSnapshot is set or its chain of parents would be deeper
// than Config.MaxCloneDepth (Cinder's rbd_max_clone_depth); a clone of a
// volume is taken from a temporary snapshot and flattened at once, so the
// source keeps no dependants. Deleting a snapshot or a volume flattens the
// clones that still depend on it first, so no delete ever takes another
// volume's data with it. Revert is rbd snap rollback, grown back to the
// volume's size if it was extended since (as Cinder).
//
// Capacity is `ceph df`: free is the pool's max_avail, total stored +
// max_avail, provisioned the sum of the images' sizes. A cluster that does
// not answer within Config.Timeout makes Stats fail, which the agent
// publishes as unknown capacity; every command runs under that timeout
// (without quorum, rbd and ceph wait forever).
//
// Why the CLI and not go-ceph (librbd through cgo): go-ceph needs cgo,
// Debian's librbd-dev and librados-dev at build time and the "pacific"
// build tag, and makes the whole agent a cgo binary; the CLI costs a
// process per command (40-160 ms against ~10 ms through librbd on one
// connection, docs/backends/rbd.md), which is small next to what a Cinder
// deployment waits for and keeps the agent a static binary.
//
// Every name on a command line is built from the validated pool name and
// validated IDs; output is JSON (--format json), parsed strictly; exit
// codes (librbd's errno) map to typed errors.
package rbd

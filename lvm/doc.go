// Package lvm will hold the LVM driver (lvm2 CLI with JSON reports, thick
// and thin pools, snapshots, clones, iSCSI export through tgt). It is built
// by issue 4; this version has no LVM support, and an agent configured with
// driver "lvm" refuses to start with a clear error.
package lvm

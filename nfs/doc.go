// Package nfs is Kiln's file-based storage driver: a volume is a file.
//
// A pool is a directory: a local one (Config.Dir; the agent's host serves
// it, through nfs-ganesha when Config.Exporter is set, or it is the
// zero-setup pool of `kiln dev`), or a remote NFS share the driver mounts
// itself (Config.Share, mount.go) and checks before touching any file.
// Snapshots come in two modes (Config.Snapshots): copies, described
// below, or Cinder's qcow2 overlay chains (chain.go), the default for
// shares, exported and qcow2 pools. docs/backends/nfs.md has the whole
// picture.
//
// # Copy mode
//
// One configured directory is one pool, holding:
//
//	volume-<id>             a volume: a raw image whose apparent size is
//	                        exactly the volume size
//	snapshot-<id>           a snapshot: a raw, sparse copy of its volume's
//	                        file at the time it was taken
//	snapshot-<id>.meta      the snapshot's sidecar: JSON
//	                        {"version":1,"snapshot_id":...,"volume_id":...}
//	.volume-<id>.tmp-*,     temp files of operations in progress (or
//	.snapshot-<id>.tmp-*    interrupted by a crash)
//
// A file's path is the object's provider location. Info reports
// storage_protocol "local" ("nfs" for exported and share pools) and the
// capability online_extend_support "True" in copy mode (a file can grow
// while it is open; the qcow2 mode reports "False").
//
// Operations:
//
//   - CreateVolume makes a blank (sparse) file.
//   - CreateSnapshot, CloneVolume and CreateVolumeFromSnapshot copy the
//     source file: only its data extents are read (lseek SEEK_DATA /
//     SEEK_HOLE), and within them all-zero blocks are not written, so the
//     copy of a 1 TiB volume holding a few MiB takes as long as copying a
//     few MiB and occupies as much. Where SEEK_DATA is not supported the
//     whole file is read, and the copy still skips zero blocks. Clones and
//     volumes from snapshots may be larger than their source (the rest reads
//     as zeros), never smaller (storage.ErrInvalid). Every copy is a full,
//     independent file: deleting a volume that has snapshots, or a snapshot
//     that volumes were created from, affects nothing else. (qcow2 overlays,
//     which share data, are the qcow2 mode's.)
//   - ExtendVolume grows the file in place.
//   - RevertToSnapshot builds a copy of the snapshot at the volume's current
//     size and renames it over the volume, as Cinder's generic revert does
//     (a temporary volume of the volume's size created from the snapshot,
//     copied onto the volume): if the volume was extended after the
//     snapshot, it keeps its size and the part beyond the snapshot reads as
//     zeros. The volume's file is replaced, so it must not be attached
//     (Cinder only reverts available volumes).
//   - ExportVolume returns Cinder's "local" connection info,
//     {"driver_volume_type":"local","data":{"device_path":<file>}}: nothing
//     is exported, the volume is only reachable by its path on the agent's
//     host (the agent adds its name as data.host). UnexportVolume has
//     nothing to undo.
//
// The sidecar is what makes CreateSnapshot idempotent without confusing
// snapshots: a repeated create of snapshot-<id> for the same volume returns
// the existing snapshot, for another volume it fails with storage.ErrExists.
// A sidecar rather than an extended attribute, because NFS shares do not
// reliably carry user xattrs. It is written (atomically, and
// made durable) before the snapshot file appears and removed after the
// snapshot file is gone, so a snapshot never exists without it; a sidecar
// without its snapshot means nothing and Cleanup removes it. A snapshot
// whose sidecar cannot be read is listed with an empty volume ID, cannot be
// reverted to and blocks its ID until deleted.
//
// Provisioning is per pool:
//
//   - "thin" (default): volumes and snapshots are sparse files. Free
//     capacity is what statfs reports as available to unprivileged users,
//     and in a pool capped by CapacityGB at most the cap minus the blocks
//     volumes and snapshots occupy; over-subscription is placement's
//     business (max_over_subscription_ratio), not the driver's, so thin
//     operations never check space.
//   - "thick": every volume's and every snapshot's full size is accounted
//     for. Free capacity is total minus the sizes of the volumes, the
//     snapshots and the operations in flight, never more than statfs free;
//     an operation that would not fit (create, clone, create from snapshot,
//     snapshot, extend) fails with storage.ErrNoSpace and leaves nothing
//     behind. Blocks are reserved with fallocate(2); on a file system that
//     does not support it (EOPNOTSUPP) files are left sparse and only the
//     accounting protects the pool. A revert builds its new file next to
//     the old one, so it needs the volume's size free on the file system for
//     the duration of the copy, though the pool's accounting does not
//     change.
//
// Provisioned capacity (Stats.ProvisionedGB) stays the sum of the volumes'
// sizes; snapshots are counted in free capacity as above.
//
// The driver enforces the physical limit only. reserved_percentage and
// max_over_subscription_ratio are reported in Info for the placement engine,
// which applies them (as Cinder's scheduler does) before a create reaches the
// driver.
//
// # Crash safety and concurrency
//
// Every file appears atomically: it is built as a temp file
// (.volume-<id>.tmp-<random> or .snapshot-<id>.tmp-<random>), filled,
// sized, fsynced, renamed into place, and the directory is fsynced; a revert
// renames over the volume, so a crash leaves the old or the reverted data,
// never a mix. A crash leaves at most temp files and an orphaned sidecar,
// which ListVolumes, ListSnapshots and Stats ignore and DeleteVolume,
// DeleteSnapshot or Cleanup remove. Extending is a single size change
// (fallocate or ftruncate) made durable with fsync.
//
// Every operation is idempotent by ID and serialized per object: volumes
// and snapshots each have their own lock (a volume and a snapshot never
// share one, even with the same UUID). An operation on two objects (a clone
// and its source, a volume and its snapshot) takes both locks in a fixed
// order, so two such operations can never deadlock; operations on unrelated
// objects run in parallel. In thick mode an operation that builds a file
// checks the free space and claims it under a pool-wide lock, then copies
// without it; the claim counts as used until the file is renamed into
// place, and the rename and the release of the claim are again one step
// under the lock, so concurrent operations can never provision past the
// capacity nor be refused space that is free. An extend checks and grows the
// file under the lock. These locks are in-process: a directory must be owned
// by exactly one Driver.
//
// IDs are checked with storage.ValidateID and sizes with
// storage.ValidateSize before any path is built or any file is touched.
//
// The package is written for Linux (statfs, fallocate, SEEK_DATA,
// st_blocks). On other systems it compiles, files are always sparse, copies
// read whole files, and Stats (and so thick provisioning) fail with
// errors.ErrUnsupported.
package nfs

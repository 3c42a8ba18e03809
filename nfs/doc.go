// Package nfs is Kiln's file-based storage driver: a volume is a file.
//
// # Local-directory mode
//
// This is the only mode built so far, and the zero-setup pool used by
// `kiln dev`. One configured directory is one pool. A volume with ID <id> is
// the regular file <dir>/volume-<id>, a raw image whose apparent size is
// exactly the volume size. The file's path is the volume's provider location,
// and Info reports storage_protocol "local": nothing is exported, the volume
// is only reachable by that path on the agent's own host.
//
// Provisioning is per pool:
//
//   - "thin" (default): volumes are sparse files. Free capacity is what
//     statfs reports as available to unprivileged users; over-subscription
//     is placement's business (max_over_subscription_ratio), not the
//     driver's, so creating a thin volume never checks space.
//   - "thick": every volume's full size is accounted for. Free capacity is
//     total minus the sum of volume sizes, never more than statfs free, and
//     CreateVolume refuses (storage.ErrNoSpace) a volume that does not fit.
//     Blocks are reserved with fallocate(2); on a file system that does not
//     support it (EOPNOTSUPP) the file is left sparse and only the
//     accounting protects the pool.
//
// The driver enforces the physical limit only. reserved_percentage and
// max_over_subscription_ratio are reported in Info for the placement engine,
// which applies them (as Cinder's scheduler does) before a create reaches the
// driver.
//
// # Crash safety and concurrency
//
// A volume file appears atomically: it is built as
// <dir>/.volume-<id>.tmp-<random>, sized, fsynced, renamed into place, and
// the directory is fsynced. A crash leaves at most a temp file, which
// ListVolumes and Stats ignore and DeleteVolume or Cleanup remove. Every
// operation is idempotent by volume ID and serialized per ID; operations on
// different IDs run in parallel. In thick mode the free-space check and the
// file creation hold a pool-wide lock, so concurrent creates can never
// provision past the capacity. These locks are in-process: a directory must
// be owned by exactly one Driver.
//
// IDs are checked with storage.ValidateID and sizes with
// storage.ValidateSize before any path is built or any file is touched.
//
// The package is written for Linux (statfs, fallocate, st_blocks). On other
// systems it compiles, volumes are always sparse, and Stats (and so thick
// provisioning) fail with errors.ErrUnsupported.
//
// # Later
//
// Not built yet, and nothing here pretends to support them: NFS shares
// mounted by the driver (one or more per pool, storage_protocol "nfs"),
// qcow2 volumes, snapshots as qcow2 overlays, clones, extend, and exports
// managed through nfs-ganesha's D-Bus interface. The file handling here
// (temp-file create, per-ID locking, directory scan) works on any mounted
// directory, so a share will reuse it as one more directory.
package nfs

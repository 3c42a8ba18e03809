// Package qemuimg wraps Debian's qemu-img (qemu-utils 7.2) for the NFS
// driver, which keeps volumes as files the way Cinder's NFS/remotefs driver
// does: raw (sparse) or qcow2 files, and snapshots as chains of qcow2
// overlays in the volume's directory:
//
//	volume-<id>  <-  volume-<id>.<snap1>  <-  volume-<id>.<snap2>  (active)
//
// Every command runs as exec.CommandContext without a shell, with
// LC_ALL=C (the error mapping reads qemu-img's English messages), stdin
// closed, stdout and stderr captured and bounded. Failures are
// *CommandError values whose Unwrap reaches a sentinel (ErrNotFound,
// ErrNoSpace, ErrInUse, ...); the ones callers branch on wrap the
// storage sentinels.
//
// # What goes on qemu-img's command line
//
// qemu-img reads much more than a file name out of a file name argument:
// "json:{...}" is a whole block-device description, "nbd:host:port",
// "http://..." and friends select network protocols, and ',' separates
// options in -o and --image-opts strings. An image file written by a guest
// can also carry a header that points qemu at any of those. So:
//
//   - Image paths are absolute, cleaned, and of the characters
//     [A-Za-z0-9._+@/-] only: no ':' (no protocol prefix can form), no ','
//     and no spaces. They start with '/', so no argument is ever taken for
//     an option.
//   - Backing files are names of files in the image's own directory, of the
//     same characters and without '/', as Cinder writes them: moving a
//     volume's directory keeps its chains intact, and a chain cannot leave
//     the directory. They are passed with -b and always with their format
//     (-F); never through -o.
//   - The format of every image is given by the caller (-f), never probed:
//     probing a raw volume lets its guest decide, by writing a qcow2 or vmdk
//     header into the volume, which files (or hosts) the next qemu-img run
//     opens. Only "raw" and "qcow2" are accepted.
//   - InfoChain walks a chain one image at a time instead of using
//     --backing-chain, checking each backing file name (same directory,
//     safe characters, format recorded in the image) before anything opens
//     it, as Cinder's _qemu_img_info_base does.
//
// # Choices
//
//   - Info passes -U (--force-share): it only reads the header, and a volume
//     attached to a running VM holds qemu's image lock, so without -U the
//     chain of an attached volume could not be read at all (Cinder does the
//     same for attached volumes). Commands that write, and Check and
//     Convert (whose results would be inconsistent against a writer), take
//     the lock normally and fail with ErrInUse; Convert can opt in with
//     ConvertOpts.ForceShare.
//   - Create and Convert refuse to overwrite: qemu-img itself silently
//     truncates an existing file, so the wrapper first creates the file with
//     O_EXCL (ErrExists if it is there) and removes it again if qemu-img
//     fails or is cancelled.
//   - Convert writes with -t writeback, not qemu-img's default for convert
//     ("unsafe", which never flushes): the copy is flushed to stable storage
//     before Convert returns. Sparse output (-S 4k), ordered writes (no -W).
//   - Commit always passes -d, as Cinder's _img_commit does: the committed
//     image is not emptied, because the caller removes it (or rebases the
//     image above it onto the base with an unsafe rebase) right after. It
//     also makes an interrupted commit harmless: every block the base has
//     received is still in the top image, so reads through the chain do not
//     change, and the commit can be repeated.
//   - Sizes are bytes and must be multiples of 512: qemu-img silently rounds
//     other sizes up.
//   - Durability: qemu-img flushes qcow2 metadata it writes (create, resize,
//     commit, rebase) but not a new raw file, and never the directory; a
//     caller that records a new file elsewhere and must survive a host crash
//     syncs the file and its directory itself.
//   - Metadata commands (info, create, resize and unsafe rebase without
//     preallocation) are bounded by Config.MetadataTimeout; commands that
//     move data are bounded only by the caller's context. A cancelled
//     command is killed.
//
// Progress: Convert, Commit and Rebase run qemu-img with -p and parse its
// "    (12.34/100%)\r" updates from stdout into byte counts of the image's
// virtual size, reported to the callback in the options or, without one,
// to storage.Progress(ctx); the last report is always (size, size).
package qemuimg

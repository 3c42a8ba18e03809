// Package tgt exports volumes over iSCSI through the userspace target tgt
// (tgtd, driven with tgtadm): one target per volume, named
// Config.IQNPrefix + "volume-" + <volume id>, with the volume as LUN 1, an
// initiator-name ACL and optionally an incoming CHAP account. The LVM driver
// uses it for LV devices; anything that has a block device or a file to
// serve can.
//
// # Pieces
//
//   - Manager runs tgtadm: Ensure (create or repair one export,
//     idempotent), Remove, Targets (parsed `--mode target --op show`),
//     CheckPortals and Reconcile (Ensure for many, after a tgtd restart).
//   - Store is the agent's own record of its exports, secrets included: a
//     0600 JSON file in the agent's data directory, written atomically.
//   - Keeper runs Reconcile from the Store every interval, which is how a
//     restarted tgtd is noticed and refilled.
//
// A driver exporting a volume records first, then exports:
//
//	user, secret := tgt.GenerateCHAP() // or the ones already recorded
//	e := tgt.Export{VolumeID: id, BackingStore: dev, Initiators: []string{conn.Initiator},
//		CHAPUser: user, CHAPSecret: secret}
//	err := store.Put(e)                // the record survives a crash below
//	info, err := manager.Ensure(ctx, e)
//
// and unexports in the other order (Remove, then Store.Delete).
//
// # tgtd facts this package is built on (tgt 1.0.85, Debian 12)
//
//   - tgtd keeps no state across restarts. Exports are re-created from the
//     Store, never from `tgt-admin --dump`, which drops CHAP secrets and
//     restores every target with "allow ALL".
//   - A tgtd that cannot bind its portal keeps running on 0.0.0.0:3260 and
//     [::]:3260. Ensure and Reconcile check `--mode portal --op show`
//     against Config.Portals first and refuse (ErrPortalMismatch).
//   - A target with no ACL entry refuses every initiator; ACL entries are
//     OR'ed; "ALL" admits everyone. With an incoming account bound, CHAP is
//     required. Changing either does not end sessions already logged in.
//   - tgtadm exits 22 for nearly every refusal; the kind of failure is in
//     its stderr, mapped to storage.ErrNotFound, storage.ErrExists,
//     storage.ErrInvalid, ErrBusy and ErrTargetUnavailable (CommandError).
//   - tgtadm needs an explicit tid for a new target; Ensure takes the lowest
//     free one under the Manager's lock and retries if another writer took
//     it. Targets are found by name, never by remembered tid.
//   - A bound account can be deleted without complaint (the target then no
//     longer requires CHAP), and tgtd never shows a secret. So the Manager
//     remembers (a hash of) each secret it set; an account it did not set,
//     e.g. after the agent restarted, is re-created, with the target's ACL
//     cleared meanwhile so that it never admits initiators without CHAP
//     (the ACL is restored right after; new logins are refused for those
//     few milliseconds).
//   - Unbinding (or deleting) an incoming account that is not the last one
//     bound to a target leaves a hole in tgtd's account array, and the next
//     target listing or CHAP login segfaults tgtd. This package binds one
//     account per target and unbinds foreign ones last-first.
//   - tgtd refuses to exit while it has targets and ignores SIGTERM and
//     SIGINT: scripts/tgtd.sh stop deletes the targets, then `--op delete
//     --mode system`, then SIGKILL.
//   - Control socket numbers (-C) above 32767 are refused by tgtd and
//     tgtadm.
//
// # CHAP secrets and tgtadm's command line
//
// tgtadm takes an account's password only as an argument (`--mode account
// --op new --user U --password P`), so for the few milliseconds that command
// runs, the secret is visible in /proc/<pid>/cmdline to local users who can
// read other processes' command lines (mount /proc with hidepid=2 to
// prevent that). There is no other interface short of tgtd's private
// control-socket protocol. This package never logs a secret or puts one in
// an error: command arguments are redacted in debug logs, tgtadm's output is
// redacted before it is logged or returned, and Export's String, GoString
// and LogValue hide the secret.
//
// Tests run a real tgtd started by scripts/tgtd.sh on 127.0.0.1:3261 and
// reach it with userspace initiators (qemu-io's iscsi driver, libiscsi's
// iscsi-readcapacity16), since the test machines have no kernel initiator.
package tgt

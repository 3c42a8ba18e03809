// Package ganesha exports volume directories over NFSv4 through the
// userspace NFS server nfs-ganesha (FSAL VFS), driven over its D-Bus
// interface with godbus: one export per volume, at pseudo path
// Config.PseudoRoot + "/" + <volume id>, read-write for the attached hosts'
// addresses only. The agent on an NFS server host runs it for Kiln's NFS
// driver.
//
// # Pieces
//
//   - ExportMgr is ganesha's export manager over D-Bus (org.ganesha.nfsd,
//     /org/ganesha/nfsd/ExportMgr, org.ganesha.nfsd.exportmgr): AddExport,
//     UpdateExport, RemoveExport, ShowExports, DisplayExport, plus the
//     name's Owner and WatchOwner (NameOwnerChanged). Every call is
//     bounded by BusConfig.CallTimeout; failures are *CallError wrapping
//     storage.ErrNotFound, storage.ErrExists, storage.ErrInvalid, ErrBusy
//     or ErrUnavailable.
//   - Manager owns a directory of export files (export-<Export_Id>.conf,
//     0640, written atomically) and makes ganesha match them: Ensure (add
//     or reload one export, idempotent), Remove, Reconcile (Ensure for
//     many, and removal of exports whose file no record wants).
//   - Store is the agent's record of its exports and the allocator of their
//     Export_Ids (stable for an export's life, reused as late as possible):
//     a 0600 JSON file, written atomically.
//   - Keeper runs Reconcile when ganesha appears on the bus and every
//     interval, which is how a restarted ganesha gets its exports back.
//   - Volumes is what the NFS driver calls: ExportVolume adds the
//     connector's IP to the volume's export, UnexportVolume removes it (and
//     the export with the last one). ConnectionInfo builds Cinder's nfs
//     connection_info.
//
// A driver exporting a volume records first, then exports (Volumes does
// this):
//
//	e, err := store.Put(ganesha.Export{VolumeID: id, Path: dir, Clients: []string{ip}}) // allocates the ID
//	info, err := manager.Ensure(ctx, e)
//
// and unexports in the other order (Store.Delete, then Manager.Remove; an
// export whose Remove failed is an orphan the Keeper removes).
//
// # Inputs
//
// Nothing a caller passes reaches an export file or a D-Bus call
// unchecked: volume IDs are canonical UUIDs, paths are clean absolute paths
// of [A-Za-z0-9/._+@:-] (nothing that ends a quoted string or a
// statement), clients are IP addresses or CIDR prefixes in canonical form
// (no host names, netgroups, wildcards or /0), export IDs are 1..65534.
// Invalid input is storage.ErrInvalid before any call.
//
// # The export file
//
//	EXPORT {
//		Export_Id = 1000;
//		Path = "/srv/kiln/volumes/<id>";
//		Pseudo = "/kiln/<id>";
//		Access_Type = None;          # clients no CLIENT block matches get nothing
//		Squash = root_squash;        # Config.Squash
//		Anonymous_uid = 65534;
//		Anonymous_gid = 65534;
//		Protocols = 4;
//		Transports = TCP;
//		SecType = sys;
//		Attr_Expiration_Time = 0;
//		FSAL {
//			Name = VFS;
//		}
//		CLIENT {
//			Clients = 10.0.0.5, fd00::/64;
//			Access_Type = RW;
//			Protocols = 4;
//		}
//	}
//
// root_squash is the default (ganesha's own, and what Cinder's NFS driver
// assumes with nas_secure_file_operations): a client's root acts as
// 65534, so volume files must be accessible to that user or to the uid
// qemu runs as on the client. no_root_squash trusts the client's root.
//
// # nfs-ganesha facts this package is built on (4.3, Debian 12)
//
//   - Exports added over D-Bus live in memory only: a restarted ganesha has
//     none of them. The agent re-adds them from its Store, with the same
//     Export_Ids (NFSv4 file handles carry them).
//   - Signatures: AddExport(s path, s "EXPORT(Export_Id=N)") → s,
//     UpdateExport(s, s) → s, RemoveExport(q), ShowExports() →
//     (tt) a(qs((sb)(sb)(sb)(sb)(sb)(sb)(sb)(sb))(tt)), DisplayExport(q) →
//     q s s s a(siyyiuuuuu). ShowExports and DisplayExport show the Path
//     (the Pseudo path only with mount_path_pseudo = true), clients as
//     "10.0.0.5/32". Replies are parsed by leading fields only.
//   - An EXPORT-level Access_Type = RW admits every host that no CLIENT
//     block matches; the export-wide Access_Type is therefore None. A
//     client that is not admitted does not even see the export
//     (NFS4ERR_NOENT on lookup).
//   - Clients must be unquoted ("Expected a client, got a double quoted
//     string"); IPv6 addresses and prefixes work unquoted.
//   - A CLIENT block without Protocols inherits 3,4,9P and ganesha warns on
//     every add ("A protocol is specified for a CLIENT block that is not
//     enabled in NFS_CORE_PARAM, fixing up").
//   - An export file without the selected EXPORT block, an empty one and
//     one with an unclosed brace all fail with "Error finding exports: ...
//     because No such file or directory" (InvalidArgs). A missing ';'
//     after a quoted string (Path = "/x" without ';') makes ganesha
//     segfault: the call ends with NoReply and ganesha is gone. Other
//     syntax errors are InvalidFileContent ("Syntax error in statement").
//     Unknown parameters and values are worse: the export is added anyway,
//     the reply reading "1 exports added. Errors found: ...". The Manager
//     takes such an export out again and fails.
//   - An export clashing with another's Pseudo path fails with only
//     "(invalid param value) errors"; ganesha's log says "Pseudo path (P)
//     is a duplicate". Errors quote ganesha's log lines written during the
//     call when BusConfig.GaneshaLog is set.
//   - UpdateExport adds an export that does not exist. AddExport of an
//     active Export_Id is "already active" (InvalidFileContent).
//   - Export_Id 0 is the pseudo root ganesha builds itself; 65535 is
//     accepted but avoided. Store allocates from 1000..65534 by default to
//     stay clear of exports in ganesha.conf.
//   - The default Anonymous_uid, -2, becomes uid 4294967294 on Linux.
//   - ganesha caches attributes for Attr_Expiration_Time (60 s): a file
//     resized or re-permissioned on the server keeps its old size and mode
//     for clients meanwhile. Exports set 0.
//   - Without Bind_addr ganesha listens on *:NFS_Port; with Bind_addr =
//     127.0.0.1 on [::ffff:127.0.0.1]:NFS_Port. NFSv4 alone
//     (Protocols = 4, Enable_UDP = false, Enable_NLM = false, Enable_RQUOTA
//     = false) needs no rpcbind; the failed registration is logged and
//     harmless.
//   - A ganesha that cannot reach its bus at start runs on without D-Bus
//     ("DBUS not initialized, service thread exiting"), unmanageable.
//   - A private system bus needs method returns and errors allowed as
//     requested replies (send_requested_reply="true"), or every call times
//     out ("Rejected send message, 0 matched rules; type=method_return").
//   - Calls take 0.1-0.3 ms (AddExport ~0.27 ms, RemoveExport ~0.12 ms);
//     Manager.Ensure of a new export ~0.9 ms, Remove ~0.4 ms, with fsyncs.
//     ganesha starts (bus name taken, port bound) in 10-20 ms.
//
// Tests run a real ganesha on a private bus (ganeshatest) and read and
// write through libnfs's userspace client (nfs-cat, nfs-cp): the test
// machines cannot mount NFS. libnfs 4.0.0 fails NFSv4 writes over ~3.5 KB,
// so tests write small.
package ganesha

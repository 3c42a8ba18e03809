#!/usr/bin/env bash
# Builds (or finds in the cache) the guest image used by scripts/guest/run.sh
# and prints its directory on stdout; everything else goes to stderr.
#
# The directory, KILN_GUEST_CACHE/<key>, holds:
#   root.img    ext4 root filesystem (raw; booted copy-on-write, never written)
#   vmlinuz     Debian's cloud kernel from the image
#   initrd.img  a tiny busybox initramfs that loads virtio_blk and mounts /dev/vda
#   kernel-version, packages.txt, ok (written last)
# <key> is a hash of packages.txt, this script, guest/* and exitcode/*, so a
# change to any of them builds a new image. Builds run under a flock and
# land with an atomic rename, so concurrent runs neither race nor see a
# half-built image. Also installs the host packages the harness needs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${KILN_GUEST_CACHE:-/var/cache/kiln/guest}
mirror=${KILN_GUEST_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

say() { echo "kiln-guest: $*" >&2; }
die() {
	say "$*"
	exit 1
}

# ensure_host_packages installs what is missing among the host packages the
# harness uses (CI starts from a machine with none of them).
ensure_host_packages() {
	local pkg missing=()
	for pkg in qemu-system-x86 debootstrap debian-archive-keyring gpgv wget cpio busybox-static \
		e2fsprogs util-linux coreutils gzip tar; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "need root to install host packages: ${missing[*]}"
	say "installing host packages: ${missing[*]}"
	# Other configured sources may be unreachable; apt-get install below
	# fails clearly if Debian's own lists are missing.
	apt-get update -qq >&2 || say "apt-get update reported errors (continuing)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

find_go() {
	if command -v go >/dev/null 2>&1; then
		command -v go
	elif [ -x /usr/local/go/bin/go ]; then
		echo /usr/local/go/bin/go
	else
		say "Go not found; installing golang-go" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >&2
		command -v go
	fi
}

# cache_key hashes every input of the image: names and contents.
cache_key() {
	(
		cd "$here"
		for f in packages.txt build.sh guest/* exitcode/go.mod exitcode/*.go exitcode/*.s; do
			printf '%s\n' "$f"
			sha256sum <"$f"
		done
		echo "$suite $mirror"
	) | sha256sum | cut -c1-16
}

packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/packages.txt"; }

# module_order prints, for the modules named, their modules.dep paths with
# dependencies first (the order insmod needs).
module_order() {
	local moddir=$1
	shift
	declare -A dep seen
	local line mod deps
	while IFS= read -r line; do
		mod=${line%%:*}
		deps=${line#*:}
		dep[$mod]=$deps
		dep[$(basename "$mod" .ko | tr - _)]=$mod
	done <"$moddir/modules.dep"
	visit() {
		local path=$1 d
		[ -n "${seen[$path]:-}" ] && return 0
		seen[$path]=1
		for d in ${dep[$path]}; do visit "$d"; done
		echo "$path"
	}
	local name path
	for name in "$@"; do
		path=${dep[$name]:-}
		[ -n "$path" ] || die "module $name not in $moddir/modules.dep"
		visit "$path"
	done
}

build() {
	local out=$1 tmp=$2 root=$2/root log=$2/build.log
	mkdir -p "$out" "$cache/debs"
	local pkgs
	pkgs=$(packages | paste -sd, -)
	say "building the guest image in $tmp (debootstrap $suite: ${pkgs//,/ }); log: $log"
	local t0=$SECONDS
	if ! debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$pkgs" \
		--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		"$suite" "$root" "$mirror" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		die "debootstrap failed"
	fi
	say "debootstrap done in $((SECONDS - t0)) s"

	local kver
	kver=$(basename "$(find "$root/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d | sort -V | tail -n 1)")
	if [ -z "$kver" ] || [ ! -f "$root/boot/vmlinuz-$kver" ]; then
		die "no kernel in the image"
	fi
	cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
	echo "$kver" >"$out/kernel-version"
	cp "$here/packages.txt" "$out/packages.txt"

	# The guest's own files.
	install -m 0755 "$here/guest/kiln-init" "$root/kiln-init"
	install -D -m 0644 "$here/guest/lvm.conf" "$root/etc/kiln-lvm/lvm.conf"
	local gobin
	gobin=$(find_go)
	(cd "$here/exitcode" && GOWORK=off GOFLAGS='' GOTOOLCHAIN=local CGO_ENABLED=0 GOOS=linux GOARCH=amd64 \
		"$gobin" build -trimpath -ldflags='-s -w' -o "$root/usr/local/sbin/kiln-exit" .) >&2 ||
		die "building exitcode/ failed"
	echo kiln-guest >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tkiln-guest\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	: >"$root/etc/fstab"
	ln -sfn ../proc/self/mounts "$root/etc/mtab"
	# Not needed at run time: Debian's initramfs (we boot our own), apt's
	# caches, documentation.
	rm -f "$root"/boot/initrd.img* "$root"/initrd.img*
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*

	# The initramfs: static busybox, the virtio disk modules, the init.
	local ird=$tmp/initrd m
	mkdir -p "$ird/bin" "$ird/lib/modules"
	cp /bin/busybox "$ird/bin/busybox"
	install -m 0755 "$here/guest/initramfs-init" "$ird/init"
	module_order "$root/usr/lib/modules/$kver" virtio_pci virtio_blk >"$ird/modules.load"
	while read -r m; do
		install -D -m 0644 "$root/usr/lib/modules/$kver/$m" "$ird/lib/modules/$m"
	done <"$ird/modules.load"
	(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) >"$out/initrd.img"

	# The root filesystem, built from the directory (no loop device, no
	# mount). Inode tables and journal are initialised now, not lazily by
	# the guest kernel on every boot.
	local used size
	used=$(du -sm "$root" | cut -f1)
	size=$((used * 13 / 10 + 512))
	rm -f "$out/root.img"
	truncate -s "${size}M" "$out/root.img"
	mkfs.ext4 -q -F -L kiln-root -E lazy_itable_init=0,lazy_journal_init=0 \
		-d "$root" "$out/root.img" >&2
	say "image ready: ${size} MiB root, kernel $kver, $((SECONDS - t0)) s"
}

main() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, qemu)"
	ensure_host_packages
	local key dir
	key=$(cache_key)
	dir=$cache/$key
	if [ -f "$dir/ok" ]; then
		touch "$dir/ok" # last use, for prune_stale
		echo "$dir"
		return 0
	fi
	mkdir -p "$cache"
	exec 9>"$cache/.lock"
	if ! flock -n 9; then
		say "waiting for another build of the guest image ($cache/.lock)"
		flock 9
	fi
	if [ -f "$dir/ok" ]; then
		echo "$dir"
		return 0
	fi
	tmp=$(mktemp -d "$cache/.build.XXXXXX")
	trap cleanup EXIT
	build "$tmp/out" "$tmp"
	touch "$tmp/out/ok"
	rm -rf "$dir" # a leftover without ok
	mv "$tmp/out" "$dir"
	prune_stale "$key"
	echo "$dir"
}

# prune_stale removes the images of other keys not used for a day (their
# ok file is touched on every use), so edits to the harness do not pile
# up gigabytes in the cache. Runs under the lock.
prune_stale() {
	local d k
	for d in "$cache"/*/ok; do
		d=$(dirname "$d")
		k=$(basename "$d")
		if [[ $k =~ ^[0-9a-f]{16}$ ]] && [ "$k" != "$1" ] && [ -n "$(find "$d/ok" -mmin +1440)" ]; then
			say "removing stale image $d"
			rm -rf "$d"
		fi
	done
}

tmp=
cleanup() {
	[ -n "$tmp" ] || return 0
	# debootstrap mounts proc/sys inside the target; never rm -rf through a
	# mount point.
	local mnt
	awk -v t="$tmp/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done
	if awk -v t="$tmp/" 'index($2, t) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
		say "leaving $tmp: still has mounts"
	else
		rm -rf "$tmp"
	fi
}

main "$@"

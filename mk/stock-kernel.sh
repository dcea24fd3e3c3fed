#!/bin/bash
# Fetches Debian's stock x86_64 kernel: the linux-image-<abi>-amd64 package
# that the linux-image-amd64 metapackage currently depends on (per the
# local apt lists). Tests boot it with its modules loaded from the initramfs.
#
# usage: mk/stock-kernel.sh OUT
#
# OUT becomes a symlink (replaced atomically) to the cache entry
#   ${HUSK_CACHE:-/var/cache/husk}/stock-kernel/<package>_<version>/
# which holds:
#   boot/vmlinuz-REL, boot/config-REL,   `dpkg -x` of the package
#   lib/modules/REL/...
#   lib/modules/REL/modules.dep{,.bin}   ... and the rest of `depmod -b`'s output
#   release                              REL, one line
#   vmlinuz                              symlink to boot/vmlinuz-REL
#   package                              package, version, .deb size and sha256,
#                                        download seconds
# Progress goes to stderr; stdout is one line: the entry's path.
#
# The .deb (about 70 MB; 400 MB extracted) is downloaded once per machine
# and version and not kept. An entry is complete or absent: it is made in
# a temporary directory beside it and renamed into place, under a lock.
# `apt-get update` runs only when the packages are missing from the apt
# lists or the archive no longer has the listed version (404). A cache hit
# costs one apt-cache call (about a second). When a new
# entry is made, all but the two newest older entries are removed.
set -euo pipefail

SELF=$(readlink -f "$0")
META=linux-image-amd64
CACHE_ROOT=${HUSK_CACHE:-/var/cache/husk}/stock-kernel
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
PATH=$PATH:/usr/sbin:/sbin

say() { echo "stock-kernel: $*" >&2; }
die() { echo "stock-kernel: error: $*" >&2; exit 1; }

case ${1:-} in
-h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
'') die "usage: $0 OUT" ;;
esac
[ $# -eq 1 ] || die "usage: $0 OUT"
OUT=$1
if [ -e "$OUT" ] && [ ! -L "$OUT" ]; then
	die "$OUT exists and is not a symlink; remove it (it becomes a link into $CACHE_ROOT)"
fi
for t in apt-cache apt-get dpkg depmod sha256sum flock; do
	command -v "$t" >/dev/null || die "$t not found (Debian packages apt, dpkg, kmod, coreutils, util-linux)"
done

# resolve: sets PKG and VER from the apt lists (the candidate of $META
# and its versioned dependency), or returns 1. One apt-cache call: each
# costs most of a second here.
resolve() {
	local dep
	dep=$(apt-cache show --no-all-versions "$META" 2>/dev/null | sed -n 's/^Depends: //p' |
		head -n 1 | tr ',' '\n' | sed 's/^ *//' | grep -m 1 '^linux-image-[0-9]') || return 1
	# "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
	PKG=${dep%% *}
	VER=$(printf '%s\n' "$dep" | sed -n 's/.*(= *\([^)]*\)).*/\1/p')
	[ -n "$VER" ] || return 1
}

apt_update() {
	[ "$(id -u)" = 0 ] || die "$1; run 'apt-get update' as root"
	say "$1; running apt-get update"
	apt-get update -q >"$WORK/update.log" 2>&1 ||
		{ sed 's/^/  /' "$WORK/update.log" >&2; die "apt-get update failed (is Debian's archive reachable?)"; }
}

cleanup() { if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi; }

# download: the .deb of PKG=VER into $WORK/dl; returns 2 when the lists
# or the archive no longer have it (stale lists).
download() {
	rm -rf "$WORK/dl" && mkdir "$WORK/dl"
	local t0 rc=0
	t0=$(date +%s%N)
	# As root apt fetches as _apt, which must be able to write the
	# directory; otherwise it warns and fetches as root.
	[ "$(id -u)" != 0 ] || chown _apt "$WORK/dl" 2>/dev/null || true
	(cd "$WORK/dl" && apt-get download -q "$PKG=$VER") >"$WORK/dl.log" 2>&1 || rc=$?
	t0=$((($(date +%s%N) - t0) / 1000000))
	DL_SECONDS=$((t0 / 1000)).$(printf '%03d' $((t0 % 1000)))
	grep '^W: ' "$WORK/dl.log" >&2 || true
	if [ "$rc" != 0 ]; then
		grep -Eq ' 404 |^E: Unable to locate package|^E: Version .* was not found' \
			"$WORK/dl.log" && return 2
		sed 's/^/  /' "$WORK/dl.log" >&2
		die "cannot download $PKG=$VER from Debian's archive (see above; is it reachable?)"
	fi
	DEB=$(find "$WORK/dl" -maxdepth 1 -name '*.deb' | head -n 1)
	[ -n "$DEB" ] || die "apt-get download $PKG=$VER left no .deb"
}

# build ENTRY: download, extract, depmod, rename into place.
build_entry() {
	local entry=$1 root rel mods
	if ! download; then
		# The lists are stale: the archive dropped that version.
		apt_update "$PKG=$VER is not in the apt lists or the archive"
		resolve || die "$META: no linux-image dependency found after apt-get update"
		entry=$CACHE_ROOT/${PKG}_$VER
		ENTRY=$entry
		[ ! -f "$entry/release" ] || return 0
		download || { sed 's/^/  /' "$WORK/dl.log" >&2; die "$PKG=$VER: not found even after apt-get update"; }
	fi
	say "downloaded $(basename "$DEB"): $(stat -c %s "$DEB") bytes in ${DL_SECONDS} s"
	root=$WORK/root
	dpkg -x "$DEB" "$root" || die "dpkg -x $DEB failed"
	# Debian after bookworm ships /usr/lib/modules only.
	if [ ! -d "$root/lib/modules" ] && [ -d "$root/usr/lib/modules" ]; then
		ln -s usr/lib "$root/lib"
	fi
	mods=$(cd "$root/lib/modules" 2>/dev/null && ls) || true
	if [ -z "$mods" ] || [ "$(echo "$mods" | wc -l)" != 1 ]; then
		die "$PKG: expected one lib/modules/REL directory, found: '${mods//$'\n'/ }'"
	fi
	rel=$mods
	[ -f "$root/boot/vmlinuz-$rel" ] || die "$PKG: no boot/vmlinuz-$rel"
	depmod -b "$root" "$rel" 2>"$WORK/depmod.log" ||
		{ cat "$WORK/depmod.log" >&2; die "depmod -b $root $rel failed"; }
	[ -s "$root/lib/modules/$rel/modules.dep" ] || die "depmod wrote no modules.dep"
	echo "$rel" >"$root/release"
	ln -s "boot/vmlinuz-$rel" "$root/vmlinuz"
	{
		echo "package=$PKG"
		echo "version=$VER"
		echo "deb=$(basename "$DEB")"
		echo "deb-bytes=$(stat -c %s "$DEB")"
		echo "deb-sha256=$(sha256sum "$DEB" | cut -d' ' -f1)"
		echo "download-seconds=$DL_SECONDS"
	} >"$root/package"
	rm -rf "$entry"
	mv -T "$root" "$entry"
	say "extracted $rel into $entry ($(du -sm "$entry" | cut -f1) MB)"
	prune "$entry"
}

# prune KEEP: removes older entries beyond the two newest besides KEEP.
prune() {
	local old
	find "$CACHE_ROOT" -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -path "$1" \
		-printf '%T@ %p\n' | sort -rn | tail -n +3 | cut -d' ' -f2- |
		while IFS= read -r old; do
			say "removing old entry $old"
			rm -rf "$old"
		done
}

main() {
	mkdir -p "$CACHE_ROOT" 2>/dev/null || die "cannot create $CACHE_ROOT (set HUSK_CACHE?)"
	WORK=
	trap cleanup EXIT
	trap 'exit 130' INT TERM HUP
	exec 9>"$CACHE_ROOT/.lock"
	if ! flock -n 9; then
		say "waiting for another download to finish"
		flock 9
	fi
	# Leftovers of killed runs (we hold the lock).
	rm -rf "$CACHE_ROOT"/.tmp.*
	WORK=$(mktemp -d "$CACHE_ROOT/.tmp.XXXXXX")
	# apt's _apt user must reach $WORK/dl (see download).
	chmod 0755 "$WORK"
	PKG='' VER=''
	if ! resolve; then
		apt_update "$META or its linux-image dependency is not in the apt lists"
		resolve || die "$META: no installable linux-image dependency in the apt lists"
	fi
	ENTRY=$CACHE_ROOT/${PKG}_$VER
	if [ -f "$ENTRY/release" ]; then
		say "cached: $PKG $VER"
	else
		say "fetching $PKG $VER (the dependency of $META)"
		build_entry "$ENTRY"
	fi
	exec 9>&-
	mkdir -p "$(dirname "$OUT")"
	ln -s "$ENTRY" "$OUT.tmp.$$"
	mv -T "$OUT.tmp.$$" "$OUT"
	say "$OUT -> $ENTRY ($(cat "$ENTRY/release"))"
	echo "$ENTRY"
}

main

#!/bin/bash
# Runs COMMAND as on a machine that never built husk, without touching this
# one: in a private mount namespace (unshare -m --propagation private) where
#
#   /var/cache/husk           is an empty tmpfs (no musl sysroot, no kernel,
#                             no stock kernel cached; HUSK_CACHE is unset)
#   /etc/apt/sources.list.d   is a copy without husk-src.* and with every
#   (and /etc/apt/sources.list, when it has deb-src lines)
#                             deb-src entry taken out, so apt has no deb-src
#   /var/lib/apt/lists        is a copy without the Sources indexes
#   /var/cache/apt            is an empty tmpfs (no downloaded .debs)
#   /usr/local/bin, /usr/local/sbin  are empty (nothing but Debian's tools)
#   $HUSK_FRESH_WORK          a scratch tmpfs, gone when COMMAND ends
#
# and with a clean environment (env -i: PATH, HOME, LANG, TERM and
# HUSK_FRESH_WORK only). Whatever COMMAND writes there (deb-src entries, apt
# lists, cache entries) vanishes with the namespace; the rest of the file
# system is the real one: a BUILD directory outside the scratch tmpfs stays,
# and packages apt-get installs are installed on this machine (dpkg's
# database is not hidden; on a machine with mk/packages.txt installed
# nothing is).
#
# usage: tests/fresh/ns.sh COMMAND [ARGS...]        (as root)
#   e.g. tests/fresh/ns.sh make BUILD=/tmp/fresh-build demo
#
# Before COMMAND runs it checks that apt really has no deb-src entry and the
# cache is empty, and fails naming what it could not hide. Exit status: that
# of COMMAND, or 1 when the namespace could not be set up.
set -euo pipefail
export LC_ALL=C

SELF=$(readlink -f "${BASH_SOURCE[0]}")
HUSK_CACHE_DIR=/var/cache/husk
die() { echo "fresh-ns: error: $*" >&2; exit 1; }
say() { echo "fresh-ns: $*" >&2; }

# ------------------------------------------------------------- outside --
if [ "${1:-}" != --inner ]; then
	[ $# -ge 1 ] || die "usage: $0 COMMAND [ARGS...]"
	[ "$(id -u)" = 0 ] || die "needs root (mount namespaces, tmpfs mounts)"
	command -v unshare >/dev/null || die "unshare not found (Debian package util-linux)"
	# Mount points must exist on the real file system. An empty
	# /var/cache/husk is what the first `make` creates anyway; it is removed
	# again if we made it and it is still empty.
	made_cache=0
	if [ ! -d "$HUSK_CACHE_DIR" ]; then
		mkdir -p "$HUSK_CACHE_DIR" || die "cannot create the mount point $HUSK_CACHE_DIR"
		made_cache=1
	fi
	work=$(mktemp -d /tmp/husk-fresh.XXXXXX) || die "mktemp -d /tmp/husk-fresh.XXXXXX failed"
	rc=0
	unshare -m --propagation private -- "$SELF" --inner "$work" "$@" || rc=$?
	rmdir "$work" 2>/dev/null || say "warning: $work is not empty (written outside the namespace?)"
	if [ "$made_cache" = 1 ]; then rmdir "$HUSK_CACHE_DIR" 2>/dev/null || true; fi
	exit "$rc"
fi

# -------------------------------------------------------------- inside --
shift
work=$1
shift
[ $# -ge 1 ] || die "no command"
[ -d "$work" ] || die "scratch mount point $work is missing"

mount -t tmpfs -o mode=0755 husk-fresh "$work" || die "mount tmpfs on $work failed"
mkdir "$work/.ns"
ns=$work/.ns

# deb822 (.sources) without deb-src: the token goes from Types, and a
# stanza left without a type goes altogether.
deb822_no_src() {
	awk 'BEGIN { RS = ""; ORS = "" }
	{
		n = split($0, line, "\n"); out = ""; keep = 1
		for (i = 1; i <= n; i++) {
			l = line[i]
			if (tolower(l) ~ /^types[ \t]*:/) {
				v = l; sub(/^[^:]*:/, "", v); t = ""
				m = split(v, w, /[ \t]+/)
				for (j = 1; j <= m; j++) if (w[j] != "" && w[j] != "deb-src") t = t " " w[j]
				if (t == "") keep = 0
				l = "Types:" t
			}
			out = out l "\n"
		}
		if (keep) print out "\n"
	}' "$1"
}
oneline_no_src() { sed -E '/^[[:space:]]*deb-src([[:space:]]|$)/d' "$1"; }

# /etc/apt/sources.list.d: a filtered copy, writable (the scripts add
# their deb-src entry there).
d=/etc/apt/sources.list.d
mkdir "$ns/sources.list.d"
if [ -d "$d" ]; then
	for f in "$d"/* "$d"/.[!.]*; do
		[ -e "$f" ] || continue
		b=${f##*/}
		case $b in
		husk-src.*) continue ;;
		*.sources) deb822_no_src "$f" >"$ns/sources.list.d/$b" ;;
		*.list) oneline_no_src "$f" >"$ns/sources.list.d/$b" ;;
		*) cp -a "$f" "$ns/sources.list.d/$b" ;;
		esac
	done
	chmod 0755 "$ns/sources.list.d"
	chmod 0644 "$ns/sources.list.d"/* 2>/dev/null || true
	mount --bind "$ns/sources.list.d" "$d" || die "bind mount over $d failed"
fi
if [ -f /etc/apt/sources.list ] && grep -Eq '^[[:space:]]*deb-src([[:space:]]|$)' /etc/apt/sources.list; then
	oneline_no_src /etc/apt/sources.list >"$ns/sources.list"
	chmod 0644 "$ns/sources.list"
	mount --bind "$ns/sources.list" /etc/apt/sources.list || die "bind mount over /etc/apt/sources.list failed"
fi

# apt's lists without the source indexes (a fresh machine never fetched
# them): without this, adding the deb-src entry back would find them and
# `apt-get update` would be a no-op.
l=/var/lib/apt/lists
mkdir "$ns/lists"
if [ -d "$l" ]; then
	# (cp -a keeps partial/ owned by _apt, which apt fetches as)
	find "$l" -mindepth 1 -maxdepth 1 ! -name '*_Sources' ! -name '*_Sources.*' \
		-exec cp -a -t "$ns/lists" {} + || die "copying $l failed"
	rm -rf "$ns/lists/partial"/* 2>/dev/null || true
	chmod --reference="$l" "$ns/lists"
	mount --bind "$ns/lists" "$l" || die "bind mount over $l failed"
fi

# apt's cache (downloaded .debs, binary caches): empty.
mount -t tmpfs -o mode=0755 husk-fresh-apt /var/cache/apt || die "mount tmpfs on /var/cache/apt failed"
mkdir -p /var/cache/apt/archives/partial
chown _apt:root /var/cache/apt/archives/partial 2>/dev/null || true
chmod 0700 /var/cache/apt/archives/partial

# husk's cache: empty.
mount -t tmpfs -o mode=0755 husk-fresh-cache "$HUSK_CACHE_DIR" || die "mount tmpfs on $HUSK_CACHE_DIR failed"

# Tools a Debian system does not have.
for p in /usr/local/bin /usr/local/sbin; do
	[ -d "$p" ] || continue
	mount -t tmpfs -o mode=0755 husk-fresh-local "$p" || die "mount tmpfs on $p failed"
done

# ---------------------------------------------------------- preconditions --
if out=$(apt-get source --print-uris libcap2 2>&1); then
	echo "$out" | tail -n 5 >&2
	die "apt still has a deb-src entry for libcap2 after hiding ours; look in /etc/apt/sources.list and /etc/apt/sources.list.d/"
fi
if [ -n "$(apt-cache showsrc libcap2 2>/dev/null)" ]; then
	die "apt still knows source package libcap2 after hiding the Sources indexes in $l"
fi
[ -z "$(ls -A "$HUSK_CACHE_DIR")" ] || die "$HUSK_CACHE_DIR is not empty in the namespace"

exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME="${HOME:-/root}" LANG=C.UTF-8 TERM="${TERM:-dumb}" HUSK_FRESH_WORK="$work" "$@"

#!/bin/bash
# The fresh-setup suite's steps; runs inside tests/fresh/ns.sh (a machine
# that never built husk: empty /var/cache/husk, no deb-src entry, no source
# indexes). Prints PASS/FAIL lines; each step's output is in LOG_DIR/STEP.log.
#
# usage: tests/fresh/ns.sh tests/fresh/steps.sh LOG_DIR [PROBE DIR...]
#   PROBE DIR...: writes DIR/PROBE into each DIR first (tests/fresh/run.sh
#   checks that none shows up outside the namespace)
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
logs=$1
probe=${2:-}
shift $(($# < 2 ? $# : 2))
work=${HUSK_FRESH_WORK:?run me under tests/fresh/ns.sh}
cache=/var/cache/husk
apt_d=/etc/apt/sources.list.d
lists=/var/lib/apt/lists
mkdir -p "$logs"
cd "$src" || exit 1
# The steps below delete deb-src entries and cache contents: only ever
# those of the namespace.
if [ "$(findmnt -n -o FSTYPE --mountpoint "$cache" 2>/dev/null)" != tmpfs ] ||
	! findmnt -n --mountpoint "$apt_d" >/dev/null 2>&1 ||
	! findmnt -n --mountpoint "$lists" >/dev/null 2>&1; then
	echo "FAIL setup: $cache, $apt_d or $lists is not the namespace's own (run me under tests/fresh/ns.sh)"
	exit 1
fi
if [ -n "$probe" ]; then
	for d in "$@"; do
		[ -d "$d" ] && echo probe >"$d/$probe"
	done
fi

pass() { echo "PASS $1"; }
fail() { # name why [log]
	echo "FAIL $1: $2"
	if [ -n "${3:-}" ] && [ -f "$3" ]; then
		echo "    last lines of $3:"
		tail -n 15 "$3" | sed 's/^/    /'
	fi
	return 0
}
has_deb_src() { apt-get source --print-uris libcap2 >/dev/null 2>&1; }
# Back to a machine that never ran us: no deb-src entry of ours, no source
# indexes, an empty cache (the namespace hides the real ones; these are
# its own copies).
forget() {
	rm -f "$apt_d"/husk-src.*
	find "$lists" -maxdepth 1 \( -name '*_Sources' -o -name '*_Sources.*' \) -delete
	find "$cache" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
	! has_deb_src && [ -z "$(ls -A "$cache")" ]
}
# On a failure, keep what the scripts left in the cache (their logs) where
# they survive the namespace.
keep_cache_logs() { # step
	local f
	for f in "$cache"/musl-sysroot/*.log "$cache"/kernel/*.log; do
		[ -f "$f" ] && cp "$f" "$logs/$1.cache-${f##*/}"
	done
	return 0
}

# ---- 1. make deps: mk/deps.sh adds the deb-src entry (--ensure-deb-src) --------------------
# What `make demo` and `make check` run first. On the code before
# ensure_cache_root, apt-get update's log went to a cache directory that
# did not exist yet, and this failed at once.
log=$logs/deps-deb-src.log
t0=$SECONDS
if ! mk/deps.sh mk/packages.txt >"$log" 2>&1; then
	keep_cache_logs deps-deb-src
	fail deps-deb-src "mk/deps.sh mk/packages.txt failed on a machine without deb-src entries or husk cache" "$log"
elif ! ls "$apt_d"/husk-src.* >/dev/null 2>&1; then
	fail deps-deb-src "mk/deps.sh succeeded but wrote no $apt_d/husk-src.*" "$log"
elif ! has_deb_src; then
	fail deps-deb-src "after mk/deps.sh apt still cannot fetch source packages (apt-get source --print-uris libcap2)" "$log"
elif [ -z "$(apt-cache showsrc --only-source musl 2>/dev/null)" ]; then
	fail deps-deb-src "after mk/deps.sh apt has no source index (apt-cache showsrc musl is empty)" "$log"
else
	pass "deps-deb-src ($((SECONDS - t0)) s)"
fi

# ---- 2. the sysroot from nothing, by the script alone -------------------------------------------
# mk/musl-sysroot.sh run by hand on a fresh machine: it adds the deb-src
# entry itself (resolve_versions), then builds everything into an empty
# cache.
log=$logs/sysroot-from-scratch.log
out=$work/sysroot
t0=$SECONDS
if ! forget; then
	fail sysroot-from-scratch "could not reset the namespace to a fresh machine (deb-src or cache left)"
elif ! mk/musl-sysroot.sh "$out" >"$log" 2>&1; then
	keep_cache_logs sysroot-from-scratch
	fail sysroot-from-scratch "mk/musl-sysroot.sh $out failed on a fresh machine" "$log"
elif ! grep -q 'cache miss' "$log"; then
	fail sysroot-from-scratch "mk/musl-sysroot.sh did not build (no 'cache miss' in its output)" "$log"
elif ! ls "$apt_d"/husk-src.* >/dev/null 2>&1; then
	fail sysroot-from-scratch "mk/musl-sysroot.sh built without adding its deb-src entry?" "$log"
elif [ "$(find "$cache/musl-sysroot" -mindepth 2 -maxdepth 2 -name .complete | wc -l)" != 1 ]; then
	fail sysroot-from-scratch "no single complete entry in $cache/musl-sysroot" "$log"
elif [ ! -f "$out/.husk-musl-sysroot" ] || [ ! -x "$out/bin/musl-gcc" ] || [ ! -f "$out/musl/lib/libc.a" ]; then
	fail sysroot-from-scratch "$out lacks .husk-musl-sysroot, bin/musl-gcc or musl/lib/libc.a" "$log"
else
	pass "sysroot-from-scratch ($((SECONDS - t0)) s)"
fi

# ---- 3. what it built links and runs ---------------------------------------------------------
log=$logs/sysroot-links.log
if [ -x "$out/bin/musl-gcc" ]; then
	cat >"$work/probe.c" <<-'EOF'
	#include <stdio.h>
	#include <protobuf-c/protobuf-c.h>
	#include <seccomp.h>
	#include <sys/capability.h>
	#include <libmount/libmount.h>
	#include <blkid/blkid.h>
	#include <libkmod.h>
	#include <json-c/json.h>
	#include <linux/types.h>
	int main(void)
	{
		struct json_object *o = json_object_new_object();
		scmp_filter_ctx s = seccomp_init(SCMP_ACT_ALLOW);
		cap_t c = cap_init();
		struct libmnt_context *m = mnt_new_context();
		blkid_probe b = blkid_new_probe();
		struct kmod_ctx *k = kmod_new("/nonexistent", NULL);
		__u32 x = 42;
		printf("fresh-sysroot-ok %s %d\n", protobuf_c_version(),
		       o && s && c && m && b && k && x == 42);
		return 0;
	}
	EOF
	if ! "$out/bin/musl-gcc" -static -O1 -isystem "$out/include" -o "$work/probe" "$work/probe.c" \
		-L"$out/lib" -lprotobuf-c -lseccomp -lcap -lmount -lblkid -lkmod -ljson-c >"$log" 2>&1; then
		fail sysroot-links "a static program using every sysroot library does not link" "$log"
	elif ! "$work/probe" >>"$log" 2>&1 || ! grep -q '^fresh-sysroot-ok .* 1$' "$log"; then
		fail sysroot-links "the static probe did not run as expected" "$log"
	elif readelf -lW "$work/probe" | grep -q 'program interpreter'; then
		fail sysroot-links "the probe is dynamically linked" "$log"
	else
		pass sysroot-links
	fi
else
	fail sysroot-links "no sysroot to try (sysroot-from-scratch failed)"
fi

# ---- 4. husk's make on a fresh build directory -------------------------------------------------
# The first thing `make demo` does: the deps and sysroot stamps (mk/deps.sh,
# then a cache hit of mk/musl-sysroot.sh).
log=$logs/make-sysroot-stamp.log
b=$work/build
t0=$SECONDS
if ! make -C "$src" BUILD="$b" "$b/.sysroot.stamp" >"$log" 2>&1; then
	keep_cache_logs make-sysroot-stamp
	fail make-sysroot-stamp "make BUILD=$b $b/.sysroot.stamp failed" "$log"
elif grep -q 'cache miss' "$log"; then
	fail make-sysroot-stamp "the sysroot was built again instead of copied from the cache" "$log"
elif ! cmp -s "$b/sysroot/musl/lib/libc.a" "$out/musl/lib/libc.a"; then
	fail make-sysroot-stamp "$b/sysroot/musl/lib/libc.a differs from the one built just before" "$log"
elif [ "$(cat "$b/.sysroot.stamp")" != "$b/sysroot" ]; then
	fail make-sysroot-stamp "$b/.sysroot.stamp holds '$(cat "$b/.sysroot.stamp")', not $b/sysroot" "$log"
else
	pass "make-sysroot-stamp ($((SECONDS - t0)) s)"
fi
exit 0

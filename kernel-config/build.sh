#!/bin/bash
# Builds husk's minimal guest kernel (x86_64 bzImage):
#   make tinyconfig + kernel-config/husk.config, checked line by line.
#
# Source: Debian's linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz,
# installed with apt-get when missing), or the tree in $KERNEL_SRC (built
# out of tree, so it must be clean: `make mrproper` there first).
#
# The result is cached by content under
#   ${HUSK_CACHE:-/var/cache/husk}/kernel/<key>/{bzImage,config}
# where <key> hashes the source identity, the fragment, this script, the
# compiler and make. A cached kernel is copied out in well under a second.
#
# usage: kernel-config/build.sh [--out DIR]     (default DIR: build/kernel)
# writes DIR/bzImage and DIR/config
set -euo pipefail

SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")
FRAGMENT=$HERE/husk.config
SRC_PKG=linux-source-6.1
SRC_TAR=/usr/src/$SRC_PKG.tar.xz
# Debian package names of everything the kernel build runs (mk/packages.txt).
BUILD_PKGS="build-essential bc bison flex libelf-dev xz-utils lz4"
CACHE_ROOT=${HUSK_CACHE:-/var/cache/husk}/kernel
OUTDIR=build/kernel
# Called from husk's make: its flags and command-line variables (V=, CC=,
# -j with a jobserver) and kbuild's own knobs must not steer this build.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES GNUMAKEFLAGS ARCH SUBARCH CROSS_COMPILE LLVM \
	KBUILD_OUTPUT KCFLAGS KCPPFLAGS KAFLAGS LOCALVERSION || true

say() { echo "kernel: $*"; }
die() { echo "kernel: error: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

while [ $# -gt 0 ]; do
	case $1 in
	--out) [ $# -ge 2 ] || die "--out needs a directory"; OUTDIR=$2; shift 2 ;;
	--out=*) OUTDIR=${1#--out=}; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (usage: $0 [--out DIR])" ;;
	esac
done
[ -f "$FRAGMENT" ] || die "config fragment $FRAGMENT is missing"

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

apt_install() {
	is_root || die "missing Debian packages: $*; install them as root (or run 'make deps')"
	say "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
		|| { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; } \
		|| die "apt-get install $* failed"
}

# ---------------------------------------------------------------- key ----
# What identifies the source tree: the Debian package version (plus the
# tarball's size and mtime, against a hand-replaced file), or for
# KERNEL_SRC its kernel version and every file's path, size and mtime.
source_identity() {
	if [ -n "${KERNEL_SRC:-}" ]; then
		[ -f "$KERNEL_SRC/Makefile" ] && [ -f "$KERNEL_SRC/Kconfig" ] \
			|| die "KERNEL_SRC=$KERNEL_SRC is not a kernel source tree"
		echo "tree $(make -s -C "$KERNEL_SRC" kernelversion 2>/dev/null)"
		(cd "$KERNEL_SRC" && find . -path ./.git -prune -o -type f -printf '%P %s %T@\n' \
			| LC_ALL=C sort | sha256sum)
	else
		echo "deb $SRC_PKG $(pkg_version "$SRC_PKG")"
		stat -c '%s %Y' "$SRC_TAR"
	fi
}

compute_key() {
	{
		echo "husk-kernel arch=x86_64"
		echo "$SRC_ID"
		cat "$SELF" "$FRAGMENT"
		gcc --version | sed -n 1p
		make --version | sed -n 1p
	} | sha256sum | cut -c1-16
}

# ------------------------------------------------------------- verify ----
# config_lines FILE: "CONFIG_X=value" for every setting in FILE, with
# "# CONFIG_X is not set" written as CONFIG_X=n.
config_lines() {
	sed -n -E -e 's/^(CONFIG_[A-Za-z0-9_]+)=(.*)$/\1=\2/p' \
		-e 's/^# (CONFIG_[A-Za-z0-9_]+) is not set$/\1=n/p' "$1"
}

# verify_config FRAGMENT DOTCONFIG: every setting of the fragment (the last
# one, where it repeats, as in merge_config.sh) must hold in the final
# .config; kconfig silently drops a =y whose dependencies are off.
verify_config() {
	local frag=$1 cfg=$2 line name got bad=0
	local -A have=() want=()
	local -a order=()
	while IFS= read -r line; do
		have[${line%%=*}]=${line#*=}
	done < <(config_lines "$cfg")
	while IFS= read -r line; do
		name=${line%%=*}
		[ -n "${want[$name]+set}" ] || order+=("$name")
		want[$name]=${line#*=}
	done < <(config_lines "$frag")
	for name in "${order[@]}"; do
		got=${have[$name]:-n}
		if [ "$got" != "${want[$name]}" ]; then
			echo "  $name: fragment says ${want[$name]}, .config has $got" >&2
			bad=$((bad + 1))
		fi
	done
	if [ "$bad" -gt 0 ]; then
		echo "  ($bad settings did not take: a dependency is off; see 'make menuconfig', search with /)" >&2
		return 1
	fi
}

# -------------------------------------------------------------- build ----
# step NAME CMD...: one line per step; the command's output goes to the log.
step() {
	local name=$1 t0 rc
	shift
	t0=$(date +%s)
	set +e
	( set -e; "$@" ) >>"$LOG" 2>&1
	rc=$?
	set -e
	if [ $rc -ne 0 ]; then
		say "$name ... FAILED ($(($(date +%s) - t0)) s)"
		fail_log
	fi
	say "$name ... ok ($(($(date +%s) - t0)) s)"
}

fail_log() {
	mkdir -p "$CACHE_ROOT"
	cp "$LOG" "$CACHE_ROOT/build-$KEY.log"
	{
		echo "----- last 40 lines of $CACHE_ROOT/build-$KEY.log -----"
		tail -n 40 "$LOG"
		echo "-----"
	} >&2
	die "kernel build failed; full log: $CACHE_ROOT/build-$KEY.log"
}

kmake() {
	make -C "$SRC" O="$WORK/obj" ARCH=x86_64 KBUILD_BUILD_USER=husk KBUILD_BUILD_HOST=husk \
		KBUILD_BUILD_TIMESTAMP="$BUILD_TIMESTAMP" KBUILD_BUILD_VERSION=1 "$@"
}

do_extract() {
	mkdir -p "$WORK/src"
	tar -xf "$SRC_TAR" -C "$WORK/src" --strip-components=1
}

do_config() {
	kmake tinyconfig
	"$SRC/scripts/kconfig/merge_config.sh" -m -O "$WORK/obj" "$WORK/obj/.config" "$FRAGMENT"
	kmake olddefconfig
}

do_bzimage() {
	kmake -j"$(nproc)" bzImage
}

build_kernel() {
	local entry=$1 t0
	t0=$(date +%s)
	WORK=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
	LOG=$WORK/build.log
	: >"$LOG"
	if [ -n "${KERNEL_SRC:-}" ]; then
		SRC=$(readlink -f "$KERNEL_SRC")
		BUILD_TIMESTAMP="husk"
		say "source: $SRC ($(make -s -C "$SRC" kernelversion 2>/dev/null))"
	else
		SRC=$WORK/src
		# reproducible: the kernel's build date is the source package's
		BUILD_TIMESTAMP=$(date -u -d "@$(stat -c %Y "$SRC_TAR")" '+%Y-%m-%d %H:%M:%S UTC')
		step "extracting $SRC_PKG $(pkg_version "$SRC_PKG")" do_extract
	fi
	step "configuring (tinyconfig + husk.config)" do_config
	if ! verify_config "$FRAGMENT" "$WORK/obj/.config" 2>"$WORK/verify.txt"; then
		say "checking .config against husk.config ... FAILED"
		cat "$WORK/verify.txt" >&2
		die "husk.config asks for settings the kernel cannot have as written"
	fi
	say "checking .config against husk.config ... ok"
	step "building bzImage with -j$(nproc) (takes minutes)" do_bzimage

	mkdir "$WORK/entry"
	cp "$WORK/obj/arch/x86/boot/bzImage" "$WORK/entry/bzImage"
	cp "$WORK/obj/.config" "$WORK/entry/config"
	{
		echo "key=$KEY"
		echo "source=${SRC_ID%%$'\n'*}"
		echo "kernelrelease=$(cat "$WORK/obj/include/config/kernel.release")"
		echo "build-seconds=$(($(date +%s) - t0))"
		echo "bzImage-bytes=$(stat -c %s "$WORK/entry/bzImage")"
	} >"$WORK/entry/info"
	rm -rf "$entry"
	mv -T "$WORK/entry" "$entry"
	say "built in $(($(date +%s) - t0)) s, $(stat -c %s "$entry/bzImage") bytes: $entry"
}

copy_out() {
	local entry=$1 tmp
	mkdir -p "$OUTDIR"
	tmp=$(mktemp -d "$OUTDIR/.tmp.XXXXXX")
	cp "$entry/bzImage" "$entry/config" "$tmp/"
	mv -f "$tmp/config" "$OUTDIR/config"
	mv -f "$tmp/bzImage" "$OUTDIR/bzImage"
	rmdir "$tmp"
}

cleanup() {
	if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}

# --------------------------------------------------------------- main ----
main() {
	local missing p installed
	if [ -z "${KERNEL_SRC:-}" ] && [ ! -f "$SRC_TAR" ]; then
		apt_install "$SRC_PKG"
		[ -f "$SRC_TAR" ] || die "$SRC_PKG is installed but $SRC_TAR is missing"
	fi
	if [ -n "${KERNEL_SRC:-}" ] && { [ -e "$KERNEL_SRC/.config" ] || [ -e "$KERNEL_SRC/include/config" ]; }; then
		# kbuild refuses to build out of tree from a configured tree
		die "KERNEL_SRC=$KERNEL_SRC has been configured or built in place; run 'make mrproper' there"
	fi
	mkdir -p "$CACHE_ROOT" 2>/dev/null || die "cannot create cache dir $CACHE_ROOT (set HUSK_CACHE?)"
	# Before the key: it names gcc's and make's versions, which a machine
	# that never built anything may not have yet (one dpkg-query, ~20 ms).
	# shellcheck disable=SC2086
	installed=$(dpkg-query -W -f='${Package} ${Status}\n' $BUILD_PKGS 2>/dev/null \
		| sed -n 's/ install ok installed$//p') || true
	missing=
	for p in $BUILD_PKGS; do
		grep -qx "$p" <<<"$installed" || missing="$missing $p"
	done
	# shellcheck disable=SC2086
	[ -z "$missing" ] || apt_install $missing
	command -v gcc >/dev/null && command -v make >/dev/null \
		|| die "gcc or make not found although build-essential is installed"
	SRC_ID=$(source_identity)
	KEY=$(compute_key)
	local entry=$CACHE_ROOT/$KEY

	WORK=
	trap cleanup EXIT
	trap 'exit 130' INT TERM HUP
	if [ ! -f "$entry/bzImage" ] || [ ! -f "$entry/info" ]; then
		exec 9>"$CACHE_ROOT/.lock"
		if ! flock -n 9; then
			say "waiting for another kernel build to finish"
			flock 9
		fi
		if [ ! -f "$entry/info" ]; then
			# leftovers of killed builds (we hold the lock)
			rm -rf "$CACHE_ROOT"/.build.*
			say "cache miss, building $entry"
			build_kernel "$entry"
		fi
		exec 9>&-
	fi
	copy_out "$entry"
	say "ready: $OUTDIR/bzImage (cache $KEY)"
}

main

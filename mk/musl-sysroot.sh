#!/usr/bin/env bash
# needs-packages: apt dpkg-dev xz-utils gcc make linux-libc-dev pkg-config gperf autoconf automake libtool cmake
#
# mk/musl-sysroot.sh OUTDIR
#
# Builds musl and the static libraries the guest agent links against, from
# Debian's own source packages (apt-get source), into OUTDIR:
#
#   OUTDIR/musl/     musl itself (lib/libc.a, lib/crt*.o, include/), built
#                    with its oldmalloc allocator (see build_musl)
#   OUTDIR/bin/musl-gcc  gcc with that musl as its libc
#   OUTDIR/lib/      libprotobuf-c.a libseccomp.a libcap.a libmount.a
#                    libblkid.a libkmod.a libjson-c.a, lib/pkgconfig/*.pc
#   OUTDIR/include/  their headers, plus a copy of the kernel UAPI headers
#                    (linux/ asm/ asm-generic/ mtd/ misc/ sound/) that
#                    musl does not ship.
#
# musl has a directory of its own so that -L OUTDIR/lib never puts this libc
# in front of another musl-gcc's (husk-vsockd links Debian's, see Makefile).
#
# Use:  OUTDIR/bin/musl-gcc ... -static -L OUTDIR/lib
#         -lprotobuf-c -lseccomp -lcap -lmount -lblkid -lkmod -ljson-c
#
# The result is built once per machine into
#   ${HUSK_CACHE:-/var/cache/husk}/musl-sysroot/<key>
# where <key> hashes this script, the Debian source versions and the
# linux-libc-dev version; later runs only copy the cache entry (fast).
# An entry is complete when it holds .complete (written last, then the
# entry is renamed into place atomically).
#
# Needs root only to add a deb-src entry to apt (when there is none) and to
# apt-get install missing build tools; both happen only when needed.
# Optional local patches: mk/sysroot-patches/<source-package>/*.patch (-p1),
# applied after Debian's; they are part of the cache key.
# Build logs of an entry: <entry>/log/; a failed build leaves
# $CACHE_ROOT/<source-package>.log.
set -euo pipefail
shopt -s inherit_errexit

PROG=sysroot
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*"; }

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 OUTDIR | --ensure-deb-src" >&2; exit 2; }
OUTDIR=$1
case $OUTDIR in /*) ;; *) OUTDIR=$PWD/$OUTDIR ;; esac

SELF=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SELF")
PATCH_DIR=$SCRIPT_DIR/sysroot-patches
CACHE_ROOT=${HUSK_CACHE:-/var/cache/husk}/musl-sysroot
case $CACHE_ROOT in /*) ;; *) CACHE_ROOT=$PWD/$CACHE_ROOT ;; esac
SRC_PKGS=(musl protobuf-c libseccomp libcap2 util-linux kmod json-c)
UAPI_DIRS=(linux asm-generic asm mtd misc sound)
EXPECT_LIBS=(../musl/lib/libc.a ../musl/lib/crt1.o ../musl/lib/musl-gcc.specs.in libprotobuf-c.a libseccomp.a libcap.a libmount.a libblkid.a libkmod.a libjson-c.a)
EXPECT_HDRS=(../musl/include/stdio.h protobuf-c/protobuf-c.h seccomp.h sys/capability.h libmount/libmount.h
             blkid/blkid.h libkmod.h json-c/json.h linux/types.h asm/types.h asm-generic/types.h)
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

is_root() { [ "$(id -u)" = 0 ]; }
# Logs of apt steps go into the cache, which a fresh machine does not have yet.
ensure_cache_root() {
	mkdir -p "$CACHE_ROOT" 2>/dev/null || die "cannot create cache dir $CACHE_ROOT (set HUSK_CACHE?)"
}

# ---------------------------------------------------------------- tools --
# ensure_tools key|build: "key" is what computing the cache key and using the
# result needs; "build" adds the build tools (only needed on a cache miss).
ensure_tools() {
	local missing=() pair cmd pkg pairs
	pairs="apt-get:apt dpkg-query:dpkg"
	[ "$1" = build ] && pairs+=" dpkg-source:dpkg-dev dpkg-architecture:dpkg-dev xz:xz-utils
		gcc:gcc make:make pkg-config:pkg-config gperf:gperf autoreconf:autoconf
		automake:automake libtoolize:libtool cmake:cmake"
	for pair in $pairs; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	for pkg in linux-libc-dev; do
		dpkg-query -W -f '${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	is_root || die "missing packages (install them as root): ${missing[*]}"
	say "installing ${missing[*]}"
	ensure_cache_root
	apt-get install -y --no-install-recommends "${missing[@]}" >"$CACHE_ROOT/apt-install.log" 2>&1 || {
		tail -n 20 "$CACHE_ROOT/apt-install.log" >&2
		die "apt-get install ${missing[*]} failed (log: $CACHE_ROOT/apt-install.log)"
	}
}

# -------------------------------------------------------------- deb-src --
# Print deb-src stanzas (deb822) mirroring the enabled "Types: deb" stanzas
# of the given .sources file(s) (URIs, Suites, Components, Signed-By).
deb822_to_src() {
	awk '
	function flush() {
		if (enabled && types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "" && suites != "") {
			printf "Types: deb-src\nURIs: %s\nSuites: %s\n", uris, suites
			if (comps != "") printf "Components: %s\n", comps
			if (signed != "") printf "Signed-By: %s\n", signed
			printf "\n"
		}
		types = uris = suites = comps = signed = last = ""; enabled = 1
	}
	BEGIN { flush() }
	/^#/ { next }
	/^[ \t]*$/ { flush(); next }
	/^[ \t]/ { if (last == "signed-by") signed = signed "\n" $0; next }   # continuation
	{
		key = $0; sub(/:.*/, "", key); key = tolower(key)
		val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
		last = key
		if (key == "types") types = val
		else if (key == "uris") uris = val
		else if (key == "suites") suites = val
		else if (key == "components") comps = val
		else if (key == "signed-by") signed = val
		else if (key == "enabled" && tolower(val) == "no") enabled = 0
	}
	END { flush() }' "$@"
}

# one-line format: "deb [opts] URL suite comps..." -> "deb-src ..."
oneline_to_src() {
	sed -n -E 's/^[[:space:]]*deb([[:space:]]+)/deb-src\1/p' "$@"
}

# Adds deb-src entries mirroring the distribution's own deb entries:
# deb822 /etc/apt/sources.list.d/debian.sources -> husk-src.sources, or
# one-line /etc/apt/sources.list -> husk-src.list. (Third-party repositories
# in other files are left alone: they may have no sources, or be unreachable.)
ensure_deb_src() {
	is_root || die "apt has no deb-src entry; run this once as root to add one"
	local d=/etc/apt/sources.list.d new=
	if [ -f "$d/debian.sources" ]; then
		deb822_to_src "$d/debian.sources" >"$d/husk-src.sources.tmp"
		if [ -s "$d/husk-src.sources.tmp" ]; then
			mv "$d/husk-src.sources.tmp" "$d/husk-src.sources"
			new=$d/husk-src.sources
		else
			rm -f "$d/husk-src.sources.tmp"
		fi
	fi
	if [ -z "$new" ] && [ -f /etc/apt/sources.list ]; then
		oneline_to_src /etc/apt/sources.list >"$d/husk-src.list.tmp"
		if [ -s "$d/husk-src.list.tmp" ]; then
			mv "$d/husk-src.list.tmp" "$d/husk-src.list"
			new=$d/husk-src.list
		else
			rm -f "$d/husk-src.list.tmp"
		fi
	fi
	[ -n "$new" ] || die "no deb-src entry in apt, and no 'deb' entry in $d/debian.sources or /etc/apt/sources.list to derive one from"
	say "added deb-src entries: $new"
	apt_update_src "$new"
}

# apt-get update, for only our deb-src entry when we made one (other,
# unreachable repositories must not fail us), else for everything.
apt_update_src() {
	local f=${1:-} d=/etc/apt/sources.list.d opts=()
	if [ -z "$f" ]; then
		if [ -f "$d/husk-src.sources" ]; then f=$d/husk-src.sources
		elif [ -f "$d/husk-src.list" ]; then f=$d/husk-src.list; fi
	fi
	[ -n "$f" ] && opts=(-o Dir::Etc::sourcelist="$f" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0)
	say "apt-get update ${f:+(source indexes of $f)}"
	ensure_cache_root
	apt-get update "${opts[@]}" >"$CACHE_ROOT/apt-update.log" 2>&1 || {
		tail -n 20 "$CACHE_ROOT/apt-update.log" >&2
		die "apt-get update failed (log: $CACHE_ROOT/apt-update.log)"
	}
}

# Sets VER[srcpkg]=debian-version (with epoch, if any): the highest version
# apt's source indexes know. (apt-cache showsrc is ~4x faster than
# apt-get source --print-uris, and keeps the warm path well under 2 s.)
declare -A VER
read_versions() {
	local out p v
	VER=()
	out=$(apt-cache showsrc --only-source "${SRC_PKGS[@]}" 2>/dev/null \
		| awk '/^Package: /{p=$2} /^Version: /{print p, $2}') || true
	while read -r p v; do
		[ -n "$p" ] || continue
		if [ -z "${VER[$p]:-}" ] || dpkg --compare-versions "$v" gt "${VER[$p]}"; then
			VER[$p]=$v
		fi
	done <<<"$out"
	for p in "${SRC_PKGS[@]}"; do
		[ -n "${VER[$p]:-}" ] || return 1
	done
}

resolve_versions() {
	local p
	read_versions && return 0
	# no source indexes: add a deb-src entry if apt has none
	if ! apt-get source --print-uris libcap2 >/dev/null 2>&1; then
		ensure_deb_src
	fi
	read_versions && return 0
	for p in "${SRC_PKGS[@]}"; do
		[ -n "${VER[$p]:-}" ] || die "apt knows no source package $p (apt-cache showsrc $p)"
	done
}

# dsc_of SRCPKG: the .dsc file name (no epoch)
dsc_of() { local v=${VER[$1]}; echo "${1}_${v#*:}.dsc"; }

# ------------------------------------------------------------- copy out --
copy_out() {
	local entry=$1
	if [ -e "$OUTDIR" ] && [ -n "$(ls -A "$OUTDIR" 2>/dev/null)" ] && [ ! -f "$OUTDIR/.husk-musl-sysroot" ]; then
		die "$OUTDIR exists, is not empty and is not a sysroot made by this script; refusing to replace it"
	fi
	mkdir -p "$(dirname "$OUTDIR")"
	OUT_TMP=$(mktemp -d "$OUTDIR.tmp.XXXXXX")
	cp -a "$entry/include" "$entry/lib" "$entry/musl" "$OUT_TMP/"
	install_musl_gcc "$OUT_TMP" "$OUTDIR"
	cp "$entry/.complete" "$OUT_TMP/.husk-musl-sysroot"
	rm -rf "$OUTDIR"
	mv "$OUT_TMP" "$OUTDIR"
	OUT_TMP=
}

# ---------------------------------------------------------------- build --
# Build environment: musl only, nothing from /usr/include or the glibc libs.
setup_env() {
	D=$WORK/dest                  # DESTDIR; the sysroot is $D/usr
	S=$D/usr
	mkdir -p "$S/include" "$S/lib/pkgconfig"
	export CC=$S/bin/musl-gcc AR=ar RANLIB=ranlib # made by build_musl
	export CFLAGS="-O2 -pipe -ffunction-sections -fdata-sections"
	export CPPFLAGS="-isystem $S/include"
	export LDFLAGS="-L$S/lib"
	export PKG_CONFIG_LIBDIR=$S/lib/pkgconfig PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$D
	# configure scripts run much faster under dash than under bash
	if [ -x /bin/dash ]; then export CONFIG_SHELL=/bin/dash; fi
	unset CXX CXXFLAGS LIBS CPATH C_INCLUDE_PATH LIBRARY_PATH PKG_CONFIG CONFIG_SITE MAKEFLAGS MFLAGS || true
	JOBS=$(nproc 2>/dev/null || echo 2)
}

install_uapi() {
	local ma d src
	ma=$(CC=gcc dpkg-architecture -qDEB_HOST_MULTIARCH) # (before musl-gcc exists)
	for d in "${UAPI_DIRS[@]}"; do
		src=/usr/include/$d
		[ "$d" = asm ] && src=/usr/include/$ma/asm
		[ -d "$src" ] || { [ "$d" = linux ] || [ "$d" = asm ] || [ "$d" = asm-generic ] \
			&& die "kernel headers $src missing (linux-libc-dev)"; continue; }
		cp -rL "$src" "$S/include/$d"
	done
}

# Make installed .pc files relocatable and drop libtool archives.
fixup_install() {
	local pc
	rm -f "$S"/lib/*.la
	for pc in "$S"/lib/pkgconfig/*.pc; do
		[ -f "$pc" ] || continue
		sed -i -E -e 's|^prefix=.*|prefix=${pcfiledir}/../..|' \
			-e 's|^(exec_prefix=)/usr$|\1${prefix}|' \
			-e 's|^([a-z_]+=)/usr/|\1${prefix}/|' "$pc"
	done
}

# unpack SRCPKG into $WORK/src/SRCPKG (Debian patches applied); prints dir
unpack() {
	local p=$1 dsc
	dsc=$WORK/dl/$(dsc_of "$p")
	dpkg-source --no-check -x "$dsc" "$WORK/src/$p" >&2
	if [ -d "$PATCH_DIR/$p" ]; then
		local patch
		for patch in "$PATCH_DIR/$p"/*.patch; do
			[ -f "$patch" ] || continue
			echo "applying $patch" >&2
			patch -d "$WORK/src/$p" -p1 <"$patch" >&2
		done
	fi
	echo "$WORK/src/$p"
}

# Keep autotools-generated files newer than their (Debian-patched) inputs so
# make does not try to re-run autoconf/automake.
freeze_autotools() {
	find "$1" \( -name configure.ac -o -name Makefile.am -o -name 'Makemodule.am' \
		-o -name '*.m4' \) -not -path '*/debian/*' -exec touch -d '2000-01-01 00:00:00' {} +
}

# musl itself, from the source of Debian's musl package, with its oldmalloc
# allocator instead of the default mallocng. The agent is PID 1 and, under
# TCG, every kernel path it runs before the host's first Check is translated
# then for the first time: mallocng's first allocations map a guard page
# into the brk area and mmap and munmap small groups, which runs the kernel's
# VMA split, merge and maple-tree code; oldmalloc only grows the brk heap.
# That is about 1,300 translated blocks (6 to 8 ms) of the agent's boot, and
# the agent's idle RSS is lower too (docs/performance.md, session 8). What
# mallocng adds, out-of-band metadata that catches some heap corruption, the
# agent's own tests get from ASan/UBSan builds and the fuzzers.
build_musl() {
	local src; src=$(unpack musl); cd "$src"
	# musl is the libc: built by the host compiler, with nothing from the
	# environment the libraries below are built in.
	env -u CPPFLAGS -u LDFLAGS -u CC CC=gcc CFLAGS="-O2 -pipe" \
		${CONFIG_SHELL:-/bin/sh} ./configure --prefix=/usr/musl --syslibdir=/usr/musl/lib \
		--disable-shared --disable-wrapper --with-malloc=oldmalloc
	make -j"$JOBS"
	make install DESTDIR="$D"
	# gcc's view of this musl, with the sysroot's path left to fill in.
	sh tools/musl-gcc.specs.sh @SYSROOT@/musl/include @SYSROOT@/musl/lib \
		/lib/ld-musl-x86_64.so.1 >"$S/musl/lib/musl-gcc.specs.in"
	install_musl_gcc "$S" "$S"
}

# install_musl_gcc DIR SYSROOT: DIR/bin/musl-gcc and DIR/musl/lib/musl-gcc.specs
# for a sysroot that is (or will be) at SYSROOT.
install_musl_gcc() {
	local specs
	mkdir -p "$1/bin"
	# (read with its trailing blank lines, which gcc needs; the replacement
	# quoted: no '&' or other pattern magic in a path)
	specs=$(cat "$1/musl/lib/musl-gcc.specs.in"; echo .)
	specs=${specs%.}
	printf '%s' "${specs//@SYSROOT@/"$2"}" >"$1/musl/lib/musl-gcc.specs"
	cat >"$1/bin/musl-gcc" <<-EOF
	#!/bin/sh
	exec "\${REALGCC:-gcc}" "\$@" -specs "$2/musl/lib/musl-gcc.specs"
	EOF
	chmod 0755 "$1/bin/musl-gcc"
}

build_protobuf_c() {
	local src; src=$(unpack protobuf-c); cd "$src"
	$CC $CFLAGS $CPPFLAGS -c protobuf-c/protobuf-c.c -o protobuf-c.o
	$AR rcs "$S/lib/libprotobuf-c.a" protobuf-c.o
	install -D -m 0644 protobuf-c/protobuf-c.h "$S/include/protobuf-c/protobuf-c.h"
	local v=${VER[protobuf-c]#*:}; v=${v%-*}   # upstream version
	cat >"$S/lib/pkgconfig/libprotobuf-c.pc" <<-EOF
	prefix=/usr
	exec_prefix=\${prefix}
	libdir=\${exec_prefix}/lib
	includedir=\${prefix}/include

	Name: libprotobuf-c
	Description: Protocol Buffers C library (runtime only)
	Version: $v
	Libs: -L\${libdir} -lprotobuf-c
	Cflags: -I\${includedir}
	EOF
}

build_libseccomp() {
	local src; src=$(unpack libseccomp); cd "$src"
	freeze_autotools .
	${CONFIG_SHELL:-/bin/sh} ./configure --prefix=/usr --libdir=/usr/lib --disable-shared --enable-static \
		--disable-python --disable-dependency-tracking
	# only the library (tools/ and tests/ are not needed)
	make -j"$JOBS" -C src libseccomp.la
	make -C src install-libLTLIBRARIES DESTDIR="$D"
	make -C include install DESTDIR="$D"
	make install-pkgconfDATA DESTDIR="$D"
}

build_libcap2() {
	local src; src=$(unpack libcap2); cd "$src"
	# CPPFLAGS/CFLAGS come from the environment (the Makefiles append to them)
	make -j"$JOBS" -C libcap CC="$CC" BUILD_CC=gcc AR="$AR" RANLIB="$RANLIB" \
		prefix=/usr lib=lib SHARED=no PTHREADS=no GOLANG=no PAM_CAP=no \
		DESTDIR="$D" install-static-cap
}

build_util_linux() {
	local src; src=$(unpack util-linux); cd "$src"
	freeze_autotools .
	${CONFIG_SHELL:-/bin/sh} ./configure --prefix=/usr --libdir=/usr/lib --sysconfdir=/etc --localstatedir=/var \
		--runstatedir=/run --disable-shared --enable-static --disable-dependency-tracking \
		--disable-all-programs --enable-libmount --enable-libblkid \
		--disable-libuuid --disable-libsmartcols --disable-libfdisk \
		--disable-nls --disable-rpath --disable-gtk-doc --disable-asciidoc \
		--disable-bash-completion --disable-pylibmount --disable-makeinstall-chown \
		--disable-makeinstall-setuid --without-python --without-systemd --without-udev \
		--without-selinux --without-audit --without-smack --without-cryptsetup \
		--without-readline --without-ncurses --without-ncursesw --without-tinfo \
		--without-libz --without-libmagic --without-user --without-utempter \
		--without-btrfs --without-cap-ng --without-econf \
		--with-systemdsystemunitdir=no --with-bashcompletiondir=no
	make -j"$JOBS" libblkid.la libmount.la
	make install-usrlib_execLTLIBRARIES install-nodist_blkidincHEADERS \
		install-nodist_mountincHEADERS install-pkgconfigDATA DESTDIR="$D"
}

build_kmod() {
	local src; src=$(unpack kmod); cd "$src"
	mkdir -p libkmod/docs && touch libkmod/docs/gtk-doc.make
	# upstream refuses --enable-static by policy only; libkmod 30 builds and
	# works fine as a static library (no dlopen, no constructors)
	grep -q 'enable-static is not supported by kmod' configure.ac
	sed -i '/enable-static is not supported by kmod/d' configure.ac
	autoreconf -fi
	${CONFIG_SHELL:-/bin/sh} ./configure --prefix=/usr --libdir=/usr/lib --sysconfdir=/etc --with-rootlibdir=/usr/lib \
		--disable-shared --enable-static --disable-dependency-tracking \
		--disable-manpages --disable-tools --disable-test-modules --disable-python \
		--disable-gtk-doc --without-zstd --without-xz --without-zlib --without-openssl \
		--with-bashcompletiondir=/usr/share/bash-completion/completions
	make -j"$JOBS" libkmod/libkmod.la
	make install-libLTLIBRARIES install-includeHEADERS install-pkgconfigDATA DESTDIR="$D"
}

build_json_c() {
	local src; src=$(unpack json-c); cd "$src"
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$CC" \
		-DCMAKE_C_FLAGS="$CFLAGS $CPPFLAGS" -DCMAKE_INSTALL_PREFIX=/usr \
		-DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_INSTALL_INCLUDEDIR=include \
		-DBUILD_SHARED_LIBS=OFF -DBUILD_STATIC_LIBS=ON -DBUILD_TESTING=OFF \
		-DDISABLE_EXTRA_LIBS=ON -DDISABLE_WERROR=ON -DENABLE_THREADING=OFF \
		-DCMAKE_FIND_ROOT_PATH="$D" -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY \
		-DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY
	cmake --build build -j"$JOBS" --target json-c
	DESTDIR="$D" cmake --install build
	rm -rf "$S/lib/cmake"
}

# run_step SRCPKG FUNC: logs to $WORK/log/SRCPKG.log; on failure keeps the
# log as $CACHE_ROOT/SRCPKG.log, prints its tail and exits.
# Never call this (or its callers) from a condition (if/||/&&): bash would
# then ignore errexit inside the build steps.
run_step() {
	local p=$1 fn=$2 t0 t1 rc log=$WORK/log/$1.log
	t0=$(date +%s)
	# (not inside "if": errexit would be ignored in the subshell)
	set +e
	( set -euxo pipefail; PS4='+ [${SECONDS}s] '; "$fn" ) >"$log" 2>&1
	rc=$?
	set -e
	t1=$(date +%s)
	if [ $rc -eq 0 ]; then
		say "building $p ${VER[$p]} ... ok ($((t1 - t0)) s)"
		echo "$p=$((t1 - t0))" >>"$WORK/times"
		return 0
	fi
	cp "$log" "$CACHE_ROOT/$p.log"
	{
		say "building $p ${VER[$p]} ... FAILED ($((t1 - t0)) s)"
		echo "----- last 40 lines of $CACHE_ROOT/$p.log -----"
		tail -n 40 "$log"
		echo "-----"
	} >&2
	die "building $p ${VER[$p]} failed; full log: $CACHE_ROOT/$p.log"
}

# One at a time: running two libraries side by side gained nothing on a
# 2-core machine (configure scripts are fork-bound and slowed each other
# down: 213 s vs 131-180 s in sequence); make itself runs with -j$(nproc).
build_libs() {
	run_step musl       build_musl
	run_step protobuf-c build_protobuf_c
	run_step libcap2    build_libcap2
	run_step libseccomp build_libseccomp
	run_step util-linux build_util_linux
	run_step kmod       build_kmod
	run_step json-c     build_json_c
}

build_all() {
	local entry=$1 p f t0 t1
	t0=$(date +%s)
	WORK=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
	mkdir -p "$WORK/dl" "$WORK/src" "$WORK/log"
	setup_env
	install_uapi

	local args=()
	for p in "${SRC_PKGS[@]}"; do args+=("$p=${VER[$p]}"); done
	if ! (cd "$WORK/dl" && apt-get source --download-only --only-source "${args[@]}") >"$WORK/log/fetch.log" 2>&1; then
		cp "$WORK/log/fetch.log" "$CACHE_ROOT/fetch.log"
		if [ -z "${HUSK_SYSROOT_RETRY:-}" ] && is_root; then
			# stale apt lists name files the archive no longer has: refresh
			# them and start over (the versions, hence the key, may change)
			say "fetching sources failed (log: $CACHE_ROOT/fetch.log); refreshing apt lists, retrying"
			apt_update_src
			cleanup
			exec 9>&-
			HUSK_SYSROOT_RETRY=1 exec bash "$SELF" "$OUTDIR"
		fi
		tail -n 40 "$WORK/log/fetch.log" >&2
		die "apt-get source ${args[*]} failed; log: $CACHE_ROOT/fetch.log"
	fi
	for p in "${SRC_PKGS[@]}"; do
		[ -f "$WORK/dl/$(dsc_of "$p")" ] || die "apt-get source did not fetch $(dsc_of "$p")"
	done
	say "fetched sources ($(( $(date +%s) - t0 )) s)"

	build_libs
	fixup_install

	for f in "${EXPECT_LIBS[@]}"; do
		[ -f "$S/lib/$f" ] || die "build finished but lib/$f is missing"
	done
	for f in "${EXPECT_HDRS[@]}"; do
		[ -f "$S/include/$f" ] || die "build finished but include/$f is missing"
	done
	mkdir "$WORK/entry"
	mv "$S/include" "$S/lib" "$S/musl" "$WORK/log" "$WORK/entry/"
	t1=$(date +%s)
	{
		echo "key=$KEY"
		for p in "${SRC_PKGS[@]}"; do echo "$p=${VER[$p]}"; done
		echo "linux-libc-dev=$UAPI_VER"
		echo "build-seconds: $(tr '\n' ' ' <"$WORK/times")total=$((t1 - t0))"
	} >"$WORK/entry/.complete"
	rm -rf "$entry"
	mv -T "$WORK/entry" "$entry"
	say "built in $((t1 - t0)) s: $entry"
}

cleanup() {
	if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
	if [ -n "${OUT_TMP:-}" ]; then rm -rf "$OUT_TMP"; fi
}

# ----------------------------------------------------------------- main --
WORK= OUT_TMP=
main() {
	if [ "$OUTDIR" = "$PWD/--ensure-deb-src" ]; then
		# `make deps`: only make sure apt can fetch Debian source packages.
		apt-get source --print-uris libcap2 >/dev/null 2>&1 || ensure_deb_src
		return 0
	fi
	ensure_cache_root
	ensure_tools key
	resolve_versions
	UAPI_VER=$(dpkg-query -W -f '${Version}' linux-libc-dev)
	KEY=$({
		cat "$SELF"
		[ -d "$PATCH_DIR" ] && find "$PATCH_DIR" -type f -print0 | sort -z | xargs -0r cat
		for p in "${SRC_PKGS[@]}"; do echo "$p=${VER[$p]}"; done
		echo "linux-libc-dev=$UAPI_VER arch=$(dpkg --print-architecture)"
	} | sha256sum | cut -c1-16)
	local entry=$CACHE_ROOT/$KEY

	trap cleanup EXIT
	trap 'exit 130' INT TERM HUP
	if [ ! -f "$entry/.complete" ]; then
		exec 9>"$CACHE_ROOT/.lock"
		if ! flock -n 9; then
			say "waiting for another build of the sysroot to finish"
			flock 9
		fi
		if [ ! -f "$entry/.complete" ]; then
			# stale leftovers of killed builds (we hold the lock)
			rm -rf "$CACHE_ROOT"/.build.* "$CACHE_ROOT"/*.log
			say "cache miss, building $entry"
			ensure_tools build
			build_all "$entry"
		fi
	fi
	copy_out "$entry"
	say "ready: $OUTDIR (cache $KEY)"
}

main

#!/bin/bash
# Assembles the guest initramfs (a newc cpio archive in a gzip container).
#
# usage: initramfs/build.sh OUT.cpio.gz --init AGENT [--busybox [--busybox-bin PATH]]
#            [--kmods "mod1 mod2" --kernel-release REL [--modules-dir DIR]]
#
#   --init AGENT       the guest's /init (husk-agent): must be a static ELF
#                      executable, since the archive carries no libc. It is
#                      packed stripped (symbols and debug info stay in the
#                      build tree's copy).
#   --busybox          debug images: /bin/busybox (Debian's busybox-static)
#                      and a symlink per applet, so the debug console has
#                      /bin/sh. PATH defaults to the busybox on $PATH.
#   --kmods "a b"      kernel modules to carry, by name ('-' and '_' alike),
#                      with everything they depend on, resolved from
#                      DIR/modules.dep (DIR defaults to /lib/modules/REL).
#                      Compressed modules (.ko.xz, .ko.zst, .ko.gz) are
#                      decompressed: the guest's static libkmod reads plain
#                      .ko only. depmod then indexes the staged tree (libkmod
#                      needs modules.dep.bin). Names found in modules.builtin
#                      are skipped. vsock_loopback is never carried, asked
#                      for or pulled in: its transport would let any guest
#                      process, a container's too, connect to the agent's
#                      ports at CID 1 or the guest's own CID (only the host
#                      may; docs/architecture.md).
#
# The archive holds /init, the mount points the agent uses (/dev /proc /sys
# /run /tmp /mnt /etc /root), /dev/console when built as root (the kernel
# opens it for PID 1's stdio; without it the agent reopens the console once
# devtmpfs is up), and what the options add.
#
# Reproducible: every entry is owned by 0:0, has mtime $SOURCE_DATE_EPOCH
# (0 by default) and a fixed mode, entries are sorted, inode numbers are
# not recorded (cpio --reproducible) and gzip stores no name or time: the
# same inputs give the same bytes.
#
# The gzip holds stored (uncompressed) blocks, written by pigz -0: the file
# stays a gzip, as its name says, but the kernel only copies it. Inflating
# our 460 KiB /init from a -9 archive (220 KiB) costs the guest about 25 ms
# more per boot under QEMU TCG, far more than reading the larger file does.
set -euo pipefail
export LC_ALL=C
umask 022

die() {
	echo "initramfs/build.sh: $*" >&2
	exit 1
}

out='' init='' busybox=0 busybox_bin='' kmods='' release='' moddir=''
[ $# -ge 1 ] || die "usage: $0 OUT.cpio.gz --init AGENT [--busybox] [--kmods \"a b\" --kernel-release REL [--modules-dir DIR]]"
out=$1
shift
while [ $# -gt 0 ]; do
	case $1 in
	--init) init=${2:?--init needs a path}; shift 2 ;;
	--busybox) busybox=1; shift ;;
	--busybox-bin) busybox_bin=${2:?--busybox-bin needs a path}; shift 2 ;;
	--kmods) kmods=${2?--kmods needs a list}; shift 2 ;;
	--kernel-release) release=${2:?--kernel-release needs a value}; shift 2 ;;
	--modules-dir) moddir=${2:?--modules-dir needs a path}; shift 2 ;;
	*) die "unknown argument: $1" ;;
	esac
done
[ -n "$init" ] || die "--init AGENT is required"
[ -f "$init" ] || die "--init $init: no such file"
epoch=${SOURCE_DATE_EPOCH:-0}

# A static executable has no PT_INTERP (program interpreter).
check_static() { # what path
	local hdr
	hdr=$(head -c 4 "$2" | od -An -c | tr -d ' \n')
	[ "$hdr" = '177ELF' ] || die "$1 $2: not an ELF file"
	if readelf -lW "$2" 2>/dev/null | grep -q 'Requesting program interpreter'; then
		die "$1 $2: dynamically linked; the initramfs has no libc (link it -static)"
	fi
}
check_static --init "$init"
command -v pigz >/dev/null || die "pigz not found (install Debian's pigz; make deps does)"

work=$(mktemp -d "${TMPDIR:-/tmp}/husk-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/root
mkdir -m 0755 "$stage"

for d in dev proc sys run tmp mnt etc root; do
	mkdir -m 0755 "$stage/$d"
done
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"
strip --strip-all -o "$stage/init" "$init" || die "strip $init failed"
chmod 0755 "$stage/init"
if [ "$(id -u)" = 0 ]; then
	mknod -m 0600 "$stage/dev/console" c 5 1
else
	echo "initramfs/build.sh: not root: no /dev/console node in the archive" >&2
fi

# ---- busybox ------------------------------------------------------------------
if [ "$busybox" = 1 ]; then
	if [ -z "$busybox_bin" ]; then
		busybox_bin=$(command -v busybox) || die "--busybox: no busybox on PATH (install busybox-static)"
	fi
	check_static --busybox-bin "$busybox_bin"
	mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin"
	install -m 0755 "$busybox_bin" "$stage/bin/busybox"
	# One process for ~400 links (perl is essential in Debian): a shell
	# loop forking ln per applet takes seconds.
	"$busybox_bin" --list-full | sort -u |
		grep -Ev '(^|/)(init|linuxrc)$|^bin/busybox$' |
		STAGE=$stage perl -ne 'chomp; next unless m{^[A-Za-z0-9_./+\[-]+$} && !m{\.\.};
			my $p = "$ENV{STAGE}/$_"; next if -e $p || -l $p;
			symlink("/bin/busybox", $p) or die "symlink $p: $!\n";'
	[ -L "$stage/bin/sh" ] || die "--busybox: $busybox_bin has no sh applet"
fi

# ---- kernel modules -------------------------------------------------------------
norm() { # module name from a path or name: basename, no .ko*, '-' -> '_'
	local n=${1##*/}
	n=${n%%.ko*}
	printf '%s\n' "${n//-/_}"
}

if [ -n "${kmods// /}" ]; then
	[ -n "$release" ] || die "--kmods needs --kernel-release"
	moddir=${moddir:-/lib/modules/$release}
	dep=$moddir/modules.dep
	[ -f "$dep" ] || die "--kmods: $dep: no such file"
	depmod_bin=$(command -v depmod || command -v /sbin/depmod) ||
		die "--kmods: depmod not found (install kmod)"
	modinfo_bin=$(command -v modinfo || command -v /sbin/modinfo) ||
		die "--kmods: modinfo not found (install kmod)"
	dest=$stage/lib/modules/$release
	mkdir -p "$dest"

	# "path: dep dep..." -> one "name<TAB>path<TAB>deps" line per module.
	table=$work/deptable
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		path=${line%%:*}
		printf '%s\t%s\t%s\n' "$(norm "$path")" "$path" "${line#*:}"
	done <"$dep" >"$table"
	known() { grep -q "^$1	" "$table"; }
	builtin() {
		[ -f "$moddir/modules.builtin" ] &&
			sed 's|.*/||; s|\.ko.*||; s|-|_|g' "$moddir/modules.builtin" | grep -qx "$1"
	}

	# Copies module `path` into the stage, decompressed; prints where.
	stage_module() {
		local src=$moddir/$1 rel=${1%.ko*}.ko
		[ -f "$src" ] || die "--kmods: $src is listed in modules.dep but missing"
		mkdir -p "$(dirname "$dest/$rel")"
		case $src in
		*.ko) cat "$src" ;;
		*.ko.xz) xz -dc "$src" ;;
		*.ko.zst) zstd -dcq "$src" ;;
		*.ko.gz) gzip -dc "$src" ;;
		*) die "--kmods: $src: unknown module compression" ;;
		esac >"$dest/$rel" || die "--kmods: cannot decompress $src"
		chmod 0644 "$dest/$rel"
		printf '%s\n' "$rel"
	}

	# Soft dependencies ("softdep" in a module's modinfo, e.g. libcrc32c's
	# "pre: crc32c") are loaded by libkmod around the module, and may name
	# aliases: resolved through modules.dep, then the source's modules.alias
	# (all candidates: crc32c is crc32c_intel or crc32c_generic).
	softdeps_of() { # name staged-file -> module names, one a line
		local t
		for t in $("$modinfo_bin" -F softdep "$2" 2>/dev/null | tr ' ' '\n'); do
			case $t in pre: | post: | '') continue ;; esac
			if known "$(norm "$t")"; then
				norm "$t"
			elif [ -f "$moddir/modules.alias" ] &&
				awk -v a="$t" '$1 == "alias" && $2 == a { f = 1 } END { exit !f }' \
					"$moddir/modules.alias"; then
				awk -v a="$t" '$1 == "alias" && $2 == a { print $3 }' "$moddir/modules.alias" |
					while read -r m; do norm "$m"; done
			elif ! builtin "$(norm "$t")"; then
				echo "initramfs/build.sh: softdep $t of $1: no such module or alias in $moddir" >&2
			fi
		done
	}

	# Never in a guest: see --kmods above.
	forbidden() { [ "$1" = vsock_loopback ]; }

	declare -A staged=()
	queue=()
	for m in $kmods; do
		n=$(norm "$m")
		forbidden "$n" && die "--kmods: $m is never carried: its vsock loopback transport lets containers connect to the agent's ports (only the host may)"
		if ! known "$n"; then
			builtin "$n" || die "--kmods: module $m not found in $dep"
			echo "initramfs/build.sh: module $m is built into the kernel: skipped" >&2
			continue
		fi
		queue+=("$n")
	done
	# Breadth-first over modules.dep (depmod lists the whole closure
	# already; walking it copes with hand-written files too).
	while [ ${#queue[@]} -gt 0 ]; do
		n=${queue[0]}
		queue=("${queue[@]:1}")
		[ -n "${staged[$n]:-}" ] && continue
		if forbidden "$n"; then
			# Only a soft dependency (e.g. through the net-pf-40 alias)
			# can name it: nothing needs it.
			echo "initramfs/build.sh: $n (a dependency) is never carried: skipped" >&2
			continue
		fi
		entry=$(grep -m1 "^$n	" "$table") || die "--kmods: $n (a dependency) not found in $dep"
		rel=$(stage_module "$(printf '%s' "$entry" | cut -f2)")
		staged[$n]=$rel
		for d in $(printf '%s' "$entry" | cut -f3); do
			queue+=("$(norm "$d")")
		done
		for d in $(softdeps_of "$n" "$dest/$rel"); do
			known "$d" && queue+=("$d") # built-in ones need nothing
		done
	done

	# What depmod reads besides the modules: the order (only ours) and the
	# built-in lists, so that libkmod knows built-in modules as such.
	printf '%s\n' "${staged[@]}" | sort >"$work/order"
	if [ -f "$moddir/modules.order" ]; then
		sed 's|\.ko.*$|.ko|' "$moddir/modules.order" | grep -Fxf "$work/order" >"$dest/modules.order" || true
	else
		cp "$work/order" "$dest/modules.order"
	fi
	for f in modules.builtin modules.builtin.modinfo; do
		if [ -f "$moddir/$f" ]; then
			install -m 0644 "$moddir/$f" "$dest/$f"
		else
			: >"$dest/$f"
		fi
	done
	"$depmod_bin" -b "$stage" "$release" || die "--kmods: depmod -b $stage $release failed"
	# What init loads at boot when the command line names no husk.modules
	# (the requested ones; libkmod brings their dependencies).
	mkdir -p "$stage/etc/husk"
	for m in $kmods; do
		n=$(norm "$m")
		[ -n "${staged[$n]:-}" ] && printf '%s\n' "$n"
	done >"$stage/etc/husk/modules"
fi

# ---- archive ------------------------------------------------------------------------
find "$stage" -exec touch -h -d "@$epoch" {} +
tmp_out=$out.tmp.$$
mkdir -p "$(dirname "$out")"
(
	cd "$stage"
	find . -mindepth 1 -printf '%P\n' | sort |
		cpio --quiet --reproducible -o -H newc -R 0:0
) | pigz -0 -n -c >"$tmp_out" || { rm -f "$tmp_out"; die "cpio or pigz failed"; }
mv -f "$tmp_out" "$out"

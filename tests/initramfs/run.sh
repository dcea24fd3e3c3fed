#!/bin/bash
# initramfs/build.sh and libinit as PID 1. Prints PASS/FAIL/SKIP lines.
#
#   - reproducible archives (byte-identical twice, whatever the inputs' mtimes)
#   - contents, modes, owners and mtimes of a minimal archive; /init is the agent
#   - a dynamically linked --init is refused
#   - --busybox: /bin/busybox and /bin/sh, working
#   - --kmods on a fake module tree (tests/initramfs/fake-modules.sh):
#     dependencies and soft dependencies resolved, compressed modules
#     decompressed, depmod's index read by the guest's static musl libkmod
#     (build/test/init-smoke-musl --probe), unknown and built-in names
#   - boot: build/test/init-smoke-musl as /init of a microVM (QEMU, TCG) on
#     build/kernel/bzImage: mounts, cgroup controllers, cmdline, loopback,
#     host name, hwrng seeding, reaper, and the power-off that ends QEMU.
#     SKIP when the kernel is not built.
#   - boot-modules: the same on Debian's stock kernel (linux-image-amd64),
#     which has virtio, virtio_blk, vsock, erofs and overlay as modules: the
#     initramfs carries them, libinit loads them (husk.modules=), and a
#     virtio-blk disk shows up as vda. HUSK_STOCK_KERNEL names
#     mk/stock-kernel.sh's output (make check sets it); unset is a FAIL.
#
# usage: tests/initramfs/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
BUILDSH=$src/initramfs/build.sh
FAKE_MODULES=$src/tests/initramfs/fake-modules.sh
SMOKE=$build/test/init-smoke-musl
QEMU=${QEMU:-qemu-system-x86_64}
REL=9.9.9-husk-fake

tmp=$(mktemp -d /tmp/husk-initramfs-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	[ -f "$tmp/err" ] && sed 's/^/    err: /' "$tmp/err" | head -20
	return 0
}
skip() { echo "SKIP $1: $2"; }

if [ ! -x "$SMOKE" ]; then
	fail setup "$SMOKE is not built"
	exit 1
fi
listing() { zcat "$1" | cpio -t --quiet; }
# extract ARCHIVE DIR
extract() {
	rm -rf "$2" && mkdir -p "$2" &&
		(cd "$2" && zcat "$1" | cpio -id --quiet --no-absolute-filenames)
}
build_ok() { # name args... : runs build.sh, stderr in $tmp/err
	"$BUILDSH" "$@" 2>"$tmp/err"
}

agent=$tmp/agent
cp "$SMOKE" "$agent"
# What /init must be: the --init binary, stripped.
stripped=$tmp/agent.stripped
strip --strip-all -o "$stripped" "$SMOKE"

# ---- reproducibility --------------------------------------------------------------
if build_ok "$tmp/r1.cpio.gz" --init "$agent" &&
	touch -d '2001-02-03 04:05:06' "$agent" &&
	TMPDIR=$tmp build_ok "$tmp/r2.cpio.gz" --init "$agent"; then
	if cmp -s "$tmp/r1.cpio.gz" "$tmp/r2.cpio.gz"; then
		pass reproducible
	else
		fail reproducible "two builds differ ($(cmp "$tmp/r1.cpio.gz" "$tmp/r2.cpio.gz"))"
	fi
else
	fail reproducible "build.sh failed"
fi

# ---- a gzip of stored blocks: the kernel copies instead of inflating ------------------------
if [ -f "$tmp/r1.cpio.gz" ]; then
	packed=$(stat -c %s "$tmp/r1.cpio.gz")
	plain=$(zcat "$tmp/r1.cpio.gz" | wc -c)
	if ! gzip -t "$tmp/r1.cpio.gz" 2>"$tmp/err"; then
		fail stored-gzip "not a valid gzip"
	elif [ "$packed" -lt "$plain" ]; then
		fail stored-gzip "compressed ($packed bytes for $plain): want stored blocks"
	elif [ "$packed" -gt $((plain + plain / 100 + 64)) ]; then
		fail stored-gzip "$packed bytes for $plain: more than stored blocks' overhead"
	else
		pass stored-gzip
	fi
fi

# ---- contents of a minimal archive ------------------------------------------------------
if [ -f "$tmp/r1.cpio.gz" ]; then
	want="dev etc init mnt proc root run sys tmp"
	[ "$(id -u)" = 0 ] && want="dev dev/console etc init mnt proc root run sys tmp"
	got=$(listing "$tmp/r1.cpio.gz" | tr '\n' ' ' | sed 's/ $//')
	if [ "$got" = "$want" ]; then
		pass contents
	else
		fail contents "entries: '$got', expected '$want'"
	fi
	# Owners 0:0 everywhere; modes as documented.
	bad=$(zcat "$tmp/r1.cpio.gz" | cpio -tv --quiet --numeric-uid-gid | awk '$3 != 0 || $4 != 0')
	modes=$(zcat "$tmp/r1.cpio.gz" | cpio -tv --quiet | awk '{ print $1, $NF }' | tr '\n' ';')
	case $modes in
	*"-rwxr-xr-x init;"*"drwx------ root;"*"drwxrwxrwt tmp;"*) modes_ok=1 ;;
	*) modes_ok=0 ;;
	esac
	if [ -n "$bad" ]; then
		fail owners-modes "entries not owned by 0:0: $bad"
	elif [ "$modes_ok" != 1 ]; then
		fail owners-modes "modes: $modes"
	elif [ "$(id -u)" = 0 ] && ! zcat "$tmp/r1.cpio.gz" | cpio -tv --quiet | grep -q '^crw------- .* 5, *1 .* dev/console$'; then
		fail owners-modes "dev/console is not the character device 5,1"
	else
		pass owners-modes
	fi
	extract "$tmp/r1.cpio.gz" "$tmp/x1"
	# Every entry dated the epoch (SOURCE_DATE_EPOCH unset).
	not_epoch=$(TZ=UTC zcat "$tmp/r1.cpio.gz" | TZ=UTC cpio -tv --quiet | grep -v ' Jan  1  1970 ')
	if ! cmp -s "$tmp/x1/init" "$stripped"; then
		fail init-is-agent "/init differs from the --init binary, stripped"
	elif readelf -S "$tmp/x1/init" | grep -Eq '\.(symtab|debug_)'; then
		fail init-is-agent "/init still has symbols or debug info"
	elif [ -n "$not_epoch" ]; then
		fail init-is-agent "entries not dated 1970-01-01: $not_epoch"
	else
		pass init-is-agent
	fi
fi

# ---- a dynamic /init is refused -------------------------------------------------------------
if build_ok "$tmp/dyn.cpio.gz" --init /bin/true; then
	fail dynamic-init-refused "a dynamically linked /init was accepted"
elif ! grep -q "dynamically linked" "$tmp/err"; then
	fail dynamic-init-refused "no reason given"
elif [ -e "$tmp/dyn.cpio.gz" ]; then
	fail dynamic-init-refused "an archive was left behind"
else
	pass dynamic-init-refused
fi

# ---- --busybox --------------------------------------------------------------------------
if ! command -v busybox >/dev/null; then
	skip busybox "no busybox on PATH (busybox-static)"
elif build_ok "$tmp/bb1.cpio.gz" --init "$agent" --busybox &&
	build_ok "$tmp/bb2.cpio.gz" --init "$agent" --busybox; then
	extract "$tmp/bb1.cpio.gz" "$tmp/bb"
	out=$(cd "$tmp/bb" && ./bin/busybox sh -c 'echo from-$((6 * 7))' 2>&1)
	if [ "$(readlink "$tmp/bb/bin/sh")" != /bin/busybox ]; then
		fail busybox "bin/sh is not a link to /bin/busybox"
	elif ! cmp -s "$tmp/bb/init" "$stripped"; then
		fail busybox "/init was replaced"
	elif [ "$out" != from-42 ]; then
		fail busybox "bin/busybox sh did not run: $out"
	elif [ "$(readlink "$tmp/bb/bin/ls")" != /bin/busybox ] || [ ! -L "$tmp/bb/sbin/ifconfig" ]; then
		fail busybox "common applets missing"
	elif ! cmp -s "$tmp/bb1.cpio.gz" "$tmp/bb2.cpio.gz"; then
		fail busybox "two --busybox builds differ"
	else
		pass busybox
	fi
else
	fail busybox "build.sh --busybox failed"
fi

# ---- --kmods on a fake tree ----------------------------------------------------------------
if ! command -v depmod >/dev/null && ! [ -x /sbin/depmod ]; then
	skip kmods "depmod not installed (kmod)"
elif ! "$FAKE_MODULES" "$tmp/fake" "$REL" 2>"$tmp/err"; then
	fail kmods "fake-modules.sh failed"
else
	moddir=$tmp/fake/lib/modules/$REL
	if build_ok "$tmp/k1.cpio.gz" --init "$agent" --kmods "mod-a mod_e" \
		--kernel-release "$REL" --modules-dir "$moddir" &&
		build_ok "$tmp/k2.cpio.gz" --init "$agent" --kmods "mod-a mod_e" \
			--kernel-release "$REL" --modules-dir "$moddir"; then
		extract "$tmp/k1.cpio.gz" "$tmp/k"
		d=$tmp/k/lib/modules/$REL
		kos=$(cd "$d" && find . -name '*.ko*' | sed 's|^\./||' | sort | tr '\n' ' ')
		want="kernel/drivers/a/mod_a.ko kernel/drivers/b/mod_b.ko kernel/fs/c/mod_c.ko kernel/net/d/mod_d.ko kernel/net/e/mod_e.ko "
		elf=1
		for f in "$d"/kernel/*/*/*.ko; do
			[ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || elf=0
		done
		if [ "$kos" != "$want" ]; then
			fail kmods-resolve "staged modules: '$kos', expected '$want'"
		elif [ "$elf" != 1 ]; then
			fail kmods-resolve "a staged module is not a plain ELF file (not decompressed)"
		elif ! grep -qx 'kernel/drivers/a/mod_a.ko: kernel/drivers/b/mod_b.ko kernel/fs/c/mod_c.ko' "$d/modules.dep"; then
			fail kmods-resolve "modules.dep: $(tr '\n' '|' <"$d/modules.dep")"
		elif [ ! -s "$d/modules.dep.bin" ] || [ ! -s "$d/modules.alias.bin" ]; then
			fail kmods-resolve "no depmod index (modules.dep.bin, modules.alias.bin)"
		else
			pass kmods-resolve
		fi
		# mod_d came in only as mod_e's soft dependency, through an alias.
		if [ ! -f "$d/kernel/net/d/mod_d.ko" ]; then
			fail kmods-softdep "mod_d (softdep of mod_e via alias husk-fake-alias) missing"
		elif ! grep -qx 'softdep mod_e pre: husk-fake-alias' "$d/modules.softdep"; then
			fail kmods-softdep "modules.softdep: $(grep -v '^#' "$d/modules.softdep" | tr '\n' '|')"
		else
			pass kmods-softdep
		fi
		# The guest's own libkmod (static musl, no decompression) reads it.
		order_a=$("$SMOKE" --probe "$d" mod-a 2>"$tmp/err" | tr '\n' ' ')
		order_e=$("$SMOKE" --probe "$d" mod_e 2>>"$tmp/err" | tr '\n' ' ')
		if [ "$order_a" != "mod_c mod_b mod_a " ]; then
			fail kmods-musl-libkmod "load order for mod-a: '$order_a'"
		elif [ "$order_e" != "mod_c mod_d mod_e " ] && [ "$order_e" != "mod_d mod_c mod_e " ]; then
			fail kmods-musl-libkmod "load order for mod_e: '$order_e'"
		else
			pass kmods-musl-libkmod
		fi
		if cmp -s "$tmp/k1.cpio.gz" "$tmp/k2.cpio.gz"; then
			pass kmods-reproducible
		else
			fail kmods-reproducible "two --kmods builds differ"
		fi
	else
		fail kmods-resolve "build.sh --kmods failed"
	fi
	if build_ok "$tmp/bad.cpio.gz" --init "$agent" --kmods "mod_a no_such_mod" \
		--kernel-release "$REL" --modules-dir "$moddir"; then
		fail kmods-unknown "an unknown module was accepted"
	elif ! grep -q "no_such_mod" "$tmp/err" || [ -e "$tmp/bad.cpio.gz" ]; then
		fail kmods-unknown "error does not name the module, or an archive was left"
	else
		pass kmods-unknown
	fi
	if build_ok "$tmp/bi.cpio.gz" --init "$agent" --kmods "builtin_f mod_c" \
		--kernel-release "$REL" --modules-dir "$moddir" &&
		grep -q "builtin_f is built into the kernel" "$tmp/err" &&
		listing "$tmp/bi.cpio.gz" | grep -q 'mod_c.ko$'; then
		pass kmods-builtin
	else
		fail kmods-builtin "a built-in module name was not skipped with a note"
	fi
fi

# ---- boot: libinit as PID 1 ------------------------------------------------------------------
# boot_check NAME LOG: QEMU ended by the guest's power-off, SMOKE lines right.
expect() { # name log key value
	if ! grep -qxF "SMOKE $3=$4" "$2"; then
		fail "$1" "expected 'SMOKE $3=$4', got '$(grep -a "^SMOKE $3=" "$2" | head -1)'"
		return 1
	fi
}
boot_check() {
	local name=$1 log=$2 ok=1 k
	[ "$rc" = 0 ] || { fail "$name" "QEMU exited with $rc (124: the guest did not power off)"; ok=0; }
	for k in mount_basics=0 mount_basics_again=0 cmdline=0 is_guest=1 fd0=open \
		fstype/proc=proc fstype/sys=sysfs fstype/dev=devtmpfs fstype/dev/pts=devpts \
		fstype/dev/shm=tmpfs fstype/run=tmpfs fstype/tmp=tmpfs \
		fstype/sys/fs/cgroup=cgroup2 modules=0 "loopback=0 up=1" "hostname=0 smoke-vm" \
		hwrng=64 getrandom_nonblock=16 "reaper=1 33"; do
		[ "$ok" = 1 ] || break
		expect "$name" "$log" "${k%%=*}" "${k#*=}" || ok=0
	done
	local ctl sub
	ctl=$(grep -a '^SMOKE controllers=' "$log" | cut -d= -f2-)
	sub=$(grep -a '^SMOKE subtree_control=' "$log" | cut -d= -f2-)
	if [ "$ok" = 1 ] && { [ -z "$ctl" ] || [ "$ctl" != "$sub" ]; }; then
		fail "$name" "controllers '$ctl' but subtree_control '$sub'"
		ok=0
	fi
	if [ "$ok" = 1 ] && ! grep -aq 'husk-agent: powering off: smoke test done' "$log"; then
		fail "$name" "no power-off message"
		ok=0
	fi
	[ "$ok" = 1 ] && pass "$name"
	[ "$ok" = 1 ] || sed 's/^/    console: /' "$log" | tail -40
}
# run_vm LOG KERNEL INITRD CMDLINE [QEMU ARGS...]: sets rc. The limit only
# stops a hung guest.
run_vm() {
	timeout -k 5 300 "$QEMU" -M microvm -accel tcg -cpu max -m 256 -smp 1 -nodefaults \
		-no-user-config -display none -no-reboot -device virtio-rng-device \
		-kernel "$2" -initrd "$3" -serial "file:$1" -append "$4" "${@:5}" </dev/null >"$1.qemu" 2>&1
	rc=$?
	# The guest's tty writes CR LF.
	tr -d '\r' <"$1" >"$1.tmp" && mv "$1.tmp" "$1"
	cat "$1.qemu" >>"$1"
}

# tsc_early_khz: under TCG on a busy host the kernel's TSC calibration
# (microvm has neither PIT nor HPET) fails at times and the boot then
# hangs before /init (seen with our kernel and Debian's); a given
# frequency skips the calibration.
BOOT_ARGS="console=ttyS0 quiet panic=-1 tsc_early_khz=2000000"
kernel=$build/kernel/bzImage
if [ ! -f "$kernel" ]; then
	skip boot "no $kernel (make kernel)"
elif ! command -v "$QEMU" >/dev/null; then
	skip boot "no $QEMU"
elif build_ok "$tmp/vm.cpio.gz" --init "$agent"; then
	run_vm "$tmp/boot.log" "$kernel" "$tmp/vm.cpio.gz" \
		"$BOOT_ARGS husk.log_level=6 husk.hostname=smoke-vm"
	boot_check boot "$tmp/boot.log"
else
	fail boot "build.sh failed"
fi

# ---- boot-modules: Debian's stock kernel, modules loaded by libinit --------------------------
# HUSK_STOCK_KERNEL is mk/stock-kernel.sh's output, set by make check
# (kernel-config/stock.mk): a `dpkg -x` of Debian's linux-image package
# with `depmod -b` run on it, and `release` naming REL.
#
# What a husk guest needs that Debian builds as modules (their own
# dependencies, e.g. virtio, virtio_ring, vsock, libcrc32c and its
# crc32c soft dependency, come along): the virtio-mmio transport of
# microvm, the disk a container's rootfs arrives on, the hwrng that seeds
# the pool, the vsock transport to the host, the rootfs filesystems.
STOCK_MODS="virtio_mmio virtio_blk virtio_rng vmw_vsock_virtio_transport erofs overlay"
boot_modules() {
	local stock=${HUSK_STOCK_KERNEL:-} rel vmlinuz moddir khz m t0 ms
	if [ -z "$stock" ]; then
		fail boot-modules "HUSK_STOCK_KERNEL is not set: run this through 'make check', or set it to the directory mk/stock-kernel.sh makes"
		return
	fi
	rel=$(cat "$stock/release" 2>/dev/null)
	vmlinuz=$stock/boot/vmlinuz-$rel
	moddir=$stock/lib/modules/$rel
	if [ -z "$rel" ] || [ ! -f "$vmlinuz" ] || [ ! -f "$moddir/modules.dep.bin" ]; then
		fail boot-modules "$stock lacks release, boot/vmlinuz-REL or lib/modules/REL/modules.dep.bin (remake it with mk/stock-kernel.sh)"
		return
	fi
	if ! command -v "$QEMU" >/dev/null; then
		fail boot-modules "no $QEMU (qemu-system-x86)"
		return
	fi
	if ! build_ok "$tmp/vmm.cpio.gz" --init "$agent" --kmods "$STOCK_MODS" \
		--kernel-release "$rel" --modules-dir "$moddir"; then
		fail boot-modules "build.sh --kmods '$STOCK_MODS' failed"
		return
	fi
	# A blank disk: virtio_blk must bind it as vda with its size.
	truncate -s 4M "$tmp/disk.img"
	# The measured TSC rate, as the vm suite passes it (kernel-config/README.md).
	khz=$("$build/test/tsc-khz" 2>/dev/null) || khz=2000000
	t0=$(date +%s%N)
	# loglevel=6 after quiet: virtio_blk's "[vda] ... logical blocks" is a notice.
	run_vm "$tmp/bootm.log" "$vmlinuz" "$tmp/vmm.cpio.gz" \
		"$BOOT_ARGS tsc_early_khz=$khz no_timer_check tsc=reliable loglevel=6 husk.hostname=smoke-vm husk.modules=${STOCK_MODS// /,}" \
		-drive "id=d0,file=$tmp/disk.img,format=raw,if=none,readonly=on" \
		-device virtio-blk-device,drive=d0,serial=husk-disk
	ms=$((($(date +%s%N) - t0) / 1000000))
	# Checks beyond boot_check first, so one FAIL or one PASS is printed.
	if [ "$rc" = 0 ]; then
		for m in $STOCK_MODS; do
			if ! expect boot-modules "$tmp/bootm.log" "module.$m" present; then
				sed 's/^/    console: /' "$tmp/bootm.log" | tail -40
				return
			fi
		done
		if ! grep -aq 'virtio_blk virtio[0-9]*: \[vda\] 8192 512-byte logical blocks' "$tmp/bootm.log"; then
			fail boot-modules "virtio_blk did not attach the 4 MiB disk as vda: '$(grep -a 'virtio_blk' "$tmp/bootm.log" | head -3)'"
			sed 's/^/    console: /' "$tmp/bootm.log" | tail -40
			return
		fi
	fi
	boot_check boot-modules "$tmp/bootm.log"
	# Not asserted (noisy machine): QEMU launch to power-off.
	echo "boot_modules_ms $ms ($rel, $(wc -w <<<"$STOCK_MODS") modules)"
}
boot_modules

exit 0

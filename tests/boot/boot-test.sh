#!/bin/bash
# Boot smoke test of the guest kernel on QEMU microvm (TCG).
#
#  boot-poweroff        initramfs holding only /init (tests/boot/poweroff_init.c,
#                       built as BUILD/test/boot-init): prints husk-boot-ok and
#                       calls reboot(RB_POWER_OFF); QEMU must exit by itself.
#  boot-poweroff-memfd  the same on husk's memfd/vhost-user-ready machine.
#  boot-pwrbtn          QMP system_powerdown reaches PID 1 as SIGPWR.
#  kernel-*             busybox /init (tests/boot/features-init.sh) checks from
#                       inside the guest what kernel-config/husk.config promises:
#                       cgroup2 controllers, namespaces, erofs + overlay on
#                       virtio-blk, ext4, virtio-rng, virtio-net on PCIe, ...
#
# Prints PASS/FAIL lines for tests/run.sh, and the floor for guest boot time:
#   boot_poweroff_ms N         median of 5 runs, QEMU launch to QEMU exit
#   boot_poweroff_memfd_ms N   the same with the memfd machine
#
# usage: tests/boot/boot-test.sh BUILD_DIR
set -eu

build=${1:?usage: $0 BUILD_DIR}
kernel=$build/kernel/bzImage
init=${BOOT_INIT:-$build/test/boot-init}
tsc_khz_tool=$build/test/tsc-khz
busybox=${BUSYBOX:-/bin/busybox}
here=$(cd "$(dirname "$0")" && pwd)
qemu=${QEMU:-qemu-system-x86_64}
runs=${BOOT_RUNS:-5}
# A hang detector only: a healthy boot takes a few seconds under TCG.
limit=${BOOT_TIMEOUT:-60}

for f in "$kernel" "$init" "$tsc_khz_tool" "$busybox"; do
	if [ ! -f "$f" ]; then
		echo "FAIL boot-prerequisites: $f is missing (run 'make kernel $init $tsc_khz_tool')"
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/husk-boot.XXXXXX")
qpid=
cleanup() {
	if [ -n "$qpid" ]; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

failed=0
fail() { # name why [log]
	echo "FAIL $1: $2"
	if [ $# -ge 3 ] && [ -f "$3" ]; then
		echo "----- serial log -----"
		tail -n 60 "$3"
		echo "-----"
	fi
	failed=$((failed + 1))
}

# ---- initramfs, byte-for-byte reproducible --------------------------------------
# mkinitrd OUT SRC:DEST...: a gzip'd newc archive of those files (mode 0755),
# entries sorted, owner 0, every mtime 0.
mkinitrd() {
	local out=$1 root spec
	shift
	root=$(mktemp -d "$tmp/root.XXXXXX")
	for spec in "$@"; do
		mkdir -p "$root/$(dirname "${spec#*:}")"
		cp "${spec%%:*}" "$root/${spec#*:}"
		chmod 0755 "$root/${spec#*:}"
	done
	find "$root" -mindepth 1 -exec touch -h -d @0 {} +
	(cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
		cpio -o -H newc --reproducible -R 0:0 --quiet) | gzip -n -9 >"$out"
	rm -rf "$root"
}
mkinitrd "$tmp/initrd.gz" "$init:init"
mkinitrd "$tmp/initrd2.gz" "$init:init"
if cmp -s "$tmp/initrd.gz" "$tmp/initrd2.gz"; then
	echo "PASS initramfs-reproducible"
else
	fail initramfs-reproducible "two builds of the same initramfs differ"
fi
initrd=$tmp/initrd.gz

# ---- QEMU command lines -------------------------------------------------------
# Under TCG the guest reads the host's TSC but cannot calibrate it (no HPET or
# PM timer on microvm; PIT calibration fails when QEMU is preempted, and the
# kernel then hangs): tell it the rate. no_timer_check skips probing the PIT
# interrupt, which microvm does not wire up; tsc=reliable keeps the TSC with
# more than one vCPU (QEMU's vCPU threads read the host TSC on any host CPU).
if ! tsc_khz=$("$tsc_khz_tool") || [ -z "$tsc_khz" ]; then
	echo "FAIL boot-prerequisites: $tsc_khz_tool could not measure the host TSC"
	exit 1
fi
# -no-reboot: a guest reset (reboot, or a panic under panic=-1) exits QEMU
# instead of booting again, so no failure can loop.
cmdline="console=ttyS0 quiet panic=-1 tsc_early_khz=$tsc_khz no_timer_check tsc=reliable"
common=(-accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config
	-display none -no-reboot -kernel "$kernel" -initrd "$initrd")
plain=(-M microvm)
# The form husk's VMs use: memory QEMU can share with vhost-user backends,
# and modern virtio-mmio, the only one vhost-user accepts.
# shellcheck disable=SC2054 # commas inside QEMU option values
memfd=(-M microvm,memory-backend=mem
	-object memory-backend-memfd,id=mem,size=256M,share=on
	-global virtio-mmio.force-legacy=false)

# boot NAME LOG MACHINE-ARGS...: one boot, serial to LOG; sets rc and ms.
boot() {
	local name=$1 log=$2 t0 t1
	shift 2
	: >"$log"
	t0=$(date +%s%N)
	set +e
	timeout -k 5 "$limit" "$qemu" "$@" "${common[@]}" -serial "file:$log" \
		-append "$cmdline" </dev/null >"$log.qemu" 2>&1
	rc=$?
	set -e
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	cat "$log.qemu" >>"$log"
}

# check_boot NAME LOG [MARKER]: the guest printed MARKER (husk-boot-ok) and
# its own poweroff ended QEMU.
check_boot() {
	local name=$1 log=$2 marker=${3:-husk-boot-ok}
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		fail "$name" "QEMU did not exit within ${limit} s (killed by timeout)" "$log"
	elif [ "$rc" != 0 ]; then
		fail "$name" "QEMU exited with status $rc" "$log"
	elif ! grep -q "$marker" "$log"; then
		fail "$name" "the guest never printed $marker" "$log"
	elif grep -q 'Kernel panic' "$log"; then
		fail "$name" "the guest panicked instead of powering off" "$log"
	elif ! grep -q 'reboot: Power down' "$log"; then
		fail "$name" "QEMU exited without the kernel powering down" "$log"
	else
		return 0
	fi
	return 1
}

# measure NAME METRIC MACHINE-ARGS...: $runs boots, each checked; prints
# PASS once and the median wall time.
measure() {
	local name=$1 metric=$2 i ok=1 times=()
	shift 2
	for ((i = 1; i <= runs; i++)); do
		boot "$name" "$tmp/$name.$i.log" "$@"
		if ! check_boot "$name" "$tmp/$name.$i.log"; then
			ok=0
			break
		fi
		times+=("$ms")
	done
	[ "$ok" = 1 ] || return 0
	echo "PASS $name"
	echo "$metric $(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")"
	echo "# $metric runs: ${times[*]}"
}

measure boot-poweroff boot_poweroff_ms "${plain[@]}"
measure boot-poweroff-memfd boot_poweroff_memfd_ms "${memfd[@]}"

# ---- host-initiated shutdown: QMP system_powerdown -> SIGPWR to PID 1 ---------
# Serial on a pipe we read line by line, QMP on a pair of fifos: no polling.
pwrbtn() {
	local name=boot-pwrbtn log=$tmp/pwrbtn.log line ready=0 qin qout
	mkfifo "$tmp/qmp.in" "$tmp/qmp.out" "$tmp/serial"
	# read-write opens of a fifo never block, whether QEMU started or not
	exec {qin}<>"$tmp/qmp.in" {qout}<>"$tmp/qmp.out"
	timeout -k 5 "$limit" "$qemu" "${memfd[@]}" "${common[@]}" -serial stdio \
		-qmp "pipe:$tmp/qmp" -append "$cmdline husk_test=pwrbtn" \
		</dev/null >"$tmp/serial" 2>&1 &
	qpid=$!
	exec {ser}<"$tmp/serial"
	while IFS= read -r -t "$limit" -u "$ser" line; do
		printf '%s\n' "$line" >>"$log"
		case $line in
		*"husk-boot-ok waiting"*) ready=1; break ;;
		esac
	done
	if [ "$ready" = 1 ]; then
		printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"system_powerdown"}' >&"$qin"
	fi
	# the rest of the serial output, until QEMU exits and closes the pipe
	while IFS= read -r -t "$limit" -u "$ser" line; do
		printf '%s\n' "$line" >>"$log"
	done
	set +e
	wait "$qpid"
	rc=$?
	set -e
	qpid=
	exec {ser}<&- {qin}>&- {qout}<&-
	if [ "$ready" != 1 ]; then
		fail "$name" "the guest never reported waiting for SIGPWR (QEMU status $rc)" "$log"
	elif ! grep -q 'husk-pwrbtn-ok' "$log"; then
		fail "$name" "system_powerdown did not reach PID 1 as SIGPWR (QEMU status $rc)" "$log"
	elif check_boot "$name" "$log"; then
		echo "PASS $name"
	fi
}
pwrbtn

# ---- kernel features, checked from inside the guest ----------------------------
features() {
	local name=boot-features log=$tmp/features.log n_pass n_fail
	mkdir -p "$tmp/lower"
	echo erofs-ok >"$tmp/lower/hello"
	# compressible, so the image exercises erofs' lz4 decompression
	head -c 262144 /dev/zero | tr '\0' a >"$tmp/lower/big"
	if ! mkfs.erofs --quiet -zlz4hc "$tmp/rootfs.erofs" "$tmp/lower" >"$tmp/mkfs.log" 2>&1 ||
		! mkfs.ext4 -q -F "$tmp/scratch.ext4" 16M >>"$tmp/mkfs.log" 2>&1; then
		fail "$name" "making the disk images failed: $(cat "$tmp/mkfs.log")"
		return 0
	fi
	mkinitrd "$tmp/features.gz" "$busybox:bin/busybox" "$here/features-init.sh:init"
	: >"$log"
	set +e
	timeout -k 5 "$limit" "$qemu" \
		-M microvm,pcie=on,memory-backend=mem \
		-object memory-backend-memfd,id=mem,size=256M,share=on \
		-global virtio-mmio.force-legacy=false \
		-accel tcg -cpu max -m 256 -smp 2 -nodefaults -no-user-config -display none -no-reboot \
		-kernel "$kernel" -initrd "$tmp/features.gz" -append "$cmdline" \
		-drive "id=d0,file=$tmp/rootfs.erofs,format=raw,if=none,readonly=on" \
		-device virtio-blk-device,drive=d0,serial=rootfs \
		-drive "id=d1,file=$tmp/scratch.ext4,format=raw,if=none" \
		-device virtio-blk-device,drive=d1,serial=scratch \
		-object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-device,rng=rng0 \
		-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0 \
		-serial "file:$log" </dev/null >"$log.qemu" 2>&1
	rc=$?
	set -e
	cat "$log.qemu" >>"$log"
	tr -d '\r' <"$log" | sed -n -E 's/^husk-check (PASS|FAIL) /\1 kernel-/p'
	n_pass=$(grep -c '^husk-check PASS ' "$log" || true)
	n_fail=$(grep -c '^husk-check FAIL ' "$log" || true)
	failed=$((failed + n_fail))
	if ! grep -q 'husk-checks-done' "$log"; then
		fail "$name" "the guest did not finish its checks ($n_pass passed, $n_fail failed)" "$log"
	elif check_boot "$name" "$log" husk-checks-done; then
		echo "PASS $name"
	fi
}
features

[ "$failed" = 0 ]

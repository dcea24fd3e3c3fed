#!/bin/bash
# Boot smoke test of the guest kernel: boots BUILD/kernel/bzImage on QEMU
# microvm (TCG) with an initramfs holding only /init (tests/boot/poweroff_init.c,
# built as BUILD/test/boot-init), which prints husk-boot-ok and powers off.
#
# Prints PASS/FAIL lines for tests/run.sh, and the floor for guest boot time:
#   boot_poweroff_ms N         median of 5 runs, QEMU launch to QEMU exit
#   boot_poweroff_memfd_ms N   the same with husk's memfd/vhost-user machine
#
# usage: tests/boot/boot-test.sh BUILD_DIR
set -eu

build=${1:?usage: $0 BUILD_DIR}
kernel=$build/kernel/bzImage
init=${BOOT_INIT:-$build/test/boot-init}
qemu=${QEMU:-qemu-system-x86_64}
runs=${BOOT_RUNS:-5}
# A hang detector only: a healthy boot takes a few seconds under TCG.
limit=${BOOT_TIMEOUT:-60}

for f in "$kernel" "$init"; do
	if [ ! -f "$f" ]; then
		echo "FAIL boot-prerequisites: $f is missing (run 'make kernel $init')"
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

# ---- initramfs: /init only, byte-for-byte reproducible ----------------------
mkinitrd() { # OUT
	local root
	root=$(mktemp -d "$tmp/root.XXXXXX")
	cp "$init" "$root/init"
	chmod 0755 "$root/init"
	touch -h -d @0 "$root/init"
	(cd "$root" && printf 'init\n' | LC_ALL=C sort |
		cpio -o -H newc --reproducible -R 0:0 --quiet) | gzip -n -9 >"$1"
	rm -rf "$root"
}
mkinitrd "$tmp/initrd.gz"
mkinitrd "$tmp/initrd2.gz"
if cmp -s "$tmp/initrd.gz" "$tmp/initrd2.gz"; then
	echo "PASS initramfs-reproducible"
else
	fail initramfs-reproducible "two builds of the same initramfs differ"
fi
initrd=$tmp/initrd.gz

# ---- QEMU command lines -------------------------------------------------------
# -no-reboot: a guest reset (reboot, or a panic under panic=-1) exits QEMU
# instead of booting again, so no failure can loop.
cmdline="console=ttyS0 quiet panic=-1"
common=(-accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config
	-display none -no-reboot -kernel "$kernel" -initrd "$initrd")
plain=(-M microvm)
# The form husk's VMs use: memory QEMU can share with vhost-user backends,
# and modern virtio-mmio, the only one vhost-user accepts.
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

# check_boot NAME LOG: the guest's own poweroff ended QEMU.
check_boot() {
	local name=$1 log=$2
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		fail "$name" "QEMU did not exit within ${limit} s (killed by timeout)" "$log"
	elif [ "$rc" != 0 ]; then
		fail "$name" "QEMU exited with status $rc" "$log"
	elif ! grep -q 'husk-boot-ok' "$log"; then
		fail "$name" "the guest never printed husk-boot-ok" "$log"
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
	echo "$metric $(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")" \
		"(runs: ${times[*]})"
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

[ "$failed" = 0 ]

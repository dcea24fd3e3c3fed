#!/bin/bash
# The guest end to end under QEMU (TCG): our kernel and initramfs boot
# husk-agent as PID 1; through husk-vsockd the host checks it, runs
# containers from an erofs disk (stdout/stderr over vsock, exit codes, a
# memory limit enforced by the guest's cgroup v2) and powers the VM off.
# Prints PASS/FAIL lines and figures (boot_to_ready_ms).
# usage: tests/vm/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
kernel=${VM_KERNEL:-$build/kernel/bzImage}
initrd=${VM_INITRD:-$build/initramfs.cpio.gz}
client=$build/test/guest-client
for f in "$kernel" "$initrd" "$client" "$build/bin/husk-vsockd" "$build/test/tsc-khz"; do
	if [ ! -e "$f" ]; then
		echo "FAIL vm-prerequisites: $f is missing (run 'make')"
		exit 1
	fi
done

tmp=$(mktemp -d /tmp/husk-vm-test-XXXXXX)
qemu_pid= vsockd_pid=
cleanup() {
	[ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
	[ -n "$vsockd_pid" ] && kill "$vsockd_pid" 2>/dev/null && wait "$vsockd_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	echo "    --- guest console (last 30 lines):"
	tail -30 "$tmp/console.log" 2>/dev/null | sed 's/^/    /'
}

# A busybox root filesystem as an erofs image, the way libhusk will attach it.
"$here/../jail/make-rootfs.sh" "$tmp/rootfs"
mkfs.erofs --quiet "$tmp/rootfs.erofs" "$tmp/rootfs" >/dev/null 2>&1 || {
	echo "FAIL vm-erofs: mkfs.erofs failed"
	exit 1
}
spec() { # spec FILE SCRIPT [JQ_EXTRA]
	jq --arg s "$2" '.process.args=["sh","-c",$s] | .hostname="husk-vm" | .root.path="rootfs"'"${3:-}" \
		"$here/../jail/base-config.json" >"$1"
}

"$build/bin/husk-vsockd" --socket "$tmp/vu.sock" --uds "$tmp/v.sock" --guest-cid 3 --foreground \
	>"$tmp/vsockd.log" 2>&1 &
vsockd_pid=$!
for _ in $(seq 100); do grep -q ready "$tmp/vsockd.log" && break; sleep 0.05; done

# Under TCG the guest's TSC runs at the host's rate; telling the kernel
# avoids a PIT calibration that can hang on a loaded host.
# The measured TSC rate (build/test/tsc-khz), not "cpu MHz", which is the
# current clock on real hardware.
khz=$("$build/test/tsc-khz" 2>/dev/null || true)
# This boot's initramfs has no /dev/console, as one built without root:
# the agent must still boot and reach the console (vm-unapplied-keys-warned
# below reads it there; the kernel's own built-in initramfs has the node).
mkdir "$tmp/nocon"
(cd "$tmp/nocon" && zcat "$initrd" | cpio -id --quiet && rm dev/console &&
	find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 >"$tmp/nocon.cpio.gz") ||
	{ echo "FAIL boot-agent-ready: repacking the initramfs without /dev/console failed"; exit 1; }
t0=$(date +%s%N)
qemu-system-x86_64 -M microvm,memory-backend=mem -accel tcg -cpu max -m 512 -smp 2 \
	-nodefaults -no-user-config -nographic -no-reboot \
	-object memory-backend-memfd,id=mem,size=512M,share=on \
	-global virtio-mmio.force-legacy=false \
	-chardev socket,id=vs,path="$tmp/vu.sock" -device vhost-user-vsock-device,chardev=vs \
	-drive id=d0,file="$tmp/rootfs.erofs",format=raw,if=none,readonly=on \
	-device virtio-blk-device,drive=d0,serial=rootfs0 \
	-serial file:"$tmp/console.log" \
	-kernel "$kernel" -initrd "$tmp/nocon.cpio.gz" \
	-append "console=ttyS0 quiet panic=-1 reboot=t ${khz:+tsc_early_khz=$khz no_timer_check tsc=reliable} husk.debug_console=1 -- husk.log_level=6" &
qemu_pid=$!

if out=$("$client" --uds "$tmp/v.sock" --timeout-ms 120000 wait-ready 2>&1); then
	t1=$(date +%s%N)
	pass boot-agent-ready
	echo "boot_to_ready_ms $(((t1 - t0) / 1000000))"
else
	fail boot-agent-ready "$out"
	exit 1
fi

if out=$("$client" --uds "$tmp/v.sock" details 2>&1) && echo "$out" | grep -q "^cpus 2$" &&
	echo "$out" | grep -q "^kernel 6\."; then
	pass guest-details
else
	fail guest-details "$out"
fi

spec "$tmp/c1.json" 'echo hello from the VM; hostname; grep -c . /proc/self/mountinfo >/dev/null; cat /proc/1/cgroup; echo oops >&2; exit 7'
"$client" --uds "$tmp/v.sock" run --serial rootfs0 --spec "$tmp/c1.json" --id c1 \
	>"$tmp/c1.out" 2>"$tmp/c1.err"
rc=$?
if [ $rc -eq 7 ] && [ "$(head -2 "$tmp/c1.out")" = "$(printf 'hello from the VM\nhusk-vm')" ] &&
	grep -q "^0::/" "$tmp/c1.out" && grep -q "^oops$" "$tmp/c1.err"; then
	pass vm-container-run
else
	fail vm-container-run "rc=$rc out=$(tr '\n' '|' <"$tmp/c1.out") err=$(tr '\n' '|' <"$tmp/c1.err")"
fi

# The guest's cgroup v2 enforces limits: memory.max is set, and a process
# that outgrows it is OOM-killed (137).
spec "$tmp/c2.json" 'cat /sys/fs/cgroup/memory.max; x=$(head -c 100000000 /dev/zero | tr "\0" x); echo survived' \
	' | .linux.resources={memory:{limit:33554432}} | .linux.namespaces+=[{type:"cgroup"}]
	  | .mounts+=[{destination:"/sys/fs/cgroup",type:"cgroup",source:"cgroup",options:["nosuid","noexec","nodev","ro"]}]'
"$client" --uds "$tmp/v.sock" run --serial rootfs0 --spec "$tmp/c2.json" --id c2 \
	>"$tmp/c2.out" 2>"$tmp/c2.err"
rc=$?
if [ $rc -eq 137 ] && grep -qx 33554432 "$tmp/c2.out" && ! grep -q survived "$tmp/c2.out"; then
	pass vm-memory-limit-oom
else
	fail vm-memory-limit-oom "rc=$rc out=$(tr '\n' '|' <"$tmp/c2.out") err=$(tr '\n' '|' <"$tmp/c2.err")"
fi

# The husk.* keys came as init's arguments (after "--"): the
# husk.debug_console=1 before "--" is not applied, so there is no console
# port, and the agent says why on the console (it has no log stream here).
if ! "$client" --uds "$tmp/v.sock" console 'echo x' >/dev/null 2>&1; then
	pass debug-console-off-by-default
else
	fail debug-console-off-by-default "port 1026 answered"
fi
if grep -q 'husk.\* keys before "--" were not applied' "$tmp/console.log"; then
	pass vm-unapplied-keys-warned
else
	fail vm-unapplied-keys-warned "no warning on the console: $(tail -c 400 "$tmp/console.log")"
fi

"$client" --uds "$tmp/v.sock" destroy >/dev/null 2>&1
for _ in $(seq 300); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
if ! kill -0 "$qemu_pid" 2>/dev/null; then
	wait "$qemu_pid" 2>/dev/null
	qemu_pid=
	pass vm-destroy-powers-off
else
	fail vm-destroy-powers-off "QEMU still running 30 s after DestroySandbox"
fi
for _ in $(seq 100); do kill -0 "$vsockd_pid" 2>/dev/null || break; sleep 0.1; done
if ! kill -0 "$vsockd_pid" 2>/dev/null; then
	wait "$vsockd_pid" 2>/dev/null
	vsockd_pid=
	[ ! -e "$tmp/v.sock" ] && pass vsockd-exits-with-vm || fail vsockd-exits-with-vm "socket left"
else
	fail vsockd-exits-with-vm "husk-vsockd still running"
fi

# ---- the debug console: a DEBUG=1 initramfs and husk.debug_console=1 ----
"$here/../../initramfs/build.sh" "$tmp/debug.cpio.gz" --init "$build/bin/husk-agent" --busybox \
	>/dev/null 2>&1 || { echo "FAIL debug-console: building the DEBUG initramfs failed"; exit 1; }
"$build/bin/husk-vsockd" --socket "$tmp/vu2.sock" --uds "$tmp/v2.sock" --guest-cid 4 --foreground \
	>"$tmp/vsockd2.log" 2>&1 &
vsockd_pid=$!
for _ in $(seq 100); do grep -q ready "$tmp/vsockd2.log" && break; sleep 0.05; done
qemu-system-x86_64 -M microvm,memory-backend=mem -accel tcg -cpu max -m 256 -smp 1 \
	-nodefaults -no-user-config -nographic -no-reboot \
	-object memory-backend-memfd,id=mem,size=256M,share=on \
	-global virtio-mmio.force-legacy=false \
	-chardev socket,id=vs,path="$tmp/vu2.sock" -device vhost-user-vsock-device,chardev=vs \
	-serial file:"$tmp/console.log" -kernel "$kernel" -initrd "$tmp/debug.cpio.gz" \
	-append "console=ttyS0 quiet panic=-1 reboot=t ${khz:+tsc_early_khz=$khz no_timer_check tsc=reliable} husk.debug_console=1" &
qemu_pid=$!
if "$client" --uds "$tmp/v2.sock" --timeout-ms 120000 wait-ready >/dev/null 2>&1 &&
	out=$("$client" --uds "$tmp/v2.sock" console 'echo console-$((40+2)); cat /proc/1/comm; exit
' 2>&1) && echo "$out" | grep -q "console-42" && echo "$out" | grep -q "^init"; then
	pass debug-console
else
	fail debug-console "${out:-no answer}"
fi
"$client" --uds "$tmp/v2.sock" destroy >/dev/null 2>&1
for _ in $(seq 300); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done

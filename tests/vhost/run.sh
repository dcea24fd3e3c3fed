#!/bin/bash
# libhusk's vhost-vsock transport, end to end, on a host without it.
#
# Neither the development machine nor CI has /dev/vhost-vsock, so this
# boots an outer VM (QEMU, TCG) from Debian's stock kernel, which has
# vhost_vsock as a module, with the host's root filesystem shared
# read-only over 9p. Its PID 1 (a busybox script in the initramfs) loads
# vhost_vsock, mounts the 9p root, moves into it and runs
# tests/vhost/in-vm.sh, which boots husk's own VMs inside (TCG under TCG)
# with "auto" transport, that is the kernel's vhost-vsock. Its PASS/FAIL
# lines come back over the outer VM's serial console.
#
# usage: HUSK_STOCK_KERNEL=DIR tests/vhost/run.sh BUILD_DIR
# (make check sets HUSK_STOCK_KERNEL: see kernel-config/stock.mk)
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
stock=${HUSK_STOCK_KERNEL:-}
# A hang detector only: the inner VMs run under two layers of TCG.
LIMIT=${VHOST_TEST_TIMEOUT:-1500}

if [ -z "$stock" ] || [ ! -f "$stock/release" ] || [ ! -e "$stock/vmlinuz" ]; then
	echo "FAIL vhost-prerequisites: HUSK_STOCK_KERNEL does not name a mk/stock-kernel.sh tree (run make check)"
	exit 1
fi
for f in "$build/bin/huskctl" "$build/kernel/bzImage" "$build/initramfs.cpio.gz" \
	"$build/test/boot-init" "$build/test/tsc-khz" "$build/test/husk-probe" \
	"$build/test/sec-probe-host" /bin/busybox; do
	if [ ! -e "$f" ]; then
		echo "FAIL vhost-prerequisites: $f is missing (run 'make')"
		exit 1
	fi
done
# The paths travel on the outer kernel's command line, which splits at spaces.
case "$repo$build" in *[[:space:]]*)
	echo "FAIL vhost-prerequisites: the repository path has a space: $repo"
	exit 1
	;;
esac
rel=$(cat "$stock/release")
tmp=$(mktemp -d /tmp/husk-vhost-XXXXXX)
qpid=
cleanup() {
	[ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# The outer initramfs: busybox, the modules (with what they depend on) and
# the PID-1 script, appended as a second archive (the kernel unpacks both).
# initramfs/build.sh wants an --init; boot-init is there and never runs.
mods="virtio_mmio 9pnet_virtio 9p vhost_vsock"
# The outer VM is a host, not a husk guest: it also gets the kernel's vsock
# loopback transport (insmod from the second archive: initramfs/build.sh
# never packs it), so that in-vm.sh can connect to a husk-agent there from
# a peer other than the host and see the agent itself refuse it.
loop_ko=$stock/lib/modules/$rel/kernel/net/vmw_vsock/vsock_loopback.ko
if ! "$repo/initramfs/build.sh" "$tmp/base.cpio.gz" --init "$build/test/boot-init" --busybox \
	--kmods "$mods" --kernel-release "$rel" --modules-dir "$stock/lib/modules/$rel" \
	>"$tmp/build.log" 2>&1; then
	echo "FAIL vhost-outer-initramfs: $(tail -5 "$tmp/build.log")"
	exit 1
fi
mkdir "$tmp/extra"
cat >"$tmp/extra/outer-init" <<EOF
#!/bin/sh
# PID 1 of the outer VM (tests/vhost/run.sh).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs dev /dev || echo "outer: mounts failed"
for m in $mods; do modprobe \$m || echo "outer: modprobe \$m failed"; done
[ ! -e /vsock_loopback.ko ] || insmod /vsock_loopback.ko || echo "outer: insmod vsock_loopback failed"
mkdir -p /host
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 hostroot /host; then
	for d in proc sys dev; do mount --move /\$d /host/\$d; done
	mount -t tmpfs -o mode=0755 tmpfs /host/run
	mkdir -p /host/run/husk-vhost
	exec switch_root /host /bin/sh -c '$here/in-vm.sh $build /run/husk-vhost; echo o >/proc/sysrq-trigger; sleep 60'
fi
echo "outer: mounting the host's root over 9p failed"
echo o >/proc/sysrq-trigger
sleep 60
EOF
chmod 0755 "$tmp/extra/outer-init"
extra_files=outer-init
if [ -f "$loop_ko" ]; then
	install -m 0644 "$loop_ko" "$tmp/extra/vsock_loopback.ko"
	extra_files="$extra_files vsock_loopback.ko"
fi
(cd "$tmp/extra" && printf '%s\n' $extra_files | cpio --quiet -o -H newc -R 0:0) >"$tmp/extra.cpio"
# Both uncompressed: the kernel takes archives one after another, but not
# an uncompressed one after a compressed one.
{ gzip -dc "$tmp/base.cpio.gz" && cat "$tmp/extra.cpio"; } >"$tmp/outer.cpio"
echo "PASS vhost-outer-initramfs"

khz=$("$build/test/tsc-khz" 2>/dev/null || true)
t0=$(date +%s%N)
timeout -k 5 "$LIMIT" qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 2048 -smp 2 \
	-nodefaults -no-user-config -display none -no-reboot \
	-fsdev local,id=hostroot,path=/,security_model=none,readonly=on \
	-device virtio-9p-device,fsdev=hostroot,mount_tag=hostroot \
	-serial file:"$tmp/console.log" -kernel "$stock/vmlinuz" -initrd "$tmp/outer.cpio" \
	-append "console=ttyS0 quiet panic=-1 reboot=t ${khz:+tsc_early_khz=$khz no_timer_check tsc=reliable} rdinit=/outer-init" \
	</dev/null >"$tmp/qemu.log" 2>&1 &
qpid=$!
wait "$qpid"
rc=$?
qpid=
echo "vhost_suite_ms $((($(date +%s%N) - t0) / 1000000))"

tr -d '\r' <"$tmp/console.log" >"$tmp/console.txt"
grep -E '^(PASS|FAIL) |^vhost_boot_ms ' "$tmp/console.txt"
if ! grep -qx 'in-vm: done' "$tmp/console.txt"; then
	echo "FAIL vhost-in-vm-finished: QEMU status $rc, no 'in-vm: done'; $(cat "$tmp/qemu.log")"
	echo "    --- outer console (last 40 lines):"
	tail -40 "$tmp/console.txt" | sed 's/^/    /'
	exit 1
fi
echo "PASS vhost-in-vm-finished"

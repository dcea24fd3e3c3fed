#!/bin/bash
# tests/e2e/run.sh once more, booting Debian's stock kernel: the modules
# husk's guest needs are packed into the initramfs (initramfs/build.sh
# --kmods) and loaded by the agent from /etc/husk/modules.
# usage: HUSK_STOCK_KERNEL=DIR tests/e2e/stock.sh BUILD_DIR
# (make check sets HUSK_STOCK_KERNEL: see kernel-config/stock.mk)
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
stock=${HUSK_STOCK_KERNEL:-}
if [ -z "$stock" ] || [ ! -f "$stock/release" ] || [ ! -e "$stock/vmlinuz" ]; then
	echo "FAIL stock-kernel: HUSK_STOCK_KERNEL does not name a mk/stock-kernel.sh tree (run make check)"
	exit 1
fi
rel=$(cat "$stock/release")
tmp=$(mktemp -d /tmp/husk-e2e-stock-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mods="virtio_mmio virtio_blk virtio_rng virtio_balloon vmw_vsock_virtio_transport erofs overlay ext4"
if ! "$here/../../initramfs/build.sh" "$tmp/initrd.cpio.gz" --init "$build/bin/husk-agent" \
	--kmods "$mods" --kernel-release "$rel" --modules-dir "$stock/lib/modules/$rel" \
	>"$tmp/build.log" 2>&1; then
	echo "FAIL stock-kernel-initramfs: $(tail -5 "$tmp/build.log")"
	exit 1
fi
echo "PASS stock-kernel-initramfs"
# The guest never carries the vsock loopback transport (a container could
# reach the agent through it): not even when asked for.
if zcat "$tmp/initrd.cpio.gz" | cpio -t --quiet 2>/dev/null | grep -q 'vsock_loopback'; then
	echo "FAIL stock-kernel-initramfs-no-vsock-loopback: the initramfs carries it"
elif "$here/../../initramfs/build.sh" "$tmp/loop.cpio.gz" --init "$build/bin/husk-agent" \
	--kmods "$mods vsock_loopback" --kernel-release "$rel" --modules-dir "$stock/lib/modules/$rel" \
	>"$tmp/loop.log" 2>&1; then
	echo "FAIL stock-kernel-initramfs-no-vsock-loopback: --kmods vsock_loopback was packed"
elif ! grep -q "vsock_loopback is never carried" "$tmp/loop.log"; then
	echo "FAIL stock-kernel-initramfs-no-vsock-loopback: refused without saying why: $(tail -3 "$tmp/loop.log")"
else
	echo "PASS stock-kernel-initramfs-no-vsock-loopback"
fi
VM_KERNEL=$stock/vmlinuz VM_INITRD=$tmp/initrd.cpio.gz "$here/run.sh" "$build"

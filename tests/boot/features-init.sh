#!/bin/busybox sh
# shellcheck shell=sh disable=SC2016 # the sh -c scripts expand in the child
# PID 1 of the kernel feature boot (tests/boot/boot-test.sh): checks from
# inside the guest that what husk.config promises is really there, prints
# one "husk-check PASS|FAIL name[: why]" line per check, then powers off.
#
# The host attaches: virtio-blk (mmio) serial "rootfs" holding an erofs
# image with /hello, virtio-blk (mmio) serial "scratch" holding ext4,
# virtio-rng (mmio), virtio-net on PCIe (microvm pcie=on), 2 vCPUs.
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /tmp /mnt
$bb mount -t proc proc /proc
$bb --install -s /bin
export PATH=/bin

pass() { echo "husk-check PASS $1"; }
fail() { echo "husk-check FAIL $1: $2"; }
check() { # name why command...
	name=$1 why=$2
	shift 2
	if "$@" >/tmp/out 2>&1; then pass "$name"; else fail "$name" "$why: $(head -c 300 /tmp/out)"; fi
}

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# ---- filesystems and namespaces compiled in ----------------------------------
for fs in proc sysfs tmpfs devtmpfs devpts mqueue cgroup2 overlay erofs ext4; do
	check "fs-$fs" "not in /proc/filesystems" grep -qw "$fs" /proc/filesystems
done
for ns in cgroup ipc mnt net pid time user uts; do
	check "ns-$ns" "no /proc/self/ns/$ns" test -e "/proc/self/ns/$ns"
done
check userns-unshare "unprivileged-style unshare of every namespace failed" \
	sh -c '[ "$(unshare -U -r -m -u -i -n -p -f id -u)" = 0 ]'

# ---- cgroup v2 with the controllers containers need ----------------------------
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
check cgroup2-controllers "cgroup.controllers lacks one of cpuset cpu io memory pids" sh -c '
	for c in cpuset cpu io memory pids; do grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || exit 1; done'
check cgroup2-subtree "enabling the controllers for children failed" \
	sh -c 'echo "+cpuset +cpu +io +memory +pids" >/sys/fs/cgroup/cgroup.subtree_control'
mkdir /sys/fs/cgroup/t
for f in cpu.max cpu.weight memory.max memory.swap.max memory.events memory.pressure \
	io.max pids.max cpuset.cpus cgroup.freeze cpu.pressure io.pressure; do
	check "cgroup2-file-$f" "/sys/fs/cgroup/t/$f is missing" test -e "/sys/fs/cgroup/t/$f"
done
check cgroup2-memory-max "memory.max did not take 64M" sh -c '
	echo 67108864 >/sys/fs/cgroup/t/memory.max && [ "$(cat /sys/fs/cgroup/t/memory.max)" = 67108864 ]'
check cgroup2-freeze "an empty cgroup did not report frozen" sh -c '
	echo 1 >/sys/fs/cgroup/t/cgroup.freeze && grep -qx "frozen 1" /sys/fs/cgroup/t/cgroup.events'
check psi "/proc/pressure/memory is missing" test -r /proc/pressure/memory

# ---- process isolation pieces ----------------------------------------------------
check seccomp-filter "no Seccomp_filters in /proc/self/status" grep -q '^Seccomp_filters:' /proc/self/status
check sysvipc "no /proc/sysvipc/shm" test -e /proc/sysvipc/shm
check inotify "no /proc/sys/fs/inotify" test -e /proc/sys/fs/inotify/max_user_watches
mkdir -p /dev/pts /dev/mqueue
check devpts-newinstance "a new devpts instance gave no pty" sh -c '
	mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts && exec 3<>/dev/pts/ptmx && test -e /dev/pts/0'
check mqueue "mounting mqueue failed" mount -t mqueue mqueue /dev/mqueue
check smp "expected 2 CPUs online" sh -c '[ "$(grep -c ^processor /proc/cpuinfo)" = 2 ]'

# ---- virtio devices -------------------------------------------------------------------
# disk_by_serial SERIAL: prints /dev/vdX of the virtio-blk disk with that serial
disk_by_serial() {
	for d in /sys/block/vd*; do
		[ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
	done
	return 1
}
mkdir -p /mnt/lower /mnt/rw /mnt/root /mnt/ext
rootfs=$(disk_by_serial rootfs) || rootfs=
scratch=$(disk_by_serial scratch) || scratch=
check virtio-blk-serial "no virtio-blk disk with serial rootfs and scratch" \
	test -n "$rootfs" -a -n "$scratch"
check erofs-mount "mounting the erofs disk read-only failed" sh -c "
	mount -t erofs -o ro '$rootfs' /mnt/lower && [ \"\$(cat /mnt/lower/hello)\" = erofs-ok ]"
check erofs-lz4 "the lz4-compressed file did not read back as 256 KiB of 'a'" sh -c '
	[ "$(tr -d a </mnt/lower/big | wc -c)" = 0 ] && [ "$(wc -c </mnt/lower/big)" = 262144 ]'
check overlay-tmpfs-upper "overlay of erofs with a size-limited tmpfs upper failed" sh -c '
	mount -t tmpfs -o size=16m,mode=0755 tmpfs /mnt/rw && mkdir /mnt/rw/upper /mnt/rw/work &&
	mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /mnt/root &&
	echo new >/mnt/root/new && [ "$(cat /mnt/root/hello)" = erofs-ok ] && [ -f /mnt/rw/upper/new ]'
check ext4-rw "mounting ext4 read-write and writing to it failed" sh -c "
	mount -t ext4 '$scratch' /mnt/ext && echo data >/mnt/ext/f && sync && umount /mnt/ext"
check virtio-rng "hw_random is not the virtio rng" sh -c '
	grep -q "^virtio_rng" /sys/class/misc/hw_random/rng_current && head -c 16 /dev/hwrng | wc -c | grep -qx 16'
check virtio-net-pci "no eth0 driven by virtio_net on PCI" sh -c '
	[ "$(basename "$(readlink /sys/class/net/eth0/device/driver)")" = virtio_net ] &&
	readlink -f /sys/class/net/eth0/device | grep -q /pci'
check ipv6 "no IPv6 on lo" sh -c 'ip link set lo up && ip -6 addr show dev lo | grep -q "::1"'
check vsock-driver "the virtio vsock transport is not registered" \
	test -d /sys/bus/virtio/drivers/vmw_vsock_virtio_transport

echo "husk-checks-done"
poweroff -f

#!/bin/bash
# A memory limit too small for the container's init, on a real cgroup2 with
# the memory controller: the development host has none (its memory
# controller is on cgroup v1), so this boots Debian's stock kernel under
# QEMU with an initramfs of busybox and husk-jail, which runs bundles with
# limits from 4 KiB up. husk-jail must name the limit when the OOM killer
# takes the init before exec, on both ways an init is made (one clone3 into
# the cgroup; stage 1 joining a namespace by path), and run the container
# when the limit is enough. Prints PASS/FAIL/SKIP lines.
# usage: HUSK_STOCK_KERNEL=DIR tests/jail/oom-vm.sh BUILD_DIR
# (make check sets HUSK_STOCK_KERNEL: see kernel-config/stock.mk)
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
stock=${HUSK_STOCK_KERNEL:-}
if [ -z "$stock" ] || [ ! -e "$stock/vmlinuz" ]; then
	echo "SKIP oom-in-vm: HUSK_STOCK_KERNEL does not name a mk/stock-kernel.sh tree (make check sets it)"
	exit 0
fi
tmp=$(mktemp -d /tmp/husk-jail-oom-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

ir=$tmp/ir
mkdir -p "$ir/bin" "$ir/proc" "$ir/sys" "$ir/dev" "$ir/run" "$ir/b"
cp /bin/busybox "$build/bin/husk-jail" "$ir/bin/"
"$here/make-rootfs.sh" "$ir/b/rootfs"
cat >"$ir/b/config.json" <<'JSON'
{"ociVersion":"1.0.2","root":{"path":"rootfs"},
 "process":{"user":{"uid":0,"gid":0},"args":["echo","container-ran"],"cwd":"/","env":["PATH=/bin"]},
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}NS],"cgroupsPath":"/oom-test/LIMIT",
  "resources":{"memory":{"limit":LIMIT}}}}
JSON
cat >"$ir/init" <<'SH'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
run() { # run NAME LIMIT NS
	mkdir "/$1" && ln -s /b/rootfs "/$1/rootfs" &&
		sed "s|LIMIT|$2|g; s|NS|$3|" /b/config.json >"/$1/config.json"
	husk-jail --root /run/hj run --bundle "/$1" "$1" </dev/null >"/$1.out" 2>&1
	echo "RESULT $1 rc=$? cgroup-left=$(ls -d /sys/fs/cgroup/oom-test/$2 2>/dev/null) $(cat "/$1.out")"
}
run direct 4096 ""
run stage1 4096 ',{"type":"uts","path":"/proc/1/ns/uts"}'
run enough 67108864 ""
poweroff -f
SH
chmod +x "$ir/init"
(cd "$ir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$tmp/initrd.gz"

# TCG: nested KVM is not dependable on the development machine.
timeout 300 qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 1 -nographic -no-reboot \
	-kernel "$stock/vmlinuz" -initrd "$tmp/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 rdinit=/init" </dev/null >"$tmp/console" 2>&1
rc=$?
result() { grep -a "^RESULT $1 " "$tmp/console" | tr -d '\r'; }
if ! grep -aq "^RESULT enough " "$tmp/console"; then
	echo "FAIL oom-in-vm: the VM did not finish (qemu rc=$rc)"
	sed 's/^/    console: /' "$tmp/console" | tail -20
	exit 0
fi
want="linux.resources.memory.limit 4096: too small for the container's init (killed by the OOM killer before exec)"
for way in direct stage1; do
	r=$(result $way)
	case $r in
	"RESULT $way rc=1 cgroup-left= husk-jail: $want") echo "PASS oom-limit-named-$way" ;;
	*) echo "FAIL oom-limit-named-$way: $r" ;;
	esac
done
r=$(result enough)
[ "$r" = "RESULT enough rc=0 cgroup-left= container-ran" ] && echo "PASS memory-limit-enough" ||
	echo "FAIL memory-limit-enough: $r"

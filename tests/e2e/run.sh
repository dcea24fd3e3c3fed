#!/bin/bash
# huskctl end to end under QEMU (TCG here): boots VMs from our kernel and
# initramfs (or VM_KERNEL / VM_INITRD, e.g. Debian's stock kernel with
# modules) and checks what a user sees: output bytes, exit codes, stdin,
# tty, exec, kill, pause/resume, stats, OOM, 20 containers in one VM with
# the agent's footprint flat, a VM killed from outside, and that nothing is
# left behind. Prints PASS/FAIL lines for tests/run.sh.
# usage: tests/e2e/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
huskctl=$build/bin/huskctl
client=$build/test/guest-client
kernel=${VM_KERNEL:-$build/kernel/bzImage}
initrd=${VM_INITRD:-$build/initramfs.cpio.gz}
for f in "$huskctl" "$client" "$kernel" "$initrd" "$build/bin/husk-vsockd" "$build/test/ptyrun" \
	"$build/test/husk-probe" "$build/test/sec-probe-host"; do
	if [ ! -e "$f" ]; then
		echo "FAIL e2e-prerequisites: $f is missing (run 'make')"
		exit 1
	fi
done

tmp=$(mktemp -d /tmp/husk-e2e-XXXXXX)
state=$tmp/state
bg_pids=
cleanup() {
	for p in $bg_pids; do kill -9 "$p" 2>/dev/null; done
	# Whatever a failed test left: QEMU and husk-vsockd started for our state dir.
	pkill -9 -f -- "$state/" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
H() { "$huskctl" --state-dir "$state" "$@"; }
RUN() { H run --kernel "$kernel" --initrd "$initrd" --image-cache "$tmp/cache" "$@"; }

rootfs=$tmp/rootfs
"$here/../jail/make-rootfs.sh" "$rootfs"
# What a hostile container process runs (tests/security/probe.c).
cp "$build/test/husk-probe" "$rootfs/husk-probe"
# 64 MiB of incompressible bytes to stream out of the VM.
head -c $((64 << 20)) /dev/urandom >"$rootfs/blob"
blob_sum=$(sha256sum <"$rootfs/blob" | cut -d' ' -f1)

# ---- one-shot runs: output, exit codes, stdin ----
out=$(RUN --rootfs "$rootfs" -- sh -c 'echo hello from the VM; echo to stderr >&2' 2>"$tmp/err")
rc=$?
[ $rc -eq 0 ] && [ "$out" = "hello from the VM" ] && [ "$(cat "$tmp/err")" = "to stderr" ] &&
	pass run-echo || fail run-echo "rc=$rc out=$out err=$(cat "$tmp/err")"

# The agent's log stream (guest-initiated, port 1025) reaches the host;
# CreateSandbox applies guest sysctls.
out=$(RUN --agent-log --sysctl kernel.pid_max=54321 --rootfs "$rootfs" -- \
	sh -c 'cat /proc/sys/kernel/pid_max; exit 1' 2>"$tmp/err")
rc=$?
[ $rc -eq 1 ] && pass exit-code-1 || fail exit-code-1 "rc=$rc $(cat "$tmp/err")"
[ "$out" = 54321 ] && pass sandbox-sysctl || fail sandbox-sysctl "out=$out"
grep -q "^husk-agent: info: container .*: created" "$tmp/err" &&
	grep -q "^husk-agent: info: container .* exited with status 1$" "$tmp/err" &&
	pass agent-log-stream || fail agent-log-stream "$(cat "$tmp/err")"

# The agent answers its first Check before it mounts what only containers
# need and enables the cgroup controllers (agent/setup.c); that set-up is
# done once, and before the first call that needs it: a tty container (a
# devpts pty) sees the controllers in its cgroup. libhusk's CreateSandbox
# seeds the guest's entropy pool before the container is created (without
# it the first read of randomness waits for jitter entropy).
out=$(RUN -t --agent-log --log-level 7 --rootfs "$rootfs" -- \
	sh -c 'tty; cat /sys/fs/cgroup/cgroup.controllers' 2>"$tmp/err" </dev/null)
rc=$?
setup_line=$(grep -n "^husk-agent: debug: VM set-up finished" "$tmp/err" | cut -d: -f1)
created_line=$(grep -n "^husk-agent: info: container .*: created" "$tmp/err" | head -1 | cut -d: -f1)
seed_line=$(grep -n "^husk-agent: debug: seeded 64 bytes of entropy from the host$" "$tmp/err" | cut -d: -f1)
[ $rc -eq 0 ] && echo "$out" | grep -q "^/dev/pts/0" && echo "$out" | grep -q "memory" &&
	echo "$out" | grep -q "pids" && [ "$(echo "$setup_line" | wc -w)" = 1 ] &&
	[ -n "$created_line" ] && [ "$setup_line" -lt "$created_line" ] &&
	[ "$(echo "$seed_line" | wc -w)" = 1 ] && [ "$seed_line" -lt "$created_line" ] &&
	pass vm-setup-after-check || fail vm-setup-after-check "rc=$rc out=$out $(cat "$tmp/err")"

# "lo" works wherever a container's network namespace is: busybox httpd
# serves a file on 127.0.0.1 and wget fetches it (binding fails with lo
# down). huskctl's spec shares the VM's namespace, whose lo the agent
# brings up for the first such container rather than at boot.
lo_probe='mkdir -p /tmp/www && echo lo-ok >/tmp/www/x && httpd -p 127.0.0.1:8080 -h /tmp/www &&
	for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/x 2>/dev/null && exit 0; sleep 0.1; done
	cat /sys/class/net/lo/flags; exit 1'
out=$(RUN --rootfs "$rootfs" -- sh -c "$lo_probe" 2>&1)
rc=$?
[ $rc -eq 0 ] && [ "$out" = lo-ok ] && pass loopback-in-vm-netns || fail loopback-in-vm-netns "rc=$rc $out"

# Extra disks: an ext4 image written by the container (read back on the
# host with debugfs) and a read-only erofs image.
truncate -s 16M "$tmp/data.ext4" && mkfs.ext4 -q -F "$tmp/data.ext4"
mkdir -p "$tmp/ro" && echo "read-only data" >"$tmp/ro/file" &&
	mkfs.erofs --quiet "$tmp/ro.erofs" "$tmp/ro" >/dev/null 2>&1
out=$(RUN --rootfs "$rootfs" --disk "$tmp/data.ext4:/data" --disk "$tmp/ro.erofs:/ro:ro" -- \
	sh -c 'cat /ro/file; echo written-in-vm >/data/x; touch /ro/y 2>/dev/null || echo ro-refused' 2>&1)
rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "^read-only data$" && echo "$out" | grep -q "^ro-refused$" &&
	[ "$(debugfs -R 'cat /x' "$tmp/data.ext4" 2>/dev/null)" = written-in-vm ] &&
	pass extra-disks || fail extra-disks "rc=$rc $out"
RUN --rootfs "$rootfs" --disk "$tmp/data.ext4:data" -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 125 ] && grep -q "TARGET" "$tmp/err" && pass relative-disk-target-refused ||
	fail relative-disk-target-refused "rc=$rc $(cat "$tmp/err")"

head -c 1000000 /dev/urandom >"$tmp/stdin"
in_sum=$(sha256sum <"$tmp/stdin" | cut -d' ' -f1)
out=$(RUN -i --rootfs "$rootfs" -- sh -c 'sha256sum; exit 9' <"$tmp/stdin" 2>"$tmp/err")
rc=$?
[ $rc -eq 9 ] && [ "${out%% *}" = "$in_sum" ] && pass stdin-piped ||
	fail stdin-piped "rc=$rc out=$out err=$(cat "$tmp/err")"

sum=$(RUN --rootfs "$rootfs" -- cat /blob 2>"$tmp/err" | sha256sum | cut -d' ' -f1)
[ "$sum" = "$blob_sum" ] && pass stdout-64mib-sha256 ||
	fail stdout-64mib-sha256 "got $sum want $blob_sum; $(cat "$tmp/err")"

RUN --rootfs "$rootfs" --limit-memory 32M -- \
	sh -c 'cat /sys/fs/cgroup/memory.max; x=$(head -c 100000000 /dev/zero | tr "\0" x); echo survived' \
	>"$tmp/oom.out" 2>"$tmp/oom.err"
rc=$?
[ $rc -eq 137 ] && grep -qx 33554432 "$tmp/oom.out" && ! grep -q survived "$tmp/oom.out" &&
	grep -q "OOM killer" "$tmp/oom.err" && pass oom-killed-reported ||
	fail oom-killed-reported "rc=$rc out=$(cat "$tmp/oom.out") err=$(cat "$tmp/oom.err")"

# ---- cgroup v2 cpu and io resources, read back inside the container ----
# A quota of 5 ms per 100 ms: a busy loop is throttled. The loop ends as soon
# as cpu.stat counts a throttled period (read with shell builtins, no forks),
# or after a bounded amount of work; no clock is involved.
RUN --limit-cpus 0.05 --rootfs "$rootfs" -- sh -c '
	cat /sys/fs/cgroup/cpu.max /sys/block/vda/dev
	n=0 t=0
	while [ $n -lt 200 ] && [ "$t" = 0 ]; do
		i=0; while [ $i -lt 300 ]; do i=$((i + 1)); done
		while read -r k v; do [ "$k" = nr_throttled ] && t=$v; done </sys/fs/cgroup/cpu.stat
		n=$((n + 1))
	done
	echo "throttled $t"' >"$tmp/cpu.out" 2>"$tmp/err"
rc=$?
throttled=$(awk '$1=="throttled"{print $2}' "$tmp/cpu.out")
[ $rc -eq 0 ] && [ "$(sed -n 1p "$tmp/cpu.out")" = "5000 100000" ] && [ "${throttled:-0}" -gt 0 ] &&
	pass cgroup-cpu-max-throttles || fail cgroup-cpu-max-throttles "rc=$rc $(cat "$tmp/cpu.out" "$tmp/err")"
# The rootfs disk's MAJ:MIN as the guest kernel numbered it.
vda=$(sed -n 2p "$tmp/cpu.out")

# Shares to cpu.weight as runc converts them; cpuset (a real effect: the
# process's affinity); an explicit quota and period; io.max for the rootfs
# disk. Two vCPUs so that the cpuset is a choice.
RUN --cpus 2 --cpu-shares 512 --cpuset-cpus 1 --cpuset-mems 0 --cpu-quota 150000 --cpu-period 50000 \
	--io-max "$vda:rbps=1M,wiops=100" --rootfs "$rootfs" -- sh -c '
	cd /sys/fs/cgroup
	echo "weight $(cat cpu.weight)"
	echo "cpus $(cat cpuset.cpus.effective) mems $(cat cpuset.mems.effective)"
	grep Cpus_allowed_list /proc/self/status
	echo "max $(cat cpu.max)"
	echo "io $(cat io.max)"
	ls io.weight io.bfq.weight 2>/dev/null | sed "s/^/has /"' >"$tmp/res.out" 2>"$tmp/err"
rc=$?
get() { sed -n "s/^$1 //p" "$tmp/res.out"; }
[ $rc -eq 0 ] && [ "$(get weight)" = $((1 + (512 - 2) * 9999 / 262142)) ] &&
	pass cgroup-cpu-weight-from-shares || fail cgroup-cpu-weight-from-shares "rc=$rc $(cat "$tmp/res.out" "$tmp/err")"
[ "$(get cpus)" = "1 mems 0" ] && grep -q "^Cpus_allowed_list:[[:space:]]*1$" "$tmp/res.out" &&
	pass cgroup-cpuset || fail cgroup-cpuset "$(cat "$tmp/res.out")"
[ "$(get max)" = "150000 50000" ] && pass cgroup-cpu-quota-period || fail cgroup-cpu-quota-period "$(cat "$tmp/res.out")"
[ -n "$vda" ] && [ "$(get io)" = "$vda rbps=1048576 wbps=max riops=max wiops=100" ] &&
	pass cgroup-io-max || fail cgroup-io-max "vda=$vda $(cat "$tmp/res.out")"

# io weights exist only with BFQ (io.bfq.weight) or iocost (io.weight);
# without either the run is refused naming the field, never silently.
RUN --io-weight 500 --rootfs "$rootfs" -- sh -c 'cat /sys/fs/cgroup/io.bfq.weight 2>/dev/null ||
	cat /sys/fs/cgroup/io.weight' >"$tmp/iow.out" 2>"$tmp/err"
rc=$?
if get has | grep -q "io\.bfq\.weight"; then
	[ $rc -eq 0 ] && grep -q "^default 500$" "$tmp/iow.out" && pass cgroup-io-weight ||
		fail cgroup-io-weight "rc=$rc $(cat "$tmp/iow.out" "$tmp/err")"
elif get has | grep -q "io\.weight"; then
	[ $rc -eq 0 ] && grep -q "^default $((1 + (500 - 10) * 9999 / 990))$" "$tmp/iow.out" &&
		pass cgroup-io-weight || fail cgroup-io-weight "rc=$rc $(cat "$tmp/iow.out" "$tmp/err")"
else
	[ $rc -eq 125 ] && grep -q "blockIO.weight" "$tmp/err" && grep -q "iocost" "$tmp/err" &&
		pass cgroup-io-weight-refused-without-iocost-or-bfq ||
		fail cgroup-io-weight-refused-without-iocost-or-bfq "rc=$rc $(cat "$tmp/err")"
fi

# Values the guest kernel refuses are reported with the field and value.
RUN --io-max 250:99:rbps=1M --rootfs "$rootfs" -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 125 ] && grep -q "throttleReadBpsDevice" "$tmp/err" && grep -q "250:99" "$tmp/err" &&
	pass cgroup-io-max-unknown-device-refused ||
	fail cgroup-io-max-unknown-device-refused "rc=$rc $(cat "$tmp/err")"
RUN --cpuset-cpus 5 --rootfs "$rootfs" -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 125 ] && grep -q "cpu.cpus" "$tmp/err" && grep -q '"5"' "$tmp/err" &&
	pass cgroup-cpuset-missing-cpu-refused ||
	fail cgroup-cpuset-missing-cpu-refused "rc=$rc $(cat "$tmp/err")"

# ---- a long-running container: exec, tty, pause/resume, stats, kill ----
# Started directly (not through a shell function) so that $! is huskctl.
"$huskctl" --state-dir "$state" run --kernel "$kernel" --initrd "$initrd" --image-cache "$tmp/cache" \
	-n e2e --rootfs "$rootfs" -- sh -c 'echo main started; while :; do sleep 1; done' \
	>"$tmp/main.out" 2>"$tmp/main.err" &
main_pid=$!
bg_pids="$bg_pids $main_pid"
for _ in $(seq 600); do
	H ping e2e >/dev/null 2>&1 && break
	kill -0 $main_pid 2>/dev/null || break
	sleep 0.2
done
if out=$(H ping e2e 2>&1) && echo "$out" | grep -q "agent .* answered"; then
	pass boot-and-check
else
	fail boot-and-check "$out $(cat "$tmp/main.err")"
	exit 1
fi

# Only the host reaches the agent: a container process, root or not, gets
# no connection to the agent's port, the console port or another process's
# stdio ports at CID 1 or the guest's own CID, not even by racing the host
# for a stdio port; the agent still serves the host afterwards
# (tests/security/probe_host.c prints the PASS/FAIL lines). The agent
# answers before the container exists: wait for it.
for _ in $(seq 600); do H ps e2e >/dev/null 2>&1 && break; sleep 0.2; done
"$build/test/sec-probe-host" --state-dir "$state" --name e2e

out=$(H exec e2e -- sh -c 'echo in exec; cat /proc/1/cmdline | tr "\0" " "; exit 4' 2>&1)
rc=$?
[ $rc -eq 4 ] && echo "$out" | grep -q "^in exec$" && echo "$out" | grep -q "while :" &&
	pass exec-in-running-container || fail exec-in-running-container "rc=$rc $out"

# A process that writes and exits at once: its whole output arrives, every
# time (the agent reports the exit only after the streams are drained).
lost=0
for i in $(seq 50); do
	out=$(H exec e2e -- sh -c 'seq 1 3000; echo err-tail >&2' 2>"$tmp/tail.err")
	if [ "$(echo "$out" | wc -l)" != 3000 ] || [ "${out##*$'\n'}" != 3000 ] ||
		[ "$(cat "$tmp/tail.err")" != err-tail ]; then
		lost=$((lost + 1))
		echo "    run $i: $(echo "$out" | wc -l) lines, last '${out##*$'\n'}', err '$(cat "$tmp/tail.err")'"
	fi
done
[ $lost -eq 0 ] && pass stdout-tail-50-runs || fail stdout-tail-50-runs "$lost of 50 runs lost output"

out=$("$build/test/ptyrun" --size 45x123 -- "$huskctl" --state-dir "$state" exec -t e2e -- \
	sh -c 'tty; stty size; [ -t 0 ] && echo stdin-is-tty' 2>&1 </dev/null | tr -d '\r')
echo "$out" | grep -q "^/dev/pts/" && echo "$out" | grep -q "^45 123$" &&
	echo "$out" | grep -q "^stdin-is-tty$" && pass tty-exec-with-size ||
	fail tty-exec-with-size "$out"

out=$("$build/test/ptyrun" --input 'echo typed-in-tty; exit 6
' -- "$huskctl" --state-dir "$state" exec -t -i e2e -- sh 2>&1 </dev/null | tr -d '\r')
rc=$?
echo "$out" | grep -q "^typed-in-tty" && pass tty-interactive || fail tty-interactive "$out"

if H stats e2e >"$tmp/stats" 2>&1 &&
	[ "$(awk '$1=="cpu_usage_usec"{print $2}' "$tmp/stats")" -gt 0 ] &&
	[ "$(awk '$1=="memory_usage_bytes"{print $2}' "$tmp/stats")" -gt 0 ] &&
	[ "$(awk '$1=="pids_current"{print $2}' "$tmp/stats")" -ge 1 ]; then
	pass stats
else
	fail stats "$(cat "$tmp/stats")"
fi
# Guest pids (the runtime's view, as runc's shim reports host pids).
pids=$(H ps e2e 2>&1)
[ -n "$pids" ] && ! echo "$pids" | grep -qv '^[0-9][0-9]*$' && pass ps || fail ps "$pids"

H pause e2e 2>"$tmp/err" || fail pause "$(cat "$tmp/err")"
H exec e2e -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -ne 0 ] && grep -q paused "$tmp/err" && pass exec-refused-while-paused ||
	fail exec-refused-while-paused "rc=$rc $(cat "$tmp/err")"
H resume e2e 2>"$tmp/err" && out=$(H exec e2e -- cat /sys/fs/cgroup/cgroup.freeze 2>&1) &&
	[ "$out" = 0 ] && pass pause-resume || fail pause-resume "$out $(cat "$tmp/err")"

# Task.Update changes the running container's cgroup limits in the guest.
H update e2e --limit-memory 48M --limit-pids 77 2>"$tmp/err" &&
	out=$(H exec e2e -- cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>&1) &&
	[ "$out" = "$(printf '50331648\n77')" ] && pass update-limits ||
	fail update-limits "$out $(cat "$tmp/err")"
H update e2e --limit-memory 12Q >/dev/null 2>"$tmp/err"
[ $? -eq 125 ] && grep -q "12Q" "$tmp/err" && pass update-bad-size-refused ||
	fail update-bad-size-refused "$(cat "$tmp/err")"

# 20 containers one after another in the same VM: the agent's RSS and fd
# count stay flat (measured after a warm-up).
uds=$state/e2e/vsock.sock
jq '.process.args=["sh","-c","echo container-ok; ls /proc/self/fd | wc -l"] | .root.path="rootfs"' \
	"$here/../jail/base-config.json" >"$tmp/spec.json"
info() { H info e2e | awk -v k="$1" '$1==k{print $2}'; }
bad=0
for i in $(seq 1 25); do
	if [ $i -eq 6 ]; then
		rss0=$(info agent_rss_bytes) fds0=$(info agent_fds)
	fi
	out=$("$client" --uds "$uds" run --serial rootfs0 --spec "$tmp/spec.json" --id "c$i" 2>&1)
	[ $? -eq 0 ] && echo "$out" | grep -q container-ok || { bad=$((bad + 1)); echo "    c$i: $out"; }
done
rss1=$(info agent_rss_bytes) fds1=$(info agent_fds) n=$(info containers)
echo "agent_rss_kib_before ${rss0:-?} after ${rss1:-?} (bytes); fds $fds0 -> $fds1; containers $n"
[ $bad -eq 0 ] && [ -n "$rss0" ] && [ "$fds1" = "$fds0" ] && [ $((rss1 - rss0)) -le 131072 ] &&
	[ "$n" = 1 ] && pass twenty-containers-flat-rss-fds ||
	fail twenty-containers-flat-rss-fds "bad=$bad rss $rss0 -> $rss1, fds $fds0 -> $fds1, containers $n"

# A container with a network namespace of its own (as a pod's sandbox has)
# gets its lo up too: in a VM no CNI loopback plugin runs.
jq --arg p "$lo_probe" '.process.args=["sh","-c",$p] | .root.path="rootfs"' \
	"$here/../jail/base-config.json" >"$tmp/lo-spec.json"
out=$("$client" --uds "$uds" run --serial rootfs0 --spec "$tmp/lo-spec.json" --id lo1 2>&1)
rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -qx lo-ok && pass loopback-in-own-netns ||
	fail loopback-in-own-netns "rc=$rc $out"

H console e2e </dev/null >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q "refused" "$tmp/err" && pass console-refused-without-debug-console ||
	fail console-refused-without-debug-console "$(cat "$tmp/err")"

# The container's PID 1 has no TERM handler, so TERM alone does nothing;
# huskctl forwards our TERM and turns the second into KILL (as docker stop).
H kill e2e TERM 2>"$tmp/err" && sleep 0.5 && H ps e2e >/dev/null && pass kill-term-forwarded ||
	fail kill-term-forwarded "$(cat "$tmp/err")"
for _ in $(seq 60); do
	kill -0 $main_pid 2>/dev/null || break
	kill -TERM $main_pid
	sleep 0.5
done
wait $main_pid
rc=$?
[ $rc -eq 137 ] && grep -q "main started" "$tmp/main.out" && grep -q "again to kill it" "$tmp/main.err" &&
	pass second-term-kills-137 || fail second-term-kills-137 "rc=$rc $(cat "$tmp/main.err")"
[ ! -e "$state/e2e" ] && pass vm-state-removed-after-run || fail vm-state-removed-after-run "$(ls "$state")"

# ---- the debug console of a VM started with it (needs a DEBUG initramfs) ----
if [ -z "${VM_INITRD:-}" ]; then
	"$here/../../initramfs/build.sh" "$tmp/debug.cpio.gz" --init "$build/bin/husk-agent" --busybox \
		>/dev/null 2>&1
	"$huskctl" --state-dir "$state" run --kernel "$kernel" --initrd "$tmp/debug.cpio.gz" --image-cache "$tmp/cache" \
		-n dbg --debug-console --rootfs "$rootfs" -- sleep 600 >/dev/null 2>&1 &
	dbg_pid=$!
	bg_pids="$bg_pids $dbg_pid"
	for _ in $(seq 600); do H ping dbg >/dev/null 2>&1 && break; sleep 0.2; done
	out=$(printf 'echo console-ok $(cat /proc/1/comm)\nexit\n' | H console dbg 2>&1)
	echo "$out" | grep -q "console-ok init" && pass debug-console || fail debug-console "$out"
	# With the console listening, a container still cannot reach it.
	for _ in $(seq 600); do H ps dbg >/dev/null 2>&1 && break; sleep 0.2; done
	"$build/test/sec-probe-host" --state-dir "$state" --name dbg --direct-only --label debug-console-
	H kill dbg KILL >/dev/null 2>&1
	wait $dbg_pid
fi

# ---- a lean VM: freed memory goes back to the host, no THP, KSM opt-in ----
# The container fills 64 MiB of its tmpfs layer, then removes it: the guest
# reports the freed blocks (virtio-balloon free page reporting) and QEMU
# punches them out of the memfd, so the guest RAM QEMU holds drops again.
RUN -n lean --rootfs "$rootfs" -- sh -c 'dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null &&
	echo filled && sleep 2 && rm /tmp/fill && echo freed && sleep 1000' >"$tmp/lean.out" 2>"$tmp/lean.err" &
lean_pid=$!
bg_pids="$bg_pids $lean_pid"
# Waits (a hang detector, not a timing assertion) for $1 in $2 while $3 runs.
wait_line() {
	for _ in $(seq 600); do
		grep -q "$1" "$2" && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
wait_line filled "$tmp/lean.out" $lean_pid
qpid=$(jq -r .qemu_pid "$state/lean/vm.json" 2>/dev/null)
guest_kib() { awk '$1=="Pss_Shmem:"{print $2}' "/proc/$qpid/smaps_rollup" 2>/dev/null; }
full=$(guest_kib)
wait_line freed "$tmp/lean.out" $lean_pid
# Reporting runs 2 s after a free; a generous bound, not a timing assertion.
now=$full
for _ in $(seq 150); do
	now=$(guest_kib)
	[ -n "$now" ] && [ -n "$full" ] && [ "$now" -lt $((full - 48 * 1024)) ] && break
	sleep 0.2
done
[ -n "$now" ] && [ -n "$full" ] && [ "$now" -lt $((full - 48 * 1024)) ] && pass lean-freed-memory-returned ||
	fail lean-freed-memory-returned "guest RAM held by QEMU: ${full:-?} KiB filled, ${now:-?} KiB after rm; $(cat "$tmp/lean.err")"
# No THP; mem-merge off; the 16 MiB translation cache under TCG; and KSM
# off where the kernel shows it (/proc/PID/ksm_stat, Linux 6.14).
qcmd=$(tr '\0' ' ' <"/proc/$qpid/cmdline" 2>/dev/null)
ksm_flag=$(awk '$1=="ksm_merge_any:"{print $2}' "/proc/$qpid/ksm_stat" 2>/dev/null)
grep -q "^THP_enabled:[[:space:]]*0" "/proc/$qpid/status" 2>/dev/null &&
	echo "$qcmd" | grep -q "mem-merge=off" &&
	{ ! echo "$qcmd" | grep -q -- "-accel tcg" || echo "$qcmd" | grep -q -- "-accel tcg,tb-size=16 "; } &&
	[ "${ksm_flag:-no}" = no ] && pass lean-no-thp-no-ksm ||
	fail lean-no-thp-no-ksm "$(grep THP_enabled "/proc/$qpid/status" 2>&1); ksm_merge_any ${ksm_flag:-?}; $qcmd"
H kill lean KILL >/dev/null 2>&1
wait $lean_pid
# KSM on request: from Linux 6.7 (the prctl kept across exec); before, a
# refusal naming merge_memory.
RUN -n ksm --merge-memory --rootfs "$rootfs" -- sleep 1000 >/dev/null 2>"$tmp/ksm.err" &
ksm_pid=$!
bg_pids="$bg_pids $ksm_pid"
for _ in $(seq 600); do
	H ps ksm >/dev/null 2>&1 && break
	kill -0 $ksm_pid 2>/dev/null || break
	sleep 0.2
done
rel=$(uname -r)
if [ "${rel%%.*}" -gt 6 ] || { [ "${rel%%.*}" = 6 ] && [ "$(echo "$rel" | cut -d. -f2)" -ge 7 ]; }; then
	qpid=$(jq -r .qemu_pid "$state/ksm/vm.json" 2>/dev/null)
	qcmd=$(tr '\0' ' ' <"/proc/$qpid/cmdline" 2>/dev/null)
	ksm_flag=$(awk '$1=="ksm_merge_any:"{print $2}' "/proc/$qpid/ksm_stat" 2>/dev/null)
	[ -n "$qpid" ] && echo "$qcmd" | grep -q "mem-merge=on" && [ "${ksm_flag:-yes}" = yes ] &&
		pass lean-ksm-opt-in ||
		fail lean-ksm-opt-in "ksm_merge_any ${ksm_flag:-?}; $qcmd; $(cat "$tmp/ksm.err")"
	H kill ksm KILL >/dev/null 2>&1
else
	grep -q "merge_memory: KSM for the VMM process needs Linux 6.7" "$tmp/ksm.err" &&
		pass lean-ksm-opt-in-refused-before-6.7 ||
		fail lean-ksm-opt-in-refused-before-6.7 "$(cat "$tmp/ksm.err")"
fi
wait $ksm_pid

# ---- the VM dies under a running container ----
"$huskctl" --state-dir "$state" run --kernel "$kernel" --initrd "$initrd" --image-cache "$tmp/cache" \
	-n victim --rootfs "$rootfs" -- sleep 1000 >/dev/null 2>"$tmp/victim.err" &
victim=$!
bg_pids="$bg_pids $victim"
# Wait for the container itself, not just the agent.
for _ in $(seq 600); do H ps victim >/dev/null 2>&1 && break; sleep 0.2; done
qpid=$(jq -r .qemu_pid "$state/victim/vm.json" 2>/dev/null)
vpid=$(jq -r .vsockd_pid "$state/victim/vm.json" 2>/dev/null)
kill -9 "$qpid"
# Not a timing assertion: a hang detector with a generous bound.
for _ in $(seq 300); do kill -0 $victim 2>/dev/null || break; sleep 0.1; done
if kill -0 $victim 2>/dev/null; then
	fail vm-killed-reported "huskctl still running 30 s after QEMU was killed"
else
	wait $victim
	rc=$?
	[ $rc -eq 125 ] && grep -q "VM exited" "$tmp/victim.err" && pass vm-killed-reported ||
		fail vm-killed-reported "rc=$rc $(cat "$tmp/victim.err")"
fi
! kill -0 "$vpid" 2>/dev/null && [ ! -e "$state/victim" ] && pass vm-killed-nothing-left ||
	fail vm-killed-nothing-left "vsockd $vpid alive or $(ls -A "$state/victim" 2>&1)"

# ---- bad input ----
H run --kernel "$kernel" --initrd "$initrd" -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 125 ] && grep -q -- "--rootfs" "$tmp/err" && pass no-rootfs-refused ||
	fail no-rootfs-refused "rc=$rc $(cat "$tmp/err")"
RUN --rootfs "$tmp/nonexistent" -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 125 ] && grep -q "$tmp/nonexistent" "$tmp/err" && pass missing-rootfs-named ||
	fail missing-rootfs-named "rc=$rc $(cat "$tmp/err")"
RUN --rootfs "$rootfs" --sysctl kernel.no_such_key=1 -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 125 ] && grep -q "kernel/no_such_key" "$tmp/err" && pass bad-sysctl-named ||
	fail bad-sysctl-named "rc=$rc $(cat "$tmp/err")"
RUN --rootfs "$rootfs" --memory 12abc -- true >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 125 ] && grep -q -- "--memory" "$tmp/err" && pass bad-memory-refused ||
	fail bad-memory-refused "rc=$rc $(cat "$tmp/err")"
RUN --rootfs "$rootfs" -- /no/such/program >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -ne 0 ] && grep -q "/no/such/program" "$tmp/err" && pass missing-program-named ||
	fail missing-program-named "rc=$rc $(cat "$tmp/err")"

left=$(ls -A "$state" 2>/dev/null)
procs=$(pgrep -f -- "$state/" 2>/dev/null)
[ -z "$left" ] && [ -z "$procs" ] && pass nothing-left-behind ||
	fail nothing-left-behind "state: $left; processes: $procs"
exit 0

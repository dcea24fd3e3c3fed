#!/bin/bash
# make bench, the VM figures (called at the end of tests/bench/run.sh):
#   1. boot to agent-ready vs the floor: the same kernel and QEMU command
#      line booting a trivial /init that powers off at once
#   2. stdout throughput out of a container through husk-vsockd vs the same
#      bytes read inside the guest
#   3. host memory of an idle VM (QEMU, husk-vsockd) and the agent's RSS
# Prints a table like run.sh; no thresholds are enforced (the machine is
# noisy), targets are printed next to the figures.
# usage: tests/bench/vm.sh BUILD_DIR
set -eu
export LC_ALL=C # EPOCHREALTIME with a '.', awk number parsing
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
huskctl=$build/bin/huskctl
helper=$build/test/boot-ready
vsockd=$build/bin/husk-vsockd
kernel=${VM_KERNEL:-$build/kernel/bzImage}
initrd=${VM_INITRD:-$build/initramfs.cpio.gz}
boot_init=$build/test/boot-init
BOOTS=${BENCH_VM_BOOTS:-5}
STREAMS=${BENCH_VM_STREAMS:-3}
# A hang detector only, never a figure: a TCG boot takes a few seconds.
LIMIT=${BENCH_VM_TIMEOUT:-120}

echo
echo "== husk microVM (QEMU $(qemu-system-x86_64 --version 2>/dev/null | sed -n 's/.*version \([^ ]*\).*/\1/p'))"
for f in "$huskctl" "$helper" "$vsockd" "$kernel" "$initrd" "$boot_init"; do
	if [ ! -e "$f" ]; then
		echo "   skipped: $f is missing (make bench builds it)"
		exit 0
	fi
done
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v cpio >/dev/null; then
	echo "   skipped: needs qemu-system-x86_64 and cpio"
	exit 0
fi

tmp=$(mktemp -d /tmp/husk-bench-vm-XXXXXX)
# Short: VM socket paths must fit in sun_path.
state=$tmp/s
cache=$tmp/cache
bg_pids=()
cleanup() {
	local p f
	for p in "${bg_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	# QEMU and husk-vsockd of any VM still recorded under our state dir
	# (their owners set PDEATHSIG, so this is belt and braces).
	for f in "$state"/*/vm.json; do
		[ -f "$f" ] || continue
		for p in $(jq -r '.qemu_pid, .vsockd_pid' "$f" 2>/dev/null); do
			grep -qF "$tmp" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
		done
	done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

H() { "$huskctl" --state-dir "$state" "$@"; }
RUN() { H run --kernel "$kernel" --initrd "$initrd" --image-cache "$cache" "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
die() {
	echo "bench: $*" >&2
	exit 1
}

# ---- 1. boot to agent-ready vs the floor ---------------------------------------
# The floor's initramfs: only /init, which prints husk-boot-ok and powers off.
mkdir -p "$tmp/floor-root"
cp "$boot_init" "$tmp/floor-root/init"
(cd "$tmp/floor-root" && echo init | cpio -o -H newc -R 0:0 --quiet) | pigz -0 -n >"$tmp/floor.gz"

# One agent boot through libhusk; the first also saves the QEMU and
# husk-vsockd command lines the floor reuses.
agent_boot() { # [--argv-dir DIR]
	"$helper" boot --state-dir "$state" --name boot --kernel "$kernel" --initrd "$initrd" \
		--vsockd "$vsockd" "$@" 2>"$tmp/agent-boot.err" | awk '$1=="boot_ns"{print int($2/1000000)}'
}
first=$(agent_boot --argv-dir "$tmp") && [ -n "$first" ] ||
	die "agent boot failed: $(cat "$tmp/agent-boot.err")"
mapfile -d '' qargv <"$tmp/qemu.argv"
vargv=()
[ -f "$tmp/vsockd.argv" ] && mapfile -d '' vargv <"$tmp/vsockd.argv"
# The same command line but the initramfs, and QMP on a socket of its own
# instead of the fd libhusk passed (the monitor is no guest device).
fargv=()
for ((i = 0; i < ${#qargv[@]}; i++)); do
	a=${qargv[i]}
	case $a in
	socket,id=qmp,fd=*) a="socket,id=qmp,path=$tmp/qmp.sock,server=on,wait=off" ;;
	esac
	fargv+=("$a")
	if [ "$a" = -initrd ]; then
		fargv+=("$tmp/floor.gz")
		i=$((i + 1))
	fi
done

# One floor boot, QEMU launch to QEMU exit, with husk-vsockd attached as
# libhusk attaches it (same paths: the agent VM's directory, recreated).
# Appends the milliseconds to floor_ms (not a subshell: it tracks pids).
floor_boot() {
	local dir=$state/boot line="" t0 t1 rc vpid=
	mkdir -m 0700 "$dir"
	if [ ${#vargv[@]} -gt 0 ]; then
		coproc VSOCKD { exec "${vargv[@]}" 2>"$tmp/floor-vsockd.log"; }
		vpid=$VSOCKD_PID
		bg_pids+=("$vpid")
		# husk-vsockd says "ready" once its vhost-user socket listens.
		IFS= read -r -t 10 -u "${VSOCKD[0]}" line || true
		[ "$line" = ready ] || die "floor: husk-vsockd did not get ready: $(cat "$tmp/floor-vsockd.log")"
	fi
	# Microseconds, read without a fork on either side of QEMU.
	t0=${EPOCHREALTIME/./}
	rc=0
	timeout -k 5 "$LIMIT" "${fargv[@]}" </dev/null >"$tmp/floor-qemu.log" 2>&1 || rc=$?
	t1=${EPOCHREALTIME/./}
	if [ -n "$vpid" ]; then
		kill "$vpid" 2>/dev/null || true
		wait "$vpid" 2>/dev/null || true
		unset 'bg_pids[-1]'
	fi
	[ "$rc" = 0 ] && grep -q husk-boot-ok "$dir/console.log" ||
		die "floor boot failed (QEMU status $rc): $(tail -c 600 "$dir/console.log" "$tmp/floor-qemu.log")"
	rm -rf "$dir"
	floor_ms+=($(((t1 - t0) / 1000)))
}

agent_ms=("$first")
floor_ms=()
floor_boot
# Alternate, so drift on a noisy machine hits both alike.
for ((i = 1; i < BOOTS; i++)); do
	ms=$(agent_boot) && [ -n "$ms" ] || die "agent boot failed: $(cat "$tmp/agent-boot.err")"
	agent_ms+=("$ms")
	floor_boot
done
a=$(printf '%s\n' "${agent_ms[@]}" | median)
f=$(printf '%s\n' "${floor_ms[@]}" | median)
smp=$(printf '%s\n' "${qargv[@]}" | grep -A1 -x -- -smp | tail -1)
mem=$(printf '%s\n' "${qargv[@]}" | grep -A1 -x -- -m | tail -1)
accel=$(printf '%s\n' "${qargv[@]}" | grep -A1 -x -- -accel | tail -1)
echo
echo "== VM boot, QEMU launch to ready: same kernel and command line ($accel, $smp vCPU, $mem, vsockd)"
printf '%-34s %12s %12s %8s\n' "case" "husk-agent" "floor" "ratio"
printf '%-34s %9s ms %9s ms %7.3fx\n' "boot (median of $BOOTS)" "$a" "$f" "$(echo "$a $f" | awk '{print $1/$2}')"
echo "   runs, ms: agent ${agent_ms[*]}; floor ${floor_ms[*]}"
amin=$(printf '%s\n' "${agent_ms[@]}" | sort -n | head -1)
fmin=$(printf '%s\n' "${floor_ms[@]}" | sort -n | head -1)
printf '   fastest of each: agent %s ms, floor %s ms, %.3fx (less sensitive to a busy host)\n' \
	"$amin" "$fmin" "$(echo "$amin $fmin" | awk '{print $1/$2}')"
echo "   agent overhead over the floor: $((a - f)) ms (medians), $((amin - fmin)) ms (fastest)"
echo "   target: agent overhead over the floor <= 5% (ratio <= 1.05x)"
echo "   agent: to the first answered Sandbox.Check (husk_vm_boot_ns), so it includes the agent's"
echo "   log connection and a vsock connect + Check round trip; floor: a static /init that powers"
echo "   off at once, to QEMU's exit, so it includes the power-off (and one exec of timeout(1))"

# ---- 2. stdout throughput through husk-vsockd ------------------------------------
rootfs=$tmp/rootfs
"$here/../jail/make-rootfs.sh" "$rootfs"
blob_bytes=$((64 << 20))
head -c "$blob_bytes" /dev/urandom >"$rootfs/blob"
blob_sum=$(sha256sum <"$rootfs/blob" | cut -d' ' -f1)
# Builds the erofs image once, outside the figures.
RUN --rootfs "$rootfs" -- true >/dev/null 2>"$tmp/err" || die "huskctl run true: $(cat "$tmp/err")"

# busybox time: "real\tMm S.SSs" on stderr; prints seconds for each.
real_s() { awk '$1=="real"{m=$2; s=$3; sub(/m$/,"",m); sub(/s$/,"",s); print m*60+s}' "$1"; }
: >"$tmp/vsock.rates"
: >"$tmp/cold.rates"
: >"$tmp/warm.rates"
for ((i = 0; i < STREAMS; i++)); do
	sum=$(RUN --rootfs "$rootfs" -- cat /blob 2>"$tmp/err" | "$helper" stream 2>"$tmp/stream" |
		sha256sum | cut -d' ' -f1)
	read -r _ bytes _ ns <"$tmp/stream" || true
	[ "$sum" = "$blob_sum" ] && [ "${bytes:-0}" = "$blob_bytes" ] ||
		die "cat /blob: got $bytes bytes, sha256 $sum; $(cat "$tmp/err")"
	echo "$bytes $ns" | awk '{printf "%.1f\n", $1 * 1000 / $2}' >>"$tmp/vsock.rates"

	# busybox cat sends a file to /dev/null with sendfile(2): the first read
	# is the erofs read the vsock run also does, but no copy at all; dd then
	# copies the cached bytes through user space, at TCG's memory speed.
	RUN --rootfs "$rootfs" -- sh -c 'time cat /blob >/dev/null; time dd if=/blob of=/dev/null bs=64k' \
		>/dev/null 2>"$tmp/time" || die "in-guest cat: $(cat "$tmp/time")"
	real_s "$tmp/time" >"$tmp/secs"
	[ "$(wc -l <"$tmp/secs")" = 2 ] || die "no busybox time output: $(cat "$tmp/time")"
	awk -v b="$blob_bytes" 'NR==1{printf "%.1f\n", b / $1 / 1e6}' "$tmp/secs" >>"$tmp/cold.rates"
	awk -v b="$blob_bytes" 'NR==2{printf "%.1f\n", b / $1 / 1e6}' "$tmp/secs" >>"$tmp/warm.rates"
done
v=$(median <"$tmp/vsock.rates")
c=$(median <"$tmp/cold.rates")
w=$(median <"$tmp/warm.rates")
echo
echo "== stdout throughput: 64 MiB of random bytes, cat /blob in a container (MB/s = 10^6 B/s)"
printf '%-34s %12s %12s %8s\n' "case" "to the host" "in guest" "ratio"
printf '%-34s %7s MB/s %7s MB/s %7.2fx\n' "cat /blob (median of $STREAMS)" "$v" "$c" \
	"$(echo "$v $c" | awk '{print $1/$2}')"
printf '%-34s %12s %7s MB/s\n' "in guest, cached, dd bs=64k" "" "$w"
echo "   to the host: huskctl run -- cat /blob | sha256sum (checked), timed on the host from the"
echo "   first byte to EOF (no boot, no teardown); in guest: cat /blob >/dev/null, the same first"
echo "   read from erofs, sent by sendfile(2) without a copy; cached: the bytes once more through"
echo "   user space, TCG's memory copy speed (busybox time: 10 ms resolution)"

# ---- 3. host memory per idle VM ------------------------------------------------------
# Not through RUN: $! must be huskctl itself, for its RSS and for cleanup.
"$huskctl" --state-dir "$state" run --kernel "$kernel" --initrd "$initrd" --image-cache "$cache" \
	-n bench --rootfs "$rootfs" -- sleep 600 >/dev/null 2>"$tmp/bench.err" &
bench_pid=$!
bg_pids+=("$bench_pid")
# Ready when the container runs (the agent answers before it exists).
for _ in $(seq $((LIMIT * 5))); do
	H ps bench >/dev/null 2>&1 && break
	kill -0 "$bench_pid" 2>/dev/null || die "huskctl run -n bench: $(cat "$tmp/bench.err")"
	sleep 0.2
done
H ping bench >/dev/null 2>&1 || die "bench VM did not come up: $(cat "$tmp/bench.err")"
sleep 1 # let the boot's transient work settle
qpid=$(jq -r .qemu_pid "$state/bench/vm.json")
vpid=$(jq -r .vsockd_pid "$state/bench/vm.json")
kib() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/smaps_rollup"; }
q_pss=$(kib "$qpid" Pss)
q_guest=$(kib "$qpid" Pss_Shmem) # the memfd of guest RAM
h_rss=$(awk '$1=="VmRSS:" {print $2}' "/proc/$bench_pid/status")
v_pss=$(kib "$vpid" Pss)
status_kib() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status"; }
v_rss=$(status_kib "$vpid" VmRSS)
v_anon=$(status_kib "$vpid" RssAnon)
v_file=$(status_kib "$vpid" RssFile)
v_shmem=$(status_kib "$vpid" RssShmem)
agent_rss=$(H info bench | awk '$1=="agent_rss_bytes"{print int($2/1024)}')
H kill bench KILL >/dev/null 2>&1 || true
wait "$bench_pid" 2>/dev/null || true
unset 'bg_pids[-1]'
echo
echo "== host memory of an idle VM (huskctl run -- sleep 600; $smp vCPU, $mem guest)"
printf '%-34s %12s %12s\n' "figure" "value" "target"
printf '%-34s %8s KiB\n' "QEMU PSS" "$q_pss"
printf '%-34s %8s KiB\n' "  of which guest RAM (memfd)" "$q_guest"
printf '%-34s %8s KiB\n' "  of which QEMU itself" "$((q_pss - q_guest))"
printf '%-34s %8s KiB %8s KiB\n' "husk-vsockd RSS" "$v_rss" 2048
printf '%-34s %8s KiB\n' "  of which guest RAM (memfd)" "$v_shmem"
printf '%-34s %8s KiB\n' "  of which files (libc, shared)" "$v_file"
printf '%-34s %8s KiB\n' "  of which its own (anonymous)" "$v_anon"
printf '%-34s %8s KiB\n' "husk-vsockd PSS" "$v_pss"
printf '%-34s %8s KiB\n' "QEMU PSS + husk-vsockd RSS" "$((q_pss + v_rss))"
printf '%-34s %8s KiB %8s KiB\n' "agent RSS in the guest" "${agent_rss:-?}" 2048
printf '%-34s %8s KiB\n' "huskctl run (stdio relay) RSS" "$h_rss"
echo "   husk-vsockd maps all guest RAM (vhost-user): its RSS counts the guest pages it has"
echo "   touched, which QEMU holds too (PSS splits them); RSS from /proc/PID/status, PSS from"
echo "   smaps_rollup"

left=""
for p in "$qpid" "$vpid"; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
[ -z "$left" ] && [ -z "$(ls -A "$state" 2>/dev/null)" ] ||
	echo "bench: left behind: processes$left; state: $(ls -A "$state" 2>/dev/null)" >&2
exit 0

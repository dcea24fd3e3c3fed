#!/bin/bash
# containerd-shim-husk-v2 against a real containerd 1.6 (Debian's), driven
# with ctr: a private containerd (own root, state, socket, config that
# registers io.containerd.husk.v2 by absolute path) is started here and
# stopped at the end. Checks what a user sees: output, exit codes, stdin,
# detached tasks, exec, pause/resume, metrics, ps, kill, events, a VM killed
# from outside, and that nothing is left behind. Prints PASS/FAIL/SKIP lines
# for tests/run.sh; timings are printed as INFO, never asserted.
# usage: tests/containerd/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
shim=$build/bin/containerd-shim-husk-v2
for f in "$shim" "$build/kernel/bzImage" "$build/initramfs.cpio.gz" "$build/bin/husk-vsockd" \
	"$build/test/ptyrun"; do
	if [ ! -e "$f" ]; then
		echo "FAIL containerd-prerequisites: $f is missing (run 'make')"
		exit 1
	fi
done
if ! command -v containerd >/dev/null || ! command -v ctr >/dev/null; then
	echo "FAIL containerd: containerd and ctr are not installed (make deps installs them)"
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "FAIL containerd: needs root"
	exit 1
fi

tmp=$(mktemp -d /tmp/husk-ctr-XXXXXX)
sock=$tmp/c.sock
cd_pid=
bg_pids=
cleanup() {
	for p in $bg_pids; do kill -9 "$p" 2>/dev/null; done
	if [ -n "$cd_pid" ]; then
		kill "$cd_pid" 2>/dev/null
		wait "$cd_pid" 2>/dev/null
	fi
	# Shims (and their QEMU / husk-vsockd, which die with them) of our
	# containerd only: they carry its unique socket path.
	for p in $(pgrep -f -- "-address $sock " 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	for p in $(pgrep -f -- "$tmp/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	sleep 0.2
	grep -o " $tmp/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
	rm -rf "$tmp"
}
trap cleanup EXIT
pass() { echo "PASS containerd-$1"; }
fail() { echo "FAIL containerd-$1: $2"; }
C() { ctr --address "$sock" "$@"; }
RUN() { C run --runtime io.containerd.husk.v2 "$@"; }

"$here/../jail/make-rootfs.sh" "$tmp/rootfs"
cat >"$tmp/config.toml" <<TOML
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[debug]
  level = "debug"
[plugins."io.containerd.runtime.v2.task"]
  platforms = ["linux/amd64"]
TOML
# Shims inherit containerd's environment: keep VM state and the image
# cache in our temp dir; containerd finds the shim in PATH.
env PATH="$build/bin:$PATH" HUSK_STATE_DIR="$tmp/s" HUSK_IMAGE_CACHE="$tmp/cache" \
	containerd --config "$tmp/config.toml" >"$tmp/containerd.log" 2>&1 &
cd_pid=$!
for _ in $(seq 100); do
	C version >/dev/null 2>&1 && break
	sleep 0.1
done
if ! C version >/dev/null 2>&1; then
	fail start "containerd did not come up: $(tail -5 "$tmp/containerd.log")"
	exit 1
fi
R=$tmp/rootfs

# ---- timing: husk vs runc for ctr run --rm /bin/true, never asserted ----
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
time_runs() {
	local rt=$1 i t0 t1
	for i in 1 2 3 4 5; do
		t0=$(date +%s%N)
		C run --rm --runtime "$rt" --rootfs "$R" "b-$rt-$i" /bin/true >/dev/null 2>&1 || return 1
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000000))
	done
}
bench_report() {
	local h r
	h=$(time_runs io.containerd.husk.v2 | median)
	r=$(time_runs io.containerd.runc.v2 | median)
	if [ -n "${CTR_BENCH_ONLY:-}" ]; then
		printf '%-44s %10s %10s %8s\n' "case" "husk" "runc" "husk/runc"
		printf '%-44s %10s %10s %7sx\n' "ctr run --rm /bin/true, ms (median of 5)" "${h:-?}" \
			"${r:-?}" "$(echo "${h:-0} ${r:-0}" | awk '$2 > 0 {printf "%.1f", $1 / $2; exit} {print "?"}')"
		echo "   husk boots a VM per container (TCG here: no usable KVM); runc does not"
	else
		echo "INFO containerd: ctr run --rm /bin/true median of 5: husk ${h:-?} ms, runc ${r:-failed} ms"
	fi
}
if [ -n "${CTR_BENCH_ONLY:-}" ]; then
	bench_report
	exit 0
fi

# ---- events: watched across the first run ----
ctr --address "$sock" events >"$tmp/events" 2>&1 &
ev_pid=$!
bg_pids="$bg_pids $ev_pid"
sleep 0.3

# ---- ctr run --rm: output and exit codes ----
t0=$(date +%s%N)
out=$(RUN --rm --rootfs "$R" c1 sh -c 'echo hi; echo err >&2; exit 3' 2>"$tmp/err")
rc=$?
t1=$(date +%s%N)
[ $rc -eq 3 ] && [ "$out" = hi ] && [ "$(cat "$tmp/err")" = err ] && pass run-exit-3 ||
	fail run-exit-3 "rc=$rc out=$out err=$(cat "$tmp/err")"
echo "INFO containerd: first ctr run --rm (VM boot, image build): $(((t1 - t0) / 1000000)) ms"

sleep 0.5
kill "$ev_pid" 2>/dev/null
want="/tasks/create /tasks/start /tasks/exit /tasks/delete"
got=$(grep -o '/tasks/[a-z-]*' "$tmp/events" | tr '\n' ' ')
[ "${got% }" = "$want" ] && pass events || fail events "want '$want', got '$got'"

out=$(RUN --rm --rootfs "$R" c2 sh -c 'echo ok' 2>&1)
rc=$?
[ $rc -eq 0 ] && [ "$out" = ok ] && pass run-exit-0 || fail run-exit-0 "rc=$rc out=$out"

# A child killed with SIGKILL: the shell reports 128+9 as its own status.
out=$(RUN --rm --rootfs "$R" c3 sh -c 'sh -c "kill -9 \$\$"; exit $?' 2>&1)
rc=$?
[ $rc -eq 137 ] && pass run-exit-137 || fail run-exit-137 "rc=$rc out=$out"

# ---- stdin (ctr run always attaches it) ----
head -c 300000 /dev/urandom >"$tmp/stdin"
in_sum=$(sha256sum <"$tmp/stdin" | cut -d' ' -f1)
out=$(RUN --rm --rootfs "$R" c4 sh -c 'sha256sum; exit 7' <"$tmp/stdin" 2>&1)
rc=$?
[ $rc -eq 7 ] && [ "${out%% *}" = "$in_sum" ] && pass stdin || fail stdin "rc=$rc out=$out"

# ---- a detached task: ls, ps, exec, pause/resume, metrics, kill, delete ----
state() { C task ls | awk -v id="$1" '$1 == id { print $3 }'; }
if RUN -d --rootfs "$R" d1 sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	[ "$(state d1)" = RUNNING ] && pass detached-running || fail detached-running "$(C task ls)"
	n=$(C task ps d1 | tail -n +2 | wc -l)
	[ "$n" -ge 1 ] && pass task-ps || fail task-ps "$(C task ps d1 2>&1)"
	out=$(C task exec --exec-id e1 d1 sh -c 'echo from-exec; echo exec-err >&2; exit 5' 2>&1)
	rc=$?
	[ $rc -eq 5 ] && [ "$out" = "$(printf 'from-exec\nexec-err')" ] && pass exec ||
		fail exec "rc=$rc out=$out"
	# -t needs a terminal on our side: build/test/ptyrun provides one.
	out=$("$build/test/ptyrun" -- ctr --address "$sock" task exec -t --exec-id e2 d1 \
		sh -c 'tty; exit 6' </dev/null 2>&1)
	rc=$?
	case $out in
	*/dev/pts/*) [ $rc -eq 6 ] && pass exec-tty || fail exec-tty "rc=$rc out=$out" ;;
	*) fail exec-tty "rc=$rc out=$out" ;;
	esac
	C task pause d1 && [ "$(state d1)" = PAUSED ] && C task resume d1 &&
		[ "$(state d1)" = RUNNING ] && pass pause-resume || fail pause-resume "$(C task ls 2>&1)"
	out=$(C task metrics d1 2>&1)
	echo "$out" | grep -q '^memory.usage ' && echo "$out" | grep -q '^pids.current ' &&
		pass metrics || fail metrics "$out"
	C task kill -s SIGKILL d1
	for _ in $(seq 100); do [ "$(state d1)" = STOPPED ] && break; sleep 0.1; done
	st=$(C task ls | awk '$1 == "d1"')
	C task delete d1 >"$tmp/del" 2>&1
	rc=$?
	[ "$(state d1)" = "" ] && [ $rc -eq 0 ] && echo "$st" | grep -q STOPPED &&
		pass kill-delete || fail kill-delete "rc=$rc st=$st $(cat "$tmp/del")"
	C container rm d1 >/dev/null 2>&1
else
	fail detached-running "$(cat "$tmp/out")"
fi

# ---- a fast-exiting command's full output, 50 times ----
bad=0
first=
for i in $(seq 50); do
	out=$(RUN --rm --rootfs "$R" "f$i" sh -c 'seq 1 3000; echo done' 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || [ "$(echo "$out" | wc -l)" -ne 3001 ] || [ "${out##*$'\n'}" != done ]; then
		bad=$((bad + 1))
		[ -n "$first" ] || first="run $i rc=$rc lines=$(echo "$out" | wc -l) tail=${out: -40}"
	fi
done
[ $bad -eq 0 ] && pass fast-exit-50 || fail fast-exit-50 "$bad of 50 lost output or failed: $first"

# ---- an OCI image through containerd's overlayfs snapshotter ----
img=docker.io/library/husk-busybox:latest
if "$here/make-oci-image.sh" "$tmp/image.tar" "$img" >"$tmp/img.log" 2>&1 &&
	C images import "$tmp/image.tar" >>"$tmp/img.log" 2>&1; then
	out=$(RUN --rm --snapshotter overlayfs "$img" im1 sh -c 'cat /etc/image-marker; exit 4' 2>&1)
	rc=$?
	[ $rc -eq 4 ] && [ "$out" = "made by tests/containerd/make-oci-image.sh" ] && pass oci-image-overlayfs ||
		fail oci-image-overlayfs "rc=$rc $out"
else
	fail oci-image-overlayfs "import failed: $(tail -5 "$tmp/img.log")"
fi

# ---- the VM's QEMU killed from outside ----
if RUN -d --rootfs "$R" k1 sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	shim_pid=$(pgrep -f -- "-address $sock .*-id k1 " | head -1)
	qemu=$(pgrep -P "${shim_pid:-0}" qemu-system 2>/dev/null | head -1)
	if [ -n "$qemu" ]; then
		t0=$(date +%s%N)
		kill -9 "$qemu"
		# Bounded only to end a broken run; the time is reported.
		for _ in $(seq 600); do [ "$(state k1)" = STOPPED ] && break; sleep 0.05; done
		t1=$(date +%s%N)
		line=$(C task ls | awk '$1 == "k1"')
		echo "INFO containerd: QEMU killed -> task STOPPED after $(((t1 - t0) / 1000000)) ms"
		C task delete k1 >"$tmp/del" 2>&1
		rc=$?
		C container rm k1 >/dev/null 2>&1
		sleep 0.5
		left=$(pgrep -f -- "$tmp/s/" ; pgrep -f -- "-id k1 " | grep -v "^$$\$")
		[ "$(echo "$line" | awk '{print $3}')" = STOPPED ] && [ $rc -eq 0 ] && [ -z "$left" ] &&
			pass vm-killed || fail vm-killed "state='$line' delete rc=$rc $(cat "$tmp/del") left: $left"
		C task ls >/dev/null
	else
		fail vm-killed "no QEMU child of shim ${shim_pid:-?}"
	fi
else
	fail vm-killed "$(cat "$tmp/out")"
fi

# ---- nothing left: shims, QEMU, husk-vsockd, sockets, VM dirs, mounts ----
sleep 0.5
procs=$(pgrep -f -- "-address $sock " ; pgrep -f -- "$tmp/s/")
files=$(ls -A "$tmp/s" 2>/dev/null | grep -v '^shim$'; ls -A "$tmp/s/shim" 2>/dev/null)
mounts=$(grep -c " $tmp/" /proc/self/mounts)
[ -z "$procs" ] && [ -z "$files" ] && [ "$mounts" = 0 ] && pass clean ||
	fail clean "processes: $procs; files: $files; mounts: $mounts"

# ---- timing (reported only; the table with CTR_BENCH_ONLY=1) ----
bench_report
exit 0

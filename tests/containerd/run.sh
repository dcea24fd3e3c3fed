#!/bin/bash
# containerd-shim-husk-v2 against a real containerd 1.6 (Debian's), driven
# with ctr: a private containerd (own root, state, socket, config that
# registers io.containerd.husk.v2 by absolute path) is started here and
# stopped at the end. Checks what a user sees: output, exit codes, stdin,
# detached tasks, exec, pause/resume, metrics, ps, kill, events (OOM too), the
# config file and runtime options, file:// and binary:// log URIs, the agent's
# log in containerd's, a VM killed from outside, and that nothing is left
# behind. The shim is the ASan/UBSan build (build/asan/): any sanitizer
# report fails the suite. Prints PASS/FAIL/SKIP lines for tests/run.sh;
# timings are printed as INFO, never asserted (CTR_BENCH_ONLY=1 times the
# optimised build/bin shim instead).
# usage: tests/containerd/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${CTR_BENCH_ONLY:-}" ]; then
	shim_dir=$build/bin
else
	shim_dir=$build/asan
fi
shim=$shim_dir/containerd-shim-husk-v2
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
# The shim's base config (HUSK_CONFIG): the ASan shim in build/asan/ has no
# husk-vsockd next to it; and no /etc/husk/config.json of this host applies.
cat >"$tmp/husk.json" <<JSON
{ "vsockd": "$build/bin/husk-vsockd" }
JSON
mkdir -p "$tmp/asan"
# Shims inherit containerd's environment: keep VM state and the image
# cache in our temp dir; containerd finds the shim in PATH. Sanitizer
# reports go to files (the shim's stderr is containerd's log FIFO).
env PATH="$shim_dir:$build/bin:$PATH" HUSK_STATE_DIR="$tmp/s" HUSK_IMAGE_CACHE="$tmp/cache" \
	HUSK_CONFIG="$tmp/husk.json" \
	ASAN_OPTIONS="log_path=$tmp/asan/asan:detect_leaks=1" \
	UBSAN_OPTIONS="log_path=$tmp/asan/ubsan:print_stacktrace=1" \
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

# The agent's log stream is in the shim log, which containerd 1.6 copies to
# its own output.
grep -q 'msg="guest: container c1: created.* source=husk-agent' "$tmp/containerd.log" &&
	pass agent-log || fail agent-log "no agent line for c1 in containerd's log: $(grep -c source=husk-agent "$tmp/containerd.log") agent lines"

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
	# stdout and stderr are separate streams: their relative order is not
	# defined.
	out=$(C task exec --exec-id e1 d1 sh -c 'echo from-exec; echo exec-err >&2; exit 5' \
		2>"$tmp/exec-err")
	rc=$?
	[ $rc -eq 5 ] && [ "$out" = from-exec ] && [ "$(cat "$tmp/exec-err")" = exec-err ] &&
		pass exec || fail exec "rc=$rc out=$out err=$(cat "$tmp/exec-err")"
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

# ---- the config file through runtime options (ctr --runtime-config-path) ----
cat >"$tmp/vm.json" <<JSON
{ "memory_mib": 200, "vcpus": 2 }
JSON
out=$(RUN --rm --runtime-config-path "$tmp/vm.json" --rootfs "$R" cfg1 \
	sh -c 'grep MemTotal /proc/meminfo; grep -c ^processor /proc/cpuinfo' 2>&1)
rc=$?
kb=$(echo "$out" | awk '/^MemTotal:/ { print $2 }')
cpus=$(echo "$out" | tail -1)
# 200 MiB is 204800 kB; the kernel keeps some of it for itself. The default
# is 256 MiB (262144 kB).
[ $rc -eq 0 ] && [ "${kb:-0}" -gt 150000 ] && [ "${kb:-0}" -le 204800 ] && [ "$cpus" = 2 ] &&
	pass config-runtime-options || fail config-runtime-options "rc=$rc out=$out"

# A bad key or a wrong type fails ctr run, and the error names file and key.
printf '{ "memory_mib": 200, "memroy": 1 }\n' >"$tmp/bad1.json"
printf '{ "vcpus": "two" }\n' >"$tmp/bad2.json"
out1=$(RUN --rm --runtime-config-path "$tmp/bad1.json" --rootfs "$R" cfg2 true 2>&1)
rc1=$?
out2=$(RUN --rm --runtime-config-path "$tmp/bad2.json" --rootfs "$R" cfg3 true 2>&1)
rc2=$?
C container rm cfg2 cfg3 >/dev/null 2>&1
case "$rc1 $out1|$rc2 $out2" in
0\ *) fail config-bad "bad1 ran: $out1" ;;
*"$tmp/bad1.json"*'unknown key "memroy"'*"|"[1-9]*"$tmp/bad2.json"*'key "vcpus": want an integer, got string'*)
	pass config-bad ;;
*) fail config-bad "rc=$rc1 out=$out1 / rc=$rc2 out=$out2" ;;
esac

# ---- log URIs: file:// and binary:// (as containerd-shim-runc-v2) ----
out=$(RUN --rm --log-uri "file://$tmp/logs/sub/f1.log" --rootfs "$R" lf1 \
	sh -c 'echo to-stdout; echo to-stderr >&2; exit 2' 2>&1)
rc=$?
got=$(sort "$tmp/logs/sub/f1.log" 2>&1 | tr '\n' ' ')
[ $rc -eq 2 ] && [ "$got" = "to-stderr to-stdout " ] && pass log-uri-file ||
	fail log-uri-file "rc=$rc out=$out file: $got"

# The logger: stdout on fd 3 (appended to `order`), stderr on fd 4; it is
# ready when it closes fd 5, after a pause, so output that came before
# "ready" would show the shim did not wait; SIGTERM at delete.
mkdir -p "$tmp/lb"
cat >"$tmp/logger.sh" <<'SH'
#!/bin/sh
d=$2
echo "$1 $CONTAINER_NAMESPACE $CONTAINER_ID ${HUSK_CONFIG:-only-container-env}" >"$d/env"
trap 'kill $s 2>/dev/null; echo TERM >>"$d/order"; exit 0' TERM
# The copiers must not hold fd 5: its last close is "ready".
cat <&3 5>&- >>"$d/order" &
o=$!
cat <&4 5>&- >"$d/stderr" &
e=$!
exec 3<&- 4<&-
sleep 1
echo ready >>"$d/order"
exec 5>&-
wait $o $e
echo eof >>"$d/order"
sleep 1000 &
s=$!
wait $s
SH
chmod +x "$tmp/logger.sh"
out=$(RUN --rm --log-uri "binary://$tmp/logger.sh?dir=$tmp/lb" --rootfs "$R" lb1 \
	sh -c 'echo out-line; echo err-line >&2; exit 3' 2>&1)
rc=$?
order=$(tr '\n' ' ' <"$tmp/lb/order" 2>&1)
left=$(pgrep -f -- "$tmp/logger.sh")
[ $rc -eq 3 ] && [ "$order" = "ready out-line eof TERM " ] &&
	[ "$(cat "$tmp/lb/stderr")" = err-line ] && [ "$(cat "$tmp/lb/env")" = "dir default lb1 only-container-env" ] &&
	[ -z "$left" ] && pass log-uri-binary ||
	fail log-uri-binary "rc=$rc out=$out order='$order' stderr=$(cat "$tmp/lb/stderr") env=$(cat "$tmp/lb/env") left=$left"

# ---- OOM: /tasks/oom before the killed process's /tasks/exit ----
ctr --address "$sock" events >"$tmp/events-oom" 2>&1 &
ev_pid=$!
bg_pids="$bg_pids $ev_pid"
sleep 0.3
out=$(RUN --rm --memory-limit 33554432 --rootfs "$R" oom1 sh -c 's=x; while :; do s=$s$s; done' 2>&1)
rc=$?
sleep 0.5
kill "$ev_pid" 2>/dev/null
got=$(grep -E '/tasks/(oom|exit) .*"oom1"' "$tmp/events-oom" | grep -o '/tasks/[a-z]*' | tr '\n' ' ')
[ $rc -eq 137 ] && [ "$got" = "/tasks/oom /tasks/exit " ] && pass oom-event ||
	fail oom-event "rc=$rc out=$out events: $got"

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

# ---- a pod: the sandbox's VM takes the pod's later containers ----
# The CRI annotations as containerd's CRI plugin writes them. A pod's
# container names the sandbox's namespaces by host paths (here: made up);
# in the VM they become the sandbox process's namespaces.
cp -a "$R" "$tmp/rootfs2"
echo second-image >"$tmp/rootfs2/marker"
SB="--annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=pod1"
IN="--annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=pod1"
# What a process sees: its VM (boot_id), its uts, ipc and pid namespaces.
show='cat /proc/sys/kernel/random/boot_id; for n in uts ipc pid; do readlink /proc/self/ns/$n; done'
# The sandbox serves a file on its 127.0.0.1 (its own network namespace, lo
# up in it) for the pod's containers, which share that namespace.
if RUN -d $SB --rootfs "$R" pod1 sh -c 'mkdir -p /www && echo pod-lo-ok >/www/x &&
	httpd -p 127.0.0.1:8080 -h /www; sleep 1000' >"$tmp/out" 2>&1; then
	shim_pid=$(pgrep -f -- "-address $sock .*-id pod1 " | head -1)
	sb=$(C task exec --exec-id b1 pod1 sh -c "$show" 2>&1)
	out=$(RUN --rm $IN --with-ns uts:/var/run/netns/cni-made-up --with-ns ipc:/proc/4242/ns/ipc \
		--rootfs "$tmp/rootfs2" pc1 sh -c "cat /marker; $show; exit 3" 2>&1)
	rc=$?
	# Same VM, same uts and ipc namespaces, a pid namespace of its own.
	expect="second-image
$(echo "$sb" | head -3)"
	[ $rc -eq 3 ] && [ "$(echo "$out" | head -4)" = "$expect" ] &&
		[ "$(echo "$out" | sed -n 5p)" != "$(echo "$sb" | sed -n 4p)" ] &&
		pass pod-container-joins-vm || fail pod-container-joins-vm "rc=$rc out=$out sandbox=$sb"
	# One VM for the pod: the sandbox's shim still has one QEMU, the pod
	# still runs, and a second container joins after the first left.
	out=$(RUN --rm $IN --rootfs "$tmp/rootfs2" pc2 sh -c 'cat /marker' 2>&1)
	rc=$?
	n=$(pgrep -P "${shim_pid:-0}" qemu-system | wc -l)
	[ $rc -eq 0 ] && [ "$out" = second-image ] && [ "$n" = 1 ] && [ "$(state pod1)" = RUNNING ] &&
		pass pod-one-vm || fail pod-one-vm "rc=$rc out=$out qemu=$n state=$(state pod1)"
	# Pod containers talk over localhost: the CRI names the pod's network
	# namespace by a host path, which in the VM is the sandbox's.
	out=$(RUN --rm $IN --with-ns network:/var/run/netns/cni-made-up --rootfs "$tmp/rootfs2" pc-lo \
		sh -c 'for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/x 2>/dev/null && exit 0
			sleep 0.1; done; exit 1' 2>&1)
	rc=$?
	[ $rc -eq 0 ] && [ "$out" = pod-lo-ok ] && pass pod-localhost || fail pod-localhost "rc=$rc $out"
	# The sandbox goes last and takes the VM with it.
	C task kill -s SIGKILL pod1
	for _ in $(seq 100); do [ "$(state pod1)" = STOPPED ] && break; sleep 0.1; done
	C task delete pod1 >"$tmp/del" 2>&1
	rc=$?
	C container rm pod1 >/dev/null 2>&1
	for _ in $(seq 100); do kill -0 "${shim_pid:-0}" 2>/dev/null || break; sleep 0.1; done
	kill -0 "${shim_pid:-0}" 2>/dev/null && alive=yes || alive=no
	[ $rc -eq 0 ] && [ $alive = no ] && pass pod-sandbox-delete ||
		fail pod-sandbox-delete "delete rc=$rc $(cat "$tmp/del"); shim alive: $alive"
else
	fail pod-container-joins-vm "sandbox: $(cat "$tmp/out")"
fi
# A pod container whose sandbox runs nowhere: refused, naming the sandbox.
out=$(RUN --rm --annotation io.kubernetes.cri.container-type=container \
	--annotation io.kubernetes.cri.sandbox-id=nopod --rootfs "$R" pc3 true 2>&1)
rc=$?
C container rm pc3 >/dev/null 2>&1
case "$rc $out" in
0\ *) fail pod-no-sandbox "ran: $out" ;;
*'pod sandbox nopod does not run'*) pass pod-no-sandbox ;;
*) fail pod-no-sandbox "rc=$rc out=$out" ;;
esac

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
# The last shims may still be exiting (LeakSanitizer runs at exit): wait
# for them, bounded only to end a broken run.
for _ in $(seq 100); do
	[ -z "$(pgrep -f -- "-address $sock " ; pgrep -f -- "$tmp/s/")" ] && break
	sleep 0.1
done
procs=$(pgrep -f -- "-address $sock " ; pgrep -f -- "$tmp/s/")
files=$(ls -A "$tmp/s" 2>/dev/null | grep -v '^shim$'; ls -A "$tmp/s/shim" 2>/dev/null)
mounts=$(grep -c " $tmp/" /proc/self/mounts)
[ -z "$procs" ] && [ -z "$files" ] && [ "$mounts" = 0 ] && pass clean ||
	fail clean "processes: $procs; files: $files; mounts: $mounts"

# ---- timing (reported only; the table with CTR_BENCH_ONLY=1) ----
bench_report

# ---- sanitizers: every shim (start, daemon, delete) ran under ASan/UBSan ----
# LeakSanitizer reports when a shim exits: wait for the last ones (bounded
# only to end a broken run).
for _ in $(seq 100); do [ -z "$(pgrep -f -- "-address $sock ")" ] && break; sleep 0.1; done
reports=$(ls "$tmp/asan" 2>/dev/null)
[ -z "$reports" ] && pass sanitizers ||
	fail sanitizers "$(for r in $reports; do echo "== $r"; head -30 "$tmp/asan/$r"; done)"

exit 0

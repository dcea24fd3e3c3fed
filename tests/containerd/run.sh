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
# `ctr run --rootfs` gives the process no PATH (an image's config would):
# without one a bare program name is not found, by runc as by husk.
CTR_PATH_ENV=PATH=/usr/sbin:/usr/bin:/sbin:/bin
RUN() { C run --runtime io.containerd.husk.v2 --env "$CTR_PATH_ENV" "$@"; }

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
# Started again by the tests of a containerd restart; its log appends.
containerd_up() {
	env PATH="$shim_dir:$build/bin:$PATH" HUSK_STATE_DIR="$tmp/s" HUSK_IMAGE_CACHE="$tmp/cache" \
		HUSK_CONFIG="$tmp/husk.json" \
		ASAN_OPTIONS="log_path=$tmp/asan/asan:detect_leaks=1" \
		UBSAN_OPTIONS="log_path=$tmp/asan/ubsan:print_stacktrace=1" \
		containerd --config "$tmp/config.toml" >>"$tmp/containerd.log" 2>&1 &
	cd_pid=$!
	for _ in $(seq 100); do
		C version >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	C version >/dev/null 2>&1
}
containerd_down() {
	kill "$cd_pid" 2>/dev/null
	wait "$cd_pid" 2>/dev/null
	cd_pid=
}
if ! containerd_up; then
	fail start "containerd did not come up: $(tail -5 "$tmp/containerd.log")"
	exit 1
fi
R=$tmp/rootfs

# huskd on the shims' default pool socket (HUSK_STATE_DIR is $tmp/s), with
# the VM shape the shims ask for: the same kernel, initrd and husk-vsockd.
huskd_pid=
pool_shape="kernel=$build/kernel/bzImage,initrd=$build/initramfs.cpio.gz,vsockd=$build/bin/husk-vsockd"
huskd_up() { # ready [boot-parallel]
	"$build/bin/huskd" --socket "$tmp/s/huskd.sock" --state-dir "$tmp/s" \
		--boot-parallel "${2:-1}" --shape "$pool_shape,ready=$1" >>"$tmp/huskd.log" 2>&1 &
	huskd_pid=$!
	bg_pids="$bg_pids $huskd_pid"
}
huskd_field() {
	"$build/bin/huskd" status --socket "$tmp/s/huskd.sock" 2>/dev/null |
		jq -r ".shapes[0].$1" 2>/dev/null
}
huskd_wait_ready() { # n seconds
	for _ in $(seq $(($2 * 5))); do
		[ "$(huskd_field ready)" = "$1" ] && return 0
		sleep 0.2
	done
	return 1
}
huskd_down() {
	[ -n "$huskd_pid" ] || return 0
	kill -TERM "$huskd_pid" 2>/dev/null
	wait "$huskd_pid" 2>/dev/null
	huskd_pid=
}

# ---- timing: husk vs runc for ctr run --rm /bin/true, never asserted ----
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
time_one() { # runtime name: ms of one ctr run --rm /bin/true
	local t0 t1
	t0=$(date +%s%N)
	C run --rm --runtime "$1" --rootfs "$R" "b-$2" /bin/true >/dev/null 2>&1 || return 1
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}
time_runs() {
	local i
	for i in 1 2 3 4 5; do
		time_one "$1" "$1-$i" || return 1
	done
}
# Starts PARALLEL tasks at once; prints "MS PSS_KIB": the wall time until
# every `ctr run -d` returned (each returns once its task runs), and the
# PSS of the runtime's host processes (shims and their children: QEMU and
# husk-vsockd, or runc's container processes), 2 s later, summed.
PARALLEL=8
parallel_runs() { # runtime [pooled]
	local rt=$1 pooled=${2:-} i t0 t1 pids=() pss=0 p shim ok=0
	: >"$tmp/parallel.err"
	t0=$(date +%s%N)
	for i in $(seq "$PARALLEL"); do
		C run -d --runtime "$rt" --rootfs "$R" "p-$rt-$i" /bin/sleep 600 >/dev/null 2>>"$tmp/parallel.err" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
	t1=$(date +%s%N)
	# Pooled VMs are their keepers' children, not the shims': count the
	# keepers, QEMU and husk-vsockd of the VMs handed out (huskd stopped
	# first, which ends the ready ones refilled meanwhile).
	local extra=
	if [ -n "$pooled" ]; then
		huskd_down
		extra="$(pgrep -f -- "$tmp/s/pool-") $(pgrep -x husk-keeper)"
	fi
	sleep 2
	local name=containerd-shim-runc-v2
	[ "$rt" = io.containerd.husk.v2 ] && name=containerd-shim-husk-v2
	for shim in $(pgrep -f -- "$name .*-address $sock "); do
		for p in "$shim" $(pgrep -P "$shim"); do
			pss=$((pss + $(awk '$1=="Pss:"{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
		done
	done
	for p in $extra; do
		pss=$((pss + $(awk '$1=="Pss:"{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
	done
	for i in $(seq "$PARALLEL"); do
		C task kill -s KILL "p-$rt-$i" >/dev/null 2>&1
	done
	for i in $(seq "$PARALLEL"); do
		for _ in $(seq 50); do
			C task ls 2>/dev/null | grep -q "^p-$rt-$i .*RUNNING" || break
			sleep 0.1
		done
		C task rm -f "p-$rt-$i" >/dev/null 2>&1
		C c rm "p-$rt-$i" >/dev/null 2>&1
	done
	if [ "$ok" != "$PARALLEL" ]; then
		echo "bench: $rt: $((PARALLEL - ok)) of $PARALLEL ctr run -d failed: $(head -1 "$tmp/parallel.err")" >&2
		echo "? ?"
		return
	fi
	echo "$(((t1 - t0) / 1000000)) $pss"
}
bench_report() {
	local h r hp rp
	h=$(time_runs io.containerd.husk.v2 | median)
	r=$(time_runs io.containerd.runc.v2 | median)
	if [ -n "${CTR_BENCH_ONLY:-}" ]; then
		hp=$(parallel_runs io.containerd.husk.v2)
		rp=$(parallel_runs io.containerd.runc.v2)
		# The same with huskd: each run starts from a full pool (the wait
		# for the refill is not timed).
		local hpool hpoolp ppss
		huskd_up 1
		hpool=$(for i in 1 2 3 4 5; do
			huskd_wait_ready 1 120 || break
			time_one io.containerd.husk.v2 "pool-$i"
		done | median)
		huskd_down
		huskd_up "$PARALLEL" 2
		# Not in a $(...) subshell: it stops huskd, which this shell started.
		if huskd_wait_ready "$PARALLEL" 300; then
			parallel_runs io.containerd.husk.v2 pooled >"$tmp/pooled-parallel"
			hpoolp=$(cat "$tmp/pooled-parallel")
		fi
		huskd_down
		printf '%-44s %10s %10s %8s\n' "case" "husk" "runc" "husk/runc"
		printf '%-44s %10s %10s %7sx\n' "ctr run --rm /bin/true, ms (median of 5)" "${h:-?}" \
			"${r:-?}" "$(echo "${h:-0} ${r:-0}" | awk '$2 > 0 {printf "%.1f", $1 / $2; exit} {print "?"}')"
		# "? ?" from a failed run stays "?" (no arithmetic on it).
		local hms hpss rms rpss
		read -r hms hpss <<<"$hp"
		read -r rms rpss <<<"$rp"
		ratio() { echo "$1 $2" | awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ && $2 > 0 {printf "%.1f", $1 / $2; exit} {print "?"}'; }
		per() { echo "$1" | awk -v n="$PARALLEL" '$1 ~ /^[0-9]+$/ {print int($1 / n); exit} {print "?"}'; }
		printf '%-44s %10s %10s %7sx\n' "ctr run --rm /bin/true from huskd's pool, ms" "${hpool:-?}" \
			"${r:-?}" "$(ratio "${hpool:-?}" "${r:-?}")"
		printf '%-44s %10s %10s %7sx\n' "$PARALLEL parallel ctr run -d, ms until all run" "$hms" "$rms" \
			"$(ratio "$hms" "$rms")"
		local pms
		read -r pms ppss <<<"${hpoolp:-? ?}"
		printf '%-44s %10s %10s %7sx\n' "$PARALLEL parallel ctr run -d from the pool, ms" "$pms" "$rms" \
			"$(ratio "$pms" "$rms")"
		printf '%-44s %10s %10s %7sx\n' "host PSS per container, $PARALLEL running, KiB" \
			"$(per "$hpss")" "$(per "$rpss")" "$(ratio "$hpss" "$rpss")"
		printf '%-44s %10s %10s %7sx\n' "  the same from the pool (keepers too)" \
			"$(per "$ppss")" "$(per "$rpss")" "$(ratio "$ppss" "$rpss")"
		echo "   husk boots a VM per container (TCG here: no usable KVM); runc does not"
		echo "   PSS: the runtime's shims and their children (QEMU, husk-vsockd; runc's containers)"
		echo "   2 s after the last start, summed (smaps_rollup), over $PARALLEL; targets: 2000 ms, 60 MiB"
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
printf '{ "vcpus": 2,\n  "memory_mib"' >"$tmp/bad3.json"
out1=$(RUN --rm --runtime-config-path "$tmp/bad1.json" --rootfs "$R" cfg2 true 2>&1)
rc1=$?
out2=$(RUN --rm --runtime-config-path "$tmp/bad2.json" --rootfs "$R" cfg3 true 2>&1)
rc2=$?
out3=$(RUN --rm --runtime-config-path "$tmp/bad3.json" --rootfs "$R" cfg4 true 2>&1)
rc3=$?
C container rm cfg2 cfg3 cfg4 >/dev/null 2>&1
case "$rc1 $out1|$rc2 $out2|$rc3 $out3" in
0\ *) fail config-bad "bad1 ran: $out1" ;;
*"$tmp/bad1.json"*'unknown key "memroy"'*"|"[1-9]*"$tmp/bad2.json"*'key "vcpus": want an integer, got string'*"|"[1-9]*"$tmp/bad3.json: line 2"*"truncated"*)
	pass config-bad ;;
*) fail config-bad "rc=$rc1 out=$out1 / rc=$rc2 out=$out2 / rc=$rc3 out=$out3" ;;
esac

# The writable layer (a tmpfs upper over the image) is sized by the config
# (overlay_size): filling it is ENOSPC for the writer, the VM stays well.
cat >"$tmp/ovl.json" <<JSON
{ "overlay_size": "16M" }
JSON
out=$(RUN --rm --runtime-config-path "$tmp/ovl.json" --rootfs "$R" ovl1 \
	sh -c 'dd if=/dev/zero of=/fill bs=1M count=64 2>&1; echo "dd=$?"; df -k / | tail -1' 2>&1)
rc=$?
case "$rc $out" in
0\ *"No space left on device"*"dd=1"*) pass overlay-full-enospc ;;
*) fail overlay-full-enospc "rc=$rc out=$out" ;;
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

# ---- failure paths: nothing may be left, nothing may hang ----
# Nothing of our containerd's husk tasks left: shims, QEMU, husk-vsockd,
# VM state directories, mounts under $tmp, images held. Shims exit after
# containerd's Shutdown, asynchronously: bounded wait, for a broken run only.
leftovers() {
	local procs dirs mounts held
	for _ in $(seq 150); do
		procs=$(pgrep -f -- "-address $sock " | tr '\n' ' '; pgrep -f -- "$tmp/s/" | tr '\n' ' ')
		dirs=$(ls -A "$tmp/s" 2>/dev/null | grep -v '^shim$' | tr '\n' ' '; ls -A "$tmp/s/shim" 2>/dev/null | tr '\n' ' ')
		mounts=$(grep -c " $tmp/" /proc/self/mounts)
		held=$("$build/bin/huskctl" image ls --image-cache "$tmp/cache" 2>/dev/null | grep -c ' yes$')
		if [ -z "${procs// /}${dirs// /}" ] && [ "$mounts" = 0 ] && [ "$held" = 0 ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "processes: $procs; files: $dirs; mounts: $mounts; images held: $held"
	return 1
}
# The file descriptors a process has open.
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
shim_of() { pgrep -f -- "-address $sock .*-id $1 " | head -1; }

# A bare program name and no PATH in the process's environment (what
# `ctr run --rootfs` gives): runc does not look it up anywhere, nor does
# husk; both refuse, naming it, and husk leaves nothing.
out_runc=$(C run --rm --runtime io.containerd.runc.v2 --rootfs "$R" np-runc sleep 0 2>&1)
rc_runc=$?
C container rm np-runc >/dev/null 2>&1
out=$(C run --rm --runtime io.containerd.husk.v2 --rootfs "$R" np-husk sleep 0 2>&1)
rc=$?
C container rm np-husk >/dev/null 2>&1
left=$(leftovers)
[ $rc_runc -ne 0 ] && [ $rc -ne 0 ] && [ -z "$left" ] &&
	echo "$out_runc" | grep -q 'sleep.*executable file not found in \$PATH' &&
	echo "$out" | grep -q 'sleep.*executable file not found in \$PATH' && pass no-path-refused-as-runc ||
	fail no-path-refused-as-runc "runc rc=$rc_runc: $out_runc; husk rc=$rc: $out; left: $left"

# A sandbox deleted under its pod's containers (CRI deletes a sandbox task
# as soon as it exits): the containers keep running, as under runc, and the
# VM goes with the last of them.
SB2="--annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=pod2"
IN2="--annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=pod2"
if RUN -d $SB2 --rootfs "$R" pod2 sh -c 'sleep 1000' >"$tmp/out" 2>&1 &&
	RUN -d $IN2 --rootfs "$tmp/rootfs2" pc4 sh -c 'sleep 1000' >>"$tmp/out" 2>&1; then
	shim_pid=$(pgrep -f -- "-address $sock .*-id pod2 " | head -1)
	C task kill -s SIGKILL pod2
	for _ in $(seq 100); do [ "$(state pod2)" = STOPPED ] && break; sleep 0.1; done
	C task delete pod2 >/dev/null 2>&1
	C container rm pod2 >/dev/null 2>&1
	sleep 1
	st=$(state pc4)
	out=$(C task exec --exec-id e1 pc4 cat /marker 2>&1)
	C task kill -s SIGKILL pc4
	for _ in $(seq 100); do [ "$(state pc4)" = STOPPED ] && break; sleep 0.1; done
	C task delete pc4 >/dev/null 2>&1
	C container rm pc4 >/dev/null 2>&1
	for _ in $(seq 100); do kill -0 "${shim_pid:-0}" 2>/dev/null || break; sleep 0.1; done
	kill -0 "${shim_pid:-0}" 2>/dev/null && alive=yes || alive=no
	left=$(leftovers)
	[ "$st" = RUNNING ] && [ "$out" = second-image ] && [ $alive = no ] && [ -z "$left" ] &&
		pass pod-outlives-sandbox || fail pod-outlives-sandbox "state=$st exec=$out shim alive=$alive left: $left"
else
	fail pod-outlives-sandbox "$(cat "$tmp/out")"
	for id in pc4 pod2; do
		C task kill -s SIGKILL $id >/dev/null 2>&1
		sleep 1
		C task delete $id >/dev/null 2>&1
		C container rm $id >/dev/null 2>&1
	done
fi

# ---- host mounts: bind mounts of host paths reach the guest over virtio-fs ----
# (docs/containerd.md, "Host mounts"): a directory read and written from both
# sides, a file, read-only ones refused as under runc, and nothing left
# afterwards (no mount, virtiofsd or shared directory).
hm=$tmp/hostdir
mkdir -p "$hm/sub" "$tmp/rodir"
echo from-host >"$hm/in"
echo file-content >"$tmp/hostfile"
echo ro >"$tmp/rodir/x"
out=$(RUN --rm --mount "type=bind,src=$hm,dst=/data,options=rbind:rw" \
	--mount "type=bind,src=$tmp/hostfile,dst=/etc/hostfile,options=rbind:ro" \
	--mount "type=bind,src=$tmp/rodir,dst=/ro,options=rbind:ro" --rootfs "$R" hm1 \
	sh -c 'cat /data/in; echo from-guest >/data/sub/out; cat /etc/hostfile
		echo x 2>/dev/null >/ro/y && echo ro-dir-writable
		echo x 2>/dev/null >>/etc/hostfile && echo ro-file-writable; exit 3' 2>&1)
rc=$?
C container rm hm1 >/dev/null 2>&1
left=$(leftovers)
[ $rc -eq 3 ] && [ "$out" = "from-host
file-content" ] && [ "$(cat "$hm/sub/out" 2>/dev/null)" = from-guest ] &&
	[ ! -e "$tmp/rodir/y" ] && [ "$(cat "$tmp/hostfile")" = file-content ] && [ -z "$left" ] &&
	pass host-mounts || fail host-mounts "rc=$rc out=$out host sees: $(cat "$hm/sub/out" 2>&1) left: $left"

# virtiofsd killed under a running container with a host mount: the
# guest's requests on the share would wait for ever, so the VM is lost as
# when husk-vsockd dies: the task stops (255), QEMU goes at once, the shim
# log names virtiofsd, delete cleans up and nothing is left.
mkdir -p "$tmp/fsk"
if RUN -d --mount "type=bind,src=$tmp/fsk,dst=/data,options=rbind:rw" --rootfs "$R" fsk1 \
	sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	spid=$(shim_of fsk1)
	fsd=$(pgrep -P "${spid:-0}" virtiofsd | head -1)
	qemu=$(pgrep -P "${spid:-0}" qemu-system | head -1)
	[ -n "$fsd" ] && kill -9 "$fsd"
	for _ in $(seq 300); do [ "$(state fsk1)" = STOPPED ] && break; sleep 0.05; done
	st=$(state fsk1)
	code=$(C task ls | awk '$1 == "fsk1" { print $2 }')
	for _ in $(seq 100); do kill -0 "${qemu:-0}" 2>/dev/null || break; sleep 0.1; done
	kill -0 "${qemu:-0}" 2>/dev/null && qalive=yes || qalive=no
	logged=$(grep -c 'virtiofsd exited' "$tmp/containerd.log")
	C task delete fsk1 >"$tmp/del" 2>&1
	drc=$?
	C container rm fsk1 >/dev/null 2>&1
	left=$(leftovers)
	[ -n "$fsd" ] && [ "$st" = STOPPED ] && [ $qalive = no ] && [ "$logged" -ge 1 ] &&
		[ $drc -eq 0 ] && [ -z "$left" ] && pass virtiofsd-killed ||
		fail virtiofsd-killed "virtiofsd=$fsd state=$st qemu alive=$qalive logged=$logged delete rc=$drc $(cat "$tmp/del") left: $left"
else
	fail virtiofsd-killed "$(cat "$tmp/out")"
fi

# A recursive bind of a source on a shared mount (systemd's / is) with a
# submount: after the container, the host's submount is still there (the
# share's copy must not stay a peer of the host's mounts, or unmounting it
# unmounts the host's too).
mkdir -p "$tmp/shvol"
mount --bind "$tmp/shvol" "$tmp/shvol" && mount --make-shared "$tmp/shvol"
mkdir -p "$tmp/shvol/sub"
mount -t tmpfs -o size=1m husk-sub "$tmp/shvol/sub"
echo in-sub >"$tmp/shvol/sub/f"
out=$(RUN --rm --mount "type=bind,src=$tmp/shvol,dst=/v,options=rbind:rw" --rootfs "$R" hm4 \
	cat /v/sub/f 2>&1)
rc=$?
C container rm hm4 >/dev/null 2>&1
sleep 0.5
still=$(mountpoint -q "$tmp/shvol/sub" && cat "$tmp/shvol/sub/f")
[ $rc -eq 0 ] && [ "$out" = in-sub ] && [ "$still" = in-sub ] && pass host-mount-shared-source ||
	fail host-mount-shared-source "rc=$rc out=$out host's submount after: ${still:-gone}"
umount "$tmp/shvol/sub" 2>/dev/null
umount "$tmp/shvol" 2>/dev/null

# A change on the host reaches a running container: a Kubernetes
# ConfigMap's atomic update (a new ..data directory, the symlink renamed
# over the old one).
cm=$tmp/configmap
mkdir -p "$cm/..v1"
echo one >"$cm/..v1/key"
ln -s ..v1 "$cm/..data"
ln -s ..data/key "$cm/key"
if RUN -d --mount "type=bind,src=$cm,dst=/cm,options=rbind:ro" --rootfs "$R" hm2 \
	sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	first=$(C task exec --exec-id r1 hm2 cat /cm/key 2>&1)
	mkdir "$cm/..v2"
	echo two >"$cm/..v2/key"
	ln -s ..v2 "$cm/..data_tmp"
	mv -T "$cm/..data_tmp" "$cm/..data"
	second=
	for i in $(seq 20); do
		second=$(C task exec --exec-id "r2-$i" hm2 cat /cm/key 2>&1)
		[ "$second" = two ] && break
		sleep 0.5
	done
	C task kill -s SIGKILL hm2 >/dev/null 2>&1
	for _ in $(seq 100); do [ "$(state hm2)" = STOPPED ] && break; sleep 0.1; done
	C task delete hm2 >/dev/null 2>&1
	C container rm hm2 >/dev/null 2>&1
	left=$(leftovers)
	[ "$first" = one ] && [ "$second" = two ] && [ -z "$left" ] && pass host-mount-update ||
		fail host-mount-update "before: $first after: $second left: $left"
else
	fail host-mount-update "$(cat "$tmp/out")"
	C container rm hm2 >/dev/null 2>&1
fi

# A source that does not exist: refused as runc refuses it, naming the
# source, and nothing left.
out_runc=$(C run --rm --runtime io.containerd.runc.v2 --mount "type=bind,src=$tmp/nope,dst=/x,options=rbind:rw" \
	--rootfs "$R" hm3r true 2>&1)
rc_runc=$?
C container rm hm3r >/dev/null 2>&1
out=$(RUN --rm --mount "type=bind,src=$tmp/nope,dst=/x,options=rbind:rw" --rootfs "$R" hm3 true 2>&1)
rc=$?
C container rm hm3 >/dev/null 2>&1
left=$(leftovers)
[ $rc_runc -ne 0 ] && [ $rc -ne 0 ] && echo "$out" | grep -q "$tmp/nope" && [ -z "$left" ] &&
	pass host-mount-missing-source || fail host-mount-missing-source "runc rc=$rc_runc; husk rc=$rc: $out; left: $left"

# A Create that fails (no such program, a memory limit too small for
# anything to run) leaves no shim, VM, state or image hold, as runc-v2.
out=$(RUN --rm --rootfs "$R" fc1 /no/such/program 2>&1)
rc=$?
C container rm fc1 >/dev/null 2>&1
left=$(leftovers)
case "$rc $out" in
0\ *) fail create-fails-clean "ran: $out" ;;
*/no/such/program*) [ -z "$left" ] && pass create-fails-clean ||
	fail create-fails-clean "left after the failed create: $left" ;;
*) fail create-fails-clean "rc=$rc, the error does not name the program: $out" ;;
esac
out=$(RUN --rm --memory-limit 4096 --rootfs "$R" fc2 true 2>&1)
rc=$?
C container rm fc2 >/dev/null 2>&1
left=$(leftovers)
[ $rc -ne 0 ] && [ -z "$left" ] && pass create-small-memory-clean ||
	fail create-small-memory-clean "rc=$rc out=$out left: $left"
# A spec with a negative memory limit, as a runtime-specific config.
C oci spec >"$tmp/neg.json" 2>/dev/null || echo '{}' >"$tmp/neg.json"
python3 - "$tmp/neg.json" "$R" <<'PY'
import json, sys
p = sys.argv[1]
try:
    s = json.load(open(p))
except Exception:
    s = {}
s.setdefault("linux", {}).setdefault("resources", {})["memory"] = {"limit": -2}
s.setdefault("process", {})["args"] = ["true"]
s["root"] = {"path": sys.argv[2], "readonly": False}
json.dump(s, open(p, "w"))
PY
out=$(RUN --rm --config "$tmp/neg.json" fc3 2>&1)
rc=$?
C container rm fc3 >/dev/null 2>&1
left=$(leftovers)
case "$rc $out" in
0\ *) fail create-bad-spec-clean "ran: $out" ;;
*memory*) [ -z "$left" ] && pass create-bad-spec-clean || fail create-bad-spec-clean "left: $left" ;;
*) fail create-bad-spec-clean "rc=$rc, the error does not name the memory limit: $out" ;;
esac

# An exec of a program that does not exist fails (as runc: it names the
# path) instead of hanging, and costs the shim no file descriptor.
if RUN -d --rootfs "$R" fx1 sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	pid=$(shim_of fx1)
	before=$(fds "$pid")
	bad=
	for i in 1 2 3 4 5; do
		out=$(timeout 30 ctr --address "$sock" task exec --exec-id "x$i" fx1 /no/such 2>&1)
		rc=$?
		if [ $rc -eq 124 ]; then bad="exec $i hung"; break; fi
		case "$rc $out" in
		0\ *) bad="exec $i ran: $out"; break ;;
		*/no/such*) ;;
		*) bad="exec $i: rc=$rc, the error does not name /no/such: $out"; break ;;
		esac
	done
	# What the shim had in flight for an exec goes once its reply is out.
	sleep 0.5
	after=$(fds "$pid")
	# The container still works, and the ids can be used again.
	out=$(C task exec --exec-id x1 fx1 echo still-here 2>&1)
	[ -z "$bad" ] && [ "$before" = "$after" ] && [ "$out" = still-here ] && pass exec-missing-program ||
		fail exec-missing-program "${bad:-fds $before -> $after; then: $out}"
	C task kill -s SIGKILL fx1 >/dev/null 2>&1
	for _ in $(seq 100); do [ "$(state fx1)" = STOPPED ] && break; sleep 0.1; done
	C task delete fx1 >/dev/null 2>&1
	C container rm fx1 >/dev/null 2>&1
else
	fail exec-missing-program "$(cat "$tmp/out")"
fi

# A task left CREATED by a containerd stopped during its Create: Kill and
# Delete work on it as on runc's (kill, then delete; and delete --force).
# containerd is stopped as soon as the VM is booting, which is long before
# Create's reply (the boot takes ~1 s under TCG).
make_created() { # id
	RUN -d --rootfs "$R" "$1" sh -c 'echo started >/started; sleep 1000' >"$tmp/out-$1" 2>&1 &
	local run=$! spid=
	for _ in $(seq 300); do
		spid=$(shim_of "$1")
		[ -n "$spid" ] && pgrep -P "$spid" qemu-system >/dev/null && break
		sleep 0.02
	done
	containerd_down
	wait "$run" 2>/dev/null
	containerd_up || return 1
	for _ in $(seq 300); do
		[ "$(state "$1")" = CREATED ] && return 0
		sleep 0.1
	done
	return 1
}
if make_created cr1; then
	C task kill cr1 >"$tmp/kill" 2>&1
	krc=$?
	for _ in $(seq 100); do [ "$(state cr1)" = STOPPED ] && break; sleep 0.1; done
	st=$(state cr1)
	C task delete cr1 >"$tmp/del" 2>&1
	drc=$?
	C container rm cr1 >/dev/null 2>&1
	[ $krc -eq 0 ] && [ "$st" = STOPPED ] && [ $drc -eq 0 ] && [ -z "$(state cr1)" ] &&
		pass created-kill-delete ||
		fail created-kill-delete "kill rc=$krc $(cat "$tmp/kill"); state after kill: $st; delete rc=$drc $(cat "$tmp/del")"
else
	fail created-kill-delete "no CREATED task: state '$(state cr1)'; $(cat "$tmp/out-cr1")"
	C task delete --force cr1 >/dev/null 2>&1
	C container rm cr1 >/dev/null 2>&1
fi
if make_created cr2; then
	out=$(timeout 60 ctr --address "$sock" task delete --force cr2 2>&1)
	rc=$?
	C container rm cr2 >/dev/null 2>&1
	left=$(leftovers)
	[ $rc -eq 0 ] && [ -z "$(state cr2)" ] && [ -z "$left" ] && pass created-delete-force ||
		fail created-delete-force "rc=$rc $out; left: $left"
else
	fail created-delete-force "no CREATED task: state '$(state cr2)'"
	C task delete --force cr2 >/dev/null 2>&1
	C container rm cr2 >/dev/null 2>&1
fi

# A task that exits while containerd is down: its /tasks/exit reaches
# containerd once it is back (the shim queues and retries).
if RUN -d --rootfs "$R" ev1 sh -c 'sleep 2; exit 7' >"$tmp/out" 2>&1; then
	containerd_down
	sleep 4
	containerd_up
	ctr --address "$sock" events >"$tmp/events-restart" 2>&1 &
	ev_pid=$!
	bg_pids="$bg_pids $ev_pid"
	got=
	for _ in $(seq 150); do
		got=$(grep '/tasks/exit' "$tmp/events-restart" | grep '"ev1"')
		[ -n "$got" ] && break
		sleep 0.1
	done
	kill "$ev_pid" 2>/dev/null
	echo "$got" | grep -q '"exit_status":7' && pass exit-event-after-restart ||
		fail exit-event-after-restart "no /tasks/exit of ev1 (status 7) after the restart: $(cat "$tmp/events-restart" | head -5)"
	C task delete ev1 >/dev/null 2>&1
	C container rm ev1 >/dev/null 2>&1
else
	fail exit-event-after-restart "$(cat "$tmp/out")"
fi

# husk-vsockd killed: the VM is lost, its task stops (255) and QEMU goes at
# once, not at the task's delete; the shim log says why and shows the
# guest console's last lines.
if RUN -d --rootfs "$R" vk1 sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	spid=$(shim_of vk1)
	vsockd=$(pgrep -P "${spid:-0}" husk-vsockd | head -1)
	qemu=$(pgrep -P "${spid:-0}" qemu-system | head -1)
	[ -n "$vsockd" ] && kill -9 "$vsockd"
	for _ in $(seq 300); do [ "$(state vk1)" = STOPPED ] && break; sleep 0.05; done
	st=$(C task ls | awk '$1 == "vk1" { print $3 }')
	for _ in $(seq 100); do kill -0 "${qemu:-0}" 2>/dev/null || break; sleep 0.1; done
	kill -0 "${qemu:-0}" 2>/dev/null && qalive=yes || qalive=no
	logged=$(grep -c 'husk-vsockd exited' "$tmp/containerd.log")
	console=$(grep -c 'guest console (last lines)' "$tmp/containerd.log")
	C task delete vk1 >"$tmp/del" 2>&1
	drc=$?
	C container rm vk1 >/dev/null 2>&1
	[ -n "$vsockd" ] && [ "$st" = STOPPED ] && [ $qalive = no ] && [ "$logged" -ge 1 ] &&
		[ "$console" -ge 1 ] && [ $drc -eq 0 ] && pass vsockd-killed ||
		fail vsockd-killed "vsockd=$vsockd state=$st qemu alive=$qalive logged=$logged console=$console delete rc=$drc $(cat "$tmp/del")"
else
	fail vsockd-killed "$(cat "$tmp/out")"
fi

SB2="--annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=pod2"
IN2="--annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=pod2"
# A pod container's Create (here: a large rootfs image to build, then its
# disk's hot-add) does not hold up the pod's other calls: an exec into the
# sandbox is answered while that Create is still under way.
mkdir -p "$tmp/rootfs-big"
cp -a "$R"/. "$tmp/rootfs-big/"
head -c 300000000 /dev/urandom >"$tmp/rootfs-big/big"
if RUN -d $SB2 --rootfs "$R" pod2 sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	RUN --rm $IN2 --rootfs "$tmp/rootfs-big" pbig \
		sh -c 'echo joined' >"$tmp/pbig" 2>&1 &
	joiner=$!
	# The Create is under way in the shim once it builds the image.
	for _ in $(seq 600); do pgrep -f "mkfs.erofs.*rootfs-big" >/dev/null && break; sleep 0.02; done
	building=$(pgrep -f "mkfs.erofs.*rootfs-big" | head -1)
	out=$(C task exec --exec-id pe1 pod2 echo answered 2>&1)
	kill -0 "${building:-0}" 2>/dev/null && still=yes || still=no
	wait "$joiner"
	jrc=$?
	[ -n "$building" ] && [ "$out" = answered ] && [ $still = yes ] && [ $jrc -eq 0 ] &&
		[ "$(cat "$tmp/pbig")" = joined ] && pass create-does-not-block ||
		fail create-does-not-block "image build seen: ${building:-no}; exec: $out; the build still under way when the exec was answered: $still; joiner rc=$jrc $(cat "$tmp/pbig")"
	C task kill -s SIGKILL pod2 >/dev/null 2>&1
	for _ in $(seq 100); do [ "$(state pod2)" = STOPPED ] && break; sleep 0.1; done
	C task delete pod2 >/dev/null 2>&1
	C container rm pod2 pbig >/dev/null 2>&1
else
	fail create-does-not-block "sandbox: $(cat "$tmp/out")"
fi
rm -rf "$tmp/rootfs-big"

# ---- soak: 3 rounds of 8 parallel ctr run -d + exec + kill + delete ----
# Next to them a pod lives through the rounds: each round a container joins
# it and leaves, and an exec runs in its sandbox; its shim's file
# descriptors stay what they were after the first round.
SB3="--annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=pod3"
IN3="--annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=pod3"
soak_one() { # id
	local id=$1 out
	RUN -d --rootfs "$R" "$id" sh -c 'sleep 1000' >/dev/null 2>&1 || { echo "$id: run failed"; return; }
	out=$(C task exec --exec-id e1 "$id" sh -c 'echo soak-exec' 2>&1)
	[ "$out" = soak-exec ] || echo "$id: exec: $out"
	C task kill -s SIGKILL "$id" >/dev/null 2>&1 || echo "$id: kill failed"
	for _ in $(seq 200); do [ "$(state "$id")" = STOPPED ] && break; sleep 0.05; done
	C task delete "$id" >/dev/null 2>&1 || echo "$id: delete failed ($(state "$id"))"
	C container rm "$id" >/dev/null 2>&1 || echo "$id: container rm failed"
}
soak_bad=
pod_fds=
if RUN -d $SB3 --rootfs "$R" pod3 sh -c 'sleep 1000' >"$tmp/out" 2>&1; then
	pod_shim=$(shim_of pod3)
	t0=$(date +%s%N)
	for round in 1 2 3; do
		soak_pids=
		for i in $(seq 8); do
			soak_one "s$round-$i" >"$tmp/soak-$round-$i" 2>&1 &
			soak_pids="$soak_pids $!"
		done
		out=$(RUN --rm $IN3 --rootfs "$tmp/rootfs2" "pj$round" cat /marker 2>&1)
		[ "$out" = second-image ] || soak_bad="$soak_bad pod join $round: $out;"
		out=$(C task exec --exec-id "pe$round" pod3 echo pod-exec 2>&1)
		[ "$out" = pod-exec ] || soak_bad="$soak_bad pod exec $round: $out;"
		# Only these: containerd is a child of ours too.
		wait $soak_pids
		for i in $(seq 8); do
			[ -s "$tmp/soak-$round-$i" ] && soak_bad="$soak_bad $(cat "$tmp/soak-$round-$i");"
		done
		sleep 0.5 # the pod's left container's disk goes on the worker
		pod_fds="$pod_fds $(fds "$pod_shim")"
	done
	t1=$(date +%s%N)
	echo "INFO containerd: soak, 3 rounds of 8 parallel run+exec+kill+delete: $(((t1 - t0) / 1000000)) ms"
	C task kill -s SIGKILL pod3 >/dev/null 2>&1
	for _ in $(seq 100); do [ "$(state pod3)" = STOPPED ] && break; sleep 0.1; done
	C task delete pod3 >/dev/null 2>&1
	C container rm pod3 >/dev/null 2>&1
	left=$(leftovers)
	set -- $pod_fds
	[ -z "$soak_bad" ] && [ -z "$left" ] && [ "$2" = "$1" ] && [ "$3" = "$1" ] && pass soak ||
		fail soak "${soak_bad:-}${left:+ left: $left} pod shim fds by round:$pod_fds"
else
	fail soak "pod sandbox: $(cat "$tmp/out")"
fi

# ---- huskd: a container in a ready VM from the pool, by default ----
huskd_up 1
if huskd_wait_ready 1 120; then
	out=$(RUN --rm --rootfs "$R" pool1 sh -c 'echo pooled; exit 4' 2>"$tmp/err")
	rc=$?
	taken=$(huskd_field taken)
	huskd_wait_ready 1 120
	RUN -d --rootfs "$R" pool2 sleep 600 >/dev/null 2>"$tmp/err2"
	# The shim killed: its pooled VM goes with it (the keeper's lifeline).
	pool_shim=$(shim_of pool2)
	pool_vm=$(cat "$tmp/state/io.containerd.runtime.v2.task/default/pool2/husk-vm" 2>/dev/null)
	[ -n "$pool_shim" ] && kill -9 $pool_shim
	gone=
	for _ in $(seq 100); do
		[ -n "$pool_vm" ] && [ ! -e "$pool_vm" ] && ! pgrep -f -- "$pool_vm/" >/dev/null && gone=1 && break
		sleep 0.1
	done
	C task rm -f pool2 >/dev/null 2>&1
	C c rm pool2 >/dev/null 2>&1
	if [ "$rc" = 4 ] && [ "$out" = pooled ] && [ "$taken" -ge 1 ] && [ -n "$pool_shim" ] &&
		[ -n "$gone" ] && [[ "$pool_vm" == */pool-* ]]; then
		pass pool
	else
		fail pool "rc=$rc out='$out' taken=$taken shim '$pool_shim' vm '$pool_vm' gone='$gone': $(head -c 300 "$tmp/err" "$tmp/err2")"
	fi
else
	fail pool "huskd had no VM ready: $(tail -3 "$tmp/huskd.log")"
fi
huskd_down

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

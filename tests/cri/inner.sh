#!/bin/bash
# The part of tests/cri/run.sh that runs inside its private mount, network
# and pid namespaces, as PID 1 of the pid namespace (so its exit kills
# everything it started). Not meant to be run by hand.
# usage: inner.sh PARAMS_FILE
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=/dev/null
. "$1"
: "${TMP:?}" "${HERE:?}" "${BUILD:?}" "${HANDLER:?}" "${REGEX:?}" "${TEST_TIMEOUT:?}" "${CRI_TEST_BIN:?}"
: "${CRI_FP_SHIM_DIR:?}" "${CRI_FP_CNI:?}" "${CRI_IMAGES:?}" "${CRI_IMAGE_LIST:?}" "${LOG_LEVEL:?}"

say() { printf 'cri: %s\n' "$*" >&2; }
die() { printf 'cri: error: %s\n' "$*" >&2; exit 1; }

NS=$TMP/ns          # a tmpfs of this mount namespace: containerd's state, sockets
LOGS=$TMP/logs      # on the host's disk: read by run.sh afterwards
RESULTS=$TMP/results
SOCK=$NS/containerd.sock
# containerd's root is on disk, not tmpfs: CRI's writable-layer stats sum
# st_blocks, which tmpfs gives as 0 for directories (TestContainerStats and
# friends wait for a non-zero size). run.sh removes it afterwards.
ROOT=$TMP/root
STATE=$NS/state
RESTART_WAIT=3      # seconds between a containerd exit and its restart (upstream: 10)

# ------------------------------------------------------------ namespaces --
# Everything below vanishes with this mount namespace: containerd's state,
# /run (runc state, shim sockets, pinned pod netns), host-local's
# /var/lib/cni, and the tests' temporary files (t.TempDir(), pod log dirs:
# TMPDIR in $NS; not a tmpfs over /tmp, which would hide a checkout or
# build directory that lives there).
mount -t tmpfs -o mode=0755 husk-cri "$NS"
mount -t tmpfs -o mode=0755 husk-cri-run /run
if [ -d /var/lib/cni ]; then
	mount -t tmpfs -o mode=0755 husk-cri-cni /var/lib/cni
else
	# No /var/lib/cni on the host: an overlay on /var/lib makes one in here
	# only (a mount point made on the host would have to be removed there,
	# which detaches it from the namespaces of any other run).
	mkdir -p "$NS/varlib/upper" "$NS/varlib/work"
	mount -t overlay -o "lowerdir=/var/lib,upperdir=$NS/varlib/upper,workdir=$NS/varlib/work" \
		husk-cri-varlib /var/lib
	mkdir /var/lib/cni
fi
mkdir -m 1777 "$NS/tmp"
ip link set lo up
# TestImageLoad skips "when docker is not available": a docker CLI with no
# daemon behind it (as here) counts as not available, so it is hidden.
if command -v docker >/dev/null && ! timeout 10 docker info >/dev/null 2>&1; then
	for d in $(type -ap docker); do mount --bind /dev/null "$d"; done
fi
mkdir -p "$NS/cni/bin" "$NS/cni/net.d" "$NS/cni/net.d-fp" "$NS/opt" "$NS/husk" "$NS/work" "$ROOT" "$TMP/husk-images"

# CNI: Debian's plugins plus the failpoint bridge, in one private bin dir.
for p in /usr/lib/cni/*; do ln -s "$p" "$NS/cni/bin/"; done
ln -s "$CRI_FP_CNI" "$NS/cni/bin/cni-bridge-fp"
conflist() { # NAME TYPE BRIDGE SUBNET4 SUBNET6 [CAPABILITIES]
	cat <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$1",
  "plugins": [
    {
      "type": "$2",
      "bridge": "$3",
      "isGateway": true,
      "ipMasq": true,
      "promiscMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [ [{ "subnet": "$4" }], [{ "subnet": "$5" }] ],
        "routes": [ { "dst": "0.0.0.0/0" }, { "dst": "::/0" } ]
      }${6:+,
      \"capabilities\": $6}
    },
    { "type": "portmap", "capabilities": {"portMappings": true} }
  ]
}
JSON
}
conflist containerd-net bridge cni0 10.88.0.0/16 2001:4860:4860::/64 >"$NS/cni/net.d/10-containerd-net.conflist"
conflist containerd-net-failpoint cni-bridge-fp cni-fp 10.89.0.0/16 2001:4860:4861::/64 \
	'{"io.kubernetes.cri.pod-annotations": true}' >"$NS/cni/net.d-fp/10-containerd-net.conflist"

pause_image=$(sed -n 's/^Pause *= *"\(.*\)"/\1/p' "$CRI_IMAGE_LIST")
[ -n "$pause_image" ] || die "no Pause image in $CRI_IMAGE_LIST"
cat >"$NS/config.toml" <<TOML
version = 2
root = "$ROOT"
state = "$STATE"
[grpc]
  address = "$SOCK"
[debug]
  level = "$LOG_LEVEL"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NS/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # no CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj below ours
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.husk]
      runtime_type = "io.containerd.husk.v2"
    # what upstream's script/test/utils.sh adds for sandbox_run_rollback_test.go
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc-fp]
      runtime_type = "runc-fp.v1"
      cni_conf_dir = "$NS/cni/net.d-fp"
      cni_max_conf_num = 1
      pod_annotations = ["io.containerd.runtime.v2.shim.failpoint.*"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$NS/cni/bin"
    conf_dir = "$NS/cni/net.d"
    max_conf_num = 1
TOML

# ------------------------------------------------------------- shutdown --
# At the end, or on SIGTERM/SIGINT (run.sh sends SIGTERM when it is stopped):
# tasks deleted through their shims first, so runc removes the cgroups it
# made (cgroupfs is the host's); the rest dies with this pid namespace when
# this script, its PID 1, exits.
test_pid='' reg_pid='' keep_pid=''
shutdown() {
	local ns task
	trap - INT TERM
	[ -n "$test_pid" ] && kill -TERM "$test_pid" 2>/dev/null
	if [ -n "$keep_pid" ]; then
		for ns in $(C namespaces ls -q 2>/dev/null); do
			for task in $(C -n "$ns" tasks ls -q 2>/dev/null); do
				timeout 60 ctr --address "$SOCK" -n "$ns" tasks delete -f "$task" >/dev/null 2>&1 || true
			done
		done
		touch "$NS/stop"
		pkill -TERM -x containerd 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$keep_pid" 2>/dev/null || break
			sleep 0.2
		done
	fi
	[ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null
	return 0
}
trap 'say "interrupted: stopping"; shutdown; exit 130' INT TERM
C() { ctr --address "$SOCK" "$@"; }

# ------------------------------------------------------------- registry --
/usr/bin/python3 "$HERE/registry.py" "$CRI_IMAGES" 5000 2>>"$LOGS/registry.log" &
reg_pid=$!
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break
	sleep 0.1
done
(exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null || die "the image registry did not start: $(tail -3 "$LOGS/registry.log")"

# ------------------------------------------------------------ containerd --
# Kept alive as upstream's CI does: tests kill it (pkill -x containerd, which
# sees only this pid namespace) and wait for it to come back.
export PATH="$BUILD/bin:$CRI_FP_SHIM_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export HUSK_STATE_DIR=$NS/husk HUSK_IMAGE_CACHE=$TMP/husk-images TMPDIR=$NS/tmp
keepalive() {
	set +e
	while [ ! -e "$NS/stop" ]; do
		echo "=== containerd start $(date +%T.%N)" >>"$LOGS/containerd.log"
		containerd --config "$NS/config.toml" >>"$LOGS/containerd.log" 2>&1
		echo "=== containerd exit $? $(date +%T.%N)" >>"$LOGS/containerd.log"
		[ -e "$NS/stop" ] && break
		sleep "$RESTART_WAIT"
	done
}
keepalive &
keep_pid=$!
containerd_ready() { # SECONDS
	local _
	for _ in $(seq $(($1 * 5))); do
		C version >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}
containerd_ready 30 || die "containerd did not come up: $(tail -5 "$LOGS/containerd.log")"

# --------------------------------------------------------------- images --
# Imported before the run and again before each test when a test removed
# one (tests remove images; upstream's CI pulls them back, as the registry
# above also allows).
ensure_images() {
	local have name short tar
	have=$(C -n k8s.io images ls -q 2>/dev/null) || return 1
	while read -r name _; do
		grep -qxF "$name" <<<"$have" && continue
		short=${name##*/}
		short=${short%%:*}
		tar=$CRI_IMAGES/$short.tar
		[ -f "$tar" ] || { say "no archive $tar for $name"; return 1; }
		C -n k8s.io images import "$tar" >>"$LOGS/import.log" 2>&1 ||
			{ say "ctr images import $tar failed: $(tail -2 "$LOGS/import.log")"; return 1; }
	done <"$CRI_IMAGES/refs"
}
t0=$(date +%s%N)
ensure_images || die "importing the images failed"
say "containerd up, images imported in $((($(date +%s%N) - t0) / 1000000)) ms"

# ---------------------------------------------------------------- tests --
cd "$NS/work"
suite_args=(--cri-endpoint "unix://$SOCK" --cri-root "$ROOT/io.containerd.grpc.v1.cri"
	--runtime-handler "$HANDLER" --containerd-bin containerd --image-list "$CRI_IMAGE_LIST")
"$CRI_TEST_BIN" -test.list "$REGEX" "${suite_args[@]}" >"$LOGS/list.txt" 2>"$LOGS/list.err" ||
	die "listing the tests failed: $(tail -5 "$LOGS/list.err")"
# make bench's figures (TestHuskBench*, tests/cri/husk_bench_test.go) only
# when the regex names them: never in make check.
bench_filter='^TestHuskBench'
case $REGEX in *TestHuskBench*) bench_filter='^$' ;; esac
mapfile -t tests < <(grep -E '^(Test|Example|Benchmark)' "$LOGS/list.txt" | grep -v '^Benchmark' |
	grep -v -E "$bench_filter" || true)
[ ${#tests[@]} -gt 0 ] || die "no test matches '$REGEX'"
say "${#tests[@]} tests, handler '$HANDLER', ${TEST_TIMEOUT}s each at most"

# failure_lines LOG: the first lines that say why a test failed: testify's
# "Error:" blocks, panics and time-outs; else the last lines the test logged
# (t.Fatalf's message is among them).
failure_lines() {
	awk '
	function out(l) { if (n < 3) { sub(/^[ \t]+/, "", l); print substr(l, 1, 400); n++ } }
	function flush() { if (inerr || pending) out(msg); inerr = pending = 0 }
	/^[ \t]*Error:/ { flush(); sub(/^[ \t]*Error:[ \t]*/, ""); msg = $0; inerr = 1; next }
	inerr && /^[ \t]*Test:/ { inerr = 0; pending = 1; next }
	pending && /^[ \t]*Messages:/ { sub(/^[ \t]*Messages:[ \t]*/, ""); msg = msg " (" $0 ")"; flush(); next }
	pending { flush() }
	inerr { sub(/^[ \t]+/, ""); if (length(msg) < 400) msg = msg " " $0; next }
	/^panic:|test timed out after/ { out($0); next }
	/^[ \t]+[A-Za-z0-9_]+_test\.go:[0-9]+: / { last[++k] = $0 }
	END { flush(); if (n == 0) for (i = (k > 2 ? k - 2 : 1); i <= k; i++) out(last[i]) }
	' "$1"
}

: >"$RESULTS"
for t in "${tests[@]}"; do
	containerd_ready 40 || say "containerd is not answering before $t"
	ensure_images || say "could not restore the images before $t"
	log=$LOGS/tests/$t.log
	mkdir -p "$LOGS/tests"
	t_s=$(date +%s%N)
	# In the background: a signal's trap runs at once, not after the test.
	timeout -k 20 $((TEST_TIMEOUT + 30)) "$CRI_TEST_BIN" -test.run "^${t}\$" -test.v \
		-test.timeout "${TEST_TIMEOUT}s" "${suite_args[@]}" >"$log" 2>&1 </dev/null &
	test_pid=$!
	rc=0
	wait "$test_pid" || rc=$?
	test_pid=
	secs=$(awk -v n="$(($(date +%s%N) - t_s))" 'BEGIN { printf "%.1f", n / 1e9 }')
	# Go's own verdicts, subtests included ("    --- PASS: TestX/sub (0.01s)").
	verdict=$(sed -n -E "s/^--- (PASS|FAIL|SKIP): ${t} .*/\\1/p" "$log" | tail -n 1)
	if [ -z "$verdict" ]; then
		verdict=FAIL
		case $rc in
		124 | 137) why="killed after $((TEST_TIMEOUT + 30)) s" ;;
		*) why="no verdict from the test binary (exit $rc)" ;;
		esac
		grep -q 'test timed out after' "$log" && why="timed out after ${TEST_TIMEOUT}s"
		echo "$why" >"$LOGS/tests/$t.why"
	fi
	echo "$verdict $t ${secs}s" >>"$RESULTS"
	sed -n -E 's/^ +--- (PASS|FAIL|SKIP): ([^ ]+) \(([0-9.]+s)\).*/\1 \2 \3/p' "$log" >>"$RESULTS"
	if [ "$verdict" = FAIL ]; then
		{ cat "$LOGS/tests/$t.why" 2>/dev/null; failure_lines "$log"; } >"$LOGS/tests/$t.fail" || true
	fi
	printf '%s %s (%ss)\n' "$verdict" "$t" "$secs" >&2
done

shutdown
exit 0

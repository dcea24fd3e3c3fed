#!/bin/bash
# Runs containerd's own CRI integration tests (built by tests/cri/build-suite.sh)
# against a private containerd (Debian's) started here, inside private mount,
# network and pid namespaces, with runtime handler runc (the reference) or husk
# (io.containerd.husk.v2 from BUILD/bin). Each top-level test runs as its own
# invocation of the test binary, with a time limit. Prints one line per test
# (PASS/FAIL/SKIP name) and a summary; stops everything it started and leaves
# nothing behind (no process, mount, netns, cgroup, temp dir).
# Exit status: 0 when the run happened, whatever the tests said; 1 when it
# could not run; 2 on bad usage.
#
# usage: tests/cri/run.sh BUILD [--handler runc|husk] [--run REGEX]
#            [--results FILE] [--suite DIR] [--timeout SECS] [--logs DIR] [--debug]
#   BUILD          husk build dir (e.g. build-lean): BUILD/bin goes first in
#                  containerd's PATH, so the husk handler uses
#                  BUILD/bin/containerd-shim-husk-v2 (and its kernel, initramfs)
#   --handler H    runtime handler the tests use (default runc)
#   --run REGEX    only the tests whose names match (Go -test.run syntax)
#   --results FILE write "PASS|FAIL|SKIP name time" lines there (subtests too,
#                  named Test/sub), for comparing handlers
#   --suite DIR    a build-suite.sh OUTDIR (default: build-suite.sh is run
#                  into ${HUSK_CACHE:-/var/cache/husk}/cri/suite, cached)
#   --timeout SECS per-test limit (default 300)
#   --logs DIR     keep the logs there (containerd, registry, one per test)
#   --debug        containerd at log level debug
set -euo pipefail
shopt -s inherit_errexit

die() { printf 'cri: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '/^# usage:/,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
[ $# -ge 1 ] || usage
case $1 in -h | --help) usage ;; esac
[ -d "$1" ] || die "BUILD dir $1 does not exist"
BUILD=$(cd "$1" && pwd)
shift
HANDLER=runc REGEX='.*' RESULTS_OUT='' SUITE='' TEST_TIMEOUT=300 LOGS_OUT='' LOG_LEVEL=info
while [ $# -gt 0 ]; do
	case $1 in
	--handler) HANDLER=${2:?--handler needs a value}; shift 2 ;;
	--run) REGEX=${2:?--run needs a value}; shift 2 ;;
	--results) RESULTS_OUT=${2:?--results needs a value}; shift 2 ;;
	--suite) SUITE=${2:?--suite needs a value}; shift 2 ;;
	--timeout) TEST_TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
	--logs) LOGS_OUT=${2:?--logs needs a value}; shift 2 ;;
	--debug) LOG_LEVEL=debug; shift ;;
	-h | --help) usage ;;
	*) echo "cri: unknown argument $1" >&2; usage ;;
	esac
done
case $HANDLER in runc | husk) ;; *) die "--handler must be runc or husk, not '$HANDLER'" ;; esac
case $TEST_TIMEOUT in '' | *[!0-9]*) die "--timeout takes whole seconds" ;; esac

# ------------------------------------------------------------ prerequisites --
[ "$(id -u)" = 0 ] || die "needs root (namespaces, containerd, runc)"
for t in unshare ip pkill pidof timeout ctr containerd runc jq flock; do
	command -v "$t" >/dev/null || die "$t is missing (tests/cri/build-suite.sh installs what the suite needs)"
done
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 is missing (apt-get install python3)"
for p in bridge host-local loopback portmap; do
	[ -x "/usr/lib/cni/$p" ] || die "/usr/lib/cni/$p is missing (apt-get install containernetworking-plugins)"
done
if [ "$HANDLER" = husk ]; then
	for f in bin/containerd-shim-husk-v2 bin/husk-vsockd kernel/bzImage initramfs.cpio.gz; do
		[ -e "$BUILD/$f" ] || die "$BUILD/$f is missing (build husk first: make BUILD=...)"
	done
fi
if [ -z "$SUITE" ]; then
	SUITE=${HUSK_CACHE:-/var/cache/husk}/cri/suite
	"$HERE/build-suite.sh" "$SUITE" >/dev/null || die "tests/cri/build-suite.sh $SUITE failed"
fi
[ -f "$SUITE/suite.env" ] || die "$SUITE/suite.env is missing (run tests/cri/build-suite.sh $SUITE)"
# shellcheck source=/dev/null
. "$SUITE/suite.env"
for f in "$CRI_TEST_BIN" "$CRI_FP_SHIM_DIR/containerd-shim-runc-fp-v1" "$CRI_FP_CNI" "$CRI_IMAGE_LIST" \
	"$CRI_IMAGES/refs"; do
	[ -e "$f" ] || die "$f is missing (run tests/cri/build-suite.sh $SUITE again)"
done

# -------------------------------------------------------------------- run --
# The temp dir is on disk (containerd's root goes there), outside /run and
# /var/lib/cni, on which the namespaces mount tmpfs of their own.
TMP=$(mktemp -d /var/tmp/husk-cri-XXXXXX)
mkdir -p "$TMP/ns" "$TMP/logs"
# cgroups runc makes on the (shared) cgroupfs: new ones named k8s.io or
# after a container id of our containerd's log are removed when empty (tasks
# are deleted cleanly first, so normally there are none).
cgroups_now() { find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort; }
cgroups_now >"$TMP/cgroups.before"
ns_pid='' ns_ino='' child=''
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
# Waits until no process is left in the tests' pid namespace (its mounts
# and network namespace go with the last one).
ns_wait_empty() {
	local p left
	[ -n "$ns_ino" ] || return 0
	for _ in $(seq 100); do
		left=
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns_ino" ] && { left=${p#/proc/}; break; }
		done
		[ -z "$left" ] && return 0
		sleep 0.1
	done
	echo "cri: warning: process $left of the tests' pid namespace is still there" >&2
}
cleanup() {
	local rc=$? p b ids
	trap - EXIT INT TERM
	if [ -n "$ns_pid" ] && alive "$ns_pid"; then
		# Stopped early: inner.sh (PID 1 there) stops its tasks and
		# containerd on SIGTERM. unshare ignores SIGTERM; SIGKILL to it
		# (--kill-child) kills its child, and with it the pid namespace.
		echo "cri: stopping the tests' namespaces" >&2
		if [ -n "$child" ]; then
			kill -TERM "$child" 2>/dev/null || true
			for _ in $(seq 900); do alive "$ns_pid" || break; sleep 0.1; done
		fi
		kill -KILL "$ns_pid" 2>/dev/null || true
		wait "$ns_pid" 2>/dev/null || true
	fi
	ns_wait_empty
	ids=$(grep -ohE '[0-9a-f]{64}' "$TMP/logs/containerd.log" 2>/dev/null | sort -u || true)
	cgroups_now >"$TMP/cgroups.after"
	comm -13 "$TMP/cgroups.before" "$TMP/cgroups.after" | sort -r | while read -r p; do
		b=${p##*/}
		if [ "$b" = k8s.io ] || grep -qxF "$b" <<<"$ids"; then
			rmdir "$p" 2>/dev/null || echo "cri: warning: cgroup $p left behind (not empty)" >&2
		fi
	done
	if [ -n "$LOGS_OUT" ] && [ -d "$TMP/logs" ]; then
		mkdir -p "$LOGS_OUT" && cp -a "$TMP/logs/." "$LOGS_OUT/" || true
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$TMP/params" <<ENV
TMP='$TMP'
HERE='$HERE'
BUILD='$BUILD'
HANDLER='$HANDLER'
REGEX='${REGEX//\'/}'
TEST_TIMEOUT='$TEST_TIMEOUT'
LOG_LEVEL='$LOG_LEVEL'
CRI_TEST_BIN='$CRI_TEST_BIN'
CRI_FP_SHIM_DIR='$CRI_FP_SHIM_DIR'
CRI_FP_CNI='$CRI_FP_CNI'
CRI_IMAGES='$CRI_IMAGES'
CRI_IMAGE_LIST='$CRI_IMAGE_LIST'
ENV
echo "cri: containerd $(containerd --version | awk '{print $3}'), suite from containerd source $CRI_CONTAINERD_SOURCE_VERSION, handler $HANDLER, build $BUILD" >&2
t_start=$(date +%s)
unshare --mount --propagation private --net --pid --fork --kill-child --mount-proc \
	-- /bin/bash "$HERE/inner.sh" "$TMP/params" &
ns_pid=$!
for _ in $(seq 50); do
	child=$(pgrep -P "$ns_pid" 2>/dev/null | head -n 1 || true)
	[ -n "$child" ] && ns_ino=$(readlink "/proc/$child/ns/pid" 2>/dev/null || true)
	[ -n "$ns_ino" ] && break
	sleep 0.1
done
set +e
wait "$ns_pid"
inner_rc=$?
set -e
ns_pid=
ns_wait_empty
t_run=$(($(date +%s) - t_start))

# ----------------------------------------------------------------- report --
[ -f "$TMP/results" ] || die "the run did not happen (exit $inner_rc): see the messages above"
[ "$inner_rc" = 0 ] || echo "cri: warning: the namespace side exited $inner_rc" >&2
echo "== CRI integration tests, handler $HANDLER (containerd $CRI_CONTAINERD_SOURCE_VERSION)"
pass=0 fail=0 skip=0 spass=0 sfail=0 sskip=0
while read -r verdict name secs; do
	case $name in
	*/*)
		case $verdict in PASS) spass=$((spass + 1)) ;; FAIL) sfail=$((sfail + 1)) ;; SKIP) sskip=$((sskip + 1)) ;; esac
		continue ;;
	esac
	case $verdict in PASS) pass=$((pass + 1)) ;; FAIL) fail=$((fail + 1)) ;; SKIP) skip=$((skip + 1)) ;; esac
	echo "$verdict $name ($secs)"
	if [ "$verdict" = FAIL ] && [ -s "$TMP/logs/tests/$name.fail" ]; then
		sed 's/^/    /' "$TMP/logs/tests/$name.fail"
	fi
done <"$TMP/results"
echo "== handler $HANDLER: $pass passed, $fail failed, $skip skipped of $((pass + fail + skip)) tests" \
	"(subtests: $spass passed, $sfail failed, $sskip skipped); ${t_run} s"
if [ -n "$RESULTS_OUT" ]; then
	cp "$TMP/results" "$RESULTS_OUT" || die "cannot write $RESULTS_OUT"
fi
exit 0

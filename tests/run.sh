#!/bin/bash
# Runs every test suite and prints one closing line:
#   check: N passed, M failed, K skipped
# A suite that crashes or exits non-zero without reporting a failed test
# counts as one failure. Exit status is non-zero if anything failed.
# usage: tests/run.sh BUILD_DIR
set -u
build=$1
log_dir=$build/test-logs
mkdir -p "$log_dir"
passed=0 failed=0 skipped=0
# CI shows only the end of the output, so every failure is repeated there.
failures=$log_dir/failures.txt
: >"$failures"

# cmocka suites: one "[       OK ] name" / "[  FAILED  ] name" line per test.
run_cmocka() { # name binary
	local name=$1 bin=$2 log=$log_dir/$1.log
	echo "== $name"
	timeout 600 "$bin" >"$log" 2>&1
	local rc=$?
	local ok fail skip
	ok=$(grep -c '^\[       OK \] ' "$log")
	fail=$(grep -E '^\[  (FAILED|ERROR) +\] [A-Za-z_]' "$log" | grep -vc 'test(s)')
	skip=$(grep -E '^\[  SKIPPED \] [A-Za-z_]' "$log" | grep -vc 'test(s)')
	if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
		echo "  $name exited with status $rc:"
	fi
	if [ "$fail" -gt 0 ]; then
		grep -v '^\[       OK \]\|^\[ RUN' "$log" | sed 's/^/  /' | head -80
		[ "$rc" -ne 0 ] && echo "$name: exited with status $rc" >>"$failures"
		# cmocka prints the failed assertion just before "[  FAILED  ] test".
		grep -B2 -E '^\[  (FAILED|ERROR) +\] [A-Za-z_]' "$log" | grep -v 'test(s)\|^--' |
			sed "s/^/$name: /" | head -12 >>"$failures"
	fi
	echo "  $ok passed, $fail failed, $skip skipped"
	passed=$((passed + ok)) failed=$((failed + fail)) skipped=$((skipped + skip))
}

# Suites that print "PASS name" / "FAIL name: why" / "SKIP name: why" lines.
run_lines() { # name command...
	local name=$1 log=$log_dir/$1.log
	shift
	echo "== $name"
	timeout 1200 "$@" >"$log" 2>&1
	local rc=$?
	local ok fail skip
	ok=$(grep -c '^PASS ' "$log")
	fail=$(grep -c '^FAIL ' "$log")
	skip=$(grep -c '^SKIP ' "$log")
	if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
		echo "  $name exited with status $rc"
	fi
	grep -E '^(FAIL|SKIP) ' -A40 "$log" | sed 's/^/  /' | head -120
	[ "$rc" -ne 0 ] && [ "$(grep -c '^FAIL ' "$log")" -eq 0 ] && echo "$name: exited with status $rc" >>"$failures"
	grep -E '^FAIL ' "$log" | cut -c1-200 | sed "s/^/$name: /" | head -12 >>"$failures"
	echo "  $ok passed, $fail failed, $skip skipped"
	passed=$((passed + ok)) failed=$((failed + fail)) skipped=$((skipped + skip))
}

# UNIT_TESTS comes from tests/tests.mk, so a test that was not built fails.
for t in ${UNIT_TESTS:?set by make check}; do
	run_cmocka "unit-$t" "$build/test/unit-$t"
done
# AGENT_TEST=1 from tests/tests.mk once the agent is built: a missing binary fails.
if [ -n "${AGENT_TEST:-}" ]; then
	HUSK_AGENT=$build/test/husk-agent run_cmocka agent "$build/test/agent-test"
fi
HUSK_KERNEL=$build/kernel/bzImage HUSK_INITRD=$build/initramfs.cpio.gz \
	HUSK_VSOCKD=$build/bin/husk-vsockd run_cmocka libhusk-vm "$build/test/libhusk-vm"
run_lines ttrpc-interop tests/interop/run.sh "$build"
run_lines fuzz tests/fuzz/run.sh "$build"
run_lines boot tests/boot/boot-test.sh "$build"
run_lines initramfs tests/initramfs/run.sh "$build"
run_lines vsock tests/vsock/run.sh "$build"
run_lines vm tests/vm/run.sh "$build"
run_lines e2e tests/e2e/run.sh "$build"
run_lines e2e-stock-kernel tests/e2e/stock.sh "$build"
run_lines pool tests/pool/run.sh "$build"
run_lines vhost-vsock tests/vhost/run.sh "$build"
run_lines containerd tests/containerd/run.sh "$build"
run_lines cri tests/cri/check.sh "$build"
run_lines jail tests/jail/run.sh "$build"
run_lines fresh-setup tests/fresh/run.sh "$build"
if [ -n "${AGENT_TEST:-}" ]; then
	run_lines go-task-client tests/agent/go-lifecycle.sh "$build"
	run_lines agent-net tests/agent/net.sh "$build"
fi

echo
if [ -s "$failures" ]; then
	echo "failures (full logs in $log_dir):"
	head -40 "$failures" | sed 's/^/  /'
fi
echo "check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

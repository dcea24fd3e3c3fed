#!/bin/bash
# make check's fuzzing: each libFuzzer target runs a fixed number of inputs
# from a fixed seed (so a run is repeatable; `make fuzz` explores for longer)
# over its seeds and regressions, into a scratch corpus. A crash, leak or
# sanitizer report fails the target and names the input libFuzzer saved.
# usage: tests/fuzz/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
RUNS=${FUZZ_RUNS:-200000}
tmp=$(mktemp -d /tmp/husk-fuzz-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

fuzz() { # name max_len corpus-dirs...
	local name=$1 max_len=$2 bin=$build/fuzz/fuzz-$1
	shift 2
	if [ ! -x "$bin" ]; then
		echo "FAIL fuzz-$name: $bin is missing (make builds it with clang)"
		return
	fi
	mkdir -p "$tmp/$name"
	(cd "$tmp" && "$bin" -seed=1 -timeout=20 -artifact_prefix="$build/fuzz/$name-" -runs="$RUNS" -max_len="$max_len" "$tmp/$name" "$@") \
		>"$tmp/$name.log" 2>&1
	local rc=$?
	if [ $rc -eq 0 ] && grep -q "^Done $RUNS runs" "$tmp/$name.log"; then
		echo "PASS fuzz-$name-$RUNS-inputs"
	else
		echo "FAIL fuzz-$name: status $rc; $(grep -E 'ERROR|SUMMARY|Test unit written' "$tmp/$name.log" | head -4 | tr '\n' ' ')"
		tail -30 "$tmp/$name.log"
	fi
}

fuzz frame 65536 "$here/seeds-frame" "$here/regressions"
fuzz virtq 4096 "$here/seeds-virtq"

#!/bin/bash
# make check's fuzzing: each libFuzzer target runs a fixed number of inputs
# from a fixed seed (so a run is repeatable; `make fuzz` explores for longer)
# over its seeds and regressions, into a scratch corpus. A crash, leak or
# sanitizer report fails the target and names the input libFuzzer saved.
# usage: tests/fuzz/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
# Inputs per target: vconn's inputs move up to 256 KiB each, so it gets fewer.
RUNS=${FUZZ_RUNS:-200000}
VCONN_RUNS=${FUZZ_RUNS:-60000}
tmp=$(mktemp -d /tmp/husk-fuzz-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

fuzz() { # name max_len runs corpus-dirs...
	local name=$1 max_len=$2 runs=$3 bin=$build/fuzz/fuzz-$1
	shift 3
	if [ ! -x "$bin" ]; then
		echo "FAIL fuzz-$name: $bin is missing (make builds it with clang)"
		return
	fi
	mkdir -p "$tmp/$name"
	(cd "$tmp" && "$bin" -seed=1 -timeout=20 -artifact_prefix="$build/fuzz/$name-" -runs="$runs" -max_len="$max_len" "$tmp/$name" "$@") \
		>"$tmp/$name.log" 2>&1
	local rc=$?
	if [ $rc -eq 0 ] && grep -q "^Done $runs runs" "$tmp/$name.log"; then
		echo "PASS fuzz-$name-$runs-inputs"
	else
		echo "FAIL fuzz-$name: status $rc; $(grep -E 'ERROR|SUMMARY|Test unit written' "$tmp/$name.log" | head -4 | tr '\n' ' ')"
		tail -30 "$tmp/$name.log"
	fi
}

fuzz frame 65536 "$RUNS" "$here/seeds-frame" "$here/regressions"
fuzz virtq 4096 "$RUNS" "$here/seeds-virtq"
fuzz vconn 4096 "$VCONN_RUNS" "$here/seeds-vconn"

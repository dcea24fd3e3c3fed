#!/bin/bash
# containerd's CRI integration suite (and husk's own CRI tests, compiled
# into it) with runc, the reference, then with husk, on the same machine.
# Every test that passes with runc must pass with husk, except those in
# tests/cri/exceptions.txt (host-side facts a VM runtime cannot give).
# Prints PASS/FAIL/SKIP lines for tests/run.sh.
# usage: tests/cri/check.sh BUILD
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=$1
tmp=$(mktemp -d /tmp/husk-cri-check-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for h in runc husk; do
	if ! "$here/run.sh" "$build" --handler "$h" --results "$tmp/$h" --timeout 240 \
		--logs "$build/test-logs/cri-$h" >"$tmp/$h.out" 2>&1; then
		tail -20 "$tmp/$h.out"
		echo "FAIL cri-$h: the suite did not run (tests/cri/run.sh, logs in $build/test-logs/cri-$h)"
		exit 1
	fi
	grep '^== handler' "$tmp/$h.out" | sed 's/^/INFO /'
done
n=$(grep -c '^PASS [^/ ]* ' "$tmp/runc")
if [ "$n" -lt 20 ]; then
	echo "FAIL cri-reference: only $n tests passed with runc"
	exit 1
fi
result() { awk -v t="$2" '$2 == t { print $1 }' "$1"; }
why() { # handler test: the first failure lines of its log
	sed -n '/Error:/{n;p}' "$build/test-logs/cri-$1/tests/$2.log" 2>/dev/null | head -2 | tr -s ' \t\n' ' '
}
for t in $(awk '$2 !~ /\// { print $2 }' "$tmp/runc"); do
	r=$(result "$tmp/runc" "$t")
	k=$(result "$tmp/husk" "$t")
	exc=$(awk -F'\t' -v t="$t" '$1 == t { print $2 }' "$here/exceptions.txt")
	if [ "$r" != PASS ]; then
		echo "SKIP cri-$t: runc ${r:-did not run it} here too (husk: ${k:-not run})"
	elif [ "$k" = PASS ]; then
		echo "PASS cri-$t"
	elif [ -n "$exc" ]; then
		echo "SKIP cri-$t: known exception: $exc"
	else
		echo "FAIL cri-$t: passes with runc, ${k:-not run} with husk: $(why husk "$t")"
	fi
done

#!/bin/bash
# The set-up scripts as a machine that never built husk runs them: `make
# demo` and `make check` start with mk/deps.sh (adding a deb-src entry) and
# mk/musl-sysroot.sh (building the sysroot into an empty cache), and CI,
# whose cache and deb-src entry exist, never takes those paths otherwise.
# Prints PASS/FAIL/SKIP lines.
#
# In a private mount namespace (tests/fresh/ns.sh: empty tmpfs over
# /var/cache/husk, our deb-src entry and apt's source indexes hidden,
# nothing from /usr/local/bin, a clean environment) tests/fresh/steps.sh
# runs:
#   deps-deb-src          mk/deps.sh mk/packages.txt adds husk-src.* and
#                         fetches the source indexes
#   sysroot-from-scratch  (deb-src and cache forgotten again) mk/musl-sysroot.sh
#                         adds the entry itself and builds the sysroot into
#                         the empty cache (about 2 to 3 minutes)
#   sysroot-links         a static program using every library it holds
#                         links and runs
#   make-sysroot-stamp    make's deps and sysroot stamps on a fresh BUILD
#                         (a cache hit)
# and then, outside:
#   no-leak               /etc/apt, apt's lists and husk's sysroot cache are
#                         as they were, and no probe written inside shows up
#
# The guest kernel (about 6 minutes) and the stock kernel are not built
# here; `tests/fresh/ns.sh make BUILD=DIR demo` runs all of `make demo` so.
#
# usage: tests/fresh/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd) || exit 1
src=$(cd "$(dirname "$0")/../.." && pwd)
logs=$build/test-logs/fresh
probe=husk-fresh-probe-$$.disabled  # (.disabled: apt ignores it silently)

if [ "$(id -u)" != 0 ]; then
	echo "SKIP fresh-setup: needs root (mount namespaces; the scripts' apt steps)"
	exit 0
fi
if ! command -v unshare >/dev/null || ! command -v findmnt >/dev/null; then
	echo "FAIL setup: unshare or findmnt missing (Debian packages util-linux, mount)"
	exit 1
fi
rm -rf "$logs"
mkdir -p "$logs"

# What must not change: everything under /etc/apt (names, modes, sizes,
# times, contents), apt's lists and husk's sysroot cache (names, inodes,
# sizes, times two levels down). Only the sysroot cache: the steps touch
# nothing else there, and a kernel build elsewhere may fill the rest.
snapshot() {
	find /etc/apt /var/lib/apt/lists -printf '%p %y %m %s %T@ %i\n' 2>/dev/null | LC_ALL=C sort
	find /etc/apt -type f -exec sha256sum {} + 2>/dev/null | LC_ALL=C sort
	find /var/cache/husk/musl-sysroot -maxdepth 2 -printf '%p %y %s %T@ %i\n' 2>/dev/null | LC_ALL=C sort
}
snapshot >"$logs/before.txt"

# The probes: steps.sh writes one into each hidden path; none may exist
# outside afterwards.
probe_dirs=(/var/cache/husk /var/cache/apt /etc/apt/sources.list.d /var/lib/apt/lists /usr/local/bin)
"$src/tests/fresh/ns.sh" "$src/tests/fresh/steps.sh" "$logs" "$probe" "${probe_dirs[@]}" 2>"$logs/ns.err"
rc=$?
if [ "$rc" != 0 ]; then
	echo "FAIL namespace: tests/fresh/ns.sh or the steps exited with status $rc"
	sed 's/^/    /' "$logs/ns.err" | tail -n 20
fi

snapshot >"$logs/after.txt"
leaked=
for d in "${probe_dirs[@]}"; do
	if [ -e "$d/$probe" ]; then
		leaked="$leaked $d/$probe"
		rm -f "$d/$probe"
	fi
done
if [ -n "$leaked" ]; then
	echo "FAIL no-leak: files written in the namespace are on the real file system:$leaked"
elif ! cmp -s "$logs/before.txt" "$logs/after.txt"; then
	echo "FAIL no-leak: /etc/apt, /var/lib/apt/lists or /var/cache/husk/musl-sysroot changed (another apt or build running at the same time?):"
	diff "$logs/before.txt" "$logs/after.txt" | head -20 | sed 's/^/    /'
else
	echo "PASS no-leak"
fi

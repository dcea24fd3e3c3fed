#!/bin/bash
# Installs the Debian packages listed in FILE that are not installed yet,
# and makes sure apt can fetch Debian source packages (the musl sysroot,
# mk/musl-sysroot.sh --ensure-deb-src). Both only as root, and only when
# needed (on a machine that has everything: one dpkg-query, one apt-get).
# usage: mk/deps.sh FILE
set -euo pipefail
export LC_ALL=C

die() { echo "deps: error: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 FILE"
list=$1
[ -r "$list" ] || die "cannot read the package list $list"
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")

mapfile -t pkgs < <(sed -e 's/#.*//' "$list" | tr -s ' \t' '\n' | sed '/^$/d')
[ ${#pkgs[@]} -gt 0 ] || die "no packages in $list"
# One dpkg-query for all (it names no line for a package it does not know).
declare -A ok=()
while IFS=$'\t' read -r p status; do
	if [ "$status" = "install ok installed" ]; then ok[$p]=1; fi
done < <(dpkg-query -W -f='${Package}\t${Status}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
for p in "${pkgs[@]}"; do
	[ -n "${ok[$p]:-}" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]}" >&2
		echo "deps: run 'make deps' as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	log=$(mktemp "${TMPDIR:-/tmp}/husk-deps.XXXXXX")
	trap 'rm -f "$log"' EXIT
	# (a fresh machine's apt lists may be empty or stale)
	apt-get update -q >"$log" 2>&1 ||
		{ tail -n 20 "$log" >&2; die "apt-get update failed (is Debian's archive reachable?)"; }
	apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1 ||
		{ tail -n 20 "$log" >&2; die "apt-get install ${missing[*]} failed"; }
fi

# Source packages (the musl sysroot) need a deb-src entry; add one once.
if [ "$(id -u)" = 0 ] && ! apt-get source --print-uris libcap2 >/dev/null 2>&1; then
	"$here/musl-sysroot.sh" --ensure-deb-src || die "adding a deb-src entry failed (mk/musl-sysroot.sh --ensure-deb-src)"
fi

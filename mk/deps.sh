#!/bin/sh
# Installs the Debian packages listed in FILE that are not installed yet.
# usage: mk/deps.sh FILE
set -eu

list=$1
pkgs=$(sed -e 's/#.*//' "$list" | tr -s ' \t' '\n\n' | sed '/^$/d')
missing=
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
here=$(dirname "$0")
if [ -z "$missing" ]; then
	# Source packages (the musl sysroot) need a deb-src entry; add one once.
	if [ "$(id -u)" = 0 ] && ! apt-get source --print-uris libcap2 >/dev/null 2>&1; then
		"$here/musl-sysroot.sh" --ensure-deb-src
	fi
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run 'make deps' as root to install them" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
"$here/musl-sysroot.sh" --ensure-deb-src

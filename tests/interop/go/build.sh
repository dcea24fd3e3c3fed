#!/bin/sh
# Build the Go ttrpc interop binaries (containerd ttrpc 1.1.1 from Debian's
# golang-github-containerd-ttrpc-dev) in GOPATH mode, without network.
# Usage: tests/interop/go/build.sh OUTDIR
#   OUTDIR/ttrpc-go-server, OUTDIR/ttrpc-go-client, OUTDIR/ttrpc-go-bench
# Env: GOCACHE (default OUTDIR/.gocache), GOPATH (default /usr/share/gocode).
set -u
if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd) || exit 1
mkdir -p "$1" || exit 1
out=$(cd "$1" && pwd) || exit 1

GO=${GO:-go}
export GO111MODULE=off
export GOPATH="${GOPATH:-/usr/share/gocode}"
export GOCACHE="${GOCACHE:-$out/.gocache}"
export GOFLAGS=
export GOPROXY=off
export CGO_ENABLED=0

cd "$here" || exit 1
for prog in server client bench; do
	if ! log=$("$GO" build -o "$out/ttrpc-go-$prog" "./$prog" 2>&1); then
		echo "$0: building ttrpc-go-$prog failed:" >&2
		printf '%s\n' "$log" >&2
		exit 1
	fi
done

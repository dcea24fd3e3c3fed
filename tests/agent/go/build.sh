#!/bin/sh
# Builds the Go task client that drives husk-agent with containerd's own
# generated runtime/v2/task client (Debian's golang-github-containerd-
# containerd-dev, 1.6) in GOPATH mode, without network.
# Usage: tests/agent/go/build.sh OUTDIR     -> OUTDIR/agent-go-client
# Env: GOCACHE (default OUTDIR/.gocache), GOPATH (default /usr/share/gocode).
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

GO=${GO:-go}
export GO111MODULE=off
export GOPATH="${GOPATH:-/usr/share/gocode}"
export GOCACHE="${GOCACHE:-$out/.gocache}"
export GOFLAGS=
export GOPROXY=off
export CGO_ENABLED=0

cd "$here"
if ! log=$("$GO" build -o "$out/agent-go-client" ./client 2>&1); then
	echo "$0: building agent-go-client failed:" >&2
	printf '%s\n' "$log" >&2
	exit 1
fi

#!/bin/sh
# Generates protobuf-c sources for husk into OUTDIR/gen.
#
# containerd's own .proto files (as Debian's golang-github-containerd-*-dev
# install them) are used as they are, minus their gogoproto/fieldpath options
# and imports, which only steer Go code generation and never change the wire
# format. Field numbers and types therefore cannot drift from containerd 1.6.
#
# usage: mk/proto-gen.sh OUTDIR
set -eu

out=$1
gocode=${GOCODE:-/usr/share/gocode/src}
here=$(cd "$(dirname "$0")/.." && pwd)

containerd_protos="
github.com/containerd/containerd/runtime/v2/task/shim.proto
github.com/containerd/containerd/api/types/mount.proto
github.com/containerd/containerd/api/types/task/task.proto
github.com/containerd/containerd/api/events/task.proto
github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto
github.com/containerd/cgroups/v2/stats/metrics.proto
"
google_protos="google/protobuf/any.proto google/protobuf/empty.proto google/protobuf/timestamp.proto"
own_protos=$(cd "$here/proto" && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)

src=$out/proto-src
gen=$out/gen
tmp=$out/gen.tmp
rm -rf "$src" "$tmp"
mkdir -p "$src" "$tmp"

for p in $containerd_protos; do
	if [ ! -f "$gocode/$p" ]; then
		echo "proto-gen: $gocode/$p is missing (install golang-github-containerd-containerd-dev and golang-github-containerd-cgroups-dev, or run 'make deps')" >&2
		exit 1
	fi
	mkdir -p "$src/$(dirname "$p")"
	sed -E \
		-e '/^[[:space:]]*import (weak )?"(gogoproto\/gogo|github.com\/containerd\/containerd\/protobuf\/plugin\/fieldpath)\.proto";/d' \
		-e '/^[[:space:]]*option \((gogoproto|containerd\.plugin)\.[^)]*\)[^;]*;/d' \
		-e 's/[[:space:]]*\[\((gogoproto|containerd\.plugin)\.[^]]*\]//g' \
		"$gocode/$p" >"$src/$p"
	if grep -q -E 'gogoproto|containerd\.plugin' "$src/$p"; then
		echo "proto-gen: $p still uses Go-only options after stripping:" >&2
		grep -n -E 'gogoproto|containerd\.plugin' "$src/$p" >&2
		exit 1
	fi
done

for p in $google_protos; do
	if [ ! -f "/usr/include/$p" ]; then
		echo "proto-gen: /usr/include/$p is missing (install libprotobuf-dev, or run 'make deps')" >&2
		exit 1
	fi
done

protoc-c --c_out="$tmp" -I "$here/proto" -I "$src" -I /usr/include \
	$own_protos $containerd_protos $google_protos

rm -rf "$gen"
mv "$tmp" "$gen"

#!/bin/bash
# Makes an OCI image archive (for `ctr images import`) of a busybox rootfs
# from Debian's busybox-static: one uncompressed layer, its config and
# manifest, named NAME in index.json.
# usage: tests/containerd/make-oci-image.sh OUT.tar NAME
set -eu
out=$1 name=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/../jail/make-rootfs.sh" "$work/rootfs"
echo "made by tests/containerd/make-oci-image.sh" >"$work/rootfs/etc/image-marker"
mkdir -p "$work/oci/blobs/sha256"
blob() { # FILE -> prints "digest size", stores the blob
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	cp "$1" "$work/oci/blobs/sha256/$d"
	echo "$d $s"
}
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" .
read -r layer layer_size < <(blob "$work/layer.tar")
jq -n --arg diff "sha256:$layer" '{architecture: "amd64", os: "linux",
	config: {Cmd: ["sh"], Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
	rootfs: {type: "layers", diff_ids: [$diff]}}' >"$work/config.json"
read -r cfg cfg_size < <(blob "$work/config.json")
jq -n --arg c "sha256:$cfg" --argjson cs "$cfg_size" --arg l "sha256:$layer" --argjson ls "$layer_size" \
	'{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
	  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
	  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' \
	>"$work/manifest.json"
read -r man man_size < <(blob "$work/manifest.json")
jq -n --arg m "sha256:$man" --argjson ms "$man_size" --arg n "$name" \
	'{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json",
	  digest: $m, size: $ms, platform: {architecture: "amd64", os: "linux"},
	  annotations: {"io.containerd.image.name": $n, "org.opencontainers.image.ref.name": "latest"}}]}' \
	>"$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
tar -C "$work/oci" -cf "$out" oci-layout index.json blobs

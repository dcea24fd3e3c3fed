#!/bin/bash
# Builds, with no network, stand-ins for the images containerd's CRI
# integration tests use, as OCI image archives (for `ctr images import`)
# plus one shared blob store that tests/cri/registry.py serves:
#   busybox           Debian's busybox-static, with busybox:1.28's /etc/passwd
#                     and /etc/group (TestAdditionalGids reads them)
#   pause             tests/cri/pause.c, static; Entrypoint /pause, user 65535
#   resource-consumer busybox + tests/cri/stress.c as /usr/bin/stress
#                     (TestContainerConsumedStats), Entrypoint /consumer (a
#                     copy of pause)
#   volume-copy-up    busybox + /test_dir/test_file "test_content", VOLUME /test_dir
#   volume-ownership  busybox + /test_dir owned by nobody:nogroup, VOLUME /test_dir
#   alpine            busybox again (no test of this version uses it)
# Writes OUTDIR/<short>.tar, OUTDIR/blobs/sha256/, OUTDIR/refs ("NAME DIGEST"
# per image: its manifest), OUTDIR/image-list.toml (for --image-list) and
# OUTDIR/.complete last. Image names live under REGISTRY (default
# localhost:5000), which containerd and its Go client reach over plain HTTP.
# usage: tests/cri/images.sh OUTDIR [REGISTRY]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [REGISTRY]" >&2; exit 2; }
out=$1 reg=${2:-localhost:5000}
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "images.sh: error: $*" >&2; exit 1; }
for t in gcc jq tar sha256sum; do command -v "$t" >/dev/null || die "$t is missing"; done
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
if [ -x /usr/bin/file ]; then
	case $(file -L /bin/busybox) in
	*"statically linked"*) ;;
	*) die "/bin/busybox is not static (install busybox-static, not busybox)" ;;
	esac
fi

work=$(mktemp -d /tmp/husk-cri-images-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/blobs/sha256"
: >"$out/refs"

gcc -static -O2 -o "$work/pause" "$here/pause.c" || die "gcc -static failed for pause.c (libc6-dev?)"
gcc -static -O2 -o "$work/stress" "$here/stress.c" || die "gcc -static failed for stress.c"
strip "$work/pause" "$work/stress" 2>/dev/null || true

busybox_rootfs() { # DIR
	local d=$1 app
	mkdir -p "$d"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,usr/sbin,var/spool/mail,var/www}
	chmod 1777 "$d/tmp"
	chmod 700 "$d/root"
	cp /bin/busybox "$d/bin/busybox"
	for app in $("$d/bin/busybox" --list); do
		[ -e "$d/bin/$app" ] || ln -s busybox "$d/bin/$app"
	done
	cat >"$d/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PW
	cat >"$d/etc/group" <<'GR'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
GR
	echo "stand-in made by husk tests/cri/images.sh from Debian's busybox-static" >"$d/etc/image-marker"
}

blob() { # FILE -> prints "digest size", stores the blob
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	cp "$1" "$out/blobs/sha256/$d"
	echo "$d $s"
}

# make_image SHORT NAME ROOTFS CONFIG_JSON: CONFIG_JSON is the image's
# "config" object (Entrypoint, Cmd, Env, User, Volumes...).
make_image() {
	local short=$1 name=$2 root=$3 cfgjson=$4 w=$work/img-$1
	local layer layer_size cfg cfg_size man man_size
	mkdir -p "$w/oci/blobs/sha256"
	tar --sort=name --mtime=@0 --numeric-owner -C "$root" -cf "$w/layer.tar" .
	read -r layer layer_size < <(blob "$w/layer.tar")
	jq -n --arg diff "sha256:$layer" --argjson c "$cfgjson" \
		'{architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z", config: $c,
		  rootfs: {type: "layers", diff_ids: [$diff]},
		  history: [{created: "1970-01-01T00:00:00Z", created_by: "husk tests/cri/images.sh"}]}' \
		>"$w/config.json"
	read -r cfg cfg_size < <(blob "$w/config.json")
	jq -n --arg c "sha256:$cfg" --argjson cs "$cfg_size" --arg l "sha256:$layer" --argjson ls "$layer_size" \
		'{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
		  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
		  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' \
		>"$w/manifest.json"
	read -r man man_size < <(blob "$w/manifest.json")
	for d in "$layer" "$cfg" "$man"; do cp "$out/blobs/sha256/$d" "$w/oci/blobs/sha256/$d"; done
	jq -n --arg m "sha256:$man" --argjson ms "$man_size" --arg n "$name" \
		'{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json",
		  digest: $m, size: $ms, platform: {architecture: "amd64", os: "linux"},
		  annotations: {"io.containerd.image.name": $n, "org.opencontainers.image.ref.name": ($n | sub(".*:"; ""))}}]}' \
		>"$w/oci/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$w/oci/oci-layout"
	tar -C "$w/oci" -cf "$out/$short.tar" oci-layout index.json blobs
	echo "$name sha256:$man" >>"$out/refs"
}

PATHENV='"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'

busybox_rootfs "$work/busybox"
make_image busybox "$reg/containerd/busybox:1.28" "$work/busybox" "{\"Cmd\": [\"sh\"], \"Env\": [$PATHENV]}"
make_image alpine "$reg/containerd/alpine:3.14.0" "$work/busybox" "{\"Cmd\": [\"/bin/sh\"], \"Env\": [$PATHENV]}"

mkdir -p "$work/pause-root"
cp "$work/pause" "$work/pause-root/pause"
make_image pause "$reg/pause:3.6" "$work/pause-root" \
	"{\"Entrypoint\": [\"/pause\"], \"User\": \"65535:65535\", \"Env\": [$PATHENV]}"

busybox_rootfs "$work/consumer"
cp "$work/stress" "$work/consumer/usr/bin/stress"
cp "$work/pause" "$work/consumer/consumer"
make_image resource-consumer "$reg/e2e-test-images/resource-consumer:1.10" "$work/consumer" \
	"{\"Entrypoint\": [\"/consumer\"], \"Env\": [$PATHENV]}"

busybox_rootfs "$work/copyup"
mkdir -p "$work/copyup/test_dir"
echo test_content >"$work/copyup/test_dir/test_file"
make_image volume-copy-up "$reg/containerd/volume-copy-up:2.1" "$work/copyup" \
	"{\"Cmd\": [\"sh\"], \"Env\": [$PATHENV], \"Volumes\": {\"/test_dir\": {}}}"

busybox_rootfs "$work/owner"
mkdir -p "$work/owner/test_dir"
chown 65534:65534 "$work/owner/test_dir"
make_image volume-ownership "$reg/containerd/volume-ownership:2.1" "$work/owner" \
	"{\"Cmd\": [\"sh\"], \"Env\": [$PATHENV], \"Volumes\": {\"/test_dir\": {}}}"

cat >"$out/image-list.toml" <<TOML
# Stand-in images made by husk tests/cri/images.sh (no network); served by
# tests/cri/registry.py at $reg inside run.sh's private network namespace.
Alpine = "$reg/containerd/alpine:3.14.0"
BusyBox = "$reg/containerd/busybox:1.28"
Pause = "$reg/pause:3.6"
ResourceConsumer = "$reg/e2e-test-images/resource-consumer:1.10"
VolumeCopyUp = "$reg/containerd/volume-copy-up:2.1"
VolumeOwnership = "$reg/containerd/volume-ownership:2.1"
TOML
touch "$out/.complete"

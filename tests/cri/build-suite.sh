#!/bin/bash
# Builds containerd's own CRI integration test suite (integration/ of the
# Debian source of the installed containerd), its failpoint helpers
# (containerd-shim-runc-fp-v1, cni-bridge-fp) and the stand-in images
# (tests/cri/images.sh), caching everything under
#   ${HUSK_CACHE:-/var/cache/husk}/cri/containerd-<source version>/  (source, GOPATH, GOCACHE, bin/)
#   ${HUSK_CACHE:-/var/cache/husk}/cri/images-<hash of the image recipe>/
# so that a second run costs seconds. OUTDIR gets symlinks into the cache and
# suite.env (what tests/cri/run.sh reads).
#
# Installs from Debian only what is missing: containerd's build
# dependencies (apt-get build-dep containerd), golang-go, busybox-static,
# containernetworking-plugins, dpkg-dev, gcc/libc6-dev, jq, python3.
# Adds a deb-src entry (mk/musl-sysroot.sh --ensure-deb-src) when apt has none.
# The test binary is built as Debian builds containerd: GOPATH mode
# (GO111MODULE=off), GOPATH = our tree + /usr/share/gocode, vendor/ as shipped.
#
# usage: tests/cri/build-suite.sh OUTDIR
set -euo pipefail
shopt -s inherit_errexit

PROG=build-suite
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUTDIR=$1
case $OUTDIR in /*) ;; *) OUTDIR=$PWD/$OUTDIR ;; esac
HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${HUSK_CACHE:-/var/cache/husk}/cri
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
t_start=$(date +%s)

[ "$(id -u)" = 0 ] || die "needs root (apt-get, and the cache in $CACHE)"
mkdir -p "$CACHE" || die "cannot create $CACHE (set HUSK_CACHE?)"

# One build at a time per cache.
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock $CACHE/.lock"

# ---------------------------------------------------------------- packages --
pkg_installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
apt_install() { # PKG...
	say "apt-get install $*"
	apt-get install -y -q --no-install-recommends "$@" >"$CACHE/apt-install.log" 2>&1 || {
		tail -n 20 "$CACHE/apt-install.log" >&2
		die "apt-get install $* failed (log: $CACHE/apt-install.log; 'apt-get update' first?)"
	}
}
need=()
for p in containerd runc golang-go busybox-static containernetworking-plugins dpkg-dev gcc libc6-dev jq \
	python3 iproute2 procps util-linux iptables file; do
	pkg_installed "$p" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
for f in /usr/bin/containerd /usr/bin/ctr /usr/sbin/runc /usr/lib/cni/bridge /usr/lib/cni/host-local \
	/usr/lib/cni/loopback /bin/busybox /usr/bin/go /usr/bin/python3; do
	[ -x "$f" ] || die "$f is missing after installing packages"
done

# The source of the installed containerd (Debian's daemon is what run.sh runs).
ver=$(dpkg-query -W -f '${source:Version}' containerd)
[ -n "$ver" ] || die "cannot read the source version of the installed containerd"
# (Outputs are read whole first: with pipefail, `| grep -q` can fail on SIGPIPE.)
showsrc=$(apt-cache showsrc containerd 2>/dev/null || true)
if ! grep -q '^Package: containerd' <<<"$showsrc"; then
	say "apt has no deb-src entry for containerd: adding one"
	"$REPO/mk/musl-sysroot.sh" --ensure-deb-src >&2 ||
		die "no deb-src entry in apt (add one mirroring your 'deb' lines, then apt-get update)"
fi
key=containerd-$(printf '%s' "$ver" | tr -c 'A-Za-z0-9.\n-' '_')
top=$CACHE/$key
mkdir -p "$top"

builddep=$(apt-get -s build-dep containerd 2>&1 || true)
if grep -q '^Inst ' <<<"$builddep"; then
	say "apt-get build-dep containerd (missing Go libraries)"
	apt-get build-dep -y -q containerd >"$CACHE/apt-build-dep.log" 2>&1 || {
		tail -n 20 "$CACHE/apt-build-dep.log" >&2
		die "apt-get build-dep containerd failed (log: $CACHE/apt-build-dep.log)"
	}
fi

# ------------------------------------------------------------------ source --
gopath=$top/gopath
src=$gopath/src/github.com/containerd/containerd
if [ ! -f "$src/.husk-complete" ]; then
	say "apt-get source containerd=$ver"
	rm -rf "$top/fetch" "$gopath"
	mkdir -p "$top/fetch"
	(cd "$top/fetch" && apt-get source -q "containerd=$ver") >"$top/apt-source.log" 2>&1 || {
		say "containerd=$ver is not in the source index; trying the candidate source"
		(cd "$top/fetch" && apt-get source -q containerd) >>"$top/apt-source.log" 2>&1 || {
			tail -n 20 "$top/apt-source.log" >&2
			die "apt-get source containerd failed (log: $top/apt-source.log)"
		}
	}
	d=$(find "$top/fetch" -mindepth 1 -maxdepth 1 -type d -name 'containerd-*' | head -n 1)
	[ -n "$d" ] && [ -d "$d/integration" ] || die "apt-get source gave no containerd-*/integration/ in $top/fetch"
	mkdir -p "$(dirname "$src")"
	mv "$d" "$src"
	rm -rf "$top/fetch"
	touch "$src/.husk-complete"
fi

# ------------------------------------------------------------------- build --
gover=$(go env GOVERSION)
# husk's own CRI tests (tests/cri/*_test.go, package integration) are
# compiled into the same binary, copied in as integration/husk-extra-*.
shopt -s nullglob
extra=("$HERE"/*_test.go)
shopt -u nullglob
extra_sum=none
[ ${#extra[@]} -eq 0 ] || extra_sum=$(cat "${extra[@]}" | sha256sum | cut -c1-16)
stamp="go=$gover src=$ver extra=$extra_sum"
bin=$top/bin
t_build=$(date +%s)
if [ ! -f "$bin/.complete" ] || [ "$(cat "$bin/.complete")" != "$stamp" ]; then
	say "building the CRI integration tests (GOPATH mode, $gover; a few minutes on 2 cores)"
	rm -rf "$bin.tmp"
	mkdir -p "$bin.tmp"
	rm -f "$src"/integration/husk-extra-*
	for f in "${extra[@]}"; do cp "$f" "$src/integration/husk-extra-$(basename "$f")"; done
	(
		cd "$src"
		export GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$top/gocache" GOFLAGS="" GOPROXY=off CGO_ENABLED=1
		go test -c -o "$bin.tmp/cri-integration.test" ./integration
		go build -o "$bin.tmp/containerd-shim-runc-fp-v1" ./integration/failpoint/cmd/containerd-shim-runc-fp-v1
		go build -o "$bin.tmp/cni-bridge-fp" ./integration/failpoint/cmd/cni-bridge-fp
	) >"$top/build.log" 2>&1 || {
		tail -n 30 "$top/build.log" >&2
		die "go build failed (log: $top/build.log)"
	}
	echo "$stamp" >"$bin.tmp/.complete"
	rm -rf "$bin"
	mv "$bin.tmp" "$bin"
	say "built in $(($(date +%s) - t_build)) s"
else
	say "test binary cached ($stamp)"
fi

# ------------------------------------------------------------------ images --
bbver=$(dpkg-query -W -f '${Version}' busybox-static)
ikey=$(cat "$HERE/images.sh" "$HERE/pause.c" "$HERE/stress.c" | { cat; echo "$bbver"; } | sha256sum | cut -c1-16)
images=$CACHE/images-$ikey
if [ ! -f "$images/.complete" ]; then
	say "building the stand-in images"
	rm -rf "$images.tmp"
	"$HERE/images.sh" "$images.tmp" >"$CACHE/images.log" 2>&1 || {
		tail -n 20 "$CACHE/images.log" >&2
		die "tests/cri/images.sh failed (log: $CACHE/images.log)"
	}
	rm -rf "$images"
	mv "$images.tmp" "$images"
else
	say "images cached ($images)"
fi

# ------------------------------------------------------------------ OUTDIR --
mkdir -p "$OUTDIR"
ln -sfn "$bin/cri-integration.test" "$OUTDIR/cri-integration.test"
ln -sfn "$bin" "$OUTDIR/bin"
ln -sfn "$images" "$OUTDIR/images"
ln -sfn "$src" "$OUTDIR/containerd-src"
cat >"$OUTDIR/suite.env" <<ENV
# written by tests/cri/build-suite.sh
CRI_CONTAINERD_SOURCE_VERSION='$ver'
CRI_GO_VERSION='$gover'
CRI_TEST_BIN='$bin/cri-integration.test'
CRI_FP_SHIM_DIR='$bin'
CRI_FP_CNI='$bin/cni-bridge-fp'
CRI_IMAGES='$images'
CRI_IMAGE_LIST='$images/image-list.toml'
ENV
echo "containerd source:  $ver ($src)"
echo "test binary:        $bin/cri-integration.test"
echo "failpoint helpers:  $bin/containerd-shim-runc-fp-v1 $bin/cni-bridge-fp"
echo "images:             $images (*.tar, image-list.toml)"
echo "suite dir:          $OUTDIR (suite.env)"
echo "took:               $(($(date +%s) - t_start)) s"
